"""The four benchmarks as miniatures, loaded through torchreid's own dataset classes and data manager; and
``benchmarks/real_tables.py`` (Tables 1-3 on real people): its statistics, tables, resumability and switches."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from conftest import MINI_SPEC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import _common
import _common  # noqa: E402
import real_tables  # noqa: E402
from miniatures import MiniatureSpec, write_miniature

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.cli import main
from ccsc_plugin.config import load_config
from ccsc_plugin.data.registry import EXPECTED_LAYOUTS, DatasetNotFound, check_dataset
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.pipeline import build_datamanager

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
T, E, C, IMG = MINI_SPEC.num_train_ids, MINI_SPEC.num_test_ids, MINI_SPEC.num_cams, MINI_SPEC.images_per_cam

# (ids, images, cameras) per split, from the protocols the miniatures mirror.
EXPECTED = {
    # Market-1501: the gallery also holds one 0000 distractor (counted) and one -1 junk image (skipped).
    "market1501": {"train": (T, T * C * IMG, C), "query": (E, E * C, C), "gallery": (E + 1, E * C * (IMG - 1) + 1, C)},
    "dukemtmcreid": {"train": (T, T * C * IMG, C), "query": (E, E * C, C), "gallery": (E, E * C * (IMG - 1), C)},
    # MSMT17: one image per training identity sits in list_val.txt, not in train.
    "msmt17": {"train": (T, T * C * IMG - T, C), "query": (E, E * C, C), "gallery": (E, E * C * (IMG - 1), C)},
    # CUHK03 767/700 protocol: two views per camera pair; one query per view and test identity.
    "cuhk03": {"train": (T, T * 2 * IMG, 2), "query": (E, E * 2, 2), "gallery": (E, E * 2 * (IMG - 1), 2)},
}
SETTINGS = [
    ("market1501", {}),
    ("dukemtmcreid", {}),
    ("cuhk03", {"cuhk03_labeled": True}),
    ("cuhk03", {"cuhk03_labeled": False}),
    ("msmt17", {}),
]


def split_counts(data: list) -> tuple[int, int, int]:
    return len({item[1] for item in data}), len(data), len({item[2] for item in data})


@pytest.mark.parametrize(("name", "kwargs"), SETTINGS, ids=["market", "duke", "cuhk-lab", "cuhk-det", "msmt"])
def test_miniature_loads_through_torchreids_class_with_the_right_counts(miniature_root, name, kwargs):
    root, written = miniature_root
    dataset = torchreid.data.datasets.init_image_dataset(name, root=str(root), mode="train", verbose=False, **kwargs)
    counts = written[name]
    if name == "cuhk03":
        counts = counts["labeled" if kwargs["cuhk03_labeled"] else "detected"]
    for split in ("train", "query", "gallery"):
        got = split_counts(getattr(dataset, split))
        assert got == EXPECTED[name][split], f"{name} {split}"
        wrote = getattr(counts, split)
        assert got == (len(wrote.ids), wrote.images, len(wrote.cams))
    assert dataset.num_train_pids == T and dataset.num_train_cams == EXPECTED[name]["train"][2]
    assert sorted({item[1] for item in dataset.train}) == list(range(T))  # relabelled for the classifier


def test_cuhk03_labeled_and_detected_are_different_image_sets(miniature_root):
    root, _ = miniature_root
    labeled = torchreid.data.datasets.init_image_dataset("cuhk03", root=str(root), cuhk03_labeled=True, verbose=False)
    detected = torchreid.data.datasets.init_image_dataset("cuhk03", root=str(root), cuhk03_labeled=False, verbose=False)
    assert all("images_labeled" in item[0] for item in labeled.train)
    assert all("images_detected" in item[0] for item in detected.train)
    first_labeled, first_detected = (Path(ds.train[0][0]).read_bytes() for ds in (labeled, detected))
    assert first_labeled != first_detected  # detected boxes are shifted crops


def test_market_junk_images_are_on_disk_but_skipped(miniature_root):
    root, _ = miniature_root
    gallery_dir = root / "market1501" / "Market-1501-v15.09.15" / "bounding_box_test"
    assert (gallery_dir / "-1_c1s1_000401_03.jpg").is_file()
    dataset = torchreid.data.datasets.init_image_dataset("market1501", root=str(root), verbose=False)
    assert not any(Path(item[0]).name.startswith("-1_") for item in dataset.gallery)
    assert 0 in {item[1] for item in dataset.gallery}  # the distractor is a gallery identity


@pytest.mark.parametrize(
    "recipe", ["market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17"], ids=lambda r: r
)
def test_recipe_selects_its_benchmark_in_the_data_manager(miniature_root, recipe, tmp_path):
    root, _ = miniature_root
    overrides = [f"data.root={root}", "data.height=64", "data.width=32", "data.workers=0", "train.batch_size=8"]
    cfg = load_config(RECIPES / recipe / "softmax_ccsc.yaml", overrides + [f"data.save_dir={tmp_path}"])
    manager = build_datamanager(cfg)
    assert manager.num_train_pids == T
    batch = next(iter(manager.train_loader))
    assert batch["img"].shape[1:] == (3, 64, 32) and len(batch["camid"]) == 8
    impath = batch["impath"][0]
    expected_folder = {"cuhk03_labeled": "images_labeled", "cuhk03_detected": "images_detected"}.get(recipe, "")
    assert expected_folder in impath and str(root) in impath


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_missing_benchmark_names_the_path_and_layout(name, tmp_path):
    with pytest.raises(DatasetNotFound) as error:
        check_dataset(name, tmp_path)
    message = str(error.value)
    folder, layout = EXPECTED_LAYOUTS[name]
    assert str(tmp_path / folder) in message and layout in message


@pytest.mark.parametrize(
    ("name", "remove"),
    [
        ("market1501", "market1501/Market-1501-v15.09.15/query"),
        ("dukemtmcreid", "dukemtmc-reid/DukeMTMC-reID/bounding_box_test"),
        ("cuhk03", "cuhk03/cuhk03_new_protocol_config_labeled.mat"),
        ("msmt17", "msmt17/MSMT17_V1/list_query.txt"),
    ],
)
def test_incomplete_benchmark_names_the_missing_file(name, remove, tmp_path):
    small = MiniatureSpec(num_train_ids=2, num_test_ids=1, num_cams=2, images_per_cam=2, height=64, width=32)
    write_miniature(name, tmp_path, small)
    check_dataset(name, tmp_path)  # complete: no error
    target = tmp_path / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetNotFound, match="incomplete") as error:
        check_dataset(name, tmp_path)
    assert str(target) in str(error.value)


@pytest.mark.parametrize("recipe", ["cuhk03_detected/softmax.yaml", "msmt17/softmax.yaml"])
def test_train_on_a_missing_benchmark_exits_2_without_downloading(recipe, tmp_path, capsys):
    data_root = tmp_path / "data"
    data_root.mkdir()
    overrides = [f"data.root={data_root}", f"data.save_dir={tmp_path / 'run'}", "model.pretrained=false"]
    assert main(["train", str(RECIPES / recipe), *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(data_root) in err
    assert not any(data_root.iterdir())  # torchreid was never reached, so nothing was created or fetched


@pytest.mark.parametrize(
    ("name", "spec", "problem"),
    [
        ("market1501", MiniatureSpec(num_cams=7), "cameras 1..6"),
        ("cuhk03", MiniatureSpec(images_per_cam=6), "at most 5"),
        ("dukemtmcreid", MiniatureSpec(images_per_cam=1), "gallery"),
        ("cuhk03", MiniatureSpec(images_per_cam=1), "gallery"),
        ("msmt17", MiniatureSpec(num_test_ids=0), "one train and one test identity"),
        ("viper", MiniatureSpec(), "No miniature"),
    ],
)
def test_impossible_miniature_is_refused(name, spec, problem, tmp_path):
    with pytest.raises(ValueError, match=problem):
        write_miniature(name, tmp_path, spec)


def test_cuhk03_mat_files_have_matlabs_formats(miniature_root):
    from scipy.io.matlab import matfile_version

    root, _ = miniature_root
    assert matfile_version(root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat") == (2, 0)  # v7.3: HDF5
    for kind in ("labeled", "detected"):
        assert matfile_version(root / "cuhk03" / f"cuhk03_new_protocol_config_{kind}.mat") == (1, 0)  # v5


# benchmarks/real_tables.py ------------------------------------------------------------------------------------------

REAL_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-detected-train"


def run_result(seed: int, rank1: float, mean_ap: float, minutes: float = 2.0, **extra) -> dict:
    return {"seed": seed, "rank1": rank1, "mAP": mean_ap, "wall_time_s": 60 * minutes, "kind": "train", **extra}


GAP = {"same_camera": 0.8, "cross_camera": 0.5, "gap": 0.3, "different_person": 0.1}
SYNTHETIC = {  # recipe -> results of its seeds (fractions, as result.json holds them)
    "softmax": [
        run_result(1, 0.10, 0.20, camera_gap={**GAP, "rank1_by_camera_pair": {"0->1": 0.10, "1->0": 0.20}}),
        run_result(2, 0.12, 0.22, camera_gap={**GAP, "rank1_by_camera_pair": {"0->1": 0.20, "1->0": 0.20}}),
        run_result(3, 0.14, 0.24, minutes=5.0),
    ],
    "softmax_ccsc": [run_result(1, 0.15, 0.26), run_result(2, 0.18, 0.27), run_result(3, 0.18, 0.31)],
    "softmax_ccsc_noconstraint": [run_result(1, 0.13, 0.25)],
    "softmax_triplet": [run_result(1, 0.16, 0.27)],
    "softmax_center": [run_result(1, 0.11, 0.21)],
    "softmax_ccsc_triplet": [run_result(1, 0.19, 0.30)],
}


def table_rows(report: str, title: str) -> dict[str, list[str]]:
    """The rows of the report's section ``title`` (e.g. "Table 1"), by their first cell."""
    (section,) = [part for part in report.split("### ")[1:] if part.startswith(title)]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines() if line[:2] == "| "]
    return {cells[0]: cells[1:] for cells in rows[1:]}  # rows[0] is the header


