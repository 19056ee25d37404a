"""Provides the probe: one forward (and backward) pass with hooks that measures every module and leaves no trace.

The pass is put together from rooms with one job each (see STYLE.md, "The probe"):
``hooks`` (module hooks: shapes, statistics, gradients), ``watch`` (functional activations,
FLOPs, in-place ops on parameters), ``stats`` (reductions), ``state`` (everything put back in
``finally``: buffers, train/eval flags, ``.grad``, ``requires_grad``, RNG, also on Ctrl-C) and
``values`` (pictures of inputs and outputs). This module runs them in order and names the
culprit when the model's forward or backward raises.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import traceback
import warnings
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import torch
from torch import nn

from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.probe.culprits import nonfinite_culprit
from inspectr.core.probe.functional import FunctionalWatch
from inspectr.core.probe.grad_origin import GradOrigin, GradOriginTracer, has_nonfinite
from inspectr.core.probe.grad_stats import norms as stats_norms
from inspectr.core.probe.hooks import ModuleHooks, ModuleMeasure, ProbeCancelled
from inspectr.core.probe.op_trace import OpTrace, OpTracer
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.saved_bytes import NO_SAVES as _NO_SAVES
from inspectr.core.probe.zero_init import ZeroInit, zero_inits
from inspectr.core.result import ProbeError
from inspectr.core.sources.quantized import backward_stops, is_quantized
from inspectr.core.state import gc_paused, preserved, seed_torch
from inspectr.core.values import describe, dtype_name, iter_tensors, structure
from inspectr.core.walk import ModelWalk, walk

__all__ = ["ModuleMeasure", "ProbeCancelled", "ProbeResult", "run_probe"]


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe pass."""

    measures: dict[str, ModuleMeasure]
    param_grad_norms: dict[str, float | None]  # full parameter name -> norm (None: no grad)
    unused_params: tuple[str, ...]  # trainable parameters that received no gradient
    flops_forward: dict[str, int]
    flops_backward: dict[str, int]
    error: ProbeError | None
    backward: str  # "ran" | "skipped" | "failed" | "off"
    backward_note: str
    mode: str
    seconds: float
    input_grad_rms: float | None
    output_structure: str
    input_grad_norm: float | None = None
    zero_init: tuple[ZeroInit, ...] = ()  # outputs that are zero because a parameter starts at zero
    # where backward first made a NaN/Inf from finite gradients (traced only when some gradient
    # came out non-finite while the forward stayed finite)
    grad_origin: GradOrigin | None = None
    saved_counted: bool = False  # the measures hold the bytes autograd saved for backward
    # the torch call and the user's line behind a NaN/Inf forward output or a forward error (traced
    # by a replay only when the pass saw one)
    op_trace: OpTrace | None = None



