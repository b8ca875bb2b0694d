"""The ``csv`` dataset: path,pid,camid[,split] files, the held-out protocol, and clear errors."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import pytest

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import image_dataset_registry
from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data.csv_dataset import (
    CSVDataset,
    CSVDatasetError,
    describe_test_set,
    query_gallery_protocol,
    read_rows,
)
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.serve.gallery import load_query_gallery

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def write_csv(path: Path, rows: list[dict], columns=("path", "pid", "camid")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def image_rows(market_root) -> list[dict]:
    """Rows for every image of the generated Market tree, with paths relative to data.root."""
    tree = market_root / "market1501" / "Market-1501-v15.09.15"
    rows = []
    for image in sorted(tree.glob("*/*.jpg")):
        pid, cam = int(image.name[:4]), int(image.name[6])
        rows.append({"path": str(image.relative_to(market_root)), "pid": pid, "camid": cam - 1})
    return rows


@pytest.fixture
def csv_dataset():
    def load(path: Path, mode: str = "train", **options) -> CSVDataset:
        return CSVDataset(mode=mode, csv_path=str(path), verbose=False, **options)

    return load


def test_no_split_column_uses_one_query_per_identity_and_camera(market_root, image_rows, csv_dataset):
    dataset = csv_dataset(write_csv(market_root / "labels.csv", image_rows))
    pairs = {(row["pid"], row["camid"]) for row in image_rows}
    assert len(dataset.query) == len(pairs)
    assert {(pid, camid) for _, pid, camid, _ in dataset.query} == pairs
    assert len(dataset.query) + len(dataset.gallery) == len(image_rows)
    assert len(dataset.train) == len(image_rows)  # the whole file is the training set
    assert sorted({pid for _, pid, _, _ in dataset.train}) == list(range(len({r["pid"] for r in image_rows})))
    assert all(Path(path).is_absolute() and Path(path).is_file() for path, *_ in dataset.gallery)


def test_identity_seen_by_one_camera_goes_to_the_gallery():
    items = [("a.jpg", 1, 0), ("b.jpg", 1, 1), ("c.jpg", 1, 1), ("d.jpg", 2, 0), ("e.jpg", 2, 0)]
    query, gallery = query_gallery_protocol(items)
    assert query == [("a.jpg", 1, 0), ("b.jpg", 1, 1)]
    assert gallery == [("c.jpg", 1, 1), ("d.jpg", 2, 0), ("e.jpg", 2, 0)]


def test_split_column_is_followed(market_root, image_rows, csv_dataset, tmp_path):
    pids = sorted({row["pid"] for row in image_rows})
    for index, row in enumerate(image_rows):
        row["path"] = str(market_root / row["path"])  # absolute paths work too
        if row["pid"] in pids[:3]:
            row["split"] = "train"
        else:
            row["split"] = "query" if index % 3 == 0 else "gallery"
    dataset = csv_dataset(write_csv(tmp_path / "split.csv", image_rows, ("path", "pid", "camid", "split")))
    assert {pid for _, pid, _, _ in dataset.train} == {0, 1, 2}
    assert len(dataset.query) == sum(row["split"] == "query" for row in image_rows)
    assert not {pid for _, pid, _, _ in dataset.query} & set(pids[:3])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,pid\nx.jpg,1\n", "missing column.*camid"),
        ("path,pid,camid\n", "no rows"),
        ("path,pid,camid\nnope.jpg,1,0\n", "1 of 1 image.*do not exist.*nope.jpg"),
        ("path,pid,camid\nnope.jpg,abc,0\n", "line 2: pid and camid must be integers"),
        ("path,pid,camid,split\nnope.jpg,1,0,val\n", "line 2: split must be one of train, query, gallery"),
    ],
)
def test_bad_csv_gets_a_clear_error(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(CSVDatasetError, match=message):
        read_rows(path)


def test_missing_csv_is_reported_by_the_cli(tmp_path, capsys):
    status = main(
        [
            "train",
            str(RECIPES / "quickstart.yaml"),
            "--set",
            f"data.save_dir={tmp_path / 'run'}",
            "--set",
            "data.sources=[csv]",
            "--set",
            f"data.csv.path={tmp_path / 'absent.csv'}",
        ]
    )
    assert status == 2
    assert "absent.csv does not exist. Set data.csv.path" in capsys.readouterr().err


def test_recipe_needs_a_path_for_csv():
    with pytest.raises(RecipeError, match="data.csv.path"):
        load_config(RECIPES / "quickstart.yaml", ["data.sources=[csv]"])


def test_torchreid_datamanager_reads_the_csv(market_root, image_rows, tiny_overrides):
    path = write_csv(market_root / "labels.csv", image_rows)
    cfg = load_config(RECIPES / "base.yaml", [*tiny_overrides, "data.sources=[csv]", f"data.csv.path={path}"])
    with pytest.warns(UserWarning, match="no split column"):
        manager = pipeline.build_datamanager(cfg)
    assert manager.num_train_pids == len({row["pid"] for row in image_rows})
    batch = next(iter(manager.test_loader["csv"]["query"]))
    assert batch["img"].shape[1:] == (3, 64, 32)


def test_shared_cuhk03_crops(shared_cuhk03, csv_dataset):
    dataset = csv_dataset(shared_cuhk03 / "labels.csv", mode="query")
    assert dataset.num_train_pids == 100
    assert len(dataset.query) == 200  # 100 identities x 2 cameras
    assert len(dataset.query) + len(dataset.gallery) == 938
    assert {camid for _, _, camid, _ in dataset.gallery} == {0, 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "path,pid,camid\na.jpg,1,0\ncaf\xe9.jpg,2,0\n".encode("latin-1"),
            r"line 3: not UTF-8 text .*save it as UTF-8",
        ),
        (b"path,pid,camid\na.jpg,99999999999999999999,0\n", "line 2: pid and camid must fit a 64-bit integer"),
        (b"path,pid,camid\na.jpg,1,-9223372036854775809\n", "line 2: pid and camid must fit a 64-bit integer"),
    ],
    ids=["latin-1", "pid-beyond-int64", "camid-beyond-int64"],
)
def test_unreadable_csv_values_exit_2_naming_the_file_and_line(tmp_path, capsys, content, message):
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    status = main(
        [
            "train",
            str(RECIPES / "quickstart.yaml"),
            *("--set", f"data.save_dir={tmp_path / 'run'}", "--set", "data.sources=[csv]"),
            *("--set", f"data.csv.path={path}"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert str(path) in err and re.search(message, err)


def test_csv_saved_with_a_utf8_bom_is_read(market_root, image_rows, tmp_path, csv_dataset):
    rows = [
        {**row, "split": "train" if row["pid"] % 2 else "query" if i % 2 else "gallery"}
        for i, row in enumerate(image_rows)
    ]
    plain = write_csv(tmp_path / "plain.csv", rows, ("path", "pid", "camid", "split"))
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))  # as a spreadsheet saves it
    (tmp_path / "market1501").symlink_to(market_root / "market1501")
    assert CSVDataset.has_split_column(path)
    assert read_rows(path) == read_rows(plain)
    assert len(csv_dataset(path).train) == sum(row["split"] == "train" for row in rows)


@pytest.fixture
def train_only_csv(market_root, image_rows) -> Path:
    rows = [{**row, "split": "train"} for row in image_rows]
    return write_csv(market_root / "train_only.csv", rows, ("path", "pid", "camid", "split"))


def test_training_only_csv_trains_for_other_targets(train_only_csv, image_rows, tiny_overrides):
    overrides = [*tiny_overrides, "data.sources=[csv]", "data.targets=[market1501]", f"data.csv.path={train_only_csv}"]
    manager = pipeline.build_datamanager(load_config(RECIPES / "base.yaml", overrides))
    assert manager.num_train_pids == len({row["pid"] for row in image_rows})
    assert len(manager.train_loader.dataset.train) == len(image_rows)
    assert list(manager.test_loader) == ["market1501"]


def test_training_only_csv_is_no_test_target(train_only_csv, csv_dataset):
    with pytest.raises(CSVDatasetError, match="query set is empty, so it cannot be a test target.*data.targets"):
        csv_dataset(train_only_csv, mode="query")


# --- a training CSV and a separate test set: data.csv.test_path, data.csv.val_ids ---

SPLIT_OF_FOLDER = {"bounding_box_train": "train", "query": "query", "bounding_box_test": "gallery"}


@pytest.fixture
def folder_rows(market_root) -> dict[str, list[dict]]:
    """The generated Market tree's rows (absolute paths) per split, as its folders give them."""
    tree = market_root / "market1501" / "Market-1501-v15.09.15"
    rows: dict[str, list[dict]] = {}
    for folder, split in SPLIT_OF_FOLDER.items():
        rows[split] = [
            {"path": str(image), "pid": int(image.name[:4]), "camid": int(image.name[6]) - 1, "split": split}
            for image in sorted((tree / folder).glob("*.jpg"))
        ]
    return rows