@pytest.mark.parametrize(
    ("values", "mean", "sd", "text"),
    [
        ([0.25], 0.25, None, "25.0"),  # one seed: the sample deviation is undefined, not 0
        ([0.1, 0.2, 0.3], 0.2, 0.1, "20.0 ± 10.0"),  # n - 1: the population sd would be 0.082
        ([0.15, 0.18, 0.18], 0.17, 0.0173205, "17.0 ± 1.7"),
    ],
)
def test_mean_and_sample_standard_deviation(values, mean, sd, text):
    got_mean, got_sd = _common.mean_sd(values)
    assert got_mean == pytest.approx(mean)
    assert got_sd == (None if sd is None else pytest.approx(sd, rel=1e-5))
    assert _common.format_mean_sd(values) == text


def test_paired_difference_is_per_seed_over_the_seeds_both_have():
    ccsc = [*SYNTHETIC["softmax_ccsc"], run_result(4, 0.90, 0.90)]  # no baseline of seed 4: left out
    differences = real_tables.paired(ccsc, SYNTHETIC["softmax"], "mAP")
    assert list(differences) == [1, 2, 3]
    assert [round(100 * value, 6) for value in differences.values()] == [6.0, 5.0, 7.0]


def test_the_report_names_the_machine_and_precision_each_run_was_timed_on():
    record = {"cpu": "Some CPU", "cores": 2, "usable_cores": 1, "torch_threads": 1, "gpu": None, "torch": "2.14.1"}
    bf16 = {"requested": "auto", "used": "bf16", "reason": "the CPU has native bf16 (avx512_bf16)"}
    float32 = {"requested": "off", "used": "off", "reason": "set by train.amp"}
    results = {
        "softmax": [{"seed": 1, "machine": record, "amp": bf16}, {"seed": 2, "machine": record, "amp": bf16}],
        "softmax_ccsc": [{"seed": 1, "machine": record, "amp": float32}, {}],
    }
    line = real_tables.run_machines(results)
    assert line == (
        "Runs measured on: Some CPU, 2 cores (1 usable, 1 torch threads), torch 2.14.1, bf16 (train.amp=auto) "
        "(2 runs); Some CPU, 2 cores (1 usable, 1 torch threads), torch 2.14.1, float32 (train.amp=off) (1 runs); "
        "not recorded (results before 2026-12-07), precision not recorded (1 runs)."
    )
    assert real_tables.run_machines({}) == "Runs measured on: no run finished."


