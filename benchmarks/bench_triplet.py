"""Batch-hard triplet loss, forward + backward: ours (two masked reductions) against torchreid's per-anchor loop.

Same random batches (P identities x K images, 512-d features, the engine's float32), same margin; the values and
gradients are also compared (tests/test_triplet.py asserts them equal to 1e-6). Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import torch
from _common import HEADER, alternate, row

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses import BatchHardTripletLoss


def forward_backward(loss: torch.nn.Module, features: torch.Tensor, pids: torch.Tensor):
    """One loss evaluation with its backward pass, as a training step does; returns the value and the gradient."""

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        leaf = features.detach().requires_grad_()
        value = loss(leaf, pids)
        value.backward()
        return value.detach(), leaf.grad

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--identities", type=int, default=16, help="P")
    parser.add_argument("--instances", type=int, default=4, help="K")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    n = args.identities * args.instances
    features = torch.randn(n, args.dim)
    pids = torch.arange(args.identities).repeat_interleave(args.instances)[torch.randperm(n)]
    ours = forward_backward(BatchHardTripletLoss(margin=0.3), features, pids)
    theirs = forward_backward(torchreid.losses.TripletLoss(margin=0.3), features, pids)
    (ours_value, ours_grad), (their_value, their_grad) = ours(), theirs()
    difference = max((ours_value - their_value).abs().item(), (ours_grad - their_grad).abs().max().item())
    seconds = alternate(args.runs, ours=ours, theirs=theirs)
    print(HEADER)
    figure = f"batch-hard triplet forward + backward (P={args.identities} x K={args.instances}, {args.dim}-d)"
    figure += f"; max value / gradient difference {difference:.1e}"
    ratio = f"{seconds['theirs'] / seconds['ours']:.1f}x faster"
    print(
        row(
            figure,
            f"{1e3 * seconds['ours']:.2f} ms",
            "torchreid TripletLoss",
            f"{1e3 * seconds['theirs']:.2f} ms",
            ratio,
        )
    )


if __name__ == "__main__":
    main()
