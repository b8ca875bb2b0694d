"""Recall@k and query speed of the approximate FAISS gallery indexes against the exact one.

The gallery imitates re-ID features: identities are random 512-d centres, each image is its
identity's centre plus noise (several images per identity, like a real gallery). The exact index
(``GalleryIndex()``, identical to brute force) is the peer: recall@k is the share of its k nearest
neighbours each approximate index also returns, and speed is exact query time / approximate query time.

    PYTHONPATH=. python benchmarks/faiss_recall.py --gallery 20000 --queries 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ccsc_plugin.serve.index import GalleryIndex


def make_features(rng: np.random.Generator, num: int, centres: np.ndarray, noise: float) -> np.ndarray:
    ids = rng.integers(0, len(centres), num)
    return (centres[ids] + noise * rng.normal(size=(num, centres.shape[1]))).astype(np.float32)


def timed_search(index: GalleryIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    hits = index.search(queries, k)
    return hits.indices, time.perf_counter() - start


def recall_at(truth: np.ndarray, found: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(t[:k]) & set(f[:k])) / k for t, f in zip(truth, found, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=0.5, help="image noise relative to the unit identity spread")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.identities, args.dim)).astype(np.float32)
    gallery = make_features(rng, args.gallery, centres, args.noise)
    queries = make_features(rng, args.queries, centres, args.noise)
    print(f"gallery {args.gallery} x {args.dim}, {args.queries} queries, {args.identities} identities")

    configs = {
        "exact (peer)": {"kind": "exact"},
        "ivf nlist=256 nprobe=8": {"kind": "ivf", "nlist": 256, "nprobe": 8},
        "ivf nlist=256 nprobe=32": {"kind": "ivf", "nlist": 256, "nprobe": 32},
        "hnsw M=32 efSearch=64": {"kind": "hnsw", "hnsw_m": 32, "ef_search": 64},
        "hnsw M=32 efSearch=256": {"kind": "hnsw", "hnsw_m": 32, "ef_search": 256},
    }
    built: dict[tuple, GalleryIndex] = {}
    truth, exact_seconds = None, None
    print(f"{'index':28s} {'build s':>8s} {'query s':>8s} {'speed-up':>9s} {'R@1':>6s} {'R@10':>6s} {'R@100':>6s}")
    for name, options in configs.items():
        key = (options["kind"], options.get("nlist"), options.get("hnsw_m"))
        start = time.perf_counter()
        if key not in built:  # nprobe / efSearch are query-time settings: build each structure once
            built[key] = GalleryIndex(
                dim=args.dim, **{k: v for k, v in options.items() if k not in ("nprobe", "ef_search")}
            )
            built[key].add(gallery)
        index = built[key]
        build_seconds = time.perf_counter() - start
        if options["kind"] == "ivf":
            index.index.nprobe = options["nprobe"]
        if options["kind"] == "hnsw":
            index.index.hnsw.efSearch = options["ef_search"]
        found, seconds = timed_search(index, queries, 100)
        if truth is None:
            truth, exact_seconds = found, seconds
        recalls = [recall_at(truth, found, k) for k in (1, 10, 100)]
        print(
            f"{name:28s} {build_seconds:8.2f} {seconds:8.3f} {exact_seconds / seconds:8.1f}x "
            + " ".join(f"{r:6.3f}" for r in recalls)
        )


if __name__ == "__main__":
    main()
