"""Checkpoints: written atomically, read with ``weights_only=True`` (an untrusted file cannot run code).

Every file a run writes goes through :func:`atomic_write`, which turns a full disk into :class:`NoSpaceLeft`
(exit 2 at the command line) naming the folder and about how much space the file needed.

A checkpoint is a dict of tensors, state dicts and plain Python values only (no numpy scalars), so
``torch.load(weights_only=True)`` accepts it on torch >= 2.6, unlike torchreid's own files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
_EPOCH_FILE = re.compile(r"epoch-(\d+)(?:-batch-(\d+))?\.pt$")
_TMP_PREFIX, _TMP_SUFFIX = ".", ".tmp"  # atomic_write's temporary beside ``name``: ``.name.XXXXXXXX.tmp``


class CheckpointError(ValueError):
    """A file is not a checkpoint this plugin can load safely."""


class NoSpaceLeft(OSError):
    """A file could not be written because its disk is full; the message names the folder and the space needed."""

    def __init__(self, folder: Path, needed_bytes: int | None = None, then: str = "") -> None:
        self.folder = folder
        self.needed_bytes = needed_bytes
        needed = f"needed about {needed_bytes / 1e6:.0f} MB, " if needed_bytes else ""
        free = f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free" if folder.is_dir() else "free space unknown"
        fix = then or "Free space there (or choose another folder), then run the command again."
        super().__init__(errno.ENOSPC, f"no space left on device in {folder} ({needed}{free}). {fix}")

    def __str__(self) -> str:
        return str(self.strerror)

    def then(self, fix: str) -> NoSpaceLeft:
        """The same error with another way on, e.g. the command that resumes the run."""
        return NoSpaceLeft(self.folder, self.needed_bytes, fix)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full: ``OSError`` ENOSPC, or torch.save's C++ writer failing mid-file."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    text = str(error)  # torch.save: "[enforce fail at inline_container.cc] unexpected pos ..." / "file write failed"
    return isinstance(error, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def checkpoint_path(save_dir: str | Path, epoch: int, batch: int = 0) -> Path:
    """Where the checkpoint taken after ``epoch`` epochs (and ``batch`` batches of the next) lives."""
    suffix = f"-batch-{batch:04d}" if batch else ""
    return Path(save_dir) / CHECKPOINT_DIR / f"epoch-{epoch:03d}{suffix}.pt"


def atomic_write(path: str | Path, write, size_hint: int | None = None) -> Path:
    """Call ``write(tmp_path)``, flush it to disk, then rename into place: a crash never leaves half a file.

    The temporary file sits beside ``path`` (same filesystem, so the rename is atomic) and is removed
    if ``write`` fails; the previous ``path``, if any, is untouched until the rename. A full disk raises
    :class:`NoSpaceLeft` naming the folder and about ``size_hint`` bytes needed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
    except OSError as error:
        if is_disk_full(error):
            raise NoSpaceLeft(path.parent, size_hint) from None
        raise
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        if is_disk_full(error):
            raise NoSpaceLeft(path.parent, size_hint) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def leftover_temporaries(folder: str | Path) -> list[Path]:
    """The temporaries :func:`atomic_write` left in ``folder``: only a process killed mid-write leaves one."""
    return sorted(Path(folder).glob(f"{_TMP_PREFIX}*.*{_TMP_SUFFIX}"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically ``torch.save`` ``state`` to ``path``."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp), size_hint=tensor_bytes(state))


def tensor_bytes(state: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint state: about the size of its file."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(value) for value in state.values())
    if isinstance(state, list | tuple):
        return sum(tensor_bytes(value) for value in state)
    return 0


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist. Train one with `ccsc-reid train RECIPE`.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a checkpoint this plugin can load safely ({type(error).__name__}: {error}). "
            "Only files written by `ccsc-reid train` (tensors and plain values) are accepted."
        ) from error
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{path} holds no 'state_dict': it is not a ccsc-reid or torchreid checkpoint.")
    return state


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks: names the exact weights a result scored."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run folder's checkpoints (``checkpoints/epoch-*.pt``), oldest first."""
    found = sorted(
        ((int(m.group(1)), int(m.group(2) or 0)), p)
        for p in (Path(run_dir) / CHECKPOINT_DIR).glob("epoch-*.pt")
        if (m := _EPOCH_FILE.search(p.name))
    )
    return [path for _, path in found]


NOT_TRAINED = "has this run been trained? Train it with `ccsc-reid train RECIPE --set data.save_dir=FOLDER`."
NOTHING_TO_RESUME = "nothing to resume. Drop --resume to train from the start."
NOTHING_TO_TEST = (
    "nothing to test. Pass --weights a run folder that `ccsc-reid train` has written checkpoints to, or a "
    "checkpoint file (.pt)."
)


def latest_checkpoint(run_dir: str | Path, missing: str = NOT_TRAINED) -> Path:
    """The checkpoint with the highest epoch in a run folder (or the file itself if given one).

    ``missing`` ends the message when the folder holds none: what the caller wanted it for, and what to do.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    found = epoch_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"No checkpoints under {run_dir / CHECKPOINT_DIR} (epoch-*.pt): {missing}")
    return found[-1]


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that DataParallel / DDP add, so weights load into a bare model."""
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


CLASSIFIER_PREFIX = "classifier."  # the identity classifier: its size is the training set's number of identities
DEFAULT_FIT_FIX = "Use a checkpoint that `ccsc-reid train` wrote for this model."


def load_model_state(
    model: torch.nn.Module,
    checkpoint: dict[str, Any],
    origin: str | Path,
    other_classes: bool = False,
    fix: str = DEFAULT_FIT_FIX,
) -> list[str]:
    """Load ``checkpoint['state_dict']`` into ``model``: every key present, none extra, every shape equal.

    DataParallel / DDP's ``module.`` prefix is dropped first. With ``other_classes`` (weights used on another
    dataset, where only the features matter) the classifier alone may differ in shape: it keeps its initial
    values and its keys are returned. Anything else that does not fit raises a ``CheckpointError`` naming
    ``origin``, a few of the offending keys and ``fix``, so no path ever runs a half-initialised model.
    """
    weights, skipped = fitting_weights(model, checkpoint, origin, other_classes, fix)
    model.load_state_dict(weights, strict=False)
    return skipped


def fitting_weights(
    model: torch.nn.Module,
    checkpoint: dict[str, Any],
    origin: str | Path,
    other_classes: bool = False,
    fix: str = DEFAULT_FIT_FIX,
) -> tuple[dict[str, Any], list[str]]:
    """:func:`load_model_state`'s check alone (``model`` may live on the meta device): the weights to load, and
    the classifier keys left out."""
    weights = checkpoint.get("state_dict")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{origin}: 'state_dict' is a {type(weights).__name__}, not a dict of tensors. {fix}")
    weights = strip_module_prefix(weights)
    own = model.state_dict()
    reshaped = [k for k, v in weights.items() if k in own and getattr(v, "shape", None) != own[k].shape]
    skipped = [k for k in reshaped if other_classes and k.startswith(CLASSIFIER_PREFIX)]
    problems = {
        "missing": [k for k in own if k not in weights],
        "unexpected": [k for k in weights if k not in own],
        "of another shape": [_shapes(k, weights[k], own[k]) for k in reshaped if k not in skipped],
    }
    if any(problems.values()):
        raise CheckpointError(_misfit_message(origin, model, problems, fix))
    return {k: v for k, v in weights.items() if k not in skipped}, skipped


def _shapes(key: str, stored: Any, expected: torch.Tensor) -> str:
    stored_shape = list(stored.shape) if isinstance(stored, torch.Tensor) else type(stored).__name__
    return f"{key} ({stored_shape} in the file, {list(expected.shape)} in the model)"


def _misfit_message(origin: str | Path, model: torch.nn.Module, problems: dict[str, list[str]], fix: str) -> str:
    """``origin does not fit model X: 3 key(s) missing (a, b, c), ...`` with a hint for the usual causes."""
    parts = [
        f"{len(keys)} key(s) {kind} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
        for kind, keys in problems.items()
        if keys
    ]
    message = f"{origin} does not fit model {type(model).__name__}: {'; '.join(parts)}."
    if len(problems["missing"]) == len(model.state_dict()) and not problems["unexpected"]:
        message += " Its state_dict holds none of the model's weights."
    prefix = _common_prefix(problems["unexpected"])
    if (
        prefix
        and problems["missing"]
        and {k.removeprefix(prefix) for k in problems["unexpected"]} >= set(problems["missing"])
    ):
        message += f" Every key carries the prefix {prefix!r}: save the state dict without it."
    return f"{message} {fix}"


def _common_prefix(keys: list[str]) -> str:
    """The first dotted component all ``keys`` share (``'model.'``), or ``''``."""
    heads = {key.split(".", 1)[0] for key in keys if "." in key}
    return f"{heads.pop()}." if len(heads) == 1 and all("." in key for key in keys) else ""
