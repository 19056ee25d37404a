"""Provides the module hooks of the probe: shapes, statistics and gradients, module by module.

Gradients are caught with tensor hooks on module outputs, registered from the forward hook:
``register_full_backward_hook`` breaks on outputs later modified in place (every
``ReLU(inplace=True)`` in torchvision).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from inspectr.core.activations import (
    ACTIVATION_MODULES,
    CHANNEL_FIRST_1D,
    DENSE_OUTPUT,
    NONNEG_MODULES,
    NONNEG_OPS,
    dead_kind,
)
from inspectr.core.result import ActivationStats, FunctionalActivation
from inspectr.core.state import ParamGuard
from inspectr.core.stats import StatsAccumulator, accumulate, finish_stats, square_sum
from inspectr.core.values import describe, iter_tensors, measurable, structure

if TYPE_CHECKING:
    from inspectr.core.probe import ProbeOptions


class ProbeCancelled(Exception):
    """The caller asked the probe to stop; the model is restored all the same."""


@dataclass
class ModuleAcc:
    path: str
    calls: int = 0
    order: int | None = None
    input_shapes: tuple[Any, ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    output_structure: str = ""
    stats: StatsAccumulator | None = None
    functional: dict[str, tuple[str, StatsAccumulator, list[int]]] = field(default_factory=dict)
    grad_sq: list[torch.Tensor] = field(default_factory=list)
    grad_numel: int = 0
    time_s: float = 0.0
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



class ModuleHooks:
    def __init__(self, model: nn.Module, options: ProbeOptions) -> None:
        self.model = model
        self.opts = options
        self.paths: dict[int, str] = {}
        self.types: dict[str, type[nn.Module]] = {}
        self.acc: dict[str, ModuleAcc] = {}
        self.named = list(model.named_modules())
        self.params = named_params(self.named)
        for path, mod in self.named:
            self.paths[id(mod)] = path
            self.types[path] = type(mod)
            self.acc[path] = ModuleAcc(path)
        self.stack: list[tuple[str, tuple[Any, ...], float, list[tuple[torch.Tensor, int]]]] = []
        self.next_order = 0
        self.done = 0
        self.handles: list[RemovableHandle] = []
        self.grad_handles: list[RemovableHandle] = []
        self.last_channel_first_1d = False
        self.record_grads = False
        self.grad_seen: list[str] = []
        self.shape_only = False
        self.stat_cache: dict[int, Any] = {}
        self.grad_cache: dict[int, Any] = {}
        # parameters a forward may change in place (e.g. clamp_ under no_grad): copied first
        self.guard = ParamGuard([])

    def guard_params(self) -> None:
        self.guard = ParamGuard([p for _, p in self.params])

    # -- hooks
    def install(self) -> None:
        for path, mod in self.named:
            self.handles.append(mod.register_forward_pre_hook(self._pre(path), with_kwargs=True))
            self.handles.append(mod.register_forward_hook(self._post(path, mod), with_kwargs=True))

    def remove(self) -> None:
        for h in self.handles + self.grad_handles:
            h.remove()
        self.handles.clear()
        self.grad_handles.clear()

    def _pre(self, path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            shapes = tuple(describe(a) for a in args)
            if kwargs:
                shapes = shapes + (describe(kwargs),)
            a = self.acc[path]
            if a.calls == 0:
                a.order = self.next_order
                self.next_order += 1
                a.input_shapes = shapes
                # let a waiting app stop a long probe: checked every 64 modules, not only between phases
                if self.next_order % 64 == 0 and self.opts.cancelled is not None and self.opts.cancelled():
                    raise ProbeCancelled()
            versions = [(t, t._version) for t in (*args, *kwargs.values())
                        if type(t) in (torch.Tensor, nn.Parameter) and t.is_floating_point()
                        and t.layout == torch.strided]
            self.stack.append((path, shapes, time.perf_counter() if self.opts.timing else 0.0, versions))

        return hook

    def _post(self, path: str, mod: nn.Module) -> Callable[..., None]:
        kind = dead_kind(mod)
        is_c1d = isinstance(mod, CHANNEL_FIRST_1D)
        has_params = any(p is not None for p in mod._parameters.values())
        zeros_expected = not isinstance(mod, DENSE_OUTPUT)
        nonneg = isinstance(mod, NONNEG_MODULES)

        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            # A forward that raises never gets here, so its frame stays on the stack and names
            # the culprit. Frames above ours belong to calls the model caught itself: drop them.
            for i in range(len(self.stack) - 1, -1, -1):
                if self.stack[i][0] == path:
                    break
            else:
                return
            del self.stack[i + 1:]
            _, _, t0, versions = self.stack.pop()
            a = self.acc[path]
            if self.opts.timing:
                a.time_s += time.perf_counter() - t0
            a.calls += 1
            all_tensors = list(iter_tensors(output))
            if a.calls == 1:
                a.output_shapes = tuple(tuple(t.shape) for t in all_tensors)
                a.output_structure = structure(output)
            tensors = list({id(t): t for t in all_tensors}.values())  # the same tensor twice counts once
            if has_params and (is_c1d or isinstance(m, (nn.Linear, nn.LayerNorm, nn.Embedding,
                                                        nn.RNNBase, nn.MultiheadAttention))):
                self.last_channel_first_1d = is_c1d
            self.done += 1
            with torch._C.DisableTorchFunction():
                bad_before = (a.stats.nan + a.stats.inf) if a.stats is not None else 0
                for t in tensors:
                    if not t.is_floating_point():
                        continue
                    if not self.shape_only and measurable(t):
                        if a.stats is None:
                            a.stats = StatsAccumulator()
                        try:
                            accumulate(a.stats, t, kind, is_c1d or self.last_channel_first_1d,
                                        self.opts.histograms, self.stat_cache, zeros_expected, nonneg)
                        except RuntimeError:  # an exotic tensor must never fail the user's forward
                            pass
                    if self.record_grads and t.requires_grad:
                        self.grad_handles.append(t.register_hook(self._grad_hook(a)))
                if (a.nonfinite_done is None and a.stats is not None
                        and a.stats.nan + a.stats.inf > bad_before):
                    # rare path: were the inputs already non-finite? (blame goes upstream then)
                    a.nonfinite_done = self.done
                    # an input changed in place was finite or not before: this module changed it,
                    # so it is the one to blame
                    changed = any(t._version != v for t, v in versions)
                    a.nonfinite_input = not changed and any(
                        not bool(torch.isfinite(x).all()) for x, _ in versions if not x.is_meta
                    )

        return hook

    def _grad_hook(self, a: ModuleAcc) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            self.grad_seen.append(a.path)
            if self.shape_only:
                return
            hit = self.grad_cache.get(id(g))
            if hit is not None and hit[0] is g:
                sq = hit[1]
            else:
                with torch.no_grad():
                    sq = square_sum(g.detach())
                self.grad_cache[id(g)] = (g, sq)  # keeps g alive only until the pass ends
            a.grad_sq.append(sq)
            a.grad_numel += g.numel()

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
        if not self.stack or self.shape_only or not out.is_floating_point():
            return
        path = self.stack[-1][0]
        if issubclass(self.types[path], ACTIVATION_MODULES):
            return  # the module's own hook already measures it
        op, kind = spec
        a = self.acc[path]
        entry = a.functional.get(op)
        if entry is None:
            entry = (op, StatsAccumulator(), [0])
            a.functional[op] = entry
        entry[2][0] += 1
        with torch._C.DisableTorchFunction():
            accumulate(entry[1], out, kind, self.last_channel_first_1d, False,
                        zeros_expected=kind == "rectifier", nonneg=op in NONNEG_OPS)

    # -- results
    def measures(self) -> dict[str, ModuleMeasure]:
        out: dict[str, ModuleMeasure] = {}
        for path, a in self.acc.items():
            grad_norm = grad_rms = None
            if a.grad_sq:
                sq = float(torch.stack(a.grad_sq).sum())
                grad_norm = math.sqrt(sq)
                grad_rms = math.sqrt(sq / max(a.grad_numel, 1))
            funcs = []
            for op, sacc, calls in a.functional.values():
                st = finish_stats(sacc)
                if st is None:
                    continue
                funcs.append(FunctionalActivation(op, calls[0], st.dead_fraction, st.units,
                                                  st.samples_per_unit, st.zero_fraction))
            out[path] = ModuleMeasure(
                calls=a.calls,
                order=a.order,
                input_shapes=a.input_shapes,
                output_shapes=a.output_shapes,
                output_structure=a.output_structure,
                stats=finish_stats(a.stats),
                functional=tuple(funcs),
                grad_norm=grad_norm,
                grad_rms=grad_rms,
                time_ms=a.time_s * 1000 if self.opts.timing and a.calls else None,
                nonfinite_input=a.nonfinite_input,
                nonfinite_done=a.nonfinite_done,
            )
        return out


def named_params(named: list[tuple[str, nn.Module]]) -> list[tuple[str, torch.Tensor]]:
    """``named_parameters()`` (each tensor once, first name), without its per-module generator cost."""
    seen: set[int] = set()
    out = []
    for path, mod in named:
        for name, p in mod._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{path}.{name}" if path else name, p))
    return out
