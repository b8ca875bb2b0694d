"""A run folder (``data.save_dir``) belongs to one run.

:func:`claim` runs before training writes anything: a folder that holds another run's checkpoints or
``result.json`` is refused, unless the run resumes a checkpoint of that very folder or ``overwrite``
removes the old run first; temporaries a killed save left behind are removed. :func:`path_for_test_result`
is where ``ccsc-reid test`` writes: beside the training result, never over it; :func:`rank_lists_folder`, where
its ``--visrank`` rank lists go.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin.config import RecipeError
from ccsc_plugin.engine import distributed
from ccsc_plugin.evaluation.results import RESULT_FILE, TEST_DIR
from ccsc_plugin.pipeline.resume import ResumePoint

TRAIN_LOG = "train.log"
TEST_LOG = "test.log"
TENSORBOARD_EVENTS = "events.out.tfevents.*"
RANK_LISTS_SUFFIX = "-visrank"  # tests/<test result stem>-visrank/: the rank lists of that test


class RunFolderTaken(RecipeError):
    """``data.save_dir`` holds another run; the message names the folder and the three ways on."""


class FolderNotWritable(RecipeError):
    """A folder a run must write to (``data.save_dir``, its ``tests/``) cannot be written: read-only, not a folder."""


def check_writable(folder: str | Path, key: str = "data.save_dir") -> None:
    """Stop before anything loads when ``folder`` (made if missing) cannot hold a new file.

    A probe file is created and removed at once, so that a read-only file system, a missing permission or a
    path through a file is said up front, naming the folder, instead of as a raw ``OSError`` mid-run.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise FolderNotWritable(
            f"{key} {folder} cannot be written ({error.strerror or error}): a run writes its checkpoints, logs and "
            f"results there. Choose a writable folder, e.g. --set {key}=runs/NAME, or make it writable."
        ) from None


def run_files(save_dir: str | Path) -> list[Path]:
    """The files a run leaves in its folder: checkpoints, ``result.json``, logs, tensorboard events, test results
    and the folders of their rank lists (``test --visrank``)."""
    save_dir = Path(save_dir)
    named = [save_dir / RESULT_FILE, save_dir / TRAIN_LOG, save_dir / TEST_DIR / TEST_LOG]
    return [
        *ckpt.epoch_checkpoints(save_dir),
        *(path for path in named if path.is_file()),
        *sorted(save_dir.glob(TENSORBOARD_EVENTS)),
        *sorted((save_dir / TEST_DIR).glob("*.json")),
        *sorted(path for path in (save_dir / TEST_DIR).glob(f"*{RANK_LISTS_SUFFIX}") if path.is_dir()),
    ]


def claim(save_dir: str | Path, resume: ResumePoint | None = None, overwrite: bool = False) -> list[str]:
    """Make ``save_dir`` this training run's folder, or raise :class:`RunFolderTaken`; return what to log.

    Allowed: an empty or new folder, a resume of a checkpoint inside ``save_dir`` (``resume``, resolved once by
    :func:`~ccsc_plugin.pipeline.resume.resolve_resume`), or ``overwrite`` (the old run's files are removed
    first). Under DDP every rank checks and rank 0 removes.
    """
    save_dir = Path(save_dir)
    resumed = _resumed_here(save_dir, resume)
    if overwrite and resumed is not None:
        raise RunFolderTaken(
            f"--overwrite would remove {resumed}, the checkpoint --resume continues from. Drop --overwrite to "
            "continue that run, or drop --resume to train it afresh."
        )
    taken = [path for path in run_files(save_dir) if path.suffix == ".pt" or path == save_dir / RESULT_FILE]
    if taken and not (overwrite or resumed is not None):
        raise RunFolderTaken(_taken_message(save_dir, taken, resume))
    if not distributed.is_main_process():
        return []
    notes = []
    removed = _remove(run_files(save_dir)) if overwrite else []
    if removed:
        notes.append(f"=> --overwrite: removed the previous run in {save_dir}: {_listing(save_dir, removed)}")
    leftovers = _remove(leftover_temporaries(save_dir))
    if leftovers:
        notes.append(f"=> Removed what a killed save left in {save_dir}: {_listing(save_dir, leftovers)}")
    return notes


def leftover_temporaries(save_dir: str | Path) -> list[Path]:
    """Temporaries a killed save left beside the checkpoints, ``result.json`` or the test results."""
    save_dir = Path(save_dir)
    folders = (save_dir, save_dir / ckpt.CHECKPOINT_DIR, save_dir / TEST_DIR)
    return [path for folder in folders for path in ckpt.leftover_temporaries(folder)]


def path_for_test_result(cfg: CN, checkpoint: str | Path, checkpoint_sha256: str) -> Path:
    """Where a test writes: ``<data.save_dir>/tests/<targets>-<checkpoint stem>-<key>.json``.

    ``key`` hashes the weights' SHA-256 and the test's recipe (every key but ``data.save_dir``): a repeated
    identical test replaces its own earlier result; other weights, targets or settings get a file of their own.
    """
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    recipe = cfg.clone()
    recipe.defrost()
    recipe.data.save_dir = ""
    key = hashlib.sha256(f"{checkpoint_sha256}\n{recipe.dump()}".encode()).hexdigest()[:8]
    return Path(cfg.data.save_dir) / TEST_DIR / f"{'+'.join(targets)}-{Path(checkpoint).stem}-{key}.json"


def rank_lists_folder(test_result: Path) -> Path:
    """Where ``test --visrank`` draws beside the test result ``test_result``: ``<its stem>-visrank/``."""
    return test_result.with_name(f"{test_result.stem}{RANK_LISTS_SUFFIX}")


def _resumed_here(save_dir: Path, resume: ResumePoint | None) -> Path | None:
    """The checkpoint being resumed, if it lies in ``save_dir`` (the same run, continued)."""
    if resume is None:
        return None
    checkpoint = resume.path.resolve()
    return checkpoint if checkpoint.parent == (save_dir / ckpt.CHECKPOINT_DIR).resolve() else None


def _taken_message(save_dir: Path, taken: list[Path], resume: ResumePoint | None) -> str:
    elsewhere = f" (--resume {resume.requested} is a checkpoint of another folder)" if resume is not None else ""
    return (
        f"{save_dir} already holds a run ({_listing(save_dir, taken)}){elsewhere}. A run folder belongs to one "
        "run: training into it would mix two models. Choose one:\n"
        "  - a new folder: --set data.save_dir=NEW_FOLDER\n"
        f"  - continue that run: ccsc-reid train RECIPE --resume {save_dir} (with its recipe and --set options)\n"
        "  - replace it: ccsc-reid train ... --overwrite (removes its checkpoints, result.json, train.log, "
        "tensorboard events and test results first)"
    )


def _listing(save_dir: Path, paths: list[Path]) -> str:
    return ", ".join(str(path.relative_to(save_dir)) for path in paths)


def _remove(paths: list[Path]) -> list[Path]:
    for path in paths:
        if path.is_dir():  # the rank lists of a test
            shutil.rmtree(path)
        else:
            path.unlink()
    return paths
