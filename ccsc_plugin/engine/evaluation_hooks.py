"""How ``ImageCCSCEngine`` evaluates: torchreid's ``test`` with the plugin's evaluator and the camera gap.

:class:`EvaluationHooks` is a mixin placed before torchreid's ``Engine`` in the engine's bases: it replaces the
feature extraction and ``_evaluate`` hooks of torchreid's ``test``. It reads the engine's ``device``,
``memory_format``, ``model``/``bare_model``/``forward_model``, ``test_flip`` and ``test_results``, and checks at
each batch for a stop signal (``TrainingLoop._stop_evaluation_if_signalled``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.rank_lists import RankListOptions, write_rank_lists
from ccsc_plugin.evaluation import camera_gap, metrics
from ccsc_plugin.models.flip import flip_averaged


class EvaluationHooks:
    """torchreid's evaluation on rank 0, with the plugin's CMC/mAP and camera gap, stoppable at each batch.

    With ``rank_lists`` set (:class:`~.rank_lists.RankListOptions`), each target's evaluation also writes its
    rank lists, ranked on the distances its metrics score.
    """

    rank_lists: RankListOptions | None = None

    def test(self, *args, **kwargs) -> float:
        """torchreid's test on rank 0 only (the others wait at the next collective)."""
        if not distributed.is_main_process():
            return 0.0
        return super().test(*args, **kwargs)

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
        ranks=(1, 5, 10, 20),
        **unused,
    ) -> tuple[float, float]:
        """torchreid's evaluation with the plugin's evaluator; results are kept in ``test_results``.

        They include the camera gap on the test people (``camera_gap.camera_gap_report``).
        """
        start = time.time()
        qf, q_pids, q_camids = self.extract_loader_features(query_loader, f"{dataset_name} query")
        gf, g_pids, g_camids = self.extract_loader_features(gallery_loader, f"{dataset_name} gallery")
        if normalize_feature:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        top = self.rank_lists.collector(q_pids, q_camids, g_pids, g_camids) if self.rank_lists else None
        cmc, mAP = metrics.evaluate_features(
            qf, gf, q_pids, g_pids, q_camids, g_camids, metric=dist_metric, on_block=top.add if top else None
        )
        self._stop_evaluation_if_signalled(f"{dataset_name} ranking")
        result = {f"rank{r}": float(cmc[r - 1]) for r in ranks if r <= len(cmc)}
        result.update(mAP=float(mAP), num_query=int(len(q_pids)), num_gallery=int(len(g_pids)))
        gap = camera_gap.camera_gap_report(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=dist_metric)
        result["camera_gap"] = gap
        self.test_results[dataset_name] = result
        print(f"** Results ({dataset_name}, {time.time() - start:.1f}s) **")
        print(f"mAP: {mAP:.1%}")
        for r in ranks:
            if r <= len(cmc):
                print(f"Rank-{r:<3}: {cmc[r - 1]:.1%}")
        print(camera_gap.summary_line(gap))
        if top is not None:
            query, gallery = query_loader.dataset.data, gallery_loader.dataset.data
            stop = self._stop_evaluation_if_signalled
            result["rank_lists"] = str(write_rank_lists(self.rank_lists, dataset_name, query, gallery, top, stop))
            print(f"=> Rank lists of {len(top.found)} queries (top-{top.topk}) written to {result['rank_lists']}")
        return float(cmc[0]), float(mAP)
