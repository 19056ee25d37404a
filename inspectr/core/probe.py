"""Provides the probe: one forward (and backward) pass with hooks that measure every module and leave no trace.

How it stays cheap and safe (see STYLE.md, "The probe"):
- statistics are reduced to a few numbers inside the forward hook and the tensor is dropped;
- gradients are caught with tensor hooks on module outputs (``register_full_backward_hook``
  breaks on outputs later modified in place, e.g. every ``ReLU(inplace=True)`` in torchvision);
- functional activations (``F.relu`` inside a ``forward``) are seen by a ``TorchFunctionMode``
  and attributed to the module whose ``forward`` called them;
- everything the pass can change is put back in ``finally``: buffers, train/eval flags,
  ``.grad``, ``requires_grad``, RNG state, hooks; also on Ctrl-C.
"""

from __future__ import annotations

import gc
import math
import random
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from inspectr.core.flops import count_flops
from inspectr.core.result import ActivationStats, FunctionalActivation, ProbeError
from inspectr.core.summary import dtype_name

# Outputs of these are checked for dead units: "rectifier" means a dead unit is exactly 0,
# "smooth" means |y| stays below SMOOTH_DEAD_TOL (GELU/SiLU of inputs below about -5.3).
RECTIFIER_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Threshold)
SMOOTH_MODULES: tuple[type[nn.Module], ...] = (nn.GELU, nn.SiLU, nn.Mish)
SMOOTH_DEAD_TOL = 1e-6

_F = torch.nn.functional
FUNCTIONAL_ACTIVATIONS: dict[Any, tuple[str, str]] = {
    _F.relu: ("F.relu", "rectifier"),
    _F.relu_: ("F.relu_", "rectifier"),
    torch.relu: ("torch.relu", "rectifier"),
    torch.relu_: ("torch.relu_", "rectifier"),
    torch.Tensor.relu: ("Tensor.relu", "rectifier"),
    torch.Tensor.relu_: ("Tensor.relu_", "rectifier"),
    _F.relu6: ("F.relu6", "rectifier"),
    _F.hardswish: ("F.hardswish", "rectifier"),
    _F.gelu: ("F.gelu", "smooth"),
    _F.silu: ("F.silu", "smooth"),
    _F.mish: ("F.mish", "smooth"),
}
ACTIVATION_MODULES = RECTIFIER_MODULES + SMOOTH_MODULES
# A 3-D output is [batch, channels, length] after these, [batch, seq, features] otherwise.
_CHANNEL_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d,
                     nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
HISTOGRAM_BINS = 24
_INPLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__"}
_NONNEG_OPS = {"F.relu", "F.relu_", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_", "F.relu6"}
# Outputs where an exact zero is a measure-zero event (as for SMOOTH_MODULES): zeros are counted
# on a sample (see _reduce).
_DENSE_OUTPUT = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.modules.batchnorm._NormBase,
                 nn.LayerNorm, nn.GroupNorm)


@dataclass
class ProbeOptions:
    """What the probe does; mirrors the CLI flags."""

    backward: bool = True
    mode: str = "own"  # "own" | "train" | "eval"
    seed: int = 0
    flops: bool = True
    timing: bool = False
    histograms: bool = False
    cancelled: Callable[[], bool] | None = None  # checked between phases (app workers)


class ProbeCancelled(Exception):
    """The caller asked the probe to stop; the model is restored all the same."""


@dataclass
class _StatsAcc:
    """Running sums for one module's outputs over all calls (plain floats after each call)."""

    numel: int = 0
    total: float = 0.0
    sq_total: float = 0.0
    nonzero: int = 0
    nan: int = 0
    inf: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    # bool per unit, one per call: a shared activation (torchvision's BasicBlock calls one ReLU
    # twice) is judged call by call, or a live call site would hide a dead one
    alive: list[torch.Tensor] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    histogram: list[int] | None = None