def ids_and_cameras(items) -> list[tuple[int, int]]:
    return [(pid, camid) for _, pid, camid, _ in items]


@pytest.mark.parametrize("test_has_split", [False, True], ids=["test-protocol", "test-split-column"])
@pytest.mark.parametrize("train_has_split", [False, True], ids=["train-plain", "train-split-column"])
def test_test_path_is_the_test_set_and_every_row_of_path_trains(folder_rows, tmp_path, train_has_split, test_has_split):
    train_rows = folder_rows["train"]
    if train_has_split:  # a split-column training CSV: with test_path every one of its rows still trains
        train_rows = [*train_rows, *folder_rows["query"][:2]]
    train_csv = write_csv(tmp_path / "train.csv", train_rows, ("path", "pid", "camid", "split")[: 3 + train_has_split])
    test_rows = folder_rows["query"] + folder_rows["gallery"]
    test_csv = write_csv(tmp_path / "test.csv", test_rows, ("path", "pid", "camid", "split")[: 3 + test_has_split])
    dataset = CSVDataset(mode="query", csv_path=str(train_csv), test_path=str(test_csv), verbose=False)
    assert [path for path, *_ in dataset.train] == [row["path"] for row in train_rows]
    assert sorted({pid for _, pid, _, _ in dataset.train}) == list(range(len({r["pid"] for r in train_rows})))
    if test_has_split:
        expected_query = [row["path"] for row in folder_rows["query"]]
    else:  # the protocol: the first image of each (identity, camera), in file order
        first_of: dict[tuple[int, int], str] = {}
        for row in test_rows:
            first_of.setdefault((row["pid"], row["camid"]), row["path"])
        expected_query = list(first_of.values())
    assert [path for path, *_ in dataset.query] == expected_query
    assert {path for path, *_ in dataset.query + dataset.gallery} == {row["path"] for row in test_rows}
    assert len(dataset.query) + len(dataset.gallery) == len(test_rows)


