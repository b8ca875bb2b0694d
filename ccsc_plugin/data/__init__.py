"""Data: the plugin's torchreid datasets (CSV folders, SynthCam), their registration, the P x K samplers,
the train loader, and the checks run on a dataset before training (image integrity, CCSC pairs)."""

from ccsc_plugin.data.checks import DataChecks, ccsc_inactive_warning
from ccsc_plugin.data.csv_dataset import (
    INT64,
    CSVDataset,
    CSVDatasetError,
    describe_test_set,
    read_rows,
    same_file,
    seen_identities_warning,
    split_rows,
)
from ccsc_plugin.data.image_cache import ImageCache
from ccsc_plugin.data.images import (
    MAX_IMAGE_PIXELS,
    ImageReadError,
    ImageTooLargeError,
    has_transparency,
    open_image,
    read_image,
    to_rgb,
)
from ccsc_plugin.data.integrity import ON_BAD_IMAGE, BadImageError, BadImageWarning, ImageScreen, unreadable_reason
from ccsc_plugin.data.loaders import build_train_loader, protect_test_loaders
from ccsc_plugin.data.registry import (
    PLUGIN_DATASETS,
    DatasetNotFound,
    bound_datasets,
    check_dataset,
    csv_options,
    dataset_setting,
    register_datasets,
)
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.data.samplers import IDENTITY_SAMPLERS, SAMPLERS, build_train_sampler
from ccsc_plugin.data.synthcam import SynthCam, SynthCamSpec, generate

__all__ = [
    "IDENTITY_SAMPLERS",
    "INT64",
    "MAX_IMAGE_PIXELS",
    "ON_BAD_IMAGE",
    "PLUGIN_DATASETS",
    "SAMPLERS",
    "BadImageError",
    "BadImageWarning",
    "CSVDataset",
    "CSVDatasetError",
    "DataChecks",
    "DatasetNotFound",
    "ImageCache",
    "ImageReadError",
    "ImageScreen",
    "ImageTooLargeError",
    "ResumableSampler",
    "SynthCam",
    "SynthCamSpec",
    "bound_datasets",
    "build_train_loader",
    "build_train_sampler",
    "ccsc_inactive_warning",
    "check_dataset",
    "csv_options",
    "dataset_setting",
    "describe_test_set",
    "generate",
    "has_transparency",
    "open_image",
    "protect_test_loaders",
    "read_image",
    "read_rows",
    "register_datasets",
    "same_file",
    "seen_identities_warning",
    "split_rows",
    "to_rgb",
    "unreadable_reason",
]
