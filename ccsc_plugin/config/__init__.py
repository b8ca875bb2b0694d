"""Recipes -> configs: torchreid-style defaults, YAML recipes with ``_base_`` and overrides, validation."""

from ccsc_plugin.config.loading import RecipeError, get_default_config, load_config, merge_strict, read_utf8, validate

__all__ = ["RecipeError", "get_default_config", "load_config", "merge_strict", "read_utf8", "validate"]