@pytest.mark.parametrize("val_ids", [1, 3])
@pytest.mark.parametrize("has_split", [False, True], ids=["plain", "split-column"])
def test_val_ids_hold_out_the_last_identities_of_the_training_rows(folder_rows, tmp_path, val_ids, has_split):
    rows = folder_rows["train"] + (folder_rows["query"] + folder_rows["gallery"] if has_split else [])
    path = write_csv(tmp_path / "labels.csv", rows, ("path", "pid", "camid", "split")[: 3 + has_split])
    dataset = CSVDataset(mode="query", csv_path=str(path), val_ids=val_ids, verbose=False)
    train_pids = sorted({row["pid"] for row in folder_rows["train"]})  # the split column's test rows take no part
    held_out = set(train_pids[-val_ids:])
    held_rows = [row for row in folder_rows["train"] if row["pid"] in held_out]
    assert {pid for _, pid, _, _ in dataset.query + dataset.gallery} == held_out
    assert sorted(path for path, *_ in dataset.query + dataset.gallery) == sorted(row["path"] for row in held_rows)
    assert sorted(ids_and_cameras(dataset.query)) == sorted({(row["pid"], row["camid"]) for row in held_rows})
    assert not {path for path, *_ in dataset.train} & {row["path"] for row in held_rows}
    assert len(dataset.train) == len(folder_rows["train"]) - len(held_rows)
    assert sorted({pid for _, pid, _, _ in dataset.train}) == list(range(len(train_pids) - val_ids))


