"""Recipes -> configs: torchreid-style defaults, YAML recipes with ``_base_`` and overrides, validation."""

from ccsc_plugin.config.loading import (
    RecipeError,
    config_from_mapping,
    get_default_config,
    load_config,
    merge_strict,
    parse_yaml,
    read_utf8,
    validate,
)

__all__ = [
    "RecipeError",
    "config_from_mapping",
    "get_default_config",
    "load_config",
    "merge_strict",
    "parse_yaml",
    "read_utf8",
    "validate",
]
