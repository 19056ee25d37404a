"""Provides the findings of training steps: does the model learn, and which layer stops it.

Thresholds (documented in the README; chosen so healthy torchvision and sample models training
``DEFAULT_STEPS`` steps with AdamW at lr 1e-3 raise nothing of severity warning or error):

- ``not_learning``: after at least NOT_LEARNING_MIN_STEPS steps, the loss after the last update
  (one more forward with step 1's seed: the same dropout masks, so no sampling noise) is
  still above NOT_LEARNING_FRACTION of step 1's loss. A healthy network
  overfits one fixed batch: in 20 AdamW steps at lr 1e-3 the healthy gallery and torchvision
  models end between 0% and 92% of their start (the slow ones: a GCN with dropout 0.5 and an
  LSTM seq2seq); a classifier that ends in Softmax before cross-entropy stays at 97%. Fewer
  than 20 steps are not judged. Blamed on the output's squashing layer
  (Softmax/Sigmoid/Tanh as the last module, before a cross-entropy that applies its own
  softmax), else on the whole model.
- ``diverging``: the loss turns NaN/Inf (named: the step, and the first module whose output went
  non-finite at that step, found by replaying it under the probe), or climbs above
  DIVERGE_FACTOR times its start (named: the step, and the layer with the largest update ratio
  in the update before it).
- ``nonfinite_grad``: the loss of a step was finite but a gradient was not (the run stops
  before that update): the step, and the op whose backward first turned finite gradients into
  NaN/Inf with its module and line, found by replaying the step under ``grad_origin`` (as the
  probe's finding of the same kind at step 0).
- ``dying_units``: an activation (module or functional) where at least DEAD_WARN of the units
  are dead on the last step's forward, while fewer were at step 0; error from DEAD_ERROR. Same
  minimum units and samples per unit as ``dead_units``. Activations after the last layer with
  parameters shape the output: under a classification loss they are not judged (SqueezeNet's
  ReLU on its class scores: the loss pushes the wrong classes below zero on purpose). Under a
  regression toward targets that leave the activation's range (a ReLU output, targets below 0),
  dying output units are an error from DEAD_WARN: each one is an output stuck at 0 for every
  sample, which the loss cannot move because the activation passes no gradient there.
- ``update_ratio``: a layer whose median ||dw||/||w|| lies outside [UPDATE_LOW, UPDATE_HIGH]
  (the rule of thumb is about 1e-3) and at least UPDATE_SPREAD times away from the median
  layer, while most layers are inside the band. Layers whose weights start near zero
  (RMS below UPDATE_MIN_RMS: zero-initialised heads, layer scales) and embeddings (sparse rows)
  are not judged.
- ``stuck_parameters``: trainable parameters whose gradient was zero at every step, or that
  ended exactly where they started; those the probe already reported as unused are left out.
- ``frozen_batchnorm_updating``: BatchNorm layers whose parameters are all frozen but that run
  in train mode while other layers train: their running statistics still move. At step 0 from
  the modes; after training with how far the statistics moved.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from inspectr.core.findings.common import (  # noqa: F401 (the thresholds are read from here too)
    DEAD_ERROR,
    DEAD_MIN_SAMPLES,
    DEAD_MIN_UNITS,
    DEAD_WARN,
    SPARSE_TYPES,
    UPDATE_HIGH,
    UPDATE_LOW,
    UPDATE_MIN_RMS,
    UPDATE_SPREAD,
    frozen_batchnorm_finding,
    highest_paths,
    owner_path,
)
from inspectr.core.findings.op_culprit import op_detail, op_sentence
from inspectr.core.findings.rules import nonfinite_grad
from inspectr.core.result import Finding, ModuleRow
from inspectr.core.training.steps import TrainingRun

NOT_LEARNING_FRACTION = 0.95
NOT_LEARNING_MIN_STEPS = 20
DIVERGE_FACTOR = 10.0


def _label(path: str) -> str:
    return path if path else "(root)"


def training_problems(rows: tuple[ModuleRow, ...], run: TrainingRun, unused: Iterable[str] = ()) -> list[Finding]:
    """Every training finding for one run; ``unused``: parameters the probe reported unused."""
    out: list[Finding] = []
    out += diverging(run)
    out += nonfinite_gradients(rows, run)
    if not run.stopped:
        out += not_learning(rows, run)
        out += dying_units(rows, run)
    out += update_ratio(rows, run)
    out += stuck_parameters(rows, run, set(unused))
    return out


SQUASHING = ("Softmax", "Sigmoid", "Tanh", "Softmin", "Hardtanh", "Hardsigmoid")


def _output_layer(rows: tuple[ModuleRow, ...]) -> ModuleRow | None:
    """The leaf that ran last: the one whose output the model returns, in a plain network."""
    leaves = [r for r in rows if r.is_leaf and r.order is not None and r.calls]
    return max(leaves, key=lambda r: r.order or 0) if leaves else None


def not_learning(rows: tuple[ModuleRow, ...], run: TrainingRun) -> list[Finding]:
    losses = run.loss
    if len(losses) < NOT_LEARNING_MIN_STEPS or not all(math.isfinite(x) for x in losses):
        return []
    start = losses[0]
    end = run.final_loss if run.final_loss is not None else min(losses[-3:])
    if not math.isfinite(end) or start <= 1e-6 or end <= NOT_LEARNING_FRACTION * start:
        return []
    last = _output_layer(rows)
    root_shapes = rows[0].output_shapes if rows else ()
    where, why = "", ("Look for an input the forward ignores or mixes across the batch, a detached or saturated "
                      "output, frozen layers that should train, or a learning rate far too low (--lr).")
    if (last is not None and last.type in SQUASHING and last.output_shapes == root_shapes
            and "cross-entropy" in run.loss_name):
        where = last.path
        why = (f"The output passes through {last.type} ({_label(last.path)}): cross-entropy applies its own "
               "softmax, so the scores it sees are squeezed into a narrow range and the loss cannot fall. Return "
               f"the raw logits and drop the {last.type} (apply it only for predictions).")
    return [Finding(
        "not_learning", "error", where,
        f"The loss did not learn the fixed batch: {start:.4g} at step 1, {end:.4g} after {len(losses)} updates "
        f"({end / start:.0%} of the start; a healthy network gets below {NOT_LEARNING_FRACTION:.0%} by then). "
        + why,
        {"start": start, "end": end, "fraction": end / start, "steps": len(losses)},
    )]


def diverging(run: TrainingRun) -> list[Finding]:
    losses = run.loss
    if not losses:
        return []
    if run.nonfinite_step is not None:
        k = run.nonfinite_step
        bad = "NaN" if math.isnan(losses[k - 1]) else "Inf"
        if run.nonfinite_module is not None:
            where = run.nonfinite_module
            what = (f"{_label(where)} is the first module whose output went non-finite at that step, "
                    "from finite inputs")
        else:
            where = ""
            what = "every module output was finite: the loss computation itself made it"
        trace = run.nonfinite_trace
        kind = "nan" if bad == "NaN" else "inf"
        order = ("nan", "inf") if kind == "nan" else ("inf", "nan")  # a loss of NaN may come from a module's Inf
        found = [(k, getattr(trace, k)) for k in order if trace is not None and getattr(trace, k) is not None]
        site_kind, site = found[0] if found else (kind, None)
        from_inf = trace.from_inf if trace is not None and site_kind == "nan" else None
        call = f" {op_sentence(site, site_kind, from_inf)}" if site is not None else ""
        return [Finding(
            "diverging", "error", where,
            f"The loss turned {bad} at step {k} (it started at {losses[0]:.4g}); {what}.{call} Lower the learning "
            "rate (--lr), clip gradients, or guard the log/exp/division there.",
            {"step": k, "start": losses[0], "nonfinite": bad, **op_detail(site, from_inf)},
        )]
    start = losses[0]
    limit = DIVERGE_FACTOR * abs(start)
    for i, x in enumerate(losses):
        if x > limit and x - start > 1e-3:
            where = _fastest_layer(run, i - 1) if i >= 1 else ""
            blame = (f"; the largest update before it was {_label(where)}'s" if where else "")
            return [Finding(
                "diverging", "error", where,
                f"The loss climbed from {start:.4g} to {x:.4g} at step {i + 1} (over {DIVERGE_FACTOR:g}x its start)"
                f"{blame}. Lower the learning rate (--lr) or add normalisation / gradient clipping.",
                {"step": i + 1, "start": start, "loss": x},
            )]
    return []


def nonfinite_gradients(rows: tuple[ModuleRow, ...], run: TrainingRun) -> list[Finding]:
    k = run.nonfinite_grad_step
    if k is None:
        return []
    # without an origin: of the modules whose parameters got NaN/Inf, the latest in the forward
    # is the first that backward reached with them
    order = {r.path: r.order if r.order is not None else -1 for r in rows}
    hit = run.nonfinite_grad_modules
    first = max(hit, key=lambda p: order.get(p, -1)) if hit else ""
    return nonfinite_grad(run.grad_origin, len(hit), first, where=f"Step {k}'s backward pass",
                          detail={"step": k, "loss": run.loss[k - 1] if len(run.loss) >= k else None})


def _fastest_layer(run: TrainingRun, step_index: int) -> str:
    if not 0 <= step_index < len(run.step_ratios):
        return ""
    ratios = [(r, p) for r, p in zip(run.step_ratios[step_index], run.ratio_modules) if math.isfinite(r)]
    return max(ratios)[1] if ratios else ""


def _dead_items(stats: object, functional: Iterable[object], type_name: str) -> dict[str, tuple[float, int, int]]:
    """op -> (dead fraction, units, samples per unit), for units that can be judged."""
    items = {}
    st = stats
    if st is not None and getattr(st, "dead_fraction", None) is not None:
        items[type_name] = (st.dead_fraction, st.units or 0, st.samples_per_unit or 0)
    for f in functional:
        if f.dead_fraction is not None:
            items[f.op] = (f.dead_fraction, f.units or 0, f.samples_per_unit or 0)
    return {op: v for op, v in items.items() if v[1] >= DEAD_MIN_UNITS and v[2] >= DEAD_MIN_SAMPLES}


def end_dead_fraction(run: TrainingRun, path: str) -> float | None:
    """The largest dead fraction among a module's activations on the last step's forward."""
    m = run.end_measures.get(path)
    if m is None:
        return None
    values = [v for v in ([m.stats.dead_fraction] if m.stats is not None else []) if v is not None]
    values += [f.dead_fraction for f in m.functional if f.dead_fraction is not None]
    return max(values) if values else None


INF = math.inf
# what each rectifier-like activation can output (rounded outward), module types and functional ops
OUTPUT_RANGE: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("ReLU", "F.relu", "F.relu_", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_",
                     "aten.relu", "aten.relu_"), (0.0, INF)),
    **dict.fromkeys(("ReLU6", "F.relu6"), (0.0, 6.0)),
    **dict.fromkeys(("Hardswish", "F.hardswish", "aten.hardswish"), (-0.375, INF)),
    **dict.fromkeys(("GELU", "F.gelu", "aten.gelu"), (-0.17, INF)),
    **dict.fromkeys(("SiLU", "F.silu", "aten.silu"), (-0.28, INF)),
    **dict.fromkeys(("Mish", "F.mish", "aten.mish"), (-0.31, INF)),
}


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {'∞)' if hi == INF else f'{hi:.3g}]'}"


def dying_units(rows: tuple[ModuleRow, ...], run: TrainingRun) -> list[Finding]:
    out = []
    # an activation after the last layer with parameters shapes the output itself: judged only
    # against a regression target (SqueezeNet's ReLU on class scores under cross-entropy: the loss
    # pushes the wrong classes below zero on purpose)
    last_weighted = max((r.order for r in rows if r.own_params and r.order is not None), default=-1)
    for r in rows:
        m = run.end_measures.get(r.path)
        if m is None:
            continue
        at_output = r.order is not None and r.order > last_weighted
        if at_output and run.target_range is None:
            continue
        end = _dead_items(m.stats, m.functional, r.type)
        start = _dead_items(r.stats, r.functional, r.type)
        for op, (dead, units, _) in end.items():
            before = start.get(op, (0.0, 0, 0))[0]
            if dead < DEAD_WARN or before >= DEAD_WARN:
                continue
            if at_output:
                out += _dying_output(r, op, dead, before, units, run)
                continue
            inside = "" if op == r.type else f" ({op} inside its forward)"
            out.append(Finding(
                "dying_units", "error" if dead >= DEAD_ERROR else "warning", r.path,
                f"{_label(r.path)}{inside}: {dead:.0%} of {units:,} units are dead after {run.steps_run} steps "
                f"({before:.0%} at step 0): updates pushed them below zero for every sample. Lower the learning "
                "rate (--lr), look at the layer before it, or use LeakyReLU/GELU.",
                {"end_dead_fraction": round(dead, 4), "start_dead_fraction": round(before, 4), "units": units,
                 "op": op},
            ))
    return out


def _dying_output(r: ModuleRow, op: str, dead: float, before: float, units: int, run: TrainingRun) -> list[Finding]:
    """Dead units of the output activation, when the regression targets leave its range."""
    span = OUTPUT_RANGE.get(op)
    if span is None or run.target_range is None:
        return []
    lo, hi = span
    t_lo, t_hi = run.target_range
    if t_lo >= lo and t_hi <= hi:
        return []  # the targets are reachable: units that died there may rightly output 0
    side = f"reach {t_lo:.3g}" if t_lo < lo else f"reach {t_hi:.3g}"
    drawn = ("; these are the random targets inspectr drew, give example_target (or target=) for yours"
             if "random target" in run.loss_name else "")
    inside = "" if op == r.type else f" ({op} inside its forward)"
    zero = "0" if lo == 0 else "about 0"
    return [Finding(
        "dying_units", "error", r.path,
        f"{_label(r.path)}{inside}: {dead:.0%} of {units:,} output units are dead after {run.steps_run} steps "
        f"({before:.0%} at step 0), so the model outputs {zero} there for every sample. {op} comes after "
        f"the last layer with weights, its outputs lie in {_interval(lo, hi)}, and the targets {side} (they span "
        f"{_interval(t_lo, t_hi)}{drawn}): the loss pushes those units out of the range, where {op} passes no "
        "gradient back. Return the last layer's values without the activation, use one whose range covers "
        "the targets, or rescale the targets into its range.",
        {"end_dead_fraction": round(dead, 4), "start_dead_fraction": round(before, 4), "units": units, "op": op,
         "output": True, "activation_range": [lo, hi], "target_range": [t_lo, t_hi]},
    )]


def update_ratio(rows: tuple[ModuleRow, ...], run: TrainingRun) -> list[Finding]:
    by_path = {r.path: r for r in rows}
    judged: dict[str, float] = {}
    for path, ratio in run.update_ratio.items():
        r = by_path.get(path)
        if r is None or r.type in SPARSE_TYPES:
            continue
        numel = sum(p.numel for p in r.parameters if p.requires_grad and p.shared_with is None)
        norm = run.start_norm.get(path, 0.0)
        if numel == 0 or norm / math.sqrt(numel) < UPDATE_MIN_RMS:
            continue
        judged[path] = ratio
    if len(judged) < 3:
        return []
    inside = [v for v in judged.values() if UPDATE_LOW <= v <= UPDATE_HIGH]
    if len(inside) * 2 < len(judged):
        return []  # most layers are outside: the learning rate, not one layer
    mid = statistics.median(judged.values())
    out = []
    for path, v in judged.items():
        if UPDATE_LOW <= v <= UPDATE_HIGH or (mid / UPDATE_SPREAD <= v <= mid * UPDATE_SPREAD):
            continue
        high = v > UPDATE_HIGH
        out.append(Finding(
            "update_ratio", "warning", path,
            f"{_label(path)} moves {v:.1e} of its weights per step (median over steps) while the median layer "
            f"moves {mid:.1e}: {'far too fast, its weights are overwritten' if high else 'far too slowly, it barely trains'}"
            f" (useful band {UPDATE_LOW:g} to {UPDATE_HIGH:g}, about 1e-3). Look at its initialisation scale"
            f"{' (weights tiny for their updates)' if high else ' (weights huge for their updates)'}, a constant that "
            "scales it in forward, or give it its own learning rate.",
            {"update_ratio": v, "median": mid},
        ))
    return out


def stuck_parameters(rows: tuple[ModuleRow, ...], run: TrainingRun, unused: set[str]) -> list[Finding]:
    stuck = {n for n in (*run.zero_grad_params, *run.unchanged_params) if n not in unused}
    if not stuck:
        return []
    numel: dict[str, int] = {}
    for r in rows:
        for p in r.parameters:
            if p.shared_with is None:
                numel[f"{r.path}.{p.name}" if r.path else p.name] = p.numel
    below: dict[str, int] = {}
    for name in stuck:
        path = owner_path(name)
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            below[key] = below.get(key, 0) + numel.get(name, 0)
    fully = {r.path for r in rows if r.trainable_params > 0 and below.get(r.path, 0) >= r.trainable_params}
    tops = highest_paths(fully)
    leftover: dict[str, list[str]] = {}
    for name in sorted(stuck):
        owner = owner_path(name)
        if not any(owner == t or t == "" or owner.startswith(t + ".") for t in tops):
            leftover.setdefault(owner, []).append(name.rsplit(".", 1)[-1])
    out = []
    for path in tops:
        n = below.get(path, 0)
        out.append(_stuck_finding(path, f"all {n:,} trainable parameters", run))
    for path, names in leftover.items():
        out.append(_stuck_finding(path, f"its {', '.join(names)}", run))
    return out


def _stuck_finding(path: str, what: str, run: TrainingRun) -> Finding:
    return Finding(
        "stuck_parameters", "warning", path,
        f"{_label(path)}: {what} never changed in {run.steps_run} steps (zero gradient at every step): "
        "something between them and the loss blocks the gradient (a dead activation, a zero multiplier, "
        "a detach or an integer cast).",
        {"steps": run.steps_run},
    )


def frozen_batchnorm(rows: tuple[ModuleRow, ...], paths: list[str], drift: dict[str, float] | None = None,
                     steps: int = 0) -> list[Finding]:
    """BatchNorm layers frozen but in train mode (``paths``), those the forward called."""
    called = {r.path for r in rows if r.calls}
    hit = [p for p in paths if p in called]
    if not hit:
        return []
    return [frozen_batchnorm_finding(hit, drift, f"In {steps} steps")]