def test_tables_in_the_papers_layout_with_statistics_and_the_papers_column():
    report = real_tables.render_report(SYNTHETIC, ["resnet50_ccsc, 128x64"])
    one = table_rows(report, "Table 1")
    assert list(one) == ["Softmax (baseline)", "Softmax + CCSC", "increment"]
    # R-1, mAP, runs, seeds, minutes per run, the paper's CUHK03-detected R-1 and mAP
    assert one["Softmax (baseline)"] == ["12.0 ± 2.0", "22.0 ± 2.0", "3", "1, 2, 3", "3.0", "60.4", "56.6"]
    assert one["Softmax + CCSC"][:3] == ["17.0 ± 1.7", "28.0 ± 2.6", "3"] and one["Softmax + CCSC"][-2:] == [
        "70.4",
        "66.8",
    ]
    assert one["increment"][:2] == ["+5.0", "+6.0"] and one["increment"][-2:] == ["+10.0", "+10.2"]
    assert "R-1 +5.0 ± 1.0 (seed 1: +5.0, seed 2: +6.0, seed 3: +4.0; higher on 3 of 3)" in report
    assert "mAP +6.0 ± 1.0 (seed 1: +6.0, seed 2: +5.0, seed 3: +7.0; higher on 3 of 3)" in report
    two = table_rows(report, "Table 2")
    assert list(two) == [
        "Softmax + CCSC",
        "Softmax + CCSC w/o cross-camera constraint",
        "reduction",
        "Softmax (baseline) (not in the paper's Table 2)",
    ]
    assert two["Softmax + CCSC w/o cross-camera constraint"][:4] == ["13.0", "25.0", "1", "1"]  # one seed: no ± sd
    assert two["reduction"][:2] == ["-4.0", "-3.0"] and two["reduction"][-2:] == ["-3.1", "-2.6"]  # as printed
    assert "R-1 -2.0 (seed 1: -2.0; higher on 0 of 1)" in report
    assert (
        "Softmax + CCSC 28.0 > Softmax + CCSC w/o cross-camera constraint 25.0 > Softmax (baseline) 22.0: holds"
        in report
    )
    three = table_rows(report, "Table 3")
    paper = real_tables.load_paper_results()
    assert list(three) == [paper["methods"][method] for method in paper["tables"][3]["methods"]]
    assert three["Softmax + hard triplet"][:2] == ["16.0", "27.0"]
    gap = table_rows(report, "Camera gap")
    assert list(gap) == ["Softmax (baseline)"]  # only the runs whose result.json has a camera_gap
    assert gap["Softmax (baseline)"] == [
        "0.800 ± 0.000",
        "0.500 ± 0.000",
        "0.300 ± 0.000",
        "0.100 ± 0.000",
        "0->1: 15.0 ± 7.1, 1->0: 20.0 ± 0.0",
        "2",
    ]
    assert "not a reproduction" in report and "CUHK03-detected" in report


