"""ccsc-reid: the CCSC loss for person re-identification as a torchreid plugin.

Importing the package registers ``resnet50_ccsc`` (the paper's model) and ``resnet18/34/101/152_ccsc`` in
torchreid's model factory and the plugin's datasets with ``register_image_dataset``; importing it again changes
nothing. Other ``<timm CNN>_ccsc`` names are registered on first use (``ccsc_plugin.models.register_ccsc_model``).
"""

from ccsc_plugin.data.registry import register_datasets
from ccsc_plugin.models import register_models

__version__ = "0.1.0"

register_models()
register_datasets()