def _error_location(exc: BaseException) -> str:
    """The innermost frame of the traceback outside torch, as ``file:line``."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        f = fr.filename.replace("\\", "/")
        if "/torch/" not in f and "/inspectr/core/" not in f:
            return f"{fr.filename}:{fr.lineno}"
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text


def run_probe(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: ProbeOptions | None = None,
    param_map: dict[str, torch.Tensor] | None = None,
    tree: ModelWalk | None = None,
) -> ProbeResult:
    """Run one forward (and backward) pass over ``model`` and measure every module.

    Args:
        model: the model; it is left exactly as it was.
        args, kwargs: the inputs (already on the probe device). Floating-point tensors get
            ``requires_grad`` on a copy so gradients reach the first layer even when frozen.
        options: see ``ProbeOptions``.
        param_map: when given, the pass runs through ``torch.func.functional_call`` with
            these tensors (name -> tensor, parameters and buffers) in place of the model's own:
            used to probe on another device or on meta tensors without touching the model.
        tree: the model's ``walk`` when the caller has it already.

    Returns:
        A ``ProbeResult``; a failing forward or backward is reported in it, never raised.
    """
    opts = options or ProbeOptions()
    tree = tree or walk(model)
    probe = ModuleHooks(list(tree.modules), list(tree.params), opts)
    meta = any(t.is_meta for t in iter_tensors((args, kwargs))) or (
        param_map is not None and any(t.is_meta for t in param_map.values())
    )
    probe.shape_only = meta
    extra = [t for t in (param_map or {}).values() if isinstance(t, nn.Parameter)]
    if param_map is None and not meta:
        probe.guard_params()
    with gc_paused():
        result = _run(model, args, kwargs, opts, param_map, probe, meta, extra, tree)
        if result.error is not None and result.error.phase == "forward" and not opts.backward and opts.count_saved:
            # A forward-only pass keeps no saved tensors. A forward that needs them (a gradient
            # taken inside it) runs again keeping them; one that fails only while autograd
            # records (an in-place op on a leaf that requires grad) runs again without recording,
            # as a forward-only probe did before it counted, and its memory block counts apart.
            needs_saves = _NO_SAVES in result.error.message
            again = ModuleHooks(list(tree.modules), list(tree.params), opts)
            again.shape_only = meta
            if param_map is None and not meta:
                again.guard_params()
            retry = replace(opts, keep_saved=True) if needs_saves else replace(opts, count_saved=False)
            result = _run(model, args, kwargs, retry, param_map, again, meta, extra, tree)
        if _grads_nonfinite(result, meta):
            result = replace(result, grad_origin=_trace_grad_origin(model, args, kwargs, opts, param_map, tree, extra))
        failed = result.error is not None and result.error.phase == "forward"
        culprit = None if failed or meta else nonfinite_culprit(result.measures)
        if failed or culprit is not None:
            result = replace(result, op_trace=trace_ops(model, args, kwargs, opts, param_map, tree, extra, culprit))
        return result


def trace_ops(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opts: ProbeOptions,
              param_map: dict[str, torch.Tensor] | None, tree: ModelWalk, extra: list[torch.Tensor],
              culprit: str | None) -> OpTrace | None:
    """Replay the forward (same mode, seeds and inputs, autograd as in the pass) under ``OpTracer``:
    with ``culprit`` (the module whose output first went non-finite) the torch call behind its
    NaN/Inf, else the call the forward raised in. None when the replay itself could not run."""
    record = opts.backward or opts.count_saved
    params = [p for _, p in tree.params] if param_map is None else []
    tracer = OpTracer(list(tree.modules), params, check=culprit is not None, watch=culprit)
    raised: BaseException | None = None
    try:
        with preserved(model, extra, tracer.guard.backups, tree), torch.set_grad_enabled(record):
            _start(model, opts)
            want = record and not any(p.requires_grad for _, p in tree.params)
            p_args = with_input_grads(args, want, []) if record else args
            p_kwargs = with_input_grads(kwargs, want, []) if record else kwargs
            with tracer.watching():
                try:
                    _forward(model, param_map, p_args, p_kwargs)
                except (KeyboardInterrupt, ProbeCancelled):
                    raise
                except Exception as exc:  # the failure being traced
                    raised = exc
            trace = tracer.result(raised)
    except (KeyboardInterrupt, ProbeCancelled):
        raise
    except Exception:  # the probe already reported the failure: a replay that cannot trace it adds nothing
        return None
    finally:
        raised = None
    return trace


def with_input_grads(x: Any, every: bool, leaves: list[torch.Tensor]) -> Any:
    """``x`` with each floating tensor that takes a gradient (every one when ``every``, else
    those that already require one) replaced by a non-leaf copy of a new leaf that requires
    grad (in-place ops on the copy are fine); the new leaves are appended to ``leaves``."""
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() and (every or x.requires_grad):
            leaf = x.detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf.clone()
        return x
    if isinstance(x, dict):
        return {k: with_input_grads(v, every, leaves) for k, v in x.items()}
    if isinstance(x, list):
        return [with_input_grads(v, every, leaves) for v in x]
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(with_input_grads(v, every, leaves) for v in x)
    return x


def _grads_nonfinite(result: ProbeResult, meta: bool) -> bool:
    """Backward ran from a finite forward and some gradient came out NaN/Inf."""
    if result.backward != "ran" or meta:
        return False
    measures = result.measures.values()
    # C-level loops (20,000-module models): completion orders start at 1, so any() sees every
    # one; a sum is non-finite when any term is (or, harmlessly, when finite terms overflow)
    if any(map(attrgetter("nonfinite_done"), measures)):
        return False  # a non-finite forward: its gradients are non-finite too, the forward finding says why
    total = (sum(filter(None, result.param_grad_norms.values()))
             + sum(filter(None, map(attrgetter("grad_norm"), measures))))
    return not math.isfinite(total) or has_nonfinite([result.input_grad_norm])


def _trace_grad_origin(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opts: ProbeOptions,
                       param_map: dict[str, torch.Tensor] | None, tree: ModelWalk,
                       extra: list[torch.Tensor]) -> GradOrigin | None:
    """Replay the pass (same mode, seeds, inputs and output weights) under ``GradOriginTracer``:
    the backward op that first turned finite gradients into NaN/Inf. None when the replay could
    not tell (it raised, or its gradients stayed finite)."""
    tracer = GradOriginTracer(list(tree.modules), [p for _, p in tree.params] if param_map is None else [])
    try:
        with preserved(model, extra, tracer.guard.backups, tree), torch.enable_grad():
            _start(model, opts)  # as the pass did: the same draws (dropout, backward seeds)
            # as in the pass: inputs get a gradient only when no parameter trains
            want = not any(p.requires_grad for _, p in tree.params)

            p_args, p_kwargs = with_input_grads(args, want, []), with_input_grads(kwargs, want, [])
            with tracer.watching():
                output = _forward(model, param_map, p_args, p_kwargs)
            floats = list({id(t): t for t in iter_tensors(output)
                           if (t.is_floating_point() or t.is_complex()) and t.requires_grad}.values())
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*autograd kernel was not registered")
                torch.autograd.backward(floats, seed_gradients(floats, opts.seed))
            del output, floats
    except (KeyboardInterrupt, ProbeCancelled):
        raise
    except Exception:  # the probe already ran this pass: a replay that cannot is no new finding
        tracer.close()
        return None
    return tracer.close()


def _start(model: nn.Module, opts: ProbeOptions) -> None:
    """The pass's mode and seeds, so that a replay draws what the pass drew (dropout, backward seeds)."""
    if opts.mode == "train":
        model.train()
    elif opts.mode == "eval":
        model.eval()
    seed_torch(opts.seed)
    random.seed(opts.seed)


