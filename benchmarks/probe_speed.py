"""Benchmark: the probe's cost against a bare training step and against torchinfo.

Run by hand (not a test):  python benchmarks/probe_speed.py [--models resnet50 vit_b_16 efficientnet_b0]

Measures side by side in one process, batch 2, 224x224, CPU, 2 threads, median of N runs:
- full probe (forward + backward + every statistic) vs ``model(x).sum().backward()``;
- forward-only probe (``backward=False``) vs ``torchinfo.summary`` on the same input.
Targets: <= 1.25x and <= 1.0x.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchinfo
import torchvision

from inspectr.core.probe import ProbeOptions, run_probe


def interleaved(fns: list, repeat: int) -> list[float]:
    """Median time of each function, run in turns so drifting machine load hits all alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "efficientnet_b0"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 2, 224x224, median of {args.repeat}")
    print(f"{'model':18s} {'bare f+b':>9s} {'probe':>9s} {'ratio':>6s} | {'torchinfo':>9s} {'probe fwd':>9s} {'ratio':>6s}")
    for name in args.models:
        model = torchvision.models.get_model(name, weights=None)
        x = torch.randn(2, 3, 224, 224)

        def bare() -> None:
            model(x).sum().backward()
            model.zero_grad(set_to_none=True)

        def probe() -> None:
            run_probe(model, (x,), {}, ProbeOptions())

        def probe_fwd() -> None:
            run_probe(model, (x,), {}, ProbeOptions(backward=False))

        def info() -> None:
            torchinfo.summary(model, input_data=x, verbose=0)

        tb, tp, ti, tf = interleaved([bare, probe, info, probe_fwd], args.repeat)
        print(f"{name:18s} {tb:9.3f} {tp:9.3f} {tp / tb:6.2f} | {ti:9.3f} {tf:9.3f} {tf / ti:6.2f}")


if __name__ == "__main__":
    main()
