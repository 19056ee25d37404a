"""Provides the findings of a watched run, each naming a module and an optimizer step
(``detail["step"]``, counted from 0).

Thresholds (documented in the README, "Watch a training run"):

- ``nonfinite`` (error): the first step whose gradients (or logged loss) hold NaN/Inf. The watch
  replays that step's forward on the same inputs with the pre-update weights under the probe
  and names the first module that made the non-finite value itself; when the input batch
  already held it, the finding says so (a bad sample, not a bad layer). Made live by the watch.
- ``grad_spike`` (warning): the first step whose global gradient norm is above SPIKE_FACTOR times the
  median of the previous SPIKE_WINDOW steps (at least SPIKE_MIN_HISTORY of them), naming the
  module whose parameter gradients dominate that step. Made live by the watch (CPU: every step;
  other devices: at sampled steps, where the per-step norms are read without a sync per step).
- ``stuck_parameters`` (warning): trainable parameters missing from every parameter group of the
  optimizer (they can never change), or in it but with a zero gradient and a zero update at every
  one of at least STUCK_MIN_SAMPLES sampled steps. Reported at the highest module all of whose
  trainable parameters are stuck.
- ``diverging`` (warning): over at least 3 windows of DIVERGE_WINDOW logged steps (or a tenth of
  the run, whichever is more), the median loss of a window rises above DIVERGE_FACTOR times the
  lowest window median before it; named at the first step of that window, and at the module with
  the largest update ratio at the last sample before it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from inspectr.core.result import Finding

SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 50
SPIKE_MIN_HISTORY = 20
STUCK_MIN_SAMPLES = 3
DIVERGE_FACTOR = 2.0
DIVERGE_WINDOW = 10


def _label(path: str) -> str:
    return path if path else "(root)"


def nonfinite_finding(step: int, module: str | None, input_nonfinite: bool, replayed: bool,
                      grad_modules: Sequence[str], note: str = "", late: bool = False) -> Finding:
    """The first non-finite step: ``module`` made it (None: no module output went non-finite).
    ``late``: found when the per-step values were read at a later sampled step (a GPU), when
    the step's inputs and weights are gone: nothing more is known."""
    if late:
        source = "unreplayed"
        text = f"step {step}: the gradients or the loss went non-finite."
    elif input_nonfinite:
        source = "input"
        text = (f"step {step}: the input batch already held NaN/Inf: a bad sample, not a bad layer. "
                "Check the data pipeline for that batch (the loader, augmentations, division by zero).")
    elif module is not None:
        source = "module"
        text = (f"step {step}: {_label(module)} is the first module whose output went non-finite from finite "
                "inputs, replayed on the step's own inputs with the weights before its update.")
    elif grad_modules:
        source = "backward"
        text = (f"step {step}: the forward stayed finite but the gradients of {', '.join(grad_modules[:5])} went "
                "non-finite: the loss or the backward made the NaN/Inf (a log of 0, a division by zero, an overflow "
                "under mixed precision).")
    else:
        source = "loss"
        text = f"step {step}: the logged loss is non-finite while the gradients are finite."
    if note:
        text = f"{text} {note}"
    blamed = "" if module is None else module
    if module is None and grad_modules and not input_nonfinite:
        blamed = grad_modules[-1]
    return Finding("nonfinite", "error", blamed, text,
                   {"step": step, "source": source, "input_nonfinite": input_nonfinite, "replayed": replayed,
                    "grad_modules": list(grad_modules)})


def grad_spike_finding(step: int, norm: float, median: float, module: str, share: float) -> Finding:
    return Finding(
        "grad_spike", "warning", module,
        f"step {step}: the global gradient norm jumped to {norm:.3g}, {norm / median:.0f}x its running median "
        f"({median:.3g}); {_label(module)} holds {share:.0%} of it. A learning-rate spike, a bad batch or a "
        "loss scale gone wrong; clipping hides it, it does not fix it.",
        {"step": step, "grad_norm": norm, "median": median, "share": share, "factor": SPIKE_FACTOR},
    )


