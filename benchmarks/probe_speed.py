"""Benchmark: the probe's cost against a bare training step and against torchinfo.

Run by hand (not a test):  PYTHONPATH=. python benchmarks/probe_speed.py [--models resnet50 ...] [--device cuda]

Measures side by side in one process, interleaved, median of N runs:
- full probe (forward + backward + every statistic) vs ``model(x).sum().backward()``
  (torchvision models at batch 2, 224x224); target <= 1.25x;
- forward-only probe (``backward=False``) vs ``torchinfo.summary`` on the same input, both in
  eval mode (torchinfo's default; the train-mode probe is shown too); target <= 1.0x;
- the deep stack (5,000 x (Linear(32, 32), LayerNorm, GELU, Dropout) + a head: 20,002 modules,
  batch 4): the whole ``inspectr.inspect`` (summary, probe, findings) vs a bare
  forward+backward; target <= 2x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchinfo
from torch import nn

import inspectr
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import run_probe


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` takes, with the GPU's queued work waited for on both sides."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def bare_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """The bare forward+backward every benchmark compares against (gradients dropped after)."""

    def run() -> None:
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    return run


def interleaved(fns: list, repeat: int) -> list[float]:
    """Median time of each function, run in turns so drifting machine load hits all alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn))
    return [statistics.median(ts) for ts in times]


def blocked(fns: list, repeat: int, runs: int = 2) -> list[float]:
    """Median time of each function in its own steady state: in each round, each function runs
    once untimed and then ``runs`` timed times, before the next function's turn. Interleaving run
    by run lets one function's allocations decide the next one's page faults (EfficientNet-B0's
    bare train-mode forward took 0.093 s right after an inspection, 0.055 s after another bare
    forward; ResNet-50's 0.176 s and 0.148 s); this shows each as it runs when repeated."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            fn()
            times[i] += [timed(fn) for _ in range(runs)]
    return [statistics.median(ts) for ts in times]


def deep_stack(blocks: int = 5000, width: int = 32) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(0.1)]
    return nn.Sequential(nn.Sequential(*layers), nn.Linear(width, 10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "efficientnet_b0"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-deep", action="store_true", help="skip the 20,002-module stack")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, median of {args.repeat}")
    print(f"{'model':18s} {'bare f+b':>9s} {'probe':>9s} {'ratio':>6s} | {'torchinfo':>9s} {'probe fwd':>9s} {'ratio':>6s}")
    print(f"{'':18s} {'(train)':>9s} {'(train)':>9s} {'':>6s} | {'(eval)':>9s} {'(eval)':>9s}")
    import torchvision

    for name in args.models:
        model = torchvision.models.get_model(name, weights=None).to(dev)
        x = torch.randn(2, 3, 224, 224, device=dev)

        bare = bare_step(model, x)

        def probe() -> None:
            run_probe(model, (x,), {}, ProbeOptions())

        def probe_fwd() -> None:
            run_probe(model, (x,), {}, ProbeOptions(backward=False, mode="eval"))

        def probe_fwd_train() -> None:
            run_probe(model, (x,), {}, ProbeOptions(backward=False, mode="train"))

        def info() -> None:
            torchinfo.summary(model, input_data=x, verbose=0, device=dev)

        tb, tp, ti, tf, tt = interleaved([bare, probe, info, probe_fwd, probe_fwd_train], args.repeat)
        print(f"{name:18s} {tb:9.3f} {tp:9.3f} {tp / tb:6.2f} | {ti:9.3f} {tf:9.3f} {tf / ti:6.2f}"
              f"   (train-mode probe fwd {tt:.3f}, {tt / ti:.2f}x)")
    if args.no_deep:
        return
    model = deep_stack().to(dev)
    x = torch.randn(4, 32, device=dev)

    bare_deep = bare_step(model, x)

    def inspect_deep() -> None:
        inspectr.inspect(model, inputs=x, device=args.device)

    def info_deep() -> None:
        torchinfo.summary(model, input_data=x, verbose=0, device=dev)

    tb, tinsp, ti = interleaved([bare_deep, inspect_deep, info_deep], max(3, args.repeat // 2))
    print(f"{'deep stack 20,002':18s} bare f+b {tb:.3f} s, inspectr.inspect {tinsp:.3f} s ({tinsp / tb:.2f}x), "
          f"torchinfo.summary {ti:.3f} s")


if __name__ == "__main__":
    main()
