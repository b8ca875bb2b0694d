"""Recipes -> configs: torchreid-style defaults, YAML recipes with ``_base_`` and overrides, validation."""

from ccsc_plugin.config.defaults import get_default_config
from ccsc_plugin.config.loading import config_from_mapping, load_config, merge_strict, parse_override, parse_yaml
from ccsc_plugin.config.validation import validate
from ccsc_plugin.errors import RecipeError, read_utf8

__all__ = [
    "RecipeError",
    "config_from_mapping",
    "get_default_config",
    "load_config",
    "merge_strict",
    "parse_override",
    "parse_yaml",
    "read_utf8",
    "validate",
]
