"""``ccsc-reid test``: score trained weights on the recipe's targets, into ``tests/`` of the run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin.config import RecipeError
from ccsc_plugin.data.csv_dataset import same_file
from ccsc_plugin.engine.rank_lists import RankListOptions
from ccsc_plugin.evaluation.results import TEST_DIR, write_result
from ccsc_plugin.pipeline import run_folder
from ccsc_plugin.pipeline.build import build_engine, load_weights, model_keys
from ccsc_plugin.pipeline.run_log import log_to
from ccsc_plugin.pipeline.train import run_engine, scored, summarise
from ccsc_plugin.pipeline.trained import config_from_checkpoint


def evaluate(
    cfg: CN,
    weights: str | Path,
    recipe: str | None = None,
    visrank: int | None = None,
    visrank_queries: int | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint ``weights`` on the recipe's targets.

    The weights are tested at the input size they were trained at (their stored recipe), whatever the recipe
    says. The result goes beside, never over, a training result in ``data.save_dir``:
    ``tests/<targets>-<checkpoint>-<key>.json`` (:func:`ccsc_plugin.pipeline.run_folder.path_for_test_result`).
    With ``visrank`` K, each target's rank lists (top-K of the first ``visrank_queries`` queries, all when None)
    go to ``tests/<that file's stem>-visrank/<target>/`` (:mod:`ccsc_plugin.engine.rank_lists`).
    """
    start = time.time()
    if visrank is None and visrank_queries is not None:
        raise RecipeError("--visrank-queries N bounds the rank lists of --visrank K: add --visrank K, e.g. 10.")
    run_folder.check_writable(Path(cfg.data.save_dir) / TEST_DIR)
    with log_to(Path(cfg.data.save_dir) / TEST_DIR / run_folder.TEST_LOG):
        checkpoint = ckpt.load_checkpoint(weights)
        stored = config_from_checkpoint(checkpoint, origin=str(weights)) if "config" in checkpoint else None
        cfg = at_trained_input_size(cfg, stored, weights)
        weights_scored = scored(weights)
        path = run_folder.path_for_test_result(cfg, weights, weights_scored["checkpoint_sha256"])
        rank_lists = None
        if visrank is not None:
            rank_lists = RankListOptions(visrank, run_folder.rank_lists_folder(path), visrank_queries)
        engine = build_engine(cfg)
        engine.rank_lists = rank_lists
        load_weights(engine.model, weights, checkpoint, fix=_weights_fix(cfg, stored))
        run_engine(engine, cfg, test_only=True)
        result = summarise(cfg, engine, recipe, time.time() - start, checkpoint.get("epoch", 0), training=False)
        if stored is not None and (warning := trained_on_scored_csv(stored, cfg)):
            print(f"=> WARNING: {warning}")
            result["warnings"].append(warning)
        result.update(kind="test", **weights_scored)
        write_result(path, result)
        print(f"=> Test result written to {path}")
    return result


def trained_on_scored_csv(stored: CN, cfg: CN) -> str | None:
    """Why the test scores people its weights were trained on (the stored recipe trained on the scored CSV), or None.

    Holding out the same last ``data.csv.val_ids`` identities in both is a held-out score, not a warning.
    """
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    if "csv" not in stored.data.sources or targets[0] != "csv":
        return None
    trained, tested = stored.data.csv, cfg.data.csv
    scored_csv = tested.test_path or tested.path
    held_out = trained.val_ids and not tested.test_path and tested.val_ids == trained.val_ids
    if held_out or not same_file(trained.path, scored_csv):
        return None
    return (
        f"these weights were trained on {trained.path}, and this test scores {scored_csv}: the scored identities were "
        "seen in training. Score a CSV of other people (data.csv.test_path), or the identities the run held out "
        f"(data.csv.val_ids={trained.val_ids or 'N'}, as it was trained with)."
    )


def at_trained_input_size(cfg: CN, stored: CN | None, weights: str | Path) -> CN:
    """``cfg`` at the input size of the checkpoint's stored recipe ``stored``, with a line when that changes it.

    Weights trained at one size score far lower at another; testing at another size on purpose takes a
    checkpoint trained (or fine-tuned) at that size.
    """
    if stored is None or (stored.data.height, stored.data.width) == (cfg.data.height, cfg.data.width):
        return cfg
    print(
        f"=> {weights} was trained at {stored.data.height}x{stored.data.width}: testing at that size, not at "
        f"the recipe's data.height x data.width = {cfg.data.height}x{cfg.data.width}"
    )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.data.height, cfg.data.width = stored.data.height, stored.data.width
    cfg.freeze()
    return cfg


def _weights_fix(cfg: CN, stored: CN | None) -> str:
    """What to do when ``--weights`` do not fit the recipe's model."""
    if stored is not None and model_keys(stored) != model_keys(cfg):
        overrides = " ".join(f"--set {key}" for key in model_keys(stored).split())
        return f"They were trained as {model_keys(stored)}: add {overrides}."
    return f"Pass --weights a checkpoint of {model_keys(cfg)} written by `ccsc-reid train`."