@dataclass
class _ModuleAcc:
    path: str
    calls: int = 0
    order: int | None = None
    input_shapes: tuple[Any, ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    output_structure: str = ""
    stats: _StatsAcc | None = None
    functional: dict[str, tuple[str, _StatsAcc, list[int]]] = field(default_factory=dict)
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


# ---------------------------------------------------------------- describing values


def describe(x: Any) -> Any:
    """A JSON-able picture of a value: tensors become their shape, containers recurse."""
    if isinstance(x, torch.Tensor):
        return list(x.shape)
    if isinstance(x, dict):
        return {str(k): describe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [describe(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x if not isinstance(x, str) else "str"
    return type(x).__name__


def iter_tensors(x: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested output: tuples, lists, dicts, namedtuples, dataclass-like objects."""
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from iter_tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from iter_tensors(v)
    elif hasattr(x, "__dataclass_fields__"):
        for name in x.__dataclass_fields__:
            yield from iter_tensors(getattr(x, name, None))


def structure(x: Any, depth: int = 0) -> str:
    """A short human description of an output, e.g. ``(Tensor[2, 10], int, list[3])``."""
    if isinstance(x, torch.Tensor):
        dt = "" if x.dtype == torch.float32 else f" {str(x.dtype).replace('torch.', '')}"
        return f"Tensor[{', '.join(map(str, x.shape))}]{dt}"
    if depth > 2:
        return "…"
    if isinstance(x, dict):
        items = list(x.items())
        inner = ", ".join(f"{k}: {structure(v, depth + 1)}" for k, v in items[:4])
        return "{" + inner + (", …" if len(items) > 4 else "") + "}"
    if isinstance(x, (list, tuple)):
        name = type(x).__name__ if hasattr(x, "_fields") else ("" if isinstance(x, tuple) else "list")
        if len(x) > 4 and all(not isinstance(v, torch.Tensor) for v in x):
            kinds = sorted({type(v).__name__ for v in x})
            return f"{name or 'tuple'}[{len(x)}×{'/'.join(kinds)}]"
        inner = ", ".join(structure(v, depth + 1) for v in list(x)[:4])
        more = f", … {len(x)} items" if len(x) > 4 else ""
        return f"{name}({inner}{more})" if name != "list" else f"[{inner}{more}]"
    if x is None:
        return "None"
    return type(x).__name__


# ---------------------------------------------------------------- statistics


def _unit_dims(t: torch.Tensor, channel_first_1d: bool) -> tuple[int, tuple[int, ...]] | None:
    """(unit dim, other dims) for dead-unit counting; None when there are no units."""
    nd = t.dim()
    if nd < 2:
        return None
    if nd == 2:
        unit = 1
    elif nd == 3:
        unit = 1 if channel_first_1d else 2
    else:
        unit = 1
    return unit, tuple(d for d in range(nd) if d != unit)


STAT_SAMPLE = 1 << 14


def _sample_step(n: int, shape: tuple[int, ...]) -> int:
    """A prime stride near n / STAT_SAMPLE that divides no dimension's extent, so the sample
    walks across rows and columns instead of down one column (the padded edge, say)."""
    step = max(2, n // STAT_SAMPLE)
    extents = set()
    size = 1
    for d in reversed(shape):
        size *= int(d)
        extents.add(size)

    def is_prime(k: int) -> bool:
        return k > 1 and all(k % q for q in range(2, int(k ** 0.5) + 1))

    while not is_prime(step) or any(e % step == 0 for e in extents if e < n):
        step += 1
    return step


def _count_nonzero(x: torch.Tensor) -> float:
    """Exact nonzero count; a float32 sum of ones is exact below 2**24 and 3x faster than float64."""
    ones = x.sign().abs_()
    return float(ones.sum() if x.numel() < 1 << 24 else ones.sum(dtype=torch.float64))


def _reduce(x: torch.Tensor, zeros_expected: bool,
            unit_max: torch.Tensor | None = None) -> tuple[float, float, float, float, float]:
    """(sum, sum of squares, min, max, nonzero count) of a float tensor, cheaply.

    Min and max (and so NaN/Inf detection) always come from a full pass (``aminmax``). For
    tensors over STAT_SAMPLE values, the sums and the zero count come from an evenly strided
    sample of STAT_SAMPLE values, scaled up: mean and std are then estimates (to well under 1%).
    Zeros are counted over the whole tensor where they are expected (rectifier and dropout
    outputs, unknown modules, or any output whose min or max is exactly 0), so ``zero_fraction``
    of rectified outputs is exact; conv/linear/norm and GELU/SiLU outputs, where an exact zero is
    a measure-zero event, are counted on the sample. ``unit_max`` (per-unit maxima of a rectifier's output, already computed for
    dead units) stands in for the min/max pass: such outputs are >= 0 and mostly hold a zero. This keeps a probe near a bare training step (``var_mean`` and
    ``count_nonzero`` alone cost 10-40x a ``sum`` on CPU).
    """
    n = x.numel()
    if n > STAT_SAMPLE and x.is_contiguous():
        sample = x.view(-1)[:: _sample_step(n, x.shape)]
    else:
        sample = x
    scale = n / sample.numel()
    # few op launches and one sync: on small tensors the launches, not the arithmetic, dominate
    if unit_max is not None:
        nonzero = _count_nonzero(x)
        mx, total, norm = torch.stack([unit_max.max(), sample.sum(), torch.linalg.vector_norm(sample)]).tolist()
        mn = 0.0 if nonzero < n else float(x.min())
    else:
        lo, hi = torch.aminmax(x)
        mn, mx, total, norm = torch.stack([lo, hi, sample.sum(), torch.linalg.vector_norm(sample)]).tolist()
        if mn > 0 or mx < 0:
            nonzero = float(n)
        elif zeros_expected or mn == 0 or mx == 0:
            nonzero = _count_nonzero(x)
        else:
            nonzero = float(torch.count_nonzero(sample)) * scale
    return total * scale, norm * norm * scale, mn, mx, nonzero


def _square_sum(g: torch.Tensor) -> torch.Tensor:
    """Sum of squares of a gradient: exact up to 4 * STAT_SAMPLE values, else estimated from the
    same prime-strided sample as the forward statistics (a full pass over every output gradient
    costs a fifth of a ResNet-50 backward on CPU)."""
    if g.dtype not in (torch.float32, torch.float64):
        g = g.float()
    n = g.numel()
    if n > 4 * STAT_SAMPLE and g.is_contiguous() and g.layout == torch.strided:
        sample = g.view(-1)[:: _sample_step(n, tuple(g.shape))]
        return torch.linalg.vector_norm(sample).square() * (n / sample.numel())
    return torch.linalg.vector_norm(g).square()


def _measurable(t: torch.Tensor) -> bool:
    """Plain dense tensors only: sparse, nested and wrapper subclasses are shown, not measured."""
    return t.layout == torch.strided and type(t) in (torch.Tensor, nn.Parameter) and not t.is_nested


def _accumulate(acc: _StatsAcc, t: torch.Tensor, dead_kind: str | None, channel_first_1d: bool,
                histogram: bool, cache: dict[int, Any] | None = None, zeros_expected: bool = True,
                nonneg: bool = False) -> None:
    x = t.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    n = x.numel()
    if n == 0:
        return
    dims = _unit_dims(x, channel_first_1d) if dead_kind is not None else None
    unit_max = x.amax(dim=dims[1]) if dims is not None else None
    # a container's output is usually its last child's output: same tensor, same numbers
    key = (id(t), t._version, t.data_ptr(), tuple(t.shape))
    hit = cache.get(key[0]) if cache is not None else None
    if hit is not None and hit[0] == key:
        total, sq, mn, mx, nz, nan, inf = hit[1]
    else:
        total, sq, mn, mx, nz = _reduce(x, zeros_expected or dead_kind == "rectifier",
                                        unit_max if nonneg else None)
        nan = inf = 0
        if not (math.isfinite(mn) and math.isfinite(mx)):
            nan = int(torch.isnan(x).sum())
            inf = int(torch.isinf(x).sum())
            finite = x[torch.isfinite(x)]
            if finite.numel():
                total, sq, mn, mx, _ = _reduce(finite, True)
            else:
                total = sq = 0.0
                mn, mx = math.inf, -math.inf
        if cache is not None:
            cache[key[0]] = (key, (total, sq, mn, mx, nz, nan, inf))
    acc.numel += n
    acc.total += total
    acc.sq_total += sq
    acc.nonzero += int(nz)
    acc.nan += nan
    acc.inf += inf
    acc.lo = min(acc.lo, mn)
    acc.hi = max(acc.hi, mx)
    if histogram and acc.histogram is None and math.isfinite(mn) and math.isfinite(mx) and nan + inf == 0:
        hist = torch.histc(x, bins=HISTOGRAM_BINS, min=mn, max=mx if mx > mn else mn + 1.0)
        acc.histogram = [int(c) for c in hist.tolist()]
    if dims is None or unit_max is None:
        return
    unit, others = dims
    tol = 0.0 if dead_kind == "rectifier" else SMOOTH_DEAD_TOL
    alive = unit_max > tol
    if mn < -tol and not bool(alive.all()):  # only then can a negative value keep a unit alive
        alive |= x.amin(dim=others) < -tol
    acc.alive.append(alive.cpu())
    acc.samples.append(n // max(alive.numel(), 1))


def _finish_stats(acc: _StatsAcc | None) -> ActivationStats | None:
    if acc is None or acc.numel == 0:
        return None
    finite_n = acc.numel - acc.nan - acc.inf
    mean = acc.total / finite_n if finite_n else math.nan
    var = acc.sq_total / finite_n - mean * mean if finite_n else math.nan
    dead = units = spu = None
    if acc.alive:
        worst = max(range(len(acc.alive)),
                    key=lambda i: (1.0 - float(acc.alive[i].sum()) / max(acc.alive[i].numel(), 1), acc.samples[i]))
        units = acc.alive[worst].numel()
        dead = 1.0 - float(acc.alive[worst].sum()) / max(units, 1)
        spu = acc.samples[worst]
    return ActivationStats(
        numel=acc.numel,
        mean=mean,
        std=math.sqrt(max(var, 0.0)) if finite_n else math.nan,
        min=acc.lo if finite_n else math.nan,
        max=acc.hi if finite_n else math.nan,
        zero_fraction=1.0 - acc.nonzero / acc.numel,
        nan=acc.nan,
        inf=acc.inf,
        dead_fraction=dead,
        units=units,
        samples_per_unit=spu,
        histogram=tuple(acc.histogram or ()),
    )


# ---------------------------------------------------------------- restoring the model


@contextmanager
def preserved(model: nn.Module, extra_params: list[torch.Tensor] | None = None,
              backups: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> Iterator[None]:
    """Put back everything a forward/backward pass can change, even on error or Ctrl-C.

    Restores: every module's parameter and buffer dicts as they were (identity, and buffers
    registered or set during the pass are dropped), buffer values (BatchNorm running stats),
    ``.training`` of every module, ``requires_grad`` and ``.grad`` of every parameter, the
    torch/CUDA/Python RNG states, and the values of parameters a forward changed in place
    (``backups``: tensor id -> (tensor, copy taken just before the in-place op)).
    """
    modules = list(model.modules())
    training = [(m, m.training) for m in modules]
    dicts = [(m, dict(m._parameters), dict(m._buffers)) for m in modules]
    copies = {id(b): (b, b.detach().clone()) for _, _, bs in dicts for b in bs.values()
              if b is not None and not b.is_meta}
    params = [p for _, ps, _ in dicts for p in ps.values() if p is not None]
    unique = {id(p): p for p in params}
    for p in extra_params or []:
        unique[id(p)] = p
    grads = [(p, p.grad, p.requires_grad) for p in unique.values()]
    py_state = random.getstate()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        for p in unique.values():
            p.grad = None
        yield
    finally:
        for m, ps, bs in dicts:
            for now, then in ((m._parameters, ps), (m._buffers, bs)):
                if len(now) != len(then) or any(now.get(k) is not v for k, v in then.items()):
                    now.clear()
                    now.update(then)
        with torch.no_grad():
            for b, copy in copies.values():
                b.copy_(copy)
            for t, copy in (backups or {}).values():
                t.copy_(copy)
        for p, g, rg in grads:
            p.grad = g
            if p.requires_grad != rg:
                p.requires_grad_(rg)
        for m, flag in training:
            m.training = flag
        random.setstate(py_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


# ---------------------------------------------------------------- the probe


class _FunctionalWatch(TorchFunctionMode):
    """Sees functional activations and hands them to the probe with the calling module."""

    def __init__(self, probe: _Probe) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        guard = self.probe.param_ptrs
        if guard and args and isinstance(args[0], torch.Tensor):
            name = getattr(func, "__name__", "")
            if (name.endswith("_") and not name.startswith("__")) or name in _INPLACE_DUNDERS:
                self.probe.backup_if_param(args[0])
        out = func(*args, **kwargs)
        if self.probe.opts.flops:
            fl = count_flops(func, args, kwargs, out)
            if fl is not None:
                self.probe.on_flops(fl)
        spec = FUNCTIONAL_ACTIVATIONS.get(func)
        if spec is not None and isinstance(out, torch.Tensor):
            self.probe.on_functional(spec, out)
        return out


class _Probe:
    def __init__(self, model: nn.Module, options: ProbeOptions) -> None:
        self.model = model
        self.opts = options
        self.paths: dict[int, str] = {}
        self.types: dict[str, type[nn.Module]] = {}
        self.acc: dict[str, _ModuleAcc] = {}
        self.named = list(model.named_modules())
        self.params = _named_params(model, self.named)
        for path, mod in self.named:
            self.paths[id(mod)] = path
            self.types[path] = type(mod)
            self.acc[path] = _ModuleAcc(path)
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
        self.param_ptrs: dict[int, torch.Tensor] = {}
        self.backups: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def guard_params(self) -> None:
        self.param_ptrs = {p.data_ptr(): p for _, p in self.params if not p.is_meta}

    def backup_if_param(self, t: torch.Tensor) -> None:
        if t.is_meta or t.layout != torch.strided:
            return
        p = self.param_ptrs.get(t.data_ptr())
        if p is not None and id(p) not in self.backups:
            self.backups[id(p)] = (p, p.detach().clone())

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
        dead_kind = ("rectifier" if isinstance(mod, RECTIFIER_MODULES)
                     else "smooth" if isinstance(mod, SMOOTH_MODULES) else None)
        is_c1d = isinstance(mod, _CHANNEL_FIRST_1D)
        has_params = any(p is not None for p in mod._parameters.values())
        zeros_expected = not isinstance(mod, _DENSE_OUTPUT + SMOOTH_MODULES)
        nonneg = isinstance(mod, (nn.ReLU, nn.ReLU6))

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
                    if not self.shape_only and _measurable(t):
                        if a.stats is None:
                            a.stats = _StatsAcc()
                        try:
                            _accumulate(a.stats, t, dead_kind, is_c1d or self.last_channel_first_1d,
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

    def _grad_hook(self, a: _ModuleAcc) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            self.grad_seen.append(a.path)
            if self.shape_only:
                return
            hit = self.grad_cache.get(id(g))
            if hit is not None and hit[0] is g:
                sq = hit[1]
            else:
                with torch.no_grad():
                    sq = _square_sum(g.detach())
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
            entry = (op, _StatsAcc(), [0])
            a.functional[op] = entry
        entry[2][0] += 1
        with torch._C.DisableTorchFunction():
            _accumulate(entry[1], out, kind, self.last_channel_first_1d, False,
                        zeros_expected=kind == "rectifier", nonneg=op in _NONNEG_OPS)

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
                st = _finish_stats(sacc)
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
                stats=_finish_stats(a.stats),
                functional=tuple(funcs),
                grad_norm=grad_norm,
                grad_rms=grad_rms,
                time_ms=a.time_s * 1000 if self.opts.timing and a.calls else None,
                nonfinite_input=a.nonfinite_input,
                nonfinite_done=a.nonfinite_done,
            )
        return out


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

    Returns:
        A ``ProbeResult``; a failing forward or backward is reported in it, never raised.
    """
    opts = options or ProbeOptions()
    probe = _Probe(model, opts)
    meta = any(t.is_meta for t in iter_tensors((args, kwargs))) or (
        param_map is not None and any(t.is_meta for t in param_map.values())
    )
    probe.shape_only = meta
    extra = [t for t in (param_map or {}).values() if isinstance(t, nn.Parameter)]
    if param_map is None and not meta:
        probe.guard_params()
    # The pass allocates thousands of small objects (hook handles, closures, stat tuples) while
    # the model's graph is alive: cyclic GC runs then scan it over and over. Pause it meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(model, args, kwargs, opts, param_map, probe, meta, extra)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opts: ProbeOptions,
         param_map: dict[str, torch.Tensor] | None, probe: _Probe, meta: bool,
         extra: list[torch.Tensor]) -> ProbeResult:
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
    start = time.perf_counter()
    mode_name = opts.mode

    def check_cancel() -> None:
        if opts.cancelled is not None and opts.cancelled():
            raise ProbeCancelled()

    with preserved(model, extra, probe.backups):
        if opts.mode == "train":
            model.train()
        elif opts.mode == "eval":
            model.eval()
        mode_name = "train" if model.training else "eval"
        torch.manual_seed(opts.seed)
        random.seed(opts.seed)
        leaves: list[torch.Tensor] = []

        # Inputs get requires_grad only when no parameter trains: then gradients still flow for
        # the report. Otherwise, as in training, frozen leading layers get none, and the pass
        # skips the input-gradient convolution (13% of a ResNet-50 step on CPU).
        want_input_grad = opts.backward and not any(p.requires_grad for _, p in probe.params)

        def prepare(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                if x.is_floating_point() and opts.backward and (want_input_grad or x.requires_grad):
                    leaf = x.detach().requires_grad_(True)
                    leaves.append(leaf)
                    return leaf.clone()  # a non-leaf copy: in-place ops on it are fine
                return x
            if isinstance(x, dict):
                return {k: prepare(v) for k, v in x.items()}
            if isinstance(x, list):
                return [prepare(v) for v in x]
            if isinstance(x, tuple) and not hasattr(x, "_fields"):
                return tuple(prepare(v) for v in x)
            return x

        probe.install()
        try:
            check_cancel()
            with torch.set_grad_enabled(opts.backward):
                p_args = prepare(args)
                p_kwargs = prepare(kwargs)
                probe.record_grads = opts.backward
                output: Any = None
                try:
                    with _FunctionalWatch(probe):
                        if param_map is not None:
                            output = torch.func.functional_call(model, param_map, p_args, p_kwargs)
                        else:
                            output = model(*p_args, **p_kwargs)
                except (KeyboardInterrupt, ProbeCancelled):
                    raise
                except Exception as exc:  # the user's model raised: name the culprit
                    path, shapes = probe.stack[-1][:2] if probe.stack else ("", ())
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
                        loss = sum(t.sum() if not t.is_complex() else t.abs().sum() for t in floats)
                        try:
                            loss.backward()
                            backward = "ran"
                        except (KeyboardInterrupt, ProbeCancelled):
                            raise
                        except Exception as exc:
                            backward = "failed"
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
            probe.remove()
            probe.grad_cache.clear()
            probe.stat_cache.clear()
    if opts.flops:
        flops_f, flops_b = probe.inclusive_flops()
        if backward != "ran":
            flops_b = {}
    return ProbeResult(
        measures=probe.measures(),
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
    )


def _named_params(model: nn.Module,
                  named: list[tuple[str, nn.Module]] | None = None) -> list[tuple[str, torch.Tensor]]:
    """``named_parameters()`` (each tensor once, first name), without its per-module generator cost."""
    seen: set[int] = set()
    out = []
    for path, mod in named if named is not None else model.named_modules():
        for name, p in mod._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{path}.{name}" if path else name, p))
    return out


def _backward_culprit(probe: _Probe) -> str | None:
    """The module whose backward raised: the last leaf whose output gradient arrived (its
    backward ran next); else the latest module whose output expected a gradient that never came."""
    for path in reversed(probe.grad_seen):
        if not any(q.startswith(path + ".") for q in probe.acc if path):
            if path and probe.acc[path].output_shapes:
                return path
    seen = set(probe.grad_seen)
    ran = sorted((a.order, p) for p, a in probe.acc.items() if a.order is not None and a.grad_numel == 0)
    candidates = [p for _, p in ran if p not in seen and probe.acc[p].output_shapes]
    # leaves first: the op that failed lives in a module without children
    leaves = [p for p in candidates if not any(q.startswith(p + ".") for q in candidates if q != p)]
    if leaves:
        return leaves[-1]
    return candidates[-1] if candidates else None


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
        values = torch.stack([t.to(tensors[0].device) for t in torch._foreach_norm(tensors)]).tolist()
        for name, v in zip(names, values):
            norms[name] = float(v)
    else:
        for name in names:
            norms[name] = None
    return norms, unused