def test_tables_mark_methods_not_run_and_say_when_no_camera_gap():
    report = real_tables.render_report({"softmax": SYNTHETIC["softmax"][2:]}, ["x"])
    one = table_rows(report, "Table 1")
    assert one["Softmax + CCSC"][:4] == ["not run", "not run", "0", "–"]
    assert one["increment"][:2] == ["–", "–"]
    assert "Paired by seed, Softmax + CCSC - Softmax (baseline): no seed has both runs." in report
    assert "not all three were run" in report and "no result.json here holds a camera_gap" in report


def test_plan_trains_baseline_and_ccsc_on_every_seed_and_the_others_on_the_other_seeds():
    runs = real_tables.plan(list(real_tables.METHODS), [1, 2, 3], [1], Path("runs/real_tables"), ["train.lr=0.001"])
    assert len(runs) == 2 * 3 + 4 * 1
    assert {(run.name, run.seed) for run in runs if run.seed > 1} == {
        (name, seed) for name in ("softmax", "softmax_ccsc") for seed in (2, 3)
    }
    ccsc = next(run for run in runs if (run.name, run.seed) == ("softmax_ccsc", 2))
    assert ccsc.folder == Path("runs/real_tables/softmax_ccsc/seed-2")
    assert ccsc.recipe == real_tables.RECIPES_DIR / "softmax_ccsc.yaml" and ccsc.recipe.is_file()
    assert ccsc.overrides == ("train.lr=0.001", "train.seed=2", f"data.save_dir={ccsc.folder}")
    assert ccsc.label == "recipes/cpu_cuhk03/softmax_ccsc.yaml"


@pytest.mark.parametrize("validation", [False, True], ids=["test-people", "validation"])
def test_validation_switch_holds_out_val_ids_in_another_runs_folder(validation):
    args = real_tables.parse_args(["--validation"] if validation else [])
    runs_dir, output, figure = real_tables.default_paths(args)
    expected = Path("runs/real_tables_val") if validation else Path("runs/real_tables")
    assert runs_dir == expected
    assert (output, figure) == (
        (expected / "tables.md", expected / "camera_gap.png")
        if validation
        else (Path("docs/real_tables.md"), Path("docs/camera_gap.png"))
    )
    runs = real_tables.plan(["softmax", "softmax_center"], [1], [1], runs_dir, ["data.csv.val_ids=50"], validation)
    switch = ["data.csv.val_ids=100", "data.csv.test_path="] if validation else []
    for run in runs:  # the switch first, so that the user's --set can change the number of held-out ids
        assert list(run.overrides) == [*switch, "data.csv.val_ids=50", "train.seed=1", f"data.save_dir={run.folder}"]
        assert run.folder.is_relative_to(expected)


def csv_split_keys_exist() -> bool:
    from ccsc_plugin.config import get_default_config

    csv_keys = get_default_config().data.csv
    return "test_path" in csv_keys and "val_ids" in csv_keys


