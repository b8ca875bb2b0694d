"""Recipes -> a config: YAML 1.2 files with ``_base_`` chains, ``--set`` overrides, strict merging.

A recipe may name ``_base_`` (a path, or a list of paths, relative to the recipe file): the bases
merge in order, a later one over an earlier one, and the recipe's own keys over them all. Keys are
strict: an unknown key is an error naming it and the nearest valid key (or, for a removed key, what to
do instead). ``--set section.key=value`` overrides apply last.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from ccsc_plugin.config.defaults import RETIRED_KEYS, flat_keys, get_default_config, upgraded
from ccsc_plugin.config.validation import validate
from ccsc_plugin.errors import RecipeError, read_utf8

BASE_KEY = "_base_"
MAX_BASE_DEPTH = 64  # _base_ steps below the recipe given; real chains take two or three
_LISTED_RECIPES = 8  # a folder named as a recipe: its .yaml files are listed up to this many


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are bools, so ``amp: off`` stays the string "off"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML 1.2; a syntax error is a RecipeError naming ``origin`` and the line and column."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"{origin}{where}: invalid YAML ({problem}). Fix the syntax there.") from None


def _unknown_key(full_key: str, valid: list[str], origin: str) -> RecipeError:
    """The error for a key the config lacks: why a removed key went, else the nearest valid key.

    The nearest is the same leaf name first (a misplaced key), then the closest spelling.
    """
    if full_key in RETIRED_KEYS:
        return RecipeError(f"{origin}: unknown key '{full_key}': it was removed ({RETIRED_KEYS[full_key]}). Delete it.")
    leaf = full_key.rsplit(".", 1)[-1]
    same_leaf = [key for key in valid if key.rsplit(".", 1)[-1] == leaf]
    nearest = (same_leaf or difflib.get_close_matches(full_key, valid, n=1, cutoff=0.0) or ["?"])[0]
    return RecipeError(f"{origin}: unknown key '{full_key}'. Did you mean '{nearest}'?")


def _coerce(full_key: str, value: Any, default: Any, origin: str) -> Any:
    """Check ``value`` against the default's type (int -> float allowed, tuple -> list)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        value = [value] if isinstance(value, str) and all(isinstance(d, str) for d in default) else value
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
        if ok and default:
            return _coerce_items(full_key, value, default[0], origin)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise RecipeError(
            f"{origin}: key '{full_key}' expects {type(default).__name__} (default {default!r}), "
            f"got {type(value).__name__} {value!r}."
        )
    return value


def _coerce_items(full_key: str, values: list, example: Any, origin: str) -> list:
    """Each item of a list key checked against the type of the default's items (int -> float allowed)."""
    try:
        return [_coerce(full_key, item, example, origin) for item in values]
    except RecipeError:
        raise RecipeError(
            f"{origin}: key '{full_key}' expects a list of {type(example).__name__} (e.g. [{example!r}]), "
            f"got {values!r}."
        ) from None


def merge_strict(cfg: CN, data: Mapping[str, Any], origin: str) -> None:
    """Merge a nested mapping into ``cfg``; unknown keys and wrong types raise RecipeError."""
    valid = flat_keys(cfg)

    def merge(node: CN, values: Mapping[str, Any], prefix: str) -> None:
        for key, value in values.items():
            full = f"{prefix}{key}"
            if key not in node:
                raise _unknown_key(full, valid, origin)
            if isinstance(node[key], CN):
                if not isinstance(value, Mapping):
                    raise RecipeError(f"{origin}: '{full}' is a section; give it a mapping of keys, not {value!r}.")
                merge(node[key], value, full + ".")
            else:
                node[key] = _coerce(full, value, node[key], origin)

    merge(cfg, data, "")


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML recipe and its ``_base_`` chain into one nested dict (later bases win, the child over all).

    A chain deeper than :data:`MAX_BASE_DEPTH` bases, a cycle, a missing file or a folder is a RecipeError.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise RecipeError(f"{path}: _base_ cycle through {' -> '.join(str(p) for p in _seen)}.")
    if len(_seen) > MAX_BASE_DEPTH:
        raise RecipeError(
            f"{_seen[0]}: the _base_ chain is more than {MAX_BASE_DEPTH} bases deep ({_seen[-1]} names {path}, "
            f"base {len(_seen)}). Recipes inherit through a few bases: shorten the chain, e.g. by merging "
            "the bases into one file."
        )
    named_by = f" (the _base_ of {_seen[-1]})" if _seen else ""
    if path.is_dir():
        raise RecipeError(f"{path} is a folder, not a recipe{named_by}: name a YAML file in it. {_yaml_in(path)}")
    if not path.is_file():
        raise RecipeError(f"Recipe {path}{named_by} does not exist. List the shipped ones with `ccsc-reid recipes`.")
    data = parse_yaml(read_utf8(path, RecipeError), str(path)) or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of sections, got {type(data).__name__}.")
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise RecipeError(
            f"{path}: {BASE_KEY} must be a path or a list of paths (relative to this recipe, e.g. "
            f"'{BASE_KEY}: ../base.yaml'), got {bases!r}."
        )
    merged: dict[str, Any] = {}
    for base in bases:
        _deep_update(merged, read_recipe(path.parent / base, _seen + (path,)))
    _deep_update(merged, data)
    return merged


def _yaml_in(folder: Path) -> str:
    """The recipes a folder holds, for the message that names the folder instead of one of them."""
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not names:
        return "It holds no .yaml file."
    if len(names) <= _LISTED_RECIPES:
        return f"It holds {', '.join(names)}."
    return f"It holds {len(names)} .yaml files, e.g. {', '.join(names[:3])}."


def _deep_update(target: dict, source: Mapping) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def parse_override(item: str) -> dict[str, Any]:
    """``'train.lr=1e-3'`` -> ``{'train': {'lr': 0.001}}`` (the value is parsed as YAML)."""
    if "=" not in item:
        raise RecipeError(f"--set expects section.key=value, got {item!r}.")
    key, raw = item.split("=", 1)
    value = parse_yaml(raw, f"--set {item}") if raw.strip() else ""
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load_config(recipe: str | Path | None = None, overrides: Iterable[str] = ()) -> CN:
    """Defaults, then the recipe (with its bases), then ``--set`` overrides; checked and frozen."""
    cfg = get_default_config()
    if recipe is not None:
        merge_strict(cfg, read_recipe(recipe), origin=str(recipe))
    for item in overrides:
        merge_strict(cfg, parse_override(item), origin=f"--set {item}")
    validate(cfg)
    cfg.freeze()
    return cfg


def config_from_mapping(data: Mapping[str, Any], origin: str) -> CN:
    """A whole recipe given as a mapping (a parsed stored recipe): defaults, then ``data``; checked and frozen.

    The same strict keys and validation as :func:`load_config`, without ``_base_`` or overrides. A recipe stored
    by an older version may hold keys since removed (``RETIRED_KEYS``): they are read in today's keys first
    (:func:`~ccsc_plugin.config.defaults.upgraded`: ``model.backbone`` into ``model.name``, the others dropped).
    """
    cfg = get_default_config()
    merge_strict(cfg, upgraded(data), origin=origin)
    validate(cfg)
    cfg.freeze()
    return cfg
