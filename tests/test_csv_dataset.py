"""The ``csv`` dataset: path,pid,camid[,split] files, the held-out protocol, and clear errors."""

from __future__ import annotations

import csv
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