@pytest.mark.skipif(not csv_split_keys_exist(), reason="data.csv.test_path / val_ids are not in this checkout yet")
def test_shipped_recipes_train_on_the_743_and_test_on_the_100_or_on_held_out_ids():
    (run,) = real_tables.plan(["softmax_ccsc"], [1], [1], Path("runs/x"))
    cfg = run.config()
    assert cfg.data.csv.path.endswith("cuhk03-detected-train/labels.csv") and cfg.data.csv.val_ids == 0
    assert cfg.data.csv.test_path.endswith("cuhk03-detected-mini/labels.csv")
    assert cfg.experiment.paper_cell == "" and not cfg.model.pretrained
    (val,) = real_tables.plan(["softmax_ccsc"], [1], [1], Path("runs/x"), validation=True)
    assert (val.config().data.csv.val_ids, val.config().data.csv.test_path) == (100, "")


OLD_RECIPES = REPO / "benchmarks" / "results" / "real_tables_val_trials" / "recipes-2026-12-04"
KEPT_VALIDATION_RESULTS = sorted(OLD_RECIPES.glob("*/seed-*/result.json"))
# what recipes/cpu_cuhk03/base.yaml said on 2026-12-04, before lr 1e-3 and flip-only were chosen on validation ids
OLD_SETTINGS = (
    "train.lr=0.00035",
    "train.warmup_start_lr=0.000035",
    "data.transforms=[random_flip,random_erase]",
    "train.amp=off",  # bf16 where native (auto) came on 2026-12-08
)


def test_validation_runs_of_older_recipes_are_kept_apart_from_todays():
    assert len(KEPT_VALIDATION_RESULTS) == 5
    assert not list((REPO / real_tables.VAL_RECORDS_DIR).glob("*/seed-*/result.json"))  # today's recipes: none yet


@pytest.mark.parametrize("record", KEPT_VALIDATION_RESULTS, ids=lambda path: path.parent.parent.name)
def test_kept_results_stored_with_model_backbone_match_the_recipes_that_name_the_model(record):
    """The kept result.json files predate the model names (model.name: resnet50_ccsc, model.backbone: resnet18):
    read in today's keys they are runs of the shipped recipes (resnet18_ccsc) with that day's settings, so none
    is retrained or refused."""
    result = read_result(record)
    assert "backbone: resnet18" in result["config"]
    seed = int(record.parent.name.removeprefix("seed-"))
    (run,) = real_tables.plan(
        [record.parent.parent.name],
        [seed],
        [seed],
        real_tables.VAL_RUNS_DIR,
        overrides=OLD_SETTINGS,
        validation=True,
        records_dir=OLD_RECIPES,
    )
    assert run.record == record and run.config().model.name == "resnet18_ccsc"
    assert real_tables.result_differences(run, result, run.config(), str(record)) == []


@pytest.fixture
def quick_recipes(tmp_path) -> Path:
    """The six recipe names over the quickstart recipe (generated data): loadable anywhere, never trained here."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    quickstart = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    for name in real_tables.ALL_METHODS:
        method = real_tables.METHODS.get(name, name)
        (folder / f"{name}.yaml").write_text(f"_base_: {quickstart}\nexperiment:\n  method: {method}\n")
    return folder


class FakeTrain:
    """Stands in for ``pipeline.train``: records each call, writes a checkpoint and a result.json as it would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, cfg, recipe=None, overwrite=False) -> dict:
        from ccsc_plugin.checkpoint import checkpoint_path, save_checkpoint
        from ccsc_plugin.evaluation.results import write_result

        self.calls.append((cfg.experiment.method, cfg.train.seed, cfg.model.resume))
        folder, epochs = Path(cfg.data.save_dir), cfg.train.max_epoch
        save_checkpoint({"state_dict": {}, "config": cfg.dump(), "epoch": epochs}, checkpoint_path(folder, epochs))
        seed = cfg.train.seed
        result = {
            **run_result(seed, 0.1 + seed / 100, 0.2 + seed / 100, minutes=0.5),
            "recipe": recipe,
            "epochs": epochs,
            "config": cfg.dump(),
        }
        result["save_dir"] = str(folder.resolve())
        write_result(folder, result)
        return result


def interrupted(run, *extra: str) -> None:
    """Leave in ``run.folder`` what an interrupted run leaves: a checkpoint (of ``run`` with ``extra``), no result."""
    from ccsc_plugin.checkpoint import checkpoint_path, save_checkpoint

    cfg = run.config(*extra)
    save_checkpoint({"state_dict": {}, "config": cfg.dump(), "epoch": 1}, checkpoint_path(run.folder, 1))


