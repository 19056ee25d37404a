"""Provides the findings rules: probe measurements -> problems, each blamed on one module path.

Thresholds (documented in the README; chosen so healthy torchvision and sample models raise
nothing of severity warning or error):

- ``dead_units``: an activation output (``nn.ReLU``/``GELU``/... or a functional ``F.relu``
  inside a ``forward``) where at least DEAD_WARN of the units are zero for every sample and
  position of the probe batch; error from DEAD_ERROR. Needs at least DEAD_MIN_SAMPLES values
  per unit: a healthy unit is then all-zero by chance about once in 65,000 (with 4 samples,
  once in 16, and squeeze-excitation units see nearly the same pooled value for every sample),
  and at least DEAD_MIN_UNITS units. DEAD_WARN is 70%, not 50%: in a randomly initialised
  network without normalisation (SqueezeNet, VGG) a ReLU after a conv on all-positive inputs
  keeps one sign per channel, so about half its channels are zero on noise inputs.
- ``vanishing_gradient``: the loss is a fixed random weighting of the outputs (backward_seed).
  Compare the gradient norm at the input end (the model's float inputs, else the first module that got a gradient) with the
  gradient norm at the output of the last layer with parameters (the head): vanishing when
  the ratio is below VANISH_RATIO. Culprit: the smallest module containing every leaf whose
  gradient norm is below VANISH_RATIO of the head's. (Norms, not RMS: global average pooling
  divides the per-element gradient by H*W, the norm only by sqrt(H*W).) Leaves with exactly zero gradient are
  left out (zero-initialised heads, ConvNeXt's layer scale make tiny but healthy values
  inside blocks; the input end still gets a healthy gradient through the residual stream).
- ``exploding_gradient``: the same ratio above EXPLODE_RATIO, or any output-gradient RMS above
  EXPLODE_RMS; blamed the same way. Both are errors in train mode and info in eval mode:
  with fresh BatchNorm running statistics an eval-mode pass is not how the network trains.
- ``nan`` / ``inf``: the first module (completion order) whose output is non-finite while
  its inputs were finite. Downstream modules are not blamed.
- ``nonfinite_grad``: the forward is finite but a gradient came out NaN/Inf. Blamed on the
  module whose forward called the op whose backward first (in backward order) turned finite
  incoming gradients into NaN/Inf, found by replaying the pass under ``grad_origin``; named with
  the op and the user's line. The modules before it only inherit the NaN. Error.
- ``unused_parameters``: trainable parameters that got no gradient, grouped to the largest
  module whose trainable parameters all got none. Warning in train mode; info in eval mode,
  where skipped branches (auxiliary heads, early exits) are by design.
- ``dead_units`` leaves out outputs that are zero because a parameter is initialised to zero
  (``findings.zero_init``: quiet in a residual branch, ``zero_init_blocks`` without a skip).
- ``zero_gradient`` (info): the gradient reaching a module is exactly zero, e.g. behind a
  zero-initialised head (torchvision's ViT): not a defect at step 0, worth knowing.
"""

from __future__ import annotations

import math
from operator import itemgetter

from inspectr.core.findings.common import (  # noqa: F401 (the thresholds are read from here too)
    DEAD_ERROR,
    DEAD_MIN_SAMPLES,
    DEAD_MIN_UNITS,
    DEAD_WARN,
    EXPLODE_RATIO,
    EXPLODE_RMS,
    VANISH_RATIO,
    common_ancestor,
    highest_paths,
    owner_path,
)
from inspectr.core.findings.op_culprit import op_detail, op_sentence, origin_call, origin_detail
from inspectr.core.findings.zero_init import (
    behind_zero_init,
    explained_by_zero_init,
    zero_init_blocks,
)
from inspectr.core.probe.culprits import nonfinite_culprit
from inspectr.core.probe.grad_origin import GradOrigin
from inspectr.core.probe.run import ProbeResult
from inspectr.core.result import Finding, ModuleRow

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _label(path: str) -> str:
    return path if path else "(root)"


def find_problems(rows: tuple[ModuleRow, ...], result: ProbeResult) -> list[Finding]:
    """All findings for one probe, sorted by severity then execution order."""
    out: list[Finding] = []
    out += _errors(result)
    nonfinite = _nonfinite(result, rows)
    out += nonfinite
    out += _dead(rows, explained_by_zero_init(rows, result), behind_zero_init(rows, result))
    out += zero_init_blocks(result)
    if result.backward == "ran":
        bad_grads = [] if nonfinite else _nonfinite_grad(rows, result)
        out += bad_grads
        if not nonfinite and not bad_grads:  # gradients through NaN/Inf say nothing more
            out += _gradients(rows, result)
        out += _unused(rows, result)
    if len(out) > 1:
        order = {r.path: (r.order if r.order is not None else 10**9) for r in rows}
        out.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), order.get(f.module, 10**9)))
    return out


