"""Benchmark: what the memory accounting adds to an inspection (issue 10: at most 5%).

Run by hand (not a test):  PYTHONPATH=. python benchmarks/memory_cost.py [--models resnet50 ...]

Times ``inspectr.inspect`` side by side in one process, interleaved, median of N runs, with the
memory accounting on (saved-tensor hooks during the probe, the memory block after it) and off
(both replaced by no-ops in this process only). Also times ``--fit`` (its extra byte-counting
passes on meta copies) on its own, since it is asked for, not always paid.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torchvision

import inspectr
from inspectr.core import inspect as inspect_mod
from inspectr.core import memory


def main() -> None:
    from probe_speed import deep_stack, interleaved

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "efficientnet_b0", "deep"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    counting, plan = memory.SavedBytes.counting, inspect_mod.plan_memory

    def accounting(on: bool) -> None:
        memory.SavedBytes.counting = counting if on else (lambda self: contextlib.nullcontext())
        inspect_mod.plan_memory = plan if on else (lambda *a, **k: None)

    print(f"torch {torch.__version__} · {args.threads} threads · median of {args.repeat}, interleaved")
    print(f"{'model':<18}{'without':>10}{'with':>10}{'added':>9}{'--fit 24GiB':>14}")
    for name in args.models:
        if name == "deep":
            model, x = deep_stack(), torch.randn(4, 32)
        else:
            model, x = getattr(torchvision.models, name)(weights=None), torch.randn(2, 3, 224, 224)

        def run(on: bool, fit: str | None = None) -> None:
            accounting(on)
            try:
                inspectr.inspect(model, inputs=x, fit=fit)
            finally:
                accounting(True)

        off, on, fit = interleaved([lambda: run(False), lambda: run(True), lambda: run(True, "24GiB")],
                                   args.repeat)
        print(f"{name:<18}{off:>9.3f}s{on:>9.3f}s{(on / off - 1) * 100:>8.1f}%{fit:>13.3f}s")


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    main()
