"""Benchmark: what an inspection costs around the probe and the memory plan, and the exports.

Run by hand (not a test):  PYTHONPATH=. python benchmarks/glue_speed.py [--blocks 5000] [--repeat 5]

On the deep stack of ``probe_speed.py`` (5,000 x (Linear, LayerNorm, GELU, Dropout) + a head:
20,002 modules, batch 4), median of N inspections, real time:
- each step ``inspectr.core.inspect`` calls (timed where it calls them): ``walk``, ``summarize``,
  ``find_problems``, ...; ``run_probe`` and ``plan_memory`` for scale;
- the glue: the whole ``inspect`` less ``run_probe`` and ``plan_memory`` (issue 11: at most
  0.25 s, so that the inspection stays within 2x a bare forward+backward);
- the report of the same model as text (the module table), markdown and JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from probe_speed import deep_stack

import inspectr
import inspectr.core.inspect as inspect_module
from inspectr.report.render import export

STEPS = ("walk", "summarize", "find_problems", "packed_note", "frozen_batchnorm_in_train", "frozen_batchnorm",
         "run_probe", "plan_memory")


def timed_steps(times: dict[str, list[float]]) -> None:
    """Wrap the steps ``inspect`` calls by name so each call's real time lands in ``times``."""
    for name in STEPS:
        fn = getattr(inspect_module, name)

        def wrapper(*args: Any, _fn: Callable[..., Any] = fn, _name: str = name, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                times[_name].append(time.perf_counter() - start)

        setattr(inspect_module, name, wrapper)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms" if values else "       —   "


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = deep_stack(args.blocks)
    x = torch.randn(4, 32)
    times: dict[str, list[float]] = defaultdict(list)
    timed_steps(times)
    inspectr.inspect(model, inputs=x)  # warm-up
    times.clear()
    total: list[float] = []
    report = None
    for _ in range(args.repeat):
        del report
        start = time.perf_counter()
        report = inspectr.inspect(model, inputs=x)
        total.append(time.perf_counter() - start)
    n = len(report.modules)
    print(f"torch {torch.__version__}, {args.threads} threads, {n:,} modules, median of {args.repeat}")
    for name in STEPS:
        print(f"  {name:28s} {median_ms(times[name])}")
    glue = [t - p - m for t, p, m in zip(total, times["run_probe"], times["plan_memory"])]
    print(f"  {'inspect':28s} {median_ms(total)}")
    print(f"  {'glue (inspect - probe - memory)':28s} {median_ms(glue)}")
    print("exports")
    for fmt in ("text", "markdown", "json"):
        runs = []
        for _ in range(max(1, args.repeat // 2)):
            start = time.perf_counter()
            text = export(report, fmt)
            runs.append(time.perf_counter() - start)
        print(f"  {fmt:28s} {median_ms(runs)}  ({len(text):,} characters)")


if __name__ == "__main__":
    main()
