"""Provides the module hooks of the probe: shapes, statistics and gradients, module by module.

Gradients are caught with tensor hooks on module outputs, registered from the forward hook:
``register_full_backward_hook`` breaks on outputs later modified in place (every
``ReLU(inplace=True)`` in torchvision).

What keeps a hook cheap (a deep narrow network spends more time in hooks than in its ops):
small outputs and gradients are reduced in batches at the end (``stats``), and known leaf
modules (``flops.LEAF_FLOPS``) run with the functional watch switched off, their FLOPs counted
from the module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from inspectr.core.probe.activations import (
    ACTIVATION_MODULES,
    CHANNEL_FIRST_1D,
    NONNEG_MODULES,
    NONNEG_OPS,
    dead_kind_of,
)
from inspectr.core.probe.flops import leaf_flops
from inspectr.core.probe.grad_stats import GradSquares
from inspectr.core.probe.saved_bytes import SavedBytes
from inspectr.core.probe.stats import OutputStats, StatsAccumulator, finish_stats
from inspectr.core.result import ActivationStats, FunctionalActivation, fast_new
from inspectr.core.state import ParamGuard
from inspectr.core.values import describe, iter_tensors, measurable, structure

if TYPE_CHECKING:
    from inspectr.core.probe.options import ProbeOptions

_PLAIN = (torch.Tensor, nn.Parameter)
# modules whose [B, C, L] outputs make the next 3-D output channel-first too
_SEQUENCE_LAYERS = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.RNNBase, nn.MultiheadAttention)


class ProbeCancelled(Exception):
    """The caller asked the probe to stop; the model is restored all the same."""


@dataclass(slots=True)
class ModuleAcc:
    """What the hooks gather for one module while the pass runs."""

    path: str
    calls: int = 0
    order: int | None = None
    input_shapes: tuple[Any, ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    output_structure: str = ""
    stats: StatsAccumulator | None = None
    functional: dict[str, tuple[str, StatsAccumulator, list[int]]] | None = None
    grad_sq: float = 0.0
    grad_numel: int = 0
    grad_calls: int = 0
    time_s: float = 0.0
    output_bytes: int = 0
    flops_f: int = 0
    flops_b: int = 0
    nonfinite_input: bool | None = None  # set on the first call whose output was non-finite
    nonfinite_done: int | None = None  # completion order of that call


@dataclass(frozen=True)
class ModuleMeasure:
    """What the probe measured for one module (frozen, torch-free)."""

    calls: int
    order: int | None
    input_shapes: tuple[Any, ...]
    output_shapes: tuple[tuple[int, ...], ...]
    output_structure: str
    stats: ActivationStats | None
    functional: tuple[FunctionalActivation, ...]
    grad_norm: float | None
    grad_rms: float | None
    time_ms: float | None
    nonfinite_input: bool | None = None
    nonfinite_done: int | None = None
    saved_bytes: int | None = None  # saved for backward while this module ran (itself, not children)
    output_bytes: int = 0  # bytes of its outputs, over all calls


_TYPE_FACTS: dict[type, tuple[str | None, bool, bool, bool]] = {}


def type_facts(cls: type) -> tuple[str | None, bool, bool, bool]:
    """(dead-unit kind, channel-first 1-D layer, sequence layer, never negative) of a module
    class, worked out once per class (the probe's hooks and the watch's sampler read them)."""
    facts = _TYPE_FACTS.get(cls)
    if facts is None:
        facts = (dead_kind_of(cls), issubclass(cls, CHANNEL_FIRST_1D), issubclass(cls, _SEQUENCE_LAYERS),
                 issubclass(cls, NONNEG_MODULES))
        _TYPE_FACTS[cls] = facts
    return facts


def _inputs_finite(versions: list[tuple[torch.Tensor, int]]) -> bool:
    """Whether the float inputs of a call were finite; inputs changed in place since are skipped."""
    return all(bool(torch.isfinite(x).all()) for x, v in versions if not x.is_meta and x._version == v)


class ModuleHooks:
    """The forward hooks on every module of one model, and what they gathered."""

    def __init__(self, named: list[tuple[str, nn.Module]], params: list[tuple[str, torch.Tensor]],
                 options: ProbeOptions) -> None:
        self.named = named
        self.params = params
        self.opts = options
        self.types: dict[str, type[nn.Module]] = {path: type(mod) for path, mod in named}
        self.acc: dict[str, ModuleAcc] = {path: ModuleAcc(path) for path, _ in named}
        # (path, args, kwargs, start time, [(float input, version)]) of every module running
        self.stack: list[tuple[str, tuple[Any, ...], dict[str, Any], float, list[tuple[torch.Tensor, int]]]] = []
        self.next_order = 0
        self.done = 0
        self.handles: list[RemovableHandle] = []
        self.hooked: list[nn.Module] = []  # modules whose hook dicts hold our two hooks
        self.hook_ids = (-1, -1)
        self.grad_handles: list[RemovableHandle] = []
        self.last_channel_first_1d = False
        self.record_grads = False
        self.shape_only = False
        self.outputs = OutputStats(options.histograms)
        self.grads = GradSquares()
        # small outputs whose gradient autograd keeps for us (``retain_grad``: no Python call in
        # backward): id(tensor) -> [tensor, version, grad_fn, output_nr, owners, captured grad]
        self.retained: dict[int, list[Any]] = {}
        self.retained_bytes = 0
        self.old_versions: list[list[Any]] = []  # retained entries whose tensor changed in place
        # the functional watch switched off while a known leaf module runs (see flops.LEAF_FLOPS)
        self.quiet: Any = None
        # parameters a forward may change in place (e.g. clamp_ under no_grad): copied first
        self.guard = ParamGuard([])
        self.saved: SavedBytes | None = None  # set when the pass records what backward needs

    def count_saved(self, keep: bool = True) -> SavedBytes:
        """Start counting the bytes autograd saves, per innermost running module (``keep``: see
        ``SavedBytes``)."""
        self.saved = SavedBytes(self.stack, [p for _, p in self.params], keep)
        return self.saved

    def guard_params(self) -> None:
        self.guard = ParamGuard([p for _, p in self.params])

    # -- hooks
    def install(self) -> None:
        # Hooks go straight into each module's hook dicts under two ids reserved once: the public
        # ``register_forward_*_hook`` builds a handle with weak references per call, 0.3 s for
        # 20,000 modules, more than their forward costs. ``remove`` takes them out again.
        ids = RemovableHandle.next_id
        RemovableHandle.next_id += 2
        self.hook_ids = (ids, ids + 1)
        for path, mod in self.named:
            # A ScriptModule refuses hooks, yet runs nn.Module's when Python calls it (the root, or a
            # scripted child of a Python module); the submodules its compiled code calls run none.
            scripted = isinstance(mod, torch.jit.ScriptModule)
            leaf = None if scripted else leaf_flops(mod)
            pre, post = self._pre(path, leaf is not None), self._post(path, mod, leaf)
            try:
                mod._forward_pre_hooks[ids] = pre
                mod._forward_pre_hooks_with_kwargs[ids] = True
                mod._forward_hooks[ids + 1] = post
                mod._forward_hooks_with_kwargs[ids + 1] = True
            except (AttributeError, TypeError):  # a module without nn.Module's hook dicts
                owner = nn.Module if scripted else type(mod)
                self.handles.append(owner.register_forward_pre_hook(mod, pre, with_kwargs=True))
                self.handles.append(owner.register_forward_hook(mod, post, with_kwargs=True))
                continue
            self.hooked.append(mod)

    def remove(self) -> None:
        self.loud()
        pre, post = self.hook_ids
        for mod in self.hooked:
            mod._forward_pre_hooks.pop(pre, None)
            mod._forward_pre_hooks_with_kwargs.pop(pre, None)
            mod._forward_hooks.pop(post, None)
            mod._forward_hooks_with_kwargs.pop(post, None)
        for h in self.handles + self.grad_handles:
            h.remove()
        self.hooked.clear()
        self.handles.clear()
        self.grad_handles.clear()

    def loud(self) -> None:
        """Switch the functional watch back on (a leaf that raised never reached its post-hook)."""
        if self.quiet is not None:
            quiet, self.quiet = self.quiet, None
            quiet.__exit__(None, None, None)

    def _pre(self, path: str, known_leaf: bool) -> Callable[..., None]:
        a = self.acc[path]
        timing = self.opts.timing
        cancelled = self.opts.cancelled
        progress = self.opts.progress
        total = len(self.named)
        stack = self.stack
        no_torch_function = torch._C.DisableTorchFunction
        strided = torch.strided

        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self.quiet is not None:
                # a known leaf raised and the model caught it: drop its frame, watch again
                self.loud()
                if stack:
                    stack.pop()
            # our own tensor calls must not reach the functional watch (Tensor methods dispatch
            # too); a known leaf runs its whole forward without it (its post-hook turns it back on)
            quiet = no_torch_function()
            quiet.__enter__()
            try:
                if a.order is None:
                    a.order = self.next_order
                    self.next_order += 1
                    a.input_shapes = tuple(describe(x) for x in args) + ((describe(kwargs),) if kwargs else ())
                    # let a waiting app stop a long probe: checked every 64 modules, not only between phases
                    if self.next_order % 64 == 0:
                        if cancelled is not None and cancelled():
                            raise ProbeCancelled()
                        if progress is not None:
                            progress("probe: forward", self.next_order, total)
                versions = [(t, t._version) for t in args if type(t) in _PLAIN and t.is_floating_point()
                            and t.layout == strided]
                if kwargs:
                    versions += [(t, t._version) for t in kwargs.values() if type(t) in _PLAIN
                                 and t.is_floating_point() and t.layout == strided]
                stack.append((path, args, kwargs, time.perf_counter() if timing else 0.0, versions))
            finally:
                if known_leaf and stack and stack[-1][0] == path:
                    self.quiet = quiet
                else:
                    quiet.__exit__(None, None, None)

        return hook

    def _post(self, path: str, mod: nn.Module, leaf: Any) -> Callable[..., None]:
        a = self.acc[path]
        kind, is_c1d, seq_layer, nonneg = type_facts(type(mod))
        sets_layout = (is_c1d or seq_layer) and any(p is not None for p in mod._parameters.values())
        timing = self.opts.timing
        flops = self.opts.flops and leaf is not None
        grad_hook = self._grad_hook(a)
        outputs = self.outputs
        set_grad = torch._C._set_grad_enabled

        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            # A forward that raises never gets here, so its frame stays on the stack and names
            # the culprit. Frames above ours belong to calls the model caught itself: drop them.
            stack = self.stack
            if not stack or stack[-1][0] != path:
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i][0] == path:
                        break
                else:
                    return
                del stack[i + 1:]
            _, _, _, t0, versions = stack.pop()
            grad_on = torch.is_grad_enabled()
            quiet = self.quiet
            if quiet is None:
                quiet = torch._C.DisableTorchFunction()
                quiet.__enter__()
            else:
                self.quiet = None
            set_grad(False)  # our copies and reductions must not enter the autograd graph
            try:
                measure(m, args, output, t0, versions, grad_on)
            finally:
                set_grad(grad_on)
                quiet.__exit__(None, None, None)

        def measure(m: nn.Module, args: tuple[Any, ...], output: Any, t0: float,
                    versions: list[tuple[torch.Tensor, int]], grad_on: bool) -> None:
            if timing:
                a.time_s += time.perf_counter() - t0
            a.calls += 1
            self.done += 1
            if type(output) is torch.Tensor:
                tensors: Any = (output,)
                if a.calls == 1:
                    a.output_shapes = (tuple(output.shape),)
                    a.output_structure = structure(output)
                a.output_bytes += output.numel() * output.element_size()
            else:
                every = list(iter_tensors(output))
                tensors = list({id(t): t for t in every}.values())  # the same tensor twice counts once
                if a.calls == 1:
                    a.output_shapes = tuple(tuple(t.shape) for t in every)
                    a.output_structure = structure(output)
                a.output_bytes += sum(t.numel() * t.element_size() for t in tensors)
            if flops:
                fl = leaf(m, args, output)
                if fl is not None:
                    a.flops_f += fl[0]
                    if grad_on and self.record_grads:
                        a.flops_b += fl[1]
            if sets_layout:
                self.last_channel_first_1d = is_c1d
            c1d = is_c1d or self.last_channel_first_1d
            tag = None
            held = 0
            for t in tensors:
                if not t.is_floating_point():
                    continue
                if not self.shape_only and measurable(t):
                    if a.stats is None:
                        a.stats = StatsAccumulator()
                    if tag is None:
                        changed = False
                        for x, v in versions:
                            changed = changed or x._version != v
                            held += x.nbytes
                        tag = (a, self.done, versions, changed)
                    try:
                        bad = outputs.observe(a.stats, t, kind, c1d, nonneg, tag, held)
                    except RuntimeError:  # an exotic tensor must never fail the user's forward
                        bad = False
                    if bad and a.nonfinite_done is None:
                        # rare path: were the inputs already non-finite? (blame goes upstream then);
                        # an input this module changed in place was its doing: blame it
                        a.nonfinite_done = self.done
                        a.nonfinite_input = not tag[3] and not _inputs_finite(versions)
                if grad_on and self.record_grads and t.requires_grad:
                    self._watch_grad(a, t, grad_hook)
            if outputs.pending_bytes > outputs.BATCH_BYTES:
                self.flush()

        return hook

    def flush(self) -> None:
        """Reduce the waiting small outputs; settle the NaN/Inf bookkeeping of their calls."""
        with torch._C.DisableTorchFunction():
            bad = self.outputs.flush()
            for a, done, versions, changed in bad:
                if a.nonfinite_done is None or done < a.nonfinite_done:
                    a.nonfinite_done = done
                    a.nonfinite_input = not changed and not _inputs_finite(versions)

    RETAIN_NUMEL = 1 << 16  # outputs up to this size have their gradient retained, not hooked
    RETAIN_BYTES = 128 << 20  # and up to this much of them in all (they and their gradients live on)

    def _watch_grad(self, a: ModuleAcc, t: torch.Tensor, grad_hook: Callable[[torch.Tensor], None]) -> None:
        """Arrange to learn the gradient that reaches output ``t`` of the module ``a``."""
        entry = self.retained.get(id(t))
        if entry is not None and entry[0] is t and entry[1] == t._version:
            entry[4].append(a)  # a container returning its child's output: one gradient, two owners
            return
        fn = t.grad_fn
        nbytes = t.numel() * t.element_size()
        if (fn is None or t.numel() > self.RETAIN_NUMEL or self.retained_bytes + nbytes > self.RETAIN_BYTES
                or t.dtype not in (torch.float32, torch.float64) or t.layout != torch.strided):
            self.grad_handles.append(t.register_hook(grad_hook))
            return
        if entry is not None and entry[0] is t:  # changed in place since: the old version keeps its own
            self._hook_old_version(entry)
            del self.retained[id(t)]
        self.retained[id(t)] = [t, t._version, fn, t.output_nr, [a], None]
        self.retained_bytes += nbytes
        t.retain_grad()

    def _hook_old_version(self, entry: list[Any]) -> None:
        """A retained output was changed in place: ``.grad`` will follow the new version, so catch
        the gradient of the version the module returned at the node that made it."""
        nr = entry[3]

        def capture(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            entry[5] = grad_outputs[nr]

        self.grad_handles.append(entry[2].register_prehook(capture))
        entry[0] = None  # read the captured gradient, not .grad
        self.old_versions.append(entry)

    def before_backward(self) -> None:
        """Outputs retained and then changed in place by a later op: hook their old versions."""
        for key, entry in list(self.retained.items()):
            if entry[0]._version != entry[1]:
                self._hook_old_version(entry)
                del self.retained[key]

    def collect_grads(self) -> None:
        """After backward (done or failed): hand the retained gradients to the reductions."""
        for entry in [*self.retained.values(), *self.old_versions]:
            t, owners = entry[0], entry[4]
            g = entry[5] if t is None else t.grad
            if t is not None and g is not None:
                t.grad = None
            if g is None:
                continue
            for a in owners:
                a.grad_calls += 1
                if not self.shape_only:
                    a.grad_numel += g.numel()
                    self.grads.add(a, g)
        self.retained = {}
        self.old_versions = []
        self.retained_bytes = 0

    def leaf_paths(self) -> set[str]:
        return {path for path, mod in self.named if not any(c is not None for c in mod._modules.values())}

    def _grad_hook(self, a: ModuleAcc) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor | None) -> None:
            if g is None:  # autograd sends None through nodes without a derivative (quantized ops)
                return
            a.grad_calls += 1
            if self.shape_only:
                return
            a.grad_numel += g.numel()
            self.grads.add(a, g)

        return hook

    def on_flops(self, fl: tuple[int, int]) -> None:
        if not self.stack:
            return
        a = self.acc[self.stack[-1][0]]
        a.flops_f += fl[0]
        if self.record_grads and torch.is_grad_enabled():
            a.flops_b += fl[1]

    def inclusive_flops(self) -> tuple[dict[str, int], dict[str, int]]:
        fwd = {p: a.flops_f for p, a in self.acc.items()}
        bwd = {p: a.flops_b for p, a in self.acc.items()}
        for path in sorted(self.acc, key=lambda p: -p.count(".") if p else 1):
            if path == "":
                continue
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            if parent in fwd:
                fwd[parent] += fwd[path]
                bwd[parent] += bwd[path]
        return fwd, bwd

    def on_functional(self, spec: tuple[str, str], out: torch.Tensor) -> None:
        if not self.stack or self.shape_only or not out.is_floating_point() or not measurable(out):
            return
        path = self.stack[-1][0]
        if issubclass(self.types[path], ACTIVATION_MODULES):
            return  # the module's own hook already measures it
        op, kind = spec
        a = self.acc[path]
        if a.functional is None:
            a.functional = {}
        entry = a.functional.get(op)
        if entry is None:
            entry = (op, StatsAccumulator(), [0])
            a.functional[op] = entry
        entry[2][0] += 1
        with torch._C.DisableTorchFunction(), torch.no_grad():
            self.outputs.observe(entry[1], out, kind, self.last_channel_first_1d, nonneg=op in NONNEG_OPS)

    # -- results
    def measures(self) -> dict[str, ModuleMeasure]:
        self.flush()
        for sq, a in self.grads.totals():
            a.grad_sq += sq
        out: dict[str, ModuleMeasure] = {}
        timing = self.opts.timing
        saved = self.saved.by_module if self.saved is not None else None
        for path, a in self.acc.items():
            grad_norm = grad_rms = None
            if a.grad_calls and not self.shape_only:
                grad_norm = math.sqrt(a.grad_sq)
                grad_rms = math.sqrt(a.grad_sq / max(a.grad_numel, 1))
            funcs = []
            for op, sacc, calls in (a.functional or {}).values():
                st = finish_stats(sacc)
                if st is None:
                    continue
                funcs.append(FunctionalActivation(op, calls[0], st.dead_fraction, st.units,
                                                  st.samples_per_unit, st.zero_fraction))
            out[path] = fast_new(
                ModuleMeasure,
                calls=a.calls,
                order=a.order,
                input_shapes=a.input_shapes,
                output_shapes=a.output_shapes,
                output_structure=a.output_structure,
                stats=finish_stats(a.stats),
                functional=tuple(funcs),
                grad_norm=grad_norm,
                grad_rms=grad_rms,
                time_ms=a.time_s * 1000 if timing and a.calls else None,
                nonfinite_input=a.nonfinite_input,
                nonfinite_done=a.nonfinite_done,
                saved_bytes=saved.get(path, 0) if saved is not None and a.calls else None,
                output_bytes=a.output_bytes,
            )
        return out