def test_datamanager_trains_without_the_validation_ids_and_tests_on_them(folder_rows, tmp_path, tiny_overrides):
    path = write_csv(tmp_path / "labels.csv", folder_rows["train"])
    overrides = [*tiny_overrides, "data.sources=[csv]", f"data.csv.path={path}", "data.csv.val_ids=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a validation split is no "scores identities seen in training"
        manager = pipeline.build_datamanager(load_config(RECIPES / "base.yaml", overrides))
    assert manager.num_train_pids == len({row["pid"] for row in folder_rows["train"]}) - 2
    assert len(manager.test_loader["csv"]["query"].dataset) == 2 * 3  # 2 identities x 3 cameras


def test_data_managers_built_one_after_the_other_read_their_own_csv_options(folder_rows, tmp_path, tiny_overrides):
    path = write_csv(tmp_path / "labels.csv", folder_rows["train"])
    managers = []
    for val_ids in (2, 3):
        overrides = [*tiny_overrides, "data.sources=[csv]", f"data.csv.path={path}", f"data.csv.val_ids={val_ids}"]
        managers.append(pipeline.build_datamanager(load_config(RECIPES / "base.yaml", overrides)))
    identities = len({row["pid"] for row in folder_rows["train"]})
    assert [manager.num_train_pids for manager in managers] == [identities - 2, identities - 3]
    assert [len(manager.test_loader["csv"]["query"].dataset) for manager in managers] == [2 * 3, 3 * 3]
    assert image_dataset_registry()["csv"] is CSVDataset  # no run's options left bound for the next data manager


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"test_path": "/data/cuhk03-detected-mini/labels.csv"}, "cuhk03-detected-mini"),
        ({"test_path": "/data/people/test.csv"}, "people/test.csv"),
        ({"val_ids": 100}, "validation: last 100 ids of cuhk03-detected-train"),
        ({}, "cuhk03-detected-train"),
    ],
)
def test_the_test_set_is_named(options, name):
    assert describe_test_set("/data/cuhk03-detected-train/labels.csv", **options) == name


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["data.csv.test_path=t.csv", "data.csv.val_ids=5"], ("data.csv.test_path", "data.csv.val_ids")),
        (["data.csv.val_ids=-1"], ("data.csv.val_ids must be >= 0",)),
        (["data.csv.val_ids=5", "data.targets=[market1501]"], ("data.csv.val_ids (5)", "add csv to data.targets")),
    ],
)
def test_contradictory_test_set_keys_are_recipe_errors(overrides, keys):
    with pytest.raises(RecipeError) as error:
        load_config(RECIPES / "base.yaml", ["data.sources=[csv]", "data.csv.path=train.csv", *overrides])
    assert all(key in str(error.value) for key in keys)


def test_val_ids_must_leave_identities_to_train(folder_rows, tmp_path, csv_dataset):
    path = write_csv(tmp_path / "labels.csv", folder_rows["train"])
    count = len({row["pid"] for row in folder_rows["train"]})
    with pytest.raises(
        CSVDatasetError, match=f"{path}: data.csv.val_ids={count} would hold out every one of its {count}"
    ):
        csv_dataset(path, val_ids=count)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda rows: ({"test_path": "absent.csv"}, rows), "absent.csv does not exist. Set data.csv.test_path"),
        (  # a test CSV whose split column has only train rows
            lambda rows: ({"test_path": "train-only.csv"}, rows),
            r"train-only.csv: the query set is empty.*split column of data.csv.test_path",
        ),
        (  # the held-out identities are each seen by one camera: no query can have a cross-camera match
            lambda rows: ({"val_ids": 2}, [{**row, "camid": 0} for row in rows]),
            r"query set is empty.*last 2 identities of .*data.csv.val_ids.*seen by 2\+ cameras",
        ),
    ],
    ids=["missing-test-csv", "test-csv-without-query", "validation-ids-single-camera"],
)
def test_a_test_set_that_cannot_be_scored_names_its_key(folder_rows, tmp_path, csv_dataset, make, message):
    write_csv(tmp_path / "train-only.csv", folder_rows["train"], ("path", "pid", "camid", "split"))
    options, rows = make(folder_rows["train"])
    options = {key: str(tmp_path / value) if key == "test_path" else value for key, value in options.items()}
    with pytest.raises(CSVDatasetError, match=message):
        csv_dataset(write_csv(tmp_path / "labels.csv", rows), mode="query", **options)