def finished(run, *extra: str, **result) -> None:
    """Leave in ``run.folder`` a finished run of ``run`` (with ``extra`` overrides, result keys in ``result``)."""
    from ccsc_plugin.evaluation.results import read_result, write_result

    FakeTrain()(run.config(*extra), recipe=run.label)
    write_result(run.folder, {**read_result(run.folder), **result})


def finished_without_checkpoints(run, *extra: str, **result) -> None:
    """A finished run whose checkpoints were deleted (to save space): only its result.json is left."""
    finished(run, *extra, **result)
    shutil.rmtree(run.folder / "checkpoints")


def finished_long_ago(run, *extra: str, **result) -> None:
    """A finished run whose result.json records no settings (``config``), checkpoints deleted."""
    from ccsc_plugin.evaluation.results import read_result, write_result

    finished_without_checkpoints(run, *extra, **result)
    write_result(run.folder, {key: value for key, value in read_result(run.folder).items() if key != "config"})


@pytest.mark.parametrize(
    ("leave", "state"),
    [
        (None, "start"),
        ("train.log", "start"),  # killed before its first checkpoint: nothing to resume
        (interrupted, "resume"),
        (finished, "done"),
    ],
    ids=["empty", "log-only", "interrupted", "finished"],
)
def test_run_state_reads_back_finished_runs_and_resumes_interrupted_ones(quick_recipes, tmp_path, leave, state):
    (run,) = real_tables.plan(["softmax"], [1], [1], tmp_path / "runs", recipes_dir=quick_recipes)
    if leave == "train.log":
        run.folder.mkdir(parents=True)
        (run.folder / "train.log").write_text("epoch 1\n")
    elif leave is not None:
        leave(run)
    assert real_tables.run_state(run, run.config()) == state


@pytest.mark.parametrize(
    ("leave", "extra", "result", "named"),
    [
        (finished, [], {"seed": 5}, "seed: 5 there, 1 here"),
        (finished, [], {"epochs": 3}, "epochs: 3 there, 8 here"),
        (finished, [], {"recipe": "recipes/other.yaml"}, "recipe: 'recipes/other.yaml' there"),
        (finished, ["train.lr=0.001"], {}, "train.lr: 0.001 there, 0.00035 here"),
        (interrupted, ["loss.ccsc.weight=0"], {}, "loss.ccsc.weight: 0.0 there, 1.5 here"),
        (finished_without_checkpoints, ["train.lr=0.001"], {}, "train.lr: 0.001 there, 0.00035 here"),
        (finished_without_checkpoints, ["data.height=96"], {}, "data.height: 96 there, 64 here"),
        (finished_long_ago, [], {}, "records no settings"),
    ],
    ids=[
        "other-seed",
        "other-epochs",
        "other-recipe",
        "other-lr",
        "interrupted-other-loss",
        "checkpoints-gone-other-lr",
        "checkpoints-gone-other-size",
        "no-settings-recorded",
    ],
)
def test_run_state_refuses_a_folder_holding_another_run(quick_recipes, tmp_path, leave, extra, result, named):
    (run,) = real_tables.plan(["softmax_ccsc"], [1], [1], tmp_path / "runs", recipes_dir=quick_recipes)
    leave(run, *extra, **result)
    with pytest.raises(real_tables.RunFolderTaken) as error:
        real_tables.run_state(run, run.config())
    assert named in str(error.value) and str(run.folder) in str(error.value) and "--runs-dir" in str(error.value)


def test_benchmark_trains_the_missing_resumes_the_interrupted_and_reads_back_the_finished(
    quick_recipes, tmp_path, monkeypatch, capsys
):
    fake = FakeTrain()
    monkeypatch.setattr(real_tables.pipeline, "train", fake)
    runs_dir, output = tmp_path / "runs", tmp_path / "tables.md"
    argv = ["--recipes", str(quick_recipes), "--runs-dir", str(runs_dir), "--output", str(output)]
    argv += [
        "--figure",
        str(tmp_path / "gap.png"),
        "--seeds",
        "1",
        "2",
        "--other-seeds",
        "1",
        "--set",
        "train.max_epoch=2",
    ]
    runs = {
        (run.name, run.seed): run
        for run in real_tables.plan(
            real_tables.ALL_METHODS, [1, 2], [1], runs_dir, ["train.max_epoch=2"], recipes_dir=quick_recipes
        )
    }
    finished(runs["softmax", 1], "train.max_epoch=2")
    interrupted(runs["softmax_ccsc", 2], "train.max_epoch=2")
    assert real_tables.main(argv) == 0
    resumed = str(runs["softmax_ccsc", 2].folder)
    assert sorted(fake.calls) == sorted(
        [("softmax", 2, ""), ("softmax+ccsc", 1, ""), ("softmax+ccsc", 2, resumed)]
        + [(method, 1, "") for method in [*list(real_tables.METHODS.values())[2:], "bot", "bot_ccsc"]]
    )  # 10 runs: one read back, one resumed, eight started
    report = output.read_text()
    assert table_rows(report, "Table 1")["Softmax (baseline)"][:4] == ["11.5 ± 0.7", "21.5 ± 0.7", "2", "1, 2"]
    assert "64x32, 2 epochs, batch 32 (P=8 x K=4), adam lr 0.00035; trained and tested on synthcam." in report
    assert report in capsys.readouterr().out
    fake.calls.clear()
    assert real_tables.main(argv) == 0  # everything is done now: read back, nothing trained
    assert fake.calls == []
    assert table_rows(output.read_text(), "Table 1") == table_rows(report, "Table 1")