def _errors(result: ProbeResult) -> list[Finding]:
    e = result.error
    if e is None:
        return []
    where = f"{_label(e.module or '')} ({e.module_type})" if e.module is not None else "an unknown module"
    shapes = f" with inputs {e.input_shapes}" if e.input_shapes else ""
    kind = "forward_error" if e.phase == "forward" else "backward_error"
    advice = ("check the shapes this module receives against what it was built for"
              if e.phase == "forward" else "check custom autograd Functions and in-place ops on tensors autograd saved")
    detail: dict[str, object] = {"exception": e.exception, "input_shapes": list(e.input_shapes)}
    trace = result.op_trace if e.phase == "forward" else None
    why = ""
    if trace is not None and trace.failed is not None:
        failed = trace.failed
        detail.update(op_detail(failed.site))
        detail["explanation"] = failed.explanation
        detail["size_origin"] = failed.size_origin.detail() if failed.size_origin is not None else None
        why = f" {failed.explanation}." if failed.explanation else ""
    elif trace is not None and trace.error_source is not None:
        detail["source"] = trace.error_source.to_dict()
    return [Finding(kind, "error", e.module or "",
                    f"{e.phase.capitalize()} pass failed in {where}{shapes}: {e.exception}: {e.message}.{why} "
                    f"{advice[0].upper()}{advice[1:]}.", detail)]


def _nonfinite(result: ProbeResult, rows: tuple[ModuleRow, ...]) -> list[Finding]:
    path = nonfinite_culprit(result.measures)
    if path is None:
        return []
    row = next(r for r in rows if r.path == path)
    st = row.stats
    out = []
    if st is None:
        return out
    trace = result.op_trace
    for kind, count in (("nan", st.nan), ("inf", st.inf)):
        if count:
            site = None if trace is None else (trace.nan if kind == "nan" else trace.inf)
            from_inf = trace.from_inf if trace is not None and kind == "nan" else None
            why = (op_sentence(site, kind, from_inf) if site is not None
                   else "Look at its log/sqrt/division/exp for out-of-range inputs.")
            out.append(Finding(
                kind, "error", path,
                f"{_label(path)} ({row.type}) turns finite inputs into {count:,} {'NaN' if kind == 'nan' else 'Inf'} values "
                f"of {st.numel:,} (downstream modules only pass them on). {why}",
                {"count": count, "numel": st.numel, **op_detail(site, from_inf)},
            ))
    return out


def _bad(x: float | None) -> bool:
    return x is not None and not math.isfinite(x)


def _nonfinite_grad(rows: tuple[ModuleRow, ...], result: ProbeResult) -> list[Finding]:
    hit = [r for r in rows if _bad(r.grad_norm) or _bad(r.param_grad_norm)]
    if result.grad_origin is None and not hit and not _bad(result.input_grad_norm):
        return []
    # without an origin (the replay could not tell): the latest module in forward order whose
    # gradient is non-finite is the first that backward reached with NaN/Inf
    last = max(hit, key=lambda r: r.order if r.order is not None else -1).path if hit else ""
    return nonfinite_grad(result.grad_origin, len(hit), last)


