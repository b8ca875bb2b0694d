"""A run folder belongs to one run: who may train into it, what --overwrite removes, what a killed save left."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ccsc_plugin.checkpoint import save_checkpoint
from ccsc_plugin.config import load_config
from ccsc_plugin.evaluation.results import write_result
from ccsc_plugin.pipeline.resume import resolve_resume
from ccsc_plugin.pipeline.run_folder import RunFolderTaken, claim, path_for_test_result, run_files

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"


def plant_run(folder: Path, *checkpoints: str) -> Path:
    """A run folder as training leaves it: the named checkpoints, result.json, train.log, a tensorboard log."""
    for name in checkpoints:
        save_checkpoint({"state_dict": {}, "epoch": 1}, folder / "checkpoints" / name)
    write_result(folder, {"kind": "train"})
    (folder / "train.log").write_text("=> Start training\n")
    (folder / "events.out.tfevents.1.host").write_bytes(b"events")
    return folder


def killed_save(folder: Path, name: str) -> Path:
    """The temporary file atomic_write had open for ``folder/name`` when its process was killed."""
    folder.mkdir(parents=True, exist_ok=True)
    _, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    return Path(tmp)


@pytest.mark.parametrize("resume", ["", "other", "other/checkpoints/epoch-001.pt"])
def test_a_folder_holding_another_run_is_refused_and_left_untouched(tmp_path, resume):
    run = plant_run(tmp_path / "run", "epoch-001.pt", "epoch-002.pt")
    plant_run(tmp_path / "other", "epoch-001.pt")
    leftover = killed_save(run / "checkpoints", "epoch-003.pt")
    before = sorted(run.rglob("*"))
    with pytest.raises(RunFolderTaken) as error:
        claim(run, resolve_resume(str(tmp_path / resume) if resume else ""))
    message = str(error.value)
    assert f"{run} already holds a run (checkpoints/epoch-001.pt, checkpoints/epoch-002.pt, result.json)" in message
    assert "data.save_dir=NEW_FOLDER" in message and f"--resume {run}" in message and "--overwrite" in message
    assert ("is a checkpoint of another folder" in message) == bool(resume)
    assert sorted(run.rglob("*")) == before and leftover.exists()


@pytest.mark.parametrize("taken_by", ["checkpoints/epoch-001-batch-0003.pt", "result.json"])
def test_checkpoints_or_a_result_alone_mark_a_folder_taken(tmp_path, taken_by):
    path = tmp_path / "run" / taken_by
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.raises(RunFolderTaken):
        claim(tmp_path / "run")


def test_a_new_folder_or_one_with_only_a_log_is_free(tmp_path):
    assert claim(tmp_path / "new") == []
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / "train.log").write_text("=> Start training\n")
    assert claim(tmp_path / "crashed") == [] and (tmp_path / "crashed" / "train.log").is_file()


@pytest.mark.parametrize("resume", ["run", "run/checkpoints/epoch-001.pt"])
def test_resuming_a_checkpoint_of_the_folder_itself_is_allowed(tmp_path, resume):
    run = plant_run(tmp_path / "run", "epoch-001.pt", "epoch-001-batch-0002.pt")
    before = sorted(run.rglob("*"))
    assert claim(run, resolve_resume(str(tmp_path / resume))) == []
    assert sorted(run.rglob("*")) == before


def test_overwrite_cannot_remove_the_checkpoint_being_resumed(tmp_path):
    run = plant_run(tmp_path / "run", "epoch-001.pt")
    with pytest.raises(RunFolderTaken, match="Drop --overwrite to continue that run, or drop --resume"):
        claim(run, resolve_resume(str(run)), overwrite=True)
    assert (run / "checkpoints" / "epoch-001.pt").is_file()


def test_overwrite_removes_the_old_run_and_says_what_it_removed(tmp_path):
    run = plant_run(tmp_path / "run", "epoch-001.pt", "epoch-002.pt")
    old_test = write_result(run / "tests" / "csv-epoch-002-0123abcd.json", {"kind": "test"})
    (run / "tests" / "test.log").write_text("** Results **\n")
    rank_lists = run / "tests" / "csv-epoch-002-0123abcd-visrank"  # its rank lists (test --visrank)
    (rank_lists / "csv").mkdir(parents=True)
    (rank_lists / "csv" / "ranks.csv").write_text("query_path,rank,gallery_path,distance,correct\n")
    kept = [run / "notes.txt", run / "tests" / "notes.txt"]  # not a run's file: never removed
    for path in kept:
        path.write_text("mine")
    (note,) = claim(run, overwrite=True)
    assert note.startswith(f"=> --overwrite: removed the previous run in {run}: ")
    for name in ("checkpoints/epoch-001.pt", "checkpoints/epoch-002.pt", "result.json", "train.log"):
        assert name in note
    assert "events.out.tfevents.1.host" in note and "tests/test.log" in note and f"tests/{old_test.name}" in note
    assert f"tests/{rank_lists.name}" in note and not rank_lists.exists()
    assert run_files(run) == [] and all(path.read_text() == "mine" for path in kept)


@pytest.mark.parametrize("resume", [False, True])
def test_temporaries_of_a_killed_save_are_removed_at_the_next_start(tmp_path, resume):
    run = plant_run(tmp_path / "run", "epoch-001.pt") if resume else tmp_path / "run"
    leftovers = [
        killed_save(run / "checkpoints", "epoch-002.pt"),
        killed_save(run, "result.json"),
        killed_save(run / "tests", "csv-epoch-001-0123abcd.json"),
    ]
    kept = [run / "my.tmp", run / ".hidden"]  # not atomic_write's: left alone
    for path in kept:
        path.write_text("mine")
    (note,) = claim(run, resolve_resume(str(run) if resume else ""))
    assert note.startswith(f"=> Removed what a killed save left in {run}: ")
    assert all(str(path.relative_to(run)) in note and not path.exists() for path in leftovers)
    assert all(path.exists() for path in kept)


def test_tests_of_other_weights_targets_or_settings_get_their_own_file(tiny_overrides, tmp_path):
    def path(weights_sha256: str, *overrides: str) -> Path:
        cfg = load_config(BASE, [*tiny_overrides, *overrides])
        return path_for_test_result(cfg, tmp_path / "run" / "checkpoints" / "epoch-002.pt", weights_sha256)

    first = path("a" * 64)
    assert first.parent == tmp_path / "run" / "tests" and first.name.startswith("market1501-epoch-002-")
    assert path("a" * 64) == first  # the same test again: its own earlier file
    assert path("a" * 64, f"data.save_dir={tmp_path / 'elsewhere'}").name == first.name
    others = [
        path("b" * 64),  # other weights under the same file name
        path("a" * 64, "data.targets=[csv]", f"data.csv.path={tmp_path / 'labels.csv'}"),
        path("a" * 64, "test.dist_metric=cosine"),
    ]
    assert len({first, *others}) == 4 and others[1].name.startswith("csv-epoch-002-")