def test_report_only_tabulates_the_finished_runs_and_trains_nothing(quick_recipes, tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(real_tables.pipeline, "train", fake)
    runs_dir, output = tmp_path / "runs", tmp_path / "tables.md"
    runs = real_tables.plan(
        ["softmax", "softmax_ccsc"], [1], [1], runs_dir, ["train.max_epoch=2"], recipes_dir=quick_recipes
    )
    finished(runs[0], "train.max_epoch=2")
    interrupted(runs[1], "train.max_epoch=2")
    argv = ["--recipes", str(quick_recipes), "--runs-dir", str(runs_dir), "--output", str(output), "--report-only"]
    argv += ["--figure", str(tmp_path / "gap.png"), "--seeds", "1", "--set", "train.max_epoch=2"]
    assert real_tables.main([*argv, "--only", "softmax", "--only", "softmax_ccsc"]) == 0
    assert fake.calls == []
    rows = table_rows(output.read_text(), "Table 1")
    assert rows["Softmax (baseline)"][:3] == ["11.0", "21.0", "1"] and "not run" in rows["Softmax + CCSC"]


def test_finished_runs_are_kept_for_git_and_read_back_on_a_new_machine(quick_recipes, tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(real_tables.pipeline, "train", fake)
    runs_dir, output = tmp_path / "runs", tmp_path / "tables.md"
    argv = ["--recipes", str(quick_recipes), "--runs-dir", str(runs_dir), "--output", str(output)]
    argv += ["--figure", str(tmp_path / "gap.png"), "--seeds", "1", "--set", "train.max_epoch=2"]
    argv += ["--only", "softmax", "--only", "softmax_ccsc"]
    assert real_tables.main(argv) == 0 and len(fake.calls) == 2
    records = tmp_path / "runs-results"  # beside --runs-dir (the repository's benchmarks/results/ by default)
    kept = sorted(path.relative_to(records).as_posix() for path in records.rglob("result.json"))
    assert kept == ["softmax/seed-1/result.json", "softmax_ccsc/seed-1/result.json"]
    report = output.read_text()

    shutil.rmtree(runs_dir)  # a fresh clone on a new machine: no runs folder, checkpoints gone
    fake.calls.clear()
    assert real_tables.main([*argv, "--report-only"]) == 0 and fake.calls == []
    assert table_rows(output.read_text(), "Table 1") == table_rows(report, "Table 1")
    assert real_tables.main(argv) == 0 and fake.calls == []  # nothing retrained either

    changed = [*argv[:-4], "--set", "train.max_epoch=3", *argv[-4:]]  # other settings than the kept results
    assert real_tables.main(changed) == 2 and fake.calls == []


def test_benchmark_stops_before_training_when_a_folder_holds_another_run(quick_recipes, tmp_path, monkeypatch, capsys):
    fake = FakeTrain()
    monkeypatch.setattr(real_tables.pipeline, "train", fake)
    runs_dir = tmp_path / "runs"
    (last,) = real_tables.plan(["softmax_ccsc_triplet"], [1], [1], runs_dir, recipes_dir=quick_recipes)
    finished(last, "train.lr=0.001")  # the last run of the plan: nothing before it may train either
    argv = ["--recipes", str(quick_recipes), "--runs-dir", str(runs_dir), "--output", str(tmp_path / "t.md")]
    assert real_tables.main(argv) == 2
    err = capsys.readouterr().err
    assert "real_tables.py: error:" in err and str(last.folder) in err and "train.lr" in err
    assert fake.calls == [] and not (tmp_path / "t.md").exists()


def test_benchmark_stops_before_training_when_a_csv_is_missing(tmp_path, monkeypatch, capsys):
    fake = FakeTrain()
    monkeypatch.setattr(real_tables.pipeline, "train", fake)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    base = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    for name in real_tables.ALL_METHODS:
        (recipes / f"{name}.yaml").write_text(
            f"_base_: {base}\ndata:\n  sources: [csv]\n  csv: {{path: no/such.csv}}\n"
        )
    argv = ["--recipes", str(recipes), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "t.md")]
    assert real_tables.main(argv) == 2
    err = capsys.readouterr().err
    assert "data.csv.path: no/such.csv does not exist" in err and "--set data.csv.path=PATH" in err
    assert fake.calls == []


def write_subset_csv(source: Path, target: Path, pids: int) -> Path:
    """The rows of the first ``pids`` identities of ``source`` with absolute image paths."""
    with open(source / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keep = sorted({row["pid"] for row in rows}, key=int)[:pids]
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid"])
        writer.writerows([source / row["path"], row["pid"], row["camid"]] for row in rows if row["pid"] in keep)
    return target


@pytest.mark.slow
@pytest.mark.skipif(not csv_split_keys_exist(), reason="data.csv.test_path / val_ids are not in this checkout yet")
def test_real_tables_trains_two_methods_on_real_crops(shared_cuhk03, tmp_path, capsys):
    if not (REAL_TRAIN / "labels.csv").is_file():
        pytest.skip(f"{REAL_TRAIN} is absent")
    train_csv = write_subset_csv(REAL_TRAIN, tmp_path / "train.csv", pids=8)
    test_csv = write_subset_csv(shared_cuhk03, tmp_path / "test.csv", pids=5)
    tiny = [f"data.csv.path={train_csv}", f"data.csv.test_path={test_csv}", "data.height=64", "data.width=32"]
    tiny += [
        "train.batch_size=16",
        "train.max_epoch=1",
        "train.warmup_epochs=0",
        "train.stepsize=[1]",
        "test.batch_size=32",
    ]
    argv = ["--only", "softmax", "--only", "softmax_ccsc", "--seeds", "1", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--output", str(tmp_path / "tables.md"), "--figure", str(tmp_path / "gap.png")]
    argv += [item for override in tiny for item in ("--set", override)]
    assert real_tables.main(argv) == 0
    one = table_rows((tmp_path / "tables.md").read_text(), "Table 1")
    for method in ("Softmax (baseline)", "Softmax + CCSC"):
        rank1, mean_ap, runs = one[method][:3]
        assert runs == "1" and 0 <= float(rank1) <= 100 and 0 < float(mean_ap) <= 100
    for name in ("softmax", "softmax_ccsc"):
        result = real_tables.read_result(tmp_path / "runs" / name / "seed-1")
        assert result["kind"] == "train" and result["epochs"] == 1 and result["seed"] == 1
        assert sorted(result["targets"]) and result["checkpoint_sha256"]


def test_demo_screenshot_refuses_a_missing_checkpoint_before_serving(tmp_path, market_root, capsys):
    import demo_screenshot

    dataset = market_root / "market1501" / "Market-1501-v15.09.15"
    argv = ["--weights", str(tmp_path / "no-run"), "--dataset", str(dataset), "--output", str(tmp_path / "d.png")]
    assert demo_screenshot.main(argv) == 2
    assert "demo_screenshot.py: error:" in capsys.readouterr().err and not (tmp_path / "d.png").exists()


@pytest.mark.parametrize(
    ("records", "doc", "settings"),
    [
        (real_tables.RECORDS_DIR, "real_tables.md", []),  # the README's tables: the recipes as they are
        ("benchmarks/results/real_tables_fp32", "real_tables_fp32.md", ["--set", "train.amp=off"]),  # float32 runs
    ],
)
def test_the_readmes_tables_rebuild_from_the_kept_results_on_a_clone_without_data(
    records, doc, settings, tmp_path, monkeypatch
):
    """docs/real_tables.md (pasted into the README) and the float32 set beside it are what ``--report-only`` makes
    of the committed result.json files alone: no runs folder, no checkpoints, no ../shared/data. Only the line
    naming the machine that wrote the tables may differ."""
    monkeypatch.chdir(tmp_path)  # ../shared/data is not beside this folder
    output = tmp_path / "tables.md"
    argv = ["--report-only", *settings, "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]
    argv += ["--records-dir", str(REPO / records), "--figure", str(tmp_path / "gap.png")]
    assert real_tables.main(argv) == 0

    def tables(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Tables written on")]

    assert tables(output.read_text()) == tables((REPO / "docs" / doc).read_text())