def test_missing_test_csv_is_reported_by_the_cli(folder_rows, tmp_path, capsys):
    train_csv = write_csv(tmp_path / "labels.csv", folder_rows["train"])
    args = ["train", str(RECIPES / "quickstart.yaml"), "--set", f"data.save_dir={tmp_path / 'run'}"]
    args += ["--set", "data.sources=[csv]", "--set", f"data.csv.path={train_csv}"]
    status = main([*args, "--set", f"data.csv.test_path={tmp_path / 'absent.csv'}"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"{tmp_path / 'absent.csv'} does not exist. Set data.csv.test_path" in err


@pytest.mark.parametrize(
    ("same_test_file", "warns"), [(True, "data.csv.test_path is data.csv.path"), (False, None)], ids=["same", "other"]
)
def test_testing_on_the_training_csv_warns(folder_rows, tmp_path, tiny_overrides, same_test_file, warns):
    train_csv = write_csv(tmp_path / "train.csv", folder_rows["train"])
    test_csv = train_csv if same_test_file else write_csv(tmp_path / "test.csv", folder_rows["query"])
    overrides = [*tiny_overrides, "data.sources=[csv]", f"data.csv.path={train_csv}", f"data.csv.test_path={test_csv}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.prepare_datasets(load_config(RECIPES / "base.yaml", overrides))
    seen = [str(warning.message) for warning in caught if "identities seen in training" in str(warning.message)]
    assert len(seen) == (1 if warns else 0) and all(warns in message for message in seen)


@pytest.mark.slow
def test_real_recipe_trains_on_cuhk03_train_ids_and_tests_on_the_mini_set(
    shared_cuhk03_train, shared_cuhk03, tmp_path, capsys
):
    """Train 1 epoch on 8 real CUHK03 training people; evaluate on the 100 people of cuhk03-detected-mini."""
    rows, _ = read_rows(shared_cuhk03_train / "labels.csv")
    people = sorted({row["pid"] for row in rows})[:8]
    train_csv = write_csv(tmp_path / "train8.csv", [row for row in rows if row["pid"] in people])
    save_dir = tmp_path / "run"
    overrides = [
        "data.sources=[csv]",
        f"data.csv.path={train_csv}",
        f"data.csv.test_path={shared_cuhk03 / 'labels.csv'}",
        f"data.save_dir={save_dir}",
        *("data.height=64", "data.width=32", "data.workers=0", "model.pretrained=false"),
        *("train.batch_size=16", "train.max_epoch=1", "train.warmup_epochs=0", "train.stepsize=[1]"),
        *("train.print_freq=100", "test.batch_size=128"),
    ]
    assert main(["train", str(RECIPES / "base.yaml"), *(item for o in overrides for item in ("--set", o))]) == 0
    result = read_result(save_dir)
    assert result["dataset"] == "csv" and result["test_set"] == "cuhk03-detected-mini"
    assert result["targets"]["csv"]["num_query"] == 200  # one query per person and camera: 100 people x 2
    assert result["targets"]["csv"]["num_gallery"] == 938 - 200
    assert 0 <= result["rank1"] <= 1 and 0 <= result["mAP"] <= 1
    assert result["data_checks"]["identities"] == 8


@pytest.mark.parametrize("option", ["test_path", "val_ids"])
def test_demo_searches_the_test_set_of_a_csv_trained_checkpoint(folder_rows, tmp_path, option):
    train_csv = write_csv(tmp_path / "train.csv", folder_rows["train"])
    test_csv = write_csv(tmp_path / "test.csv", folder_rows["query"] + folder_rows["gallery"])
    overrides = ["data.sources=[csv]", f"data.csv.path={train_csv}"]
    overrides.append(f"data.csv.test_path={test_csv}" if option == "test_path" else "data.csv.val_ids=2")
    loaded = load_query_gallery(cfg=load_config(RECIPES / "base.yaml", overrides))  # no --dataset: the recipe's
    if option == "test_path":
        tested = folder_rows["query"] + folder_rows["gallery"]
    else:
        last_two = sorted({row["pid"] for row in folder_rows["train"]})[-2:]
        tested = [row for row in folder_rows["train"] if row["pid"] in last_two]
    assert {item.path for item in loaded.query + loaded.gallery} == {row["path"] for row in tested}
    assert len(loaded.query) == len({(row["pid"], row["camid"]) for row in tested})  # one per identity and camera