def _forward(model: nn.Module, param_map: dict[str, torch.Tensor] | None, args: Any, kwargs: Any) -> Any:
    """The model's forward, through ``torch.func.functional_call`` when the pass runs on ``param_map``."""
    if param_map is not None:
        return torch.func.functional_call(model, param_map, args, kwargs)
    return model(*args, **kwargs)


def _run(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opts: ProbeOptions,
         param_map: dict[str, torch.Tensor] | None, probe: ModuleHooks, meta: bool,
         extra: list[torch.Tensor], tree: ModelWalk) -> ProbeResult:
    error: ProbeError | None = None
    backward = "off" if not opts.backward else "skipped"
    backward_note = ""
    flops_f: dict[str, int] = {}
    flops_b: dict[str, int] = {}
    param_norms: dict[str, float | None] = {}
    unused: list[str] = []
    input_grad_rms: float | None = None
    input_grad_norm: float | None = None
    out_structure = ""
    # record the graph: for backward, or (forward-only) to count its saved bytes in this same pass
    record = opts.backward or opts.count_saved
    start = time.perf_counter()
    mode_name = opts.mode

    def check_cancel() -> None:
        if opts.cancelled is not None and opts.cancelled():
            raise ProbeCancelled()

    with preserved(model, extra, probe.guard.backups, tree):
        _start(model, opts)
        mode_name = "train" if model.training else "eval"
        leaves: list[torch.Tensor] = []

        # Inputs get requires_grad only when no parameter trains: then gradients still flow for
        # the report. Otherwise, as in training, frozen leading layers get none, and the pass
        # skips the input-gradient convolution (13% of a ResNet-50 step on CPU).
        want_input_grad = record and not any(p.requires_grad for _, p in probe.params)

        probe.install()
        try:
            check_cancel()
            with torch.set_grad_enabled(record):
                p_args = with_input_grads(args, want_input_grad, leaves) if record else args
                p_kwargs = with_input_grads(kwargs, want_input_grad, leaves) if record else kwargs
                if opts.progress is not None:
                    opts.progress("probe: forward", 0, len(probe.named))
                probe.record_grads = opts.backward
                output: Any = None
                keep = opts.backward or opts.keep_saved
                saved = probe.count_saved(keep=keep).counting() if record else contextlib.nullcontext()
                try:
                    with FunctionalWatch(probe), saved:
                        output = _forward(model, param_map, p_args, p_kwargs)
                except (KeyboardInterrupt, ProbeCancelled):
                    raise
                except Exception as exc:  # the user's model raised: name the culprit
                    probe.loud()
                    path, shapes = "", ()
                    if probe.stack:
                        path, a_args, a_kwargs = probe.stack[-1][:3]
                        shapes = tuple(describe(x) for x in a_args) + ((describe(a_kwargs),) if a_kwargs else ())
                    loc = _error_location(exc)
                    error = ProbeError(
                        phase="forward",
                        module=path,
                        module_type=probe.types[path].__name__ if path in probe.types else None,
                        exception=type(exc).__name__,
                        message=_first_line(exc) + (f" (at {loc})" if loc else ""),
                        input_shapes=shapes,
                    )
                    backward = "skipped" if opts.backward else "off"
                    backward_note = "the forward pass failed"
                    output = None
                probe.flush()  # before backward: the batched statistics let their inputs go
                if error is None:
                    out_structure = structure(output)
                    check_cancel()
                if error is None and opts.backward:
                    floats = list({id(t): t for t in iter_tensors(output)
                                   if (t.is_floating_point() or t.is_complex()) and t.requires_grad}.values())
                    if not floats:
                        kinds = sorted({dtype_name(t.dtype) for t in iter_tensors(output)})
                        backward_note = (
                            "no floating-point output has a gradient path "
                            f"(outputs: {', '.join(kinds) or 'no tensors'}); forward statistics only"
                        )
                    else:
                        seeds = seed_gradients(floats, opts.seed)  # not sum(): see backward_seed
                        probe.before_backward()
                        if opts.progress is not None:
                            opts.progress("probe: backward", 0, 0)
                        try:
                            with warnings.catch_warnings():
                                # said in the report instead (quantized.backward_stops)
                                warnings.filterwarnings("ignore", message=".*autograd kernel was not registered")
                                torch.autograd.backward(floats, seeds)
                            backward = "ran"
                        except (KeyboardInterrupt, ProbeCancelled):
                            raise
                        except Exception as exc:
                            backward = "failed"
                            probe.collect_grads()
                            culprit = _backward_culprit(probe)
                            loc = _error_location(exc)
                            error = ProbeError(
                                phase="backward",
                                module=culprit,
                                module_type=probe.types[culprit].__name__ if culprit is not None else None,
                                exception=type(exc).__name__,
                                message=_first_line(exc) + (f" (at {loc})" if loc else ""),
                                input_shapes=probe.acc[culprit].input_shapes if culprit is not None else (),
                            )
                        if backward == "ran":
                            param_norms, unused = _param_grads(probe.params, param_map, meta)
                            stops = [p for p, m in probe.named if probe.acc[p].calls and is_quantized(m)]
                            if stops:
                                unused, backward_note = backward_stops(
                                    stops, {p: a.order for p, a in probe.acc.items()}, unused)
                            if leaves and not meta:
                                sq = 0.0
                                n = 0
                                for leaf in leaves:
                                    if leaf.grad is not None:
                                        sq += float(leaf.grad.float().square().sum())
                                        n += leaf.grad.numel()
                                input_grad_rms = math.sqrt(sq / n) if n else None
                                input_grad_norm = math.sqrt(sq) if n else None
                del output
        finally:
            # frames of modules a failed or cancelled forward left running hold their inputs, and
            # so the graph; the graph's saved tensors hold the saved-bytes counter, which holds
            # this stack: a cycle through autograd that no collector sees
            probe.stack.clear()
            probe.collect_grads()
            probe.remove()
    if opts.flops:
        flops_f, flops_b = probe.inclusive_flops()
        if backward != "ran":
            flops_b = {}
    measures = probe.measures()
    return ProbeResult(
        measures=measures,
        param_grad_norms=param_norms,
        unused_params=tuple(unused),
        flops_forward=flops_f,
        flops_backward=flops_b,
        error=error,
        backward=backward,
        backward_note=backward_note,
        mode=mode_name,
        seconds=time.perf_counter() - start,
        input_grad_rms=input_grad_rms,
        output_structure=out_structure,
        input_grad_norm=input_grad_norm,
        zero_init=() if meta else zero_inits(measures, tree, backward == "ran", param_map),
        saved_counted=record and error is None,
    )


