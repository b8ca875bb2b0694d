"""How ``ImageCCSCEngine`` evaluates: torchreid's ``test`` with the plugin's evaluator and the camera gap.

:class:`EvaluationHooks` is a mixin placed before torchreid's ``Engine`` in the engine's bases: it replaces the
feature extraction and ``_evaluate`` hooks of torchreid's ``test``. It reads the engine's ``device``,
``memory_format``, ``model``/``bare_model``/``forward_model``, ``test_flip``, ``rerank_settings``, ``datamanager`` and
``test_results``, and checks at each batch for a stop signal (``TrainingLoop._stop_evaluation_if_signalled``).

torchreid's test arguments are honoured, or refused by name before anything runs (:meth:`check_test_arguments`):
``rerank`` re-ranks (:mod:`ccsc_plugin.evaluation.rerank`) every evaluation of the run, training's included;
``use_metric_cuhk03`` scores CUHK03's single-shot CMC; ``visrank`` is refused: rank lists are drawn by
``ccsc-reid test --visrank K``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.rank_lists import RankListOptions, write_rank_lists
from ccsc_plugin.evaluation import camera_gap, protocol
from ccsc_plugin.evaluation.metrics import Scores
from ccsc_plugin.evaluation.rerank import RerankSettings, check_memory
from ccsc_plugin.models import feature_dim
from ccsc_plugin.models.flip import flip_averaged

# torchreid's Engine.run / test arguments that reach the evaluation; visrank is refused unless False
TEST_ARGUMENTS = ("dist_metric", "normalize_feature", "visrank", "visrank_topk", "use_metric_cuhk03", "ranks", "rerank")
VISRANK_REFUSED = (
    "visrank=True: ImageCCSCEngine does not draw rank lists during engine.run or engine.test. Run "
    "`ccsc-reid test RECIPE --weights RUN --visrank K` for the top-K rank lists of trained weights, and pass "
    "visrank=False (the default) here."
)


class EvaluationHooks:
    """torchreid's evaluation on rank 0 with the plugin's CMC/mAP/mINP, re-ranking, CUHK03 metric and camera gap,
    stoppable at each batch.

    With ``rank_lists`` set (:class:`~.rank_lists.RankListOptions`), each target's evaluation also writes its
    rank lists, ranked on the distances its metrics score (re-ranked ones when re-ranking).
    """

    rank_lists: RankListOptions | None = None

    def test(self, *args, **kwargs) -> float:
        """torchreid's test on rank 0 only (the others wait at the next collective)."""
        if not distributed.is_main_process():
            return 0.0
        return super().test(*args, **kwargs)

    def check_test_arguments(self, test_kwargs: Mapping[str, Any]) -> None:
        """Refuse, before anything runs, an evaluation argument this engine cannot honour, naming it.

        Re-ranking that would need more memory than ``test.rerank_max_mb`` on any target is refused too
        (:class:`~ccsc_plugin.evaluation.rerank.RerankMemoryError`), before a training run rather than after it.
        """
        unknown = sorted(set(test_kwargs) - set(TEST_ARGUMENTS))
        if unknown:
            raise TypeError(
                f"ImageCCSCEngine cannot honour the evaluation argument(s) {', '.join(unknown)}: they are not "
                f"torchreid Engine.run arguments. It takes {', '.join(TEST_ARGUMENTS)}."
            )
        if test_kwargs.get("visrank"):
            raise ValueError(VISRANK_REFUSED)
        if test_kwargs.get("rerank"):
            dim = feature_dim(self.bare_model, self.datamanager.height, self.datamanager.width)
            for loaders in self.datamanager.test_loader.values():
                check_memory(len(loaders["query"].dataset), len(loaders["gallery"].dataset), dim, self.rerank_settings)

    @torch.no_grad()
    def extract_features(self, input: torch.Tensor) -> torch.Tensor:
        """Test features of a batch; with ``test_flip`` the mean of each image's and its mirror's."""
        model = self.forward_model if self.model is self.bare_model else self.bare_model  # DDP: no collectives
        return flip_averaged(model, input.to(self.device, memory_format=self.memory_format), self.test_flip)

    @torch.no_grad()
    def extract_loader_features(self, loader, desc: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Features, pids and camids of a whole loader, with a progress bar."""
        features, pids, camids = [], [], []
        for batch, data in enumerate(tqdm(loader, desc=desc, unit="batch", leave=False), 1):
            self._stop_evaluation_if_signalled(f"{desc}, batch {batch}/{len(loader)}")
            imgs, batch_pids, batch_camids = self.parse_data_for_eval(data)
            features.append(self.extract_features(imgs).cpu())
            pids.append(batch_pids.numpy())
            camids.append(batch_camids.numpy())
        return torch.cat(features), np.concatenate(pids), np.concatenate(camids)

    @torch.no_grad()
    def _evaluate(
        self,
        dataset_name: str = "",
        query_loader=None,
        gallery_loader=None,
        dist_metric: str = "euclidean",
        normalize_feature: bool = False,
        visrank: bool = False,
        visrank_topk: int = 10,
        save_dir: str = "",
        use_metric_cuhk03: bool = False,
        ranks=(1, 5, 10, 20),
        rerank: bool = False,
    ) -> tuple[float, float]:
        """torchreid's evaluation with the plugin's evaluator; results are kept in ``test_results``.

        They include mINP, how the ranking was made (``rerank``, ``use_metric_cuhk03``) and the camera gap on
        the test people (``camera_gap.camera_gap_report``, on the plain distances).
        """
        if visrank:
            raise ValueError(VISRANK_REFUSED)
        start = time.time()
        qf, q_pids, q_camids = self.extract_loader_features(query_loader, f"{dataset_name} query")
        gf, g_pids, g_camids = self.extract_loader_features(gallery_loader, f"{dataset_name} gallery")
        if normalize_feature:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        settings = self._rerank_settings(rerank, dataset_name, len(q_pids), len(g_pids), qf.size(1))
        top = self.rank_lists.collector(q_pids, q_camids, g_pids, g_camids) if self.rank_lists else None
        scores = protocol.score_features(
            qf,
            gf,
            q_pids,
            g_pids,
            q_camids,
            g_camids,
            dist_metric,
            rerank=settings,
            use_metric_cuhk03=use_metric_cuhk03,
            progress=lambda where: self._stop_evaluation_if_signalled(f"{dataset_name} re-ranking, {where}"),
            on_block=top.add if top else None,
        )
        self._stop_evaluation_if_signalled(f"{dataset_name} ranking")
        result = {f"rank{r}": float(scores.cmc[r - 1]) for r in ranks if r <= len(scores.cmc)}
        result.update(mAP=float(scores.mAP), mINP=float(scores.mINP), num_query=len(q_pids), num_gallery=len(g_pids))
        result.update(
            rerank=settings.record() if settings else {"used": False}, use_metric_cuhk03=bool(use_metric_cuhk03)
        )
        gap = camera_gap.camera_gap_report(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=dist_metric)
        result["camera_gap"] = gap
        self.test_results[dataset_name] = result
        _print_scores(f"{dataset_name}, {time.time() - start:.1f}s", scores, ranks, settings, use_metric_cuhk03)
        print(camera_gap.summary_line(gap))
        if top is not None:
            query, gallery = query_loader.dataset.data, gallery_loader.dataset.data
            stop = self._stop_evaluation_if_signalled
            result["rank_lists"] = str(write_rank_lists(self.rank_lists, dataset_name, query, gallery, top, stop))
            print(f"=> Rank lists of {len(top.found)} queries (top-{top.topk}) written to {result['rank_lists']}")
        return float(scores.cmc[0]), float(scores.mAP)

    def _rerank_settings(
        self, rerank: bool, dataset_name: str, num_query: int, num_gallery: int, feature_dim: int
    ) -> RerankSettings | None:
        """The re-ranking settings when ``rerank``, after saying how much memory it may take (or refusing)."""
        if not rerank:
            return None
        settings = self.rerank_settings
        needed = check_memory(num_query, num_gallery, feature_dim, settings)
        print(
            f"=> Re-ranking {dataset_name} (k1={settings.k1}, k2={settings.k2}, lambda={settings.lambda_value}): "
            f"{num_query:,} queries, {num_gallery:,} gallery images, at most {needed / 2**20:,.0f} MB "
            f"(limit {settings.max_mb:,g} MB: test.rerank_max_mb)"
        )
        return settings


def _print_scores(title: str, scores: Scores, ranks, settings: RerankSettings | None, use_metric_cuhk03: bool) -> None:
    """torchreid's results block, with mINP and how the ranking was made."""
    how = [f"re-ranked (k1={settings.k1}, k2={settings.k2}, lambda={settings.lambda_value})"] if settings else []
    how += ["CUHK03 single-shot CMC"] if use_metric_cuhk03 else []
    print(f"** Results ({title}{''.join(f'; {part}' for part in how)}) **")
    print(f"mAP: {scores.mAP:.1%}")
    print(f"mINP: {scores.mINP:.1%}")
    for r in ranks:
        if r <= len(scores.cmc):
            print(f"Rank-{r:<3}: {scores.cmc[r - 1]:.1%}")
