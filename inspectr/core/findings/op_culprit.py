"""Provides the words and detail keys for the torch call behind a NaN/Inf: which call, whether it made
the value or passed it on, the user's line, and what to do about that call.

Shared by the probe's ``nan``/``inf`` findings, ``--steps``' ``diverging`` and the watch's
``nonfinite``: ``detail["op"]``, ``detail["op_created"]``, ``detail["source"]`` (README, "Reading
a culprit").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from inspectr.core.probe.grad_origin import GradOrigin, short_location
from inspectr.core.probe.op_trace import OpSite, OpTrace
from inspectr.core.result import Finding

_LOG = ("log", "log2", "log10", "log1p", "xlogy")
_ROOT = ("sqrt", "rsqrt", "pow", "**", "float_power")
_EXP = ("exp", "exp2", "expm1", "cosh", "sinh", "softplus")
_DIV = ("/", "//", "div", "true_divide", "reciprocal", "fmod", "remainder", "%")
_TRIG = ("acos", "asin", "acosh", "atanh", "arccos", "arcsin")


def _tail(op: str) -> str:
    return op.rsplit(".", 1)[-1].rstrip("_")


def op_advice(op: str, kind: str) -> str:
    """What to do about the call that made a NaN/Inf ("" when nothing specific is known)."""
    name = _tail(op)
    if name in _LOG:
        return ("its input has values at or below 0 (log of 0 is -Inf, of a negative NaN): clamp it "
                "(x.clamp_min(1e-12)) or use the stable form (F.log_softmax, F.logsigmoid, torch.log1p)")
    if name in _ROOT:
        return ("its input has negative values (a fractional power of a negative is NaN): clamp it "
                "(x.clamp_min(0), + eps for the gradient) or square what you take the root of")
    if name in _EXP:
        return ("its input is large (exp overflows float32 above about 88): subtract the maximum first "
                "(torch.logsumexp, softmax), clamp the input, or scale it down")
    if name in _DIV:
        return ("a denominator is 0 (x/0 is Inf, 0/0 NaN): add an eps to it or clamp it away from 0")
    if name in _TRIG:
        return "its input leaves the function's domain ([-1, 1] for acos/asin): clamp it"
    if kind == "nan":
        return "look at its inputs for values outside the function's domain"
    return "look at its inputs for values that overflow"


def _place(site: OpSite) -> str:
    src = site.source
    if src is None:
        return f"`{site.written}`"
    return f"`{site.written}` at {src.short}"


def op_sentence(site: OpSite, kind: str, from_inf: OpSite | None = None) -> str:
    """One sentence naming the call behind a NaN/Inf, for a finding's message."""
    bad = "NaN" if kind == "nan" else "Inf"
    if not site.created:
        return (f"The {bad} reaches it through {_place(site)} from an operand that already held it "
                "(a parameter or buffer holding non-finite values, or a tensor made where inspectr could not see).")
    made = f"The {bad} is made by {_place(site)}"
    if kind == "nan" and not site.inputs_finite:
        origin = f" (made by {_place(from_inf)})" if from_inf is not None and from_inf.created else ""
        return f"{made} from Inf operands{origin}: Inf - Inf, 0 × Inf or Inf / Inf; keep the Inf from forming."
    return f"{made} from finite operands: {op_advice(site.op, kind)}."


def op_detail(site: OpSite | None, from_inf: OpSite | None = None) -> dict[str, Any]:
    """The detail keys of a culprit call (none when the replay found no call)."""
    if site is None:
        return {}
    out = site.detail()
    if from_inf is not None:
        out["from_inf"] = from_inf.detail()
    return out


def with_call(finding: Finding, trace: OpTrace | None) -> Finding:
    """``finding`` with the call that made its NaN (else its Inf) named in the message and detail;
    unchanged when the trace found none. A detail that already has a ``source`` (the watch's
    ``nonfinite``: where the value came from) gets the line as ``op_source``."""
    if trace is None:
        return finding
    kind, site = ("nan", trace.nan) if trace.nan is not None else ("inf", trace.inf)
    if site is None:
        return finding
    from_inf = trace.from_inf if kind == "nan" else None
    extra = op_detail(site, from_inf)
    if "source" in finding.detail:
        extra["op_source"] = extra.pop("source")
    return replace(finding, message=f"{finding.message} {op_sentence(site, kind, from_inf)}",
                   detail={**finding.detail, **extra})


def origin_call(origin: GradOrigin) -> str:
    """Where backward made a NaN/Inf, as a message says it: `torch.sqrt` (SqrtBackward0, net.py:41: code)."""
    loc = short_location(origin.location)
    return f"`{origin.op}` ({origin.node}" + (f", {loc}: {origin.code}" if loc and origin.code else
                                              f", {loc}" if loc else "") + ")"


def origin_detail(origin: GradOrigin) -> dict[str, Any]:
    """The detail keys naming the forward call behind a NaN/Inf born in backward."""
    return {"op": origin.op, "op_created": True, "op_module": origin.module, "node": origin.node,
            "source": origin.source.to_dict() if origin.source is not None else None}


def with_grad_origin(finding: Finding, origin: GradOrigin | None) -> Finding:
    """The watch's ``nonfinite`` finding of a step whose forward stayed finite, with the backward
    call that first turned finite gradients into NaN/Inf (found by a replay of the step's forward
    and a backward from the probe's seed) named, blamed on its module; unchanged without one."""
    if origin is None:
        return finding
    bad = "NaN" if origin.kind == "nan" else "Inf"
    place = origin.module if origin.module else ("the root" if origin.module == "" else "the loss")
    sentence = (f"Replayed, the backward first turned finite gradients into {bad} in {place} at "
                f"{origin_call(origin)}: {op_advice(origin.op, origin.kind)}.")
    call = origin_detail(origin)
    call["op_source"] = call.pop("source")  # the watch's detail.source says where the value came from
    detail = {**finding.detail, **call}
    module = origin.module if origin.module is not None else finding.module
    return replace(finding, module=module, message=f"{finding.message} {sentence}", detail=detail)