def _backward_culprit(probe: ModuleHooks) -> str | None:
    """The module whose backward raised. Backward runs in reverse: of the leaves whose output
    gradient arrived, the one that ran first in the forward (its backward ran next); else the
    latest module whose output expected a gradient that never came."""
    leaves = probe.leaf_paths()
    ran = sorted((a.order, p) for p, a in probe.acc.items() if a.order is not None and a.output_shapes)
    arrived = [p for _, p in ran if p and p in leaves and probe.acc[p].grad_calls]
    if arrived:
        return arrived[0]
    missing = [p for _, p in ran if not probe.acc[p].grad_calls]
    # leaves first: the op that failed lives in a module without children
    missing_leaves = [p for p in missing if p in leaves]
    if missing_leaves:
        return missing_leaves[-1]
    return missing[-1] if missing else None


def _param_grads(params: list[tuple[str, torch.Tensor]], param_map: dict[str, torch.Tensor] | None,
                 meta: bool) -> tuple[dict[str, float | None], list[str]]:
    names: list[str] = []
    tensors: list[torch.Tensor] = []
    norms: dict[str, float | None] = {}
    unused: list[str] = []
    for name, p in params:
        q = param_map.get(name, p) if param_map is not None else p
        if not p.requires_grad:
            norms[name] = None
            continue
        if q.grad is None:
            norms[name] = None
            unused.append(name)
            continue
        names.append(name)
        tensors.append(q.grad)
    if tensors and not meta:
        for name, v in zip(names, stats_norms(tensors).tolist()):
            norms[name] = float(v)
    else:
        for name in names:
            norms[name] = None
    return norms, unused
