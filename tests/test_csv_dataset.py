"""The ``csv`` dataset: path,pid,camid[,split] files, the held-out protocol, and clear errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from ccsc_plugin import pipeline
from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.datasets.csv_dataset import CSVDataset, CSVDatasetError, query_gallery_protocol, read_rows

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
def csv_dataset(monkeypatch):
    def load(path: Path, mode: str = "train") -> CSVDataset:
        monkeypatch.setattr(CSVDataset, "csv_path", str(path))
        return CSVDataset(mode=mode, verbose=False)

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
