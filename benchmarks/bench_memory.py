"""Peak memory of an MSMT17-scale evaluation (11,659 queries x 82,161 gallery images, 512-d features).

The evaluation runs in a fresh subprocess (features generated there, then ``metrics.evaluate_features``)
and reports that process's peak resident memory (``ru_maxrss``), interpreter and torch included. The peer
is what a full distance matrix plus its argsort (torchreid's route) must hold: computed, not run.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import HEADER, log, row

MSMT17 = {"num_query": 11659, "num_gallery": 82161, "ids": 3060, "cams": 15, "dim": 512}
LIMIT_GIB = 4.0

CHILD = r"""
import json, resource, sys, time
import torch
from ccsc_plugin.evaluation import metrics

spec = json.loads(sys.argv[1])
generator = torch.Generator().manual_seed(0)
centres = torch.randn(spec["ids"], spec["dim"], generator=generator)
shifts = 0.5 * torch.randn(spec["cams"], spec["dim"], generator=generator)

def split(size):
    pids = torch.randint(0, spec["ids"], (size,), generator=generator)
    camids = torch.randint(0, spec["cams"], (size,), generator=generator)
    features = centres[pids] + shifts[camids] + 1.5 * torch.randn(size, spec["dim"], generator=generator)
    return features, pids, camids

qf, q_pids, q_camids = split(spec["num_query"])
gf, g_pids, g_camids = split(spec["num_gallery"])
start = time.perf_counter()
cmc, mAP = metrics.evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids)
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_gib": peak_kib / 2**20, "seconds": seconds, "rank1": float(cmc[0]), "mAP": float(mAP)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    log("evaluating at MSMT17 scale in a subprocess (a minute or two on 2 cores) ...")
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(MSMT17)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    num_q, num_g = MSMT17["num_query"], MSMT17["num_gallery"]
    full_gib = num_q * num_g * (4 + 8) / 2**30  # float32 distances + int64 argsort indices
    print(HEADER)
    print(
        row(
            f"peak memory, evaluate_features at MSMT17 scale ({num_q} x {num_g}, 512-d; {result['seconds']:.0f} s)",
            f"{result['peak_gib']:.2f} GiB",
            "full distance matrix + argsort (torchreid route), computed",
            f"{full_gib:.1f} GiB",
            f"{full_gib / result['peak_gib']:.1f}x less; target <= {LIMIT_GIB:g} GiB: "
            + ("met" if result["peak_gib"] <= LIMIT_GIB else "NOT met"),
        )
    )
    log(f"rank-1 {result['rank1']:.4f}, mAP {result['mAP']:.4f}")


if __name__ == "__main__":
    main()