def nonfinite_grad(origin: GradOrigin | None, modules: int, first_reached: str = "",
                   where: str = "The backward pass", detail: dict[str, object] | None = None) -> list[Finding]:
    """The finding for NaN/Inf gradients from a finite forward, blamed on where backward first made them.

    Args:
        origin: what the replay found; None when it could not tell.
        modules: how many modules got non-finite gradients.
        first_reached: without ``origin``, the module backward first reached with NaN/Inf.
        where: names the pass in the message ("Step 3's backward pass").
        detail: added to the finding's detail.
    """
    extra = detail or {}
    if origin is None:
        return [Finding(
            "nonfinite_grad", "error", first_reached,
            f"{where} produced NaN/Inf gradients from a finite forward, first reaching {_label(first_reached)}; "
            "an op after its output has a derivative that is infinite or overflows there (sqrt or a fractional "
            "pow at 0, log or division near 0, torch.where over NaN/Inf in the branch it does not pick). Keep "
            "that op's input inside its safe range.",
            {"modules": modules, **extra},
        )]
    bad = "NaN" if origin.kind == "nan" else "Inf"
    at = origin_call(origin)
    more = (f" ({origin.later} more op{'s' if origin.later != 1 else ''} did the same later in backward)"
            if origin.later else "")
    inherit = (f"{modules} module{'s' if modules != 1 else ''} end{'' if modules != 1 else 's'} up with "
               "non-finite gradients" if modules else "the gradients before it inherit them")
    if "where(" in origin.code:
        advice = ("torch.where differentiates both branches: the branch it does not pick gets a zero gradient, and "
                  f"0 times the infinite or NaN derivative of {origin.op} at those inputs is NaN. Make the input safe "
                  "before the op (e.g. torch.sqrt(h.clamp_min(1e-12)), or torch.where on the input: "
                  "torch.sqrt(torch.where(h > 0, h, 1))) instead of masking its output.")
    else:
        advice = (f"The derivative of {origin.op} is infinite or overflows at some of its inputs (sqrt or a "
                  "fractional pow at 0, log or division near 0, acos/asin at ±1, exp of large values): keep "
                  "its input inside the safe range (clamp_min(eps), + eps, a parametrisation that stays away "
                  "from 0) or use the stable form (F.logsigmoid, torch.log_softmax, torch.linalg.vector_norm).")
    mtype = f" ({origin.module_type})" if origin.module_type else ""
    place = _label(origin.module) if origin.module is not None else "the loss (outside every module)"
    return [Finding(
        "nonfinite_grad", "error", origin.module or "",
        f"{where} turned finite gradients into {origin.count:,} {bad} value{'s' if origin.count != 1 else ''} "
        f"of {origin.numel:,} in {place}{mtype} at {at}, while the forward stayed finite{more}; {inherit}. {advice}",
        {**origin_detail(origin), "nonfinite": bad, "count": origin.count, "numel": origin.numel,
         "location": origin.location, "code": origin.code, "later": origin.later, "modules": modules, **extra},
    )]


def _dead(rows: tuple[ModuleRow, ...], zero_by_init: set[str], behind: dict[str, str]) -> list[Finding]:
    out = []
    for r in rows:
        if r.path in zero_by_init:
            continue  # zero because a parameter starts at zero, not units the input keeps below zero
        st = r.stats
        functional = r.functional
        if (st is None or st.dead_fraction is None) and not functional:
            continue  # most rows: nothing rectified
        items = []
        if st is not None and st.dead_fraction is not None:
            items.append((r.type, st.dead_fraction, st.units, st.samples_per_unit))
        for f in functional:
            if f.dead_fraction is not None:
                items.append((f.op, f.dead_fraction, f.units, f.samples_per_unit))
        for op, dead, units, spu in items:
            if dead < DEAD_WARN or (units or 0) < DEAD_MIN_UNITS or (spu or 0) < DEAD_MIN_SAMPLES:
                continue
            sev = "error" if dead >= DEAD_ERROR else "warning"
            inside = "" if op == r.type else f" ({op} inside its forward)"
            out.append(Finding(
                "dead_units", sev, r.path,
                f"{_label(r.path)}{inside}: {dead:.0%} of {units:,} units are zero for every sample; "
                + (f"an earlier output is zero because {behind[r.path]} starts at 0, which may be why "
                   "(without a backward pass inspectr cannot tell whether a skip path goes around it); "
                   if r.path in behind else "")
                + "look at the layer before it (bias initialisation, learning rate) or use LeakyReLU.",
                {"dead_fraction": round(dead, 4), "units": units, "op": op},
            ))
    return out