def spike_median(history: Sequence[float]) -> float | None:
    """The running median a step's norm is compared with; None while the history is too short."""
    recent = [v for v in history[-SPIKE_WINDOW:] if math.isfinite(v)]
    if len(recent) < SPIKE_MIN_HISTORY:
        return None
    return statistics.median(recent)


def stuck_parameters(modules: Sequence[dict[str, Any]], samples: Sequence[tuple[int, dict[str, dict[str, Any]]]],
                     optimizer: bool) -> list[Finding]:
    """``modules``: dicts with path, trainable, in_optimizer; ``samples``: (step, {path: values})."""
    owners = {m["path"]: m for m in modules if m["trainable"] > 0}
    left_out = {p for p, m in owners.items() if optimizer and not m["in_optimizer"]}
    zero: set[str] = set()
    judged = [s for s in samples if s[1]]
    if len(judged) >= STUCK_MIN_SAMPLES:
        for path in owners:
            if path in left_out:
                continue
            seen = [vals.get(path) for _, vals in judged]
            if all(v is not None and v.get("param_grad_norm") == 0 and v.get("update_ratio") in (0, None)
                   for v in seen):
                zero.add(path)
    out: list[Finding] = []
    steps = [s for s, _ in samples]
    for group, why in ((left_out, "missing from every parameter group of the optimizer: they can never change. "
                                  "Pass them to the optimizer (model.parameters()), or set requires_grad=False."),
                       (zero, "had a zero gradient and did not move at every sampled step: something between them "
                              "and the loss blocks the gradient (a dead activation, a zero multiplier, a detach).")):
        for path in _tops(group, owners):
            n = sum(m["trainable"] for p, m in owners.items() if p == path or path == "" or p.startswith(path + "."))
            out.append(Finding("stuck_parameters", "warning", path,
                               f"{_label(path)}: {n:,} trainable parameters {why}",
                               {"step": steps[0] if steps else 0, "left_out": group is left_out,
                                "samples": len(judged), "params": n}))
    return out


def _tops(stuck: set[str], owners: dict[str, dict[str, Any]]) -> list[str]:
    """The highest module paths all of whose trainable parameter owners are stuck."""
    if not stuck:
        return []
    candidates = set(stuck)
    for path in stuck:
        parts = path.split(".") if path else []
        candidates.update(".".join(parts[:i]) for i in range(len(parts)))
    full = {c for c in candidates
            if all(p in stuck for p in owners if c == "" or p == c or p.startswith(c + "."))}
    return sorted(c for c in full if not any(c != q and (q == "" or c.startswith(q + ".")) for q in full))


def diverging(losses: Sequence[tuple[int, float | None]],
              samples: Sequence[tuple[int, dict[str, dict[str, Any]]]]) -> list[Finding]:
    values = [(s, v) for s, v in losses if v is not None and math.isfinite(v)]
    width = max(DIVERGE_WINDOW, len(values) // 10)
    if len(values) < 3 * width:
        return []
    best = math.inf
    for start in range(0, len(values) - width + 1, width):
        window = values[start:start + width]
        med = statistics.median(v for _, v in window)
        if best < math.inf and best > 0 and med > DIVERGE_FACTOR * best:
            step = window[0][0]
            module = _largest_update(samples, step)
            return [Finding(
                "diverging", "warning", module,
                f"step {step}: the loss left its band: the median over {width} logged steps rose to {med:.4g}, "
                f"{med / best:.1f}x its lowest ({best:.4g}). "
                + (f"{_label(module)} had the largest update ratio at the sample before. " if module else "")
                + "A learning rate too high (or a warmup too short), or a scheduler spike.",
                {"step": step, "median": med, "best": best, "window": width, "factor": DIVERGE_FACTOR})]
        best = min(best, med)
    return []


def _largest_update(samples: Sequence[tuple[int, dict[str, dict[str, Any]]]], step: int) -> str:
    before = [vals for s, vals in samples if s <= step]
    if not before:
        return ""
    ratios = {p: v["update_ratio"] for p, v in before[-1].items()
              if isinstance(v.get("update_ratio"), float) and math.isfinite(v["update_ratio"])}
    return max(ratios, key=lambda p: ratios[p]) if ratios else ""
