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
  the run, whichever is more), the median loss of a window and of the window after it (when there
  is one) rises above DIVERGE_FACTOR times the lowest window median before it; named at the first
  step of that window, and at the module with the largest update ratio at the last sample before it.

The rules below judge the sampled steps (``samples``: per module, at steps 0, every, 2*every...);
"sustained" counts consecutive samples, so it spans ``every`` times as many steps. The module
order they need is the forward order the watch saw at its first sample (``meta.forward_order``).

- ``dying_units`` (warning; error from DEAD_ERROR): an activation whose dead fraction (units zero
  for every sample of the batch, the probe's measure) was below DEAD_WARN at its first sample and
  is at or above DEAD_WARN for DYING_SUSTAIN samples in a row; named at the first of them
  (``detail.after_step``: the sample before, still healthy). Activations after the last layer with
  weights are not judged (under a classification loss the scores go below zero on purpose), as in
  the training rule. DEAD_WARN/DEAD_ERROR are the probe's (``findings.rules``).
- ``update_ratio`` (warning): a module whose ||dw||/||w|| is above UPDATE_HIGH and at least
  UPDATE_SPREAD_HIGH times the median module's at a sample, and stays UPDATE_SPREAD_HIGH times above
  the median for UPDATE_SUSTAIN samples in a row; or below UPDATE_LOW and UPDATE_SPREAD times below
  the median, sustained the same way. The band and the low-side spread are the training rule's;
  the high side needs only 10x because a ratio is capped near 1 (one step cannot move weights
  much farther than their own size), and under Adam a group whose learning rate is far too high
  inflates its weights until its ratio falls back as 1/steps, but stays far above the others'.
  Modules whose weights start near zero (RMS below UPDATE_MIN_RMS, ``meta.small_start``) and
  embeddings are not judged, as in the training rule. Named at the first sample of the streak.
- ``vanishing_gradient`` / ``exploding_gradient`` (warning): at a sample, the output-gradient norm
  of the first leaf module in forward order (the input end) against the one of the last leaf with
  weights (the head): below VANISH_RATIO or above EXPLODE_RATIO (the probe's thresholds) for
  GRAD_SUSTAIN samples in a row. Named at the smallest module holding the leaves between the input
  end and the head (the gradient shrinks or grows on its way through them), at the first sample
  of the streak.
- ``frozen_batchnorm_updating`` (warning): BatchNorm layers with parameters, all frozen
  (requires_grad off, or in no parameter group of the optimizer), whose running statistics moved
  by more than BN_DRIFT_MIN (relative, ||r - r_prev|| / ||r_prev|| over running_mean and
  running_var) between samples at BN_MIN_SAMPLES samples or more, while other layers train. In eval
  mode they move by exactly 0. Named at the smallest module holding them, at the first sample
  where one moved. The message is the training rule's.
- ``not_learning`` (warning): with at least NOT_LEARNING_MIN_STEPS logged losses, split into
  windows of max(NOT_LEARNING_WINDOW, a fifth of them) steps from the end: consecutive windows
  whose medians differ by at most NOT_LEARNING_TOL are a plateau; it fires when the plateau that
  reaches the end spans at least NOT_LEARNING_WINDOWS windows and NOT_LEARNING_SPAN of the logged
  steps, unless the loss there is
  below NOT_LEARNING_FLOOR or NOT_LEARNING_CONVERGED of the first window's (converged). Named at
  the model (root) and the plateau's first step. Not judged after a ``nonfinite`` or
  ``diverging`` finding.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from inspectr.core.findings.common import (
    DEAD_ERROR,
    DEAD_WARN,
    EXPLODE_RATIO,
    SPARSE_TYPES,
    UPDATE_HIGH,
    UPDATE_LOW,
    UPDATE_SPREAD,
    VANISH_RATIO,
    common_ancestor,
    frozen_batchnorm_finding,
    highest_paths,
)
from inspectr.core.result import Finding

SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 50
SPIKE_MIN_HISTORY = 20
STUCK_MIN_SAMPLES = 3
DIVERGE_FACTOR = 2.0
DIVERGE_WINDOW = 10
DYING_SUSTAIN = 3  # samples in a row at or above DEAD_WARN
UPDATE_SUSTAIN = 3  # samples in a row far from the median module
UPDATE_SPREAD_HIGH = 10.0  # the high side: a ratio is capped near 1, so 100x above a median of 1e-2 cannot show
GRAD_SUSTAIN = 3  # samples in a row beyond VANISH_RATIO / EXPLODE_RATIO
BN_DRIFT_MIN = 1e-6  # a relative move of the running statistics between samples; exactly 0 in eval mode
BN_MIN_SAMPLES = 2
NOT_LEARNING_MIN_STEPS = 100
NOT_LEARNING_WINDOW = 25
NOT_LEARNING_TOL = 0.02
NOT_LEARNING_CONVERGED = 0.1
NOT_LEARNING_FLOOR = 1e-3
NOT_LEARNING_SPAN = 0.5  # the plateau covers at least this share of the logged steps
NOT_LEARNING_WINDOWS = 3  # and at least this many windows


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
    return highest_paths(full)


def diverging(losses: Sequence[tuple[int, float | None]],
              samples: Sequence[tuple[int, dict[str, dict[str, Any]]]]) -> list[Finding]:
    values = [(s, v) for s, v in losses if v is not None and math.isfinite(v)]
    width = max(DIVERGE_WINDOW, len(values) // 10)
    if len(values) < 3 * width:
        return []
    best = math.inf
    starts = range(0, len(values) - width + 1, width)
    medians = [statistics.median(v for _, v in values[i:i + width]) for i in starts]
    for k, start in enumerate(starts):
        window = values[start:start + width]
        med = medians[k]
        # the next window too (when there is one): a bump the run recovers from at once is noise
        if best < math.inf and best > 0 and med > DIVERGE_FACTOR * best and (
                k + 1 == len(medians) or medians[k + 1] > DIVERGE_FACTOR * best):
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


# ----------------------------------------------------------------------------- the rules over sampled steps
Samples = Sequence[tuple[int, dict[str, dict[str, Any]]]]


def _streak(series: Sequence[tuple[int, bool]], length: int) -> int | None:
    """The index of the first run of ``length`` consecutive True values in ``series``."""
    count = 0
    for i, (_, hit) in enumerate(series):
        count = count + 1 if hit else 0
        if count == length:
            return i - length + 1
    return None


def _own_params(modules: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {m["path"]: m["params"] for m in modules}


def _leaves(paths: list[str]) -> set[str]:
    """The paths no other path sits below (named_modules lists every parent of a path)."""
    inner = {p.rpartition(".")[0] for p in paths if p}
    return {p for p in paths if p not in inner}


def dying_units(modules: Sequence[dict[str, Any]], samples: Samples, order: Sequence[str]) -> list[Finding]:
    """Activations whose dead fraction rose to DEAD_WARN after the first sample and stayed there."""
    params = _own_params(modules)
    leaves = _leaves(list(params))
    position = {p: i for i, p in enumerate(order)}
    # after the last layer with weights an activation shapes the output: the loss may push units
    # below zero on purpose (class scores), as the training rule says; not judged without a target.
    # Leaves only: a container finishes after its children (a root holding a position embedding)
    last_weighted = max((position[p] for p, n in params.items() if n > 0 and p in position and p in leaves),
                        default=None)
    out = []
    by_path: dict[str, list[tuple[int, float]]] = {}
    for s, vals in samples:
        for p, v in vals.items():
            if (d := v.get("dead_fraction")) is not None:
                by_path.setdefault(p, []).append((s, d))
    for path in sorted(by_path, key=lambda p: position.get(p, len(position))):
        if last_weighted is not None and position.get(path, -1) > last_weighted:
            continue
        series = by_path[path]
        if len(series) < DYING_SUSTAIN + 1 or series[0][1] >= DEAD_WARN:
            continue
        k = _streak([(s, d >= DEAD_WARN) for s, d in series], DYING_SUSTAIN)
        if k is None:
            continue
        step, dead = series[k]
        worst = max(d for _, d in series[k:k + DYING_SUSTAIN])
        out.append(Finding(
            "dying_units", "error" if worst >= DEAD_ERROR else "warning", path,
            f"step {step}: {dead:.0%} of {_label(path)}'s units are dead (zero for every sample of the batch) and "
            f"stayed so over {DYING_SUSTAIN} samples; {series[0][1]:.0%} were at step {series[0][0]} and "
            f"{series[k - 1][1]:.0%} at step {series[k - 1][0]}. An update between those steps pushed them below "
            "zero for every input (a bad batch, a learning-rate spike): they get no gradient and cannot come back. "
            "Lower the learning rate or clip gradients, or use LeakyReLU/GELU.",
            {"step": step, "after_step": series[k - 1][0], "dead_fraction": dead, "start_dead_fraction": series[0][1],
             "threshold": DEAD_WARN, "samples": DYING_SUSTAIN}))
    return out


def update_ratio(modules: Sequence[dict[str, Any]], samples: Samples, small_start: Sequence[str] = ()) -> list[Finding]:
    """Modules whose ||dw||/||w|| leaves the band far from the median module and stays far from it."""
    judged = {m["path"] for m in modules
              if m["trainable"] > 0 and m["type"] not in SPARSE_TYPES and m["path"] not in set(small_start)}
    series: dict[str, list[tuple[int, float, float]]] = {}  # path -> (step, ratio, median module's ratio)
    for s, vals in samples:
        ratios = {p: r for p, v in vals.items() if p in judged and isinstance(r := v.get("update_ratio"), float)
                  and math.isfinite(r) and r > 0}
        if len(ratios) < 3:
            continue
        mid = statistics.median(ratios.values())
        for p, r in ratios.items():
            series.setdefault(p, []).append((s, r, mid))
    out = []
    for path, seen in sorted(series.items()):
        for k, (step, r, mid) in enumerate(seen[:len(seen) - UPDATE_SUSTAIN + 1]):
            high = r > UPDATE_HIGH and r >= mid * UPDATE_SPREAD_HIGH
            low = r < UPDATE_LOW and r <= mid / UPDATE_SPREAD
            if not (high or low):
                continue
            after = seen[k + 1:k + UPDATE_SUSTAIN]
            if not all(q >= m * UPDATE_SPREAD_HIGH if high else q <= m / UPDATE_SPREAD for _, q, m in after):
                continue
            out.append(Finding(
                "update_ratio", "warning", path,
                f"step {step}: {_label(path)} moved {r:.1e} of its weights in one step while the median module "
                f"moved {mid:.1e}, and stayed {'above' if high else 'below'} it by "
                f"{UPDATE_SPREAD_HIGH if high else UPDATE_SPREAD:g}x or more for {UPDATE_SUSTAIN} samples in a row: "
                f"{'far too fast, its weights are overwritten' if high else 'far too slowly, it barely trains'} "
                f"(useful band {UPDATE_LOW:g} to {UPDATE_HIGH:g}, about 1e-3). Check the learning rate of its "
                "parameter group (and its weight decay), or its initialisation scale.",
                {"step": step, "update_ratio": r, "median": mid, "samples": UPDATE_SUSTAIN,
                 "band": [UPDATE_LOW, UPDATE_HIGH], "high": high}))
            break
    return out


def gradient_flow(modules: Sequence[dict[str, Any]], samples: Samples, order: Sequence[str]) -> list[Finding]:
    """``vanishing_gradient`` and ``exploding_gradient``: the output-gradient norm at the input end
    of the network against the one at the last layer with weights, sustained over samples."""
    params = _own_params(modules)
    leaves = _leaves(list(params))
    forward = [p for p in order if p in leaves]
    if not forward:
        return []
    kinds: dict[str, list[tuple[int, bool]]] = {"vanishing_gradient": [], "exploding_gradient": []}
    seen: dict[int, tuple[float, float, str, list[str], list[str], str]] = {}  # step -> norms, head, spans
    for s, vals in samples:
        live = [(p, g) for p in forward if isinstance(g := (vals.get(p) or {}).get("grad_norm"), float)
                and math.isfinite(g) and g > 0]
        weighted = [(p, g) for p, g in live if params.get(p, 0) > 0]
        if len(live) < 2 or not weighted:
            continue
        head, head_norm = weighted[-1]
        entry_norm = live[0][1]
        low = [p for p, g in live if g < head_norm * VANISH_RATIO]
        high = [p for p, g in live if g > head_norm * EXPLODE_RATIO]
        # the gradient shrinks or grows on its way from the head back to the input end: through
        # the modules between them, which are the culprit (the input end only receives it)
        span = forward[forward.index(live[0][0]) + 1:forward.index(head)]
        seen[s] = (entry_norm, head_norm, head, low, high, common_ancestor(span or [live[0][0], head]))
        kinds["vanishing_gradient"].append((s, entry_norm / head_norm < VANISH_RATIO))
        kinds["exploding_gradient"].append((s, entry_norm / head_norm > EXPLODE_RATIO))
    out = []
    for kind, series in kinds.items():
        k = _streak(series, GRAD_SUSTAIN)
        if k is None:
            continue
        step = series[k][0]
        entry_norm, head_norm, head, low, high, where = seen[step]
        hit = low if kind == "vanishing_gradient" else high
        what = ("vanish" if kind == "vanishing_gradient" else "explode")
        fix = ("look at saturating activations (sigmoid/tanh), depth without residual connections or normalisation, "
               "and initialisation." if kind == "vanishing_gradient" else
               "look at the weight initialisation scale, missing normalisation and the learning rate; clipping hides "
               "it, it does not fix it.")
        out.append(Finding(
            kind, "warning", where,
            f"step {step}: gradients {what} through {_label(where)} for {GRAD_SUSTAIN} samples in a row: norm "
            f"{entry_norm:.1e} at the input end vs {head_norm:.1e} at the last layer {_label(head)} ({len(hit)} "
            f"modules beyond {VANISH_RATIO if what == 'vanish' else EXPLODE_RATIO:g}x of it); {fix}",
            {"step": step, "input_grad_norm": entry_norm, "head_grad_norm": head_norm, "ratio": entry_norm / head_norm,
             "modules": len(hit), "samples": GRAD_SUSTAIN}))
    return out


def frozen_batchnorm_updating(modules: Sequence[dict[str, Any]], samples: Samples, optimizer: bool) -> list[Finding]:
    """BatchNorm layers with frozen parameters (requires_grad off, or in no parameter group) whose
    running statistics moved between samples while other layers train."""
    info = {m["path"]: m for m in modules}
    if not any(m["trainable"] > 0 and (m["in_optimizer"] or not optimizer) for m in modules):
        return []
    frozen = {p for p, m in info.items()
              if m["params"] > 0 and (m["trainable"] == 0 or (optimizer and not m["in_optimizer"]))}
    moved: dict[str, list[tuple[int, float]]] = {}
    for s, vals in samples:
        for p, v in vals.items():
            d = v.get("running_drift")
            if p in frozen and isinstance(d, float) and d > BN_DRIFT_MIN:
                moved.setdefault(p, []).append((s, d))
    hit = sorted(p for p, seen in moved.items() if len(seen) >= BN_MIN_SAMPLES)
    if not hit:
        return []
    step = min(moved[p][0][0] for p in hit)
    drift = {p: max(d for _, d in moved[p]) for p in hit}
    f = frozen_batchnorm_finding(hit, drift, "Between two samples")
    return [Finding(f.kind, f.severity, f.module, f"step {step}: {f.message}",
                    {**f.detail, "step": step, "samples": max(len(moved[p]) for p in hit)})]


def not_learning(losses: Sequence[tuple[int, float | None]]) -> list[Finding]:
    """The loss on a plateau: consecutive windows up to the end whose medians moved less than
    NOT_LEARNING_TOL, over enough of the run (see the module doc), while it stands above
    NOT_LEARNING_CONVERGED of where it started."""
    values = [(s, v) for s, v in losses if v is not None and math.isfinite(v)]
    if len(values) < NOT_LEARNING_MIN_STEPS:
        return []
    width = max(NOT_LEARNING_WINDOW, len(values) // 5)
    if len(values) < 2 * width:
        width = len(values) // 2
    windows = [values[i:i + width] for i in range(len(values) - width, -1, -width)]  # newest first
    medians = [statistics.median(v for _, v in w) for w in windows]
    first = statistics.median(v for _, v in values[:width])
    last = medians[0]
    if abs(last) <= NOT_LEARNING_FLOOR or abs(last) <= NOT_LEARNING_CONVERGED * abs(first):
        return []  # converged (to about 0, or far below its start)

    def flat(newer: float, older: float) -> bool:
        return abs(newer - older) <= NOT_LEARNING_TOL * abs(older)

    k = 0
    while k + 1 < len(medians) and flat(medians[k], medians[k + 1]):
        k += 1
    if k + 1 < NOT_LEARNING_WINDOWS or (k + 1) * width < NOT_LEARNING_SPAN * len(values):
        return []  # flat only lately: a run still learning slowly, or one that just reached its floor
    start = windows[k][0][0]
    span = values[-1][0] - start + 1
    return [Finding(
        "not_learning", "warning", "",
        f"step {start}: the loss has been on a plateau at about {last:.4g} for {span} steps (the median of each "
        f"window of {width} logged steps moved less than {NOT_LEARNING_TOL:.0%}); it started at {first:.4g}. "
        "A learning rate decayed to zero or far too low, dead units, frozen layers that should train, or an "
        "input the model ignores.",
        {"step": start, "loss": last, "start_loss": first, "window": width, "steps": span,
         "tolerance": NOT_LEARNING_TOL})]