def _gradients(rows: tuple[ModuleRow, ...], result: ProbeResult) -> list[Finding]:
    # each row is read once (20,000-module models): the leaves that got a gradient, as
    # (execution order, gradient RMS, gradient norm, path, row), then put in execution order
    leaves = [(r.order, rms, r.grad_norm, r.path, r) for r in rows
              if r.is_leaf and (rms := r.grad_rms) is not None and r.order is not None]
    if not leaves:
        return []
    leaves.sort(key=itemgetter(0))
    out = []
    zero: list[str] = []
    live: list[tuple[float, float | None, str]] = []  # (RMS, norm, path) of the leaves with a gradient
    head = last = peak = None  # the last live leaf with parameters of its own, the last, the first largest
    for _, rms, _, path, r in leaves:
        if rms == 0.0:
            zero.append(path)
        elif rms > 0.0:
            live.append((rms, r.grad_norm, path))
            last = r
            if r.own_params > 0:
                head = r
            if peak is None or rms > peak.grad_rms:
                peak = r
    if zero and not live:
        out.append(Finding(
            "zero_gradient", "info", common_ancestor(zero),
            "The gradient reaching these modules is exactly zero: a layer after them is initialised "
            "to zero (normal for some heads at step 0) or multiplies by zero.",
            {"modules": len(zero)},
        ))
    if last is None or peak is None:
        return out
    head = head or last
    head_rms = head.grad_rms or 1.0
    entry = result.input_grad_rms if result.input_grad_rms else live[0][0]
    ratio = (entry or 0.0) / head_rms
    severity = "error" if result.mode == "train" else "info"
    # Vanishing compares norms, not RMS: average pooling spreads one gradient over H*W
    # elements, which divides the RMS by H*W but the norm only by sqrt(H*W).
    head_norm = head.grad_norm or 1.0
    entry_norm = result.input_grad_norm if result.input_grad_norm else live[0][1]
    norm_ratio = (entry_norm or 0.0) / head_norm
    if entry_norm and norm_ratio < VANISH_RATIO:
        low = [path for _, norm, path in live if (norm or 0) < head_norm * VANISH_RATIO]
        culprit = common_ancestor(low)
        out.append(Finding(
            "vanishing_gradient", severity, culprit,
            f"Gradients vanish through {_label(culprit)}: norm {entry_norm:.1e} at the input end vs {head_norm:.1e} "
            f"at the last layer {_label(head.path)} ({len(low)} modules below {VANISH_RATIO:g} of it); look at "
            "saturating activations (sigmoid/tanh), depth without residual connections or normalisation, "
            "and initialisation.",
            {"input_grad_norm": entry_norm, "head_grad_norm": head_norm, "ratio": norm_ratio, "modules": len(low)},
        ))
    if ratio > EXPLODE_RATIO or peak.grad_rms > EXPLODE_RMS:
        high = [path for rms, _, path in live if rms > head_rms * EXPLODE_RATIO or rms > EXPLODE_RMS]
        culprit = common_ancestor(high or [peak.path])
        out.append(Finding(
            "exploding_gradient", severity, culprit,
            f"Gradients explode through {_label(culprit)}: RMS up to {peak.grad_rms:.1e} at {_label(peak.path)} "
            f"vs {head_rms:.1e} at the last layer {_label(head.path)}; look at weight initialisation scale, "
            "missing normalisation, learning rate.",
            {"max_grad_rms": peak.grad_rms, "at": peak.path, "ratio": ratio, "modules": len(high)},
        ))
    return out


def _ancestors(path: str) -> list[str]:
    """``path`` and every module above it, up to the root ``""``."""
    out = [path]
    while path:
        path = owner_path(path)
        out.append(path)
    return out


def _unused(rows: tuple[ModuleRow, ...], result: ProbeResult) -> list[Finding]:
    if not result.unused_params:
        return []
    unused = set(result.unused_params)
    owners: dict[str, int] = {}
    for name in unused:
        owners[owner_path(name)] = owners.get(owner_path(name), 0) + 1
    # one pass over the trainable parameters: which modules have a used one in their subtree
    has_used: set[str] = set()
    for r in rows:
        for p in r.parameters:
            full = f"{r.path}.{p.name}" if r.path else p.name
            if p.requires_grad and p.shared_with is None and full not in unused:
                path: str | None = r.path
                while path is not None and path not in has_used:  # what is above it is marked already
                    has_used.add(path)
                    path = owner_path(path) if path else None
    # grow each owner to the largest module whose trainable parameters all went unused
    fully = {r.path for r in rows if r.trainable_params > 0 and r.path not in has_used}
    tops = highest_paths(fully)
    top_set = set(tops)
    leftovers = [o for o in owners if not any(q in top_set for q in _ancestors(o))]
    severity = "warning" if result.mode == "train" else "info"
    out = []
    by_path = {r.path: r for r in rows}
    for path in tops + sorted(leftovers):
        in_fully = path in fully
        count = by_path[path].trainable_params if in_fully else owners[path]
        unit = "trainable parameters" if in_fully else "parameter tensors"
        note = "" if severity == "warning" else " (eval mode: branches skipped in eval are often by design)"
        out.append(Finding(
            "unused_parameters", severity, path,
            f"{_label(path)} has {count:,} {unit} that received no gradient{note}: it is built but not "
            "used on the path to the output; call it in forward, or drop it (DDP will fail on it).",
            {"count": count},
        ))
    return out
