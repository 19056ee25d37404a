"""Benchmark: what the memory accounting adds to an inspection (issue 10: at most 5%), and what
``--fit`` costs (issue 10: fast on deep models).

Run by hand (not a test):  PYTHONPATH=. python benchmarks/memory_cost.py [--models resnet50 ...]

Times ``inspectr.inspect`` side by side in one process, interleaved, median of N runs, with the
memory accounting on (saved-tensor hooks during the probe, the memory block after it) and off
(both replaced by no-ops in this process only), and with ``--fit 24GiB`` (its extra
byte-counting passes). Then ``plan_memory`` on its own, called again with the arguments one
inspection gave it: its base cost (no ``--fit``, no ``--dtype``; issue 11 wants at most 0.03 s on
the deep stack) and with ``--fit 24GiB``, and the largest batch that fits.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import torch
import torchvision

import inspectr
from inspectr.core import inspect as inspect_mod
from inspectr.core.memory.estimate import parse_size
from inspectr.core.memory.plan import MemoryRequest
from inspectr.core.probe.saved_bytes import SavedBytes
from inspectr.core.state import gc_paused


def main() -> None:
    from probe_speed import deep_stack, interleaved

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "efficientnet_b0", "deep"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    counting, plan = SavedBytes.counting, inspect_mod.plan_memory

    def accounting(on: bool) -> None:
        SavedBytes.counting = counting if on else (lambda self: contextlib.nullcontext())
        inspect_mod.plan_memory = plan if on else (lambda *a, **k: None)

    print(f"torch {torch.__version__} · {args.threads} threads · median of {args.repeat}, interleaved")
    print(f"{'model':<18}{'without':>10}{'with':>10}{'added':>9}{'--fit 24GiB':>13}"
          f"{'plan_memory':>13}{'with --fit':>12}{'max batch':>11}")
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
        base_s, fit_s, best = _plan_memory_alone(model, x, args.repeat, interleaved)
        print(f"{name:<18}{off:>9.3f}s{on:>9.3f}s{(on / off - 1) * 100:>8.1f}%{fit:>12.3f}s"
              f"{base_s * 1000:>11.1f}ms{fit_s:>11.3f}s{best:>11,}")


def _plan_memory_alone(model: torch.nn.Module, x: torch.Tensor, repeat: int, interleaved: Any) -> tuple[float, float, int]:
    """``plan_memory`` timed on its own (base, and with ``--fit 24GiB``), with the arguments of
    one inspection, and the largest batch it finds."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    plan = inspect_mod.plan_memory

    def spy(*a: Any, **k: Any) -> Any:
        calls.append((a, k))
        return plan(*a, **k)

    inspect_mod.plan_memory = spy
    try:
        inspectr.inspect(model, inputs=x)
    finally:
        inspect_mod.plan_memory = plan
    a, k = calls[0]
    base = a[8]  # the MemoryRequest
    fit = MemoryRequest(base.optimizer, base.dtype, parse_size("24GiB"))
    with_fit = (*a[:8], fit, *a[9:])
    with gc_paused():  # as inside inspect
        best = plan(*with_fit, **k).max_batch_size
        base_s = interleaved([lambda: plan(*a, **k)], max(repeat, 21))[0]
        fit_s = interleaved([lambda: plan(*with_fit, **k)], repeat)[0]
    return base_s, fit_s, best


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    main()
