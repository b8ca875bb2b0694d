"""``csv``: any labelled image folder as a torchreid dataset, described by one CSV file.

Columns ``path,pid,camid`` (integers for ``pid`` and ``camid``) and an optional ``split`` column
(``train``, ``query`` or ``gallery``). Relative paths resolve against the CSV's folder.

Without a ``split`` column the usual held-out protocol applies: for every identity, the first image
(in file order) from each camera is a query and everything else is the gallery; an identity seen by
one camera only has no cross-camera match, so all its images go to the gallery as distractors.
The training set is then *every* image (the CSV is taken as labelled training data), so training and
testing on one split-less CSV scores identities the model has seen: give the rows a ``split`` column
for an honest evaluation. Likewise a CSV whose ``split`` column holds no ``train`` rows trains on all rows,
and one with only ``train`` rows is a training set for other targets (``data.targets``).
The file is UTF-8; a leading byte-order mark (spreadsheets write one) is ignored.

Two options take the test set from elsewhere (:func:`load_splits`):

- ``test_path`` (``data.csv.test_path``): a second CSV is the test set (its ``query`` / ``gallery`` rows if it
  has a ``split`` column, else the protocol above) and every row of the first CSV trains;
- ``val_ids`` (``data.csv.val_ids``): the ``val_ids`` identities with the highest pids among the training rows
  are held out as the test set (the protocol above) and the others train: a validation split for choosing
  hyperparameters without touching the real test people.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.errors import read_utf8

ImageDataset = submodule("data.datasets.dataset").ImageDataset

REQUIRED_COLUMNS = ("path", "pid", "camid")
SPLITS = ("train", "query", "gallery")
Item = tuple[str, int, int]
INT64 = range(-(2**63), 2**63)  # what a pid or camid tensor can hold


class CSVDatasetError(ValueError):
    """The CSV is missing, malformed, or names images that do not exist; the message says which."""


def read_rows(csv_path: str | Path, key: str = "data.csv.path") -> tuple[list[dict], bool]:
    """Rows as dicts with an absolute ``path`` and integer ``pid`` / ``camid``; and whether ``split`` is given.

    ``key`` is the recipe key that named the file, for the message when it does not exist.
    """
    csv_path = Path(csv_path).expanduser()
    if not str(csv_path) or not csv_path.is_file():
        raise CSVDatasetError(
            f"CSV file {csv_path.resolve() if str(csv_path) else f'(empty {key})'} does not exist. "
            f"Set {key} to a file with the columns path,pid,camid[,split]."
        )
    with io.StringIO(read_utf8(csv_path, CSVDatasetError), newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise CSVDatasetError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; found {columns or 'no header'}. "
                "The first line must name the columns path,pid,camid (and optionally split)."
            )
        has_split = "split" in columns
        rows = []
        for line, raw in enumerate(reader, start=2):
            raw = {(key or "").strip(): (value or "").strip() for key, value in raw.items()}
            rows.append(_parse_row(raw, csv_path, line, has_split))
    if not rows:
        raise CSVDatasetError(f"{csv_path} has a header but no rows.")
    missing_files = [row["path"] for row in rows if not Path(row["path"]).is_file()]
    if missing_files:
        raise CSVDatasetError(
            f"{csv_path}: {len(missing_files)} of {len(rows)} image(s) do not exist, e.g. {missing_files[0]}. "
            "Relative paths are resolved against the CSV's folder; fix the paths or the files."
        )
    return rows, has_split


def _parse_row(raw: dict[str, str], csv_path: Path, line: int, has_split: bool) -> dict:
    try:
        pid, camid = int(raw["pid"]), int(raw["camid"])
    except ValueError:
        raise CSVDatasetError(
            f"{csv_path} line {line}: pid and camid must be integers, got pid={raw['pid']!r} camid={raw['camid']!r}."
        ) from None
    if pid not in INT64 or camid not in INT64:
        raise CSVDatasetError(
            f"{csv_path} line {line}: pid and camid must fit a 64-bit integer (|value| < 2**63), got pid={pid} "
            f"camid={camid}. Number the identities and cameras with smaller integers, e.g. 0, 1, 2, ..."
        )
    if camid < 0:
        raise CSVDatasetError(f"{csv_path} line {line}: camid must be >= 0, got {camid}.")
    split = raw.get("split", "").lower() if has_split else ""
    if has_split and split not in SPLITS:
        raise CSVDatasetError(f"{csv_path} line {line}: split must be one of {', '.join(SPLITS)}, got {split!r}.")
    path = Path(raw["path"]).expanduser()
    path = path if path.is_absolute() else csv_path.parent / path
    return {"path": str(path.resolve()), "pid": pid, "camid": camid, "split": split}


def relabel(items: list[Item]) -> list[Item]:
    """Training pids as 0..N-1 in order of first appearance (what torchreid's classifiers expect)."""
    labels: dict[int, int] = {}
    return [(path, labels.setdefault(pid, len(labels)), camid) for path, pid, camid in items]


def query_gallery_protocol(items: list[Item]) -> tuple[list[Item], list[Item]]:
    """Per identity, the first image of each camera is a query (if the identity has another camera)."""
    cameras_of: dict[int, set[int]] = defaultdict(set)
    for _, pid, camid in items:
        cameras_of[pid].add(camid)
    query, gallery, taken = [], [], set()
    for item in items:
        _, pid, camid = item
        if len(cameras_of[pid]) > 1 and (pid, camid) not in taken:
            taken.add((pid, camid))
            query.append(item)
        else:
            gallery.append(item)
    return query, gallery


def split_rows(rows: list[dict], has_split: bool) -> tuple[list[Item], list[Item], list[Item]]:
    """Train (relabelled), query and gallery lists from the parsed rows."""
    train, query, gallery = _split_items(rows, has_split)
    return relabel(train), query, gallery


def _split_items(rows: list[dict], has_split: bool) -> tuple[list[Item], list[Item], list[Item]]:
    """Train (original pids), query and gallery items: the split column's, or all rows and the protocol."""
    items = _items(rows)
    if has_split:
        by_split = {name: [it for it, row in zip(items, rows, strict=True) if row["split"] == name] for name in SPLITS}
        return by_split["train"] or items, by_split["query"], by_split["gallery"]
    return items, *query_gallery_protocol(items)


def _items(rows: list[dict]) -> list[Item]:
    return [(row["path"], row["pid"], row["camid"]) for row in rows]


def hold_out_last_ids(items: list[Item], count: int, csv_path: str | Path) -> tuple[list[Item], list[Item]]:
    """``items`` split into the rest and the ``count`` identities with the highest pids (the validation people)."""
    pids = sorted({pid for _, pid, _ in items})
    if count >= len(pids):
        raise CSVDatasetError(
            f"{csv_path}: data.csv.val_ids={count} would hold out every one of its {len(pids)} training identities. "
            f"Set data.csv.val_ids below {len(pids)} so some identities train, or to 0 for no validation split."
        )
    held_out = set(pids[len(pids) - count :])
    return [it for it in items if it[1] not in held_out], [it for it in items if it[1] in held_out]


def load_splits(
    csv_path: str | Path, test_path: str | Path = "", val_ids: int = 0
) -> tuple[list[Item], list[Item], list[Item]]:
    """Train (relabelled), query and gallery for the ``csv`` dataset's options (see the module docstring).

    ``test_path`` and ``val_ids`` exclude each other (``config.validate`` refuses both).
    """
    rows, has_split = read_rows(csv_path)
    if test_path:
        _, query, gallery = split_rows(*read_rows(test_path, key="data.csv.test_path"))
        return relabel(_items(rows)), query, gallery
    if val_ids:
        train, held_out = hold_out_last_ids(_split_items(rows, has_split)[0], val_ids, csv_path)
        return relabel(train), *query_gallery_protocol(held_out)
    return split_rows(rows, has_split)


def empty_test_set_fix(split: str, csv_path: str | Path, test_path: str | Path = "", val_ids: int = 0) -> str:
    """What to do when the test set of these options has no ``split`` (query or gallery) rows."""
    if test_path:
        return (
            f"Add '{split}' rows to the split column of data.csv.test_path, or drop that column to use the "
            "one-query-per-camera protocol (needs identities seen by 2+ cameras)."
        )
    if val_ids:
        return (
            f"None of the last {val_ids} identities of {csv_path} (data.csv.val_ids) is seen by 2+ cameras: "
            "raise data.csv.val_ids, or renumber the pids so cross-camera identities come last."
        )
    return (
        f"Add '{split}' rows to the split column, drop the split column to use the one-query-per-camera protocol "
        "(needs identities seen by 2+ cameras), or name another dataset in data.targets."
    )


def describe_test_set(csv_path: str | Path, test_path: str | Path = "", val_ids: int = 0) -> str:
    """What the ``csv`` dataset with these options scores, for ``result.json``: a CSV's name or the validation ids."""
    if test_path:
        return csv_name(test_path)
    if val_ids:
        return f"validation: last {val_ids} ids of {csv_name(csv_path)}"
    return csv_name(csv_path)


def csv_name(csv_path: str | Path) -> str:
    """A CSV's folder name (``cuhk03-detected-mini`` for ``.../cuhk03-detected-mini/labels.csv``), else folder/file."""
    path = Path(csv_path)
    return path.parent.name if path.name == "labels.csv" else f"{path.parent.name}/{path.name}"


class CSVDataset(ImageDataset):
    """torchreid image dataset over the CSV ``csv_path`` (and ``test_path`` / ``val_ids``, see :func:`load_splits`).

    torchreid constructs datasets by name with its own arguments only, so the recipe's options reach it
    bound for one data manager's construction (:func:`ccsc_plugin.data.registry.bound_datasets`).
    A CSV without query or gallery rows can still be a training source: like torchreid's train-only
    CUHK-SYSU it then stands one training image in for the empty sets (``_train_only``), and only its
    use as a test target (``mode`` query or gallery) is an error.
    """

    def __init__(
        self,
        root: str = "",
        mode: str = "train",
        csv_path: str = "",
        test_path: str = "",
        val_ids: int = 0,
        **kwargs,
    ) -> None:
        train, query, gallery = load_splits(csv_path, test_path, val_ids)
        empty = [name for name, items in (("query", query), ("gallery", gallery)) if not items]
        if empty and mode != "train":
            raise CSVDatasetError(
                f"{test_path or csv_path}: the {empty[0]} set is empty, so it cannot be a test target. "
                + empty_test_set_fix(empty[0], csv_path, test_path, val_ids)
            )
        self._train_only = bool(empty)
        super().__init__(train, query or train[:1], gallery or train[:1], mode=mode, **kwargs)

    @staticmethod
    def has_split_column(csv_path: str | Path) -> bool:
        """Whether the CSV names its own train / query / gallery split."""
        header = next(csv.reader(io.StringIO(read_utf8(Path(csv_path).expanduser(), CSVDatasetError))), [])
        return "split" in (name.strip() for name in header)


def same_file(first: str | Path, second: str | Path) -> bool:
    """Whether two spellings name one file: relative or absolute, through a symlink or a hard link."""
    try:
        return Path(first).expanduser().samefile(Path(second).expanduser())
    except OSError:  # one is missing: compare the spellings made absolute
        return Path(first).expanduser().resolve() == Path(second).expanduser().resolve()


def seen_identities_warning(csv_path: str | Path, test_path: str | Path = "", val_ids: int = 0) -> str | None:
    """Why training and testing on the ``csv`` dataset with these options scores people seen in training, or None."""
    if val_ids or (test_path and not same_file(test_path, csv_path)):
        return None
    if test_path:
        return (
            f"data.csv.test_path is data.csv.path ({csv_path}): every row of it trains, so its evaluation scores "
            "identities seen in training. Name a CSV of other people in data.csv.test_path, or set data.csv.val_ids "
            "to hold out the last identities instead."
        )
    if not Path(csv_path).is_file() or CSVDataset.has_split_column(csv_path):
        return None
    return (
        f"{csv_path} has no split column: the csv dataset trains on every row, so its evaluation scores identities "
        "seen in training. Add a split column (train/query/gallery), name a test CSV in data.csv.test_path, or hold "
        "out the last identities with data.csv.val_ids."
    )
