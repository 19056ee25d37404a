"""Provides the frozen result types of an inspection and their JSON form (schema ``inspectr/1``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "inspectr/1"

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class ParamInfo:
    """One parameter owned directly by a module (not by its children)."""

    name: str
    shape: tuple[int, ...]
    numel: int
    dtype: str
    device: str
    requires_grad: bool
    shared_with: str | None = None  # the first path this tensor was seen under, when tied
    grad_norm: float | None = None


@dataclass(frozen=True)
class ActivationStats:
    """Statistics of a module's floating-point outputs over every call of the probe."""

    numel: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan: int
    inf: int
    dead_fraction: float | None = None  # only for rectifier-like outputs
    units: int | None = None
    samples_per_unit: int | None = None
    histogram: tuple[int, ...] = ()  # counts over [min, max] in equal bins (finite values)
    # the figures (of mean, std, min, max, zero_fraction) that came from a sample of a large
    # output (``stats.sample_of``); every other figure is exact
    sampled: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {
            "numel": self.numel,
            "mean": _num(self.mean),
            "std": _num(self.std),
            "min": _num(self.min),
            "max": _num(self.max),
            "zero_fraction": _num(self.zero_fraction),
            "nan": self.nan,
            "inf": self.inf,
            "dead_fraction": _num(self.dead_fraction),
            "units": self.units,
            "sampled": list(self.sampled),
        }
        return d


@dataclass(frozen=True)
class FunctionalActivation:
    """A functional activation (``F.relu``...) called inside a module's own ``forward``."""

    op: str
    calls: int
    dead_fraction: float | None
    units: int | None
    samples_per_unit: int | None
    zero_fraction: float


@dataclass(frozen=True)
class ModuleRow:
    """Everything known about one module: structure plus what the probe measured."""

    path: str
    type: str
    depth: int
    params: int
    own_params: int
    trainable_params: int
    trainable: str  # "all" | "none" | "partial" | "n/a"
    buffers: int  # number of elements in the module's own buffers
    parameters: tuple[ParamInfo, ...] = ()
    aliases: tuple[str, ...] = ()  # other paths under which this same module is registered
    extra_repr: str = ""
    is_leaf: bool = True
    # filled by the probe
    calls: int = 0
    input_shapes: tuple[Any, ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    output_structure: str = ""
    stats: ActivationStats | None = None
    functional: tuple[FunctionalActivation, ...] = ()
    grad_norm: float | None = None
    grad_rms: float | None = None
    param_grad_norm: float | None = None
    flops_forward: int | None = None
    flops_backward: int | None = None
    time_ms: float | None = None
    order: int | None = None  # position of the first call in forward execution order
    saved_bytes: int | None = None  # autograd saved for backward while it ran (not its children)
    output_bytes: int | None = None  # its outputs, over all calls
    packed_params: int = 0  # of ``params``: quantized weights kept packed (no nn.Parameter), in its subtree
    # filled by training steps (``--steps``): its own parameters, and its activation at the end
    update_ratio: float | None = None  # median over steps of ||dw|| / ||w||
    distance_from_init: float | None = None  # ||w_end - w_start||
    train_grad_norm: float | None = None  # median over steps of its parameters' gradient norm
    end_dead_fraction: float | None = None  # dead units on the last step's forward

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "depth": self.depth,
            "params": self.params,
            "own_params": self.own_params,
            "trainable_params": self.trainable_params,
            "trainable": self.trainable,
            "packed_params": self.packed_params,
            "buffers": self.buffers,
            "aliases": list(self.aliases),
            "calls": self.calls,
            "input_shapes": _jsonable(self.input_shapes),
            "output_shapes": [list(s) for s in self.output_shapes],
            "output_structure": self.output_structure,
            "stats": self.stats.to_dict() if self.stats else None,
            "functional_activations": [
                {
                    "op": f.op,
                    "calls": f.calls,
                    "dead_fraction": _num(f.dead_fraction),
                    "units": f.units,
                    "zero_fraction": _num(f.zero_fraction),
                }
                for f in self.functional
            ],
            "grad_norm": _num(self.grad_norm),
            "param_grad_norm": _num(self.param_grad_norm),
            "flops_forward": self.flops_forward,
            "flops_backward": self.flops_backward,
            "saved_bytes": self.saved_bytes,
            "output_bytes": self.output_bytes,
            "time_ms": _num(self.time_ms),
            "update_ratio": _num(self.update_ratio),
            "distance_from_init": _num(self.distance_from_init),
            "train_grad_norm": _num(self.train_grad_norm),
            "end_dead_fraction": _num(self.end_dead_fraction),
            "parameters": [
                {
                    "name": p.name,
                    "shape": list(p.shape),
                    "numel": p.numel,
                    "dtype": p.dtype,
                    "device": p.device,
                    "requires_grad": p.requires_grad,
                    "shared_with": p.shared_with,
                    "grad_norm": _num(p.grad_norm),
                }
                for p in self.parameters
            ],
        }


@dataclass(frozen=True)
class Finding:
    """A problem found in the model, blamed on one module path."""

    kind: str
    severity: str  # "error" | "warning" | "info"
    module: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "module": self.module,
            "message": self.message,
            "detail": _jsonable(self.detail),
        }


@dataclass(frozen=True)
class ProbeError:
    """Where the forward or backward pass raised."""

    phase: str  # "forward" | "backward"
    module: str | None
    module_type: str | None
    exception: str
    message: str
    input_shapes: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "module": self.module,
            "module_type": self.module_type,
            "exception": self.exception,
            "message": self.message,
            "input_shapes": _jsonable(self.input_shapes),
        }


@dataclass(frozen=True)
class ProbeInfo:
    """How the probe ran."""

    ok: bool
    error: ProbeError | None
    ran: bool = True
    mode: str = "train"
    device: str = "cpu"
    shape_only: bool = False  # ran on meta tensors: shapes and FLOPs only
    backward: str = "ran"  # "ran" | "skipped" | "failed" | "off"
    backward_note: str = ""
    seconds: float = 0.0
    batch_size: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error.to_dict() if self.error else None,
            "ran": self.ran,
            "mode": self.mode,
            "device": self.device,
            "shape_only": self.shape_only,
            "backward": self.backward,
            "backward_note": self.backward_note,
            "seconds": round(self.seconds, 4),
            "batch_size": self.batch_size,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class TrainingInfo:
    """How N training steps on the probe batch went (``--steps``); step k is ``loss[k - 1]``."""

    steps: int  # asked for
    loss: tuple[float, ...]  # one per step run: the loss of its forward, before its update
    grad_norm: tuple[float, ...]  # one per step run: the global gradient norm
    loss_name: str
    optimizer: str  # "adamw" | "adam" | "sgd"
    optimizer_label: str  # "AdamW (lr 0.001)"
    lr: float
    momentum: float = 0.0
    mode: str = "train"
    seconds: float = 0.0
    stopped: str = ""  # why it ended before ``steps``
    nonfinite_step: int | None = None
    nonfinite_module: str | None = None
    # the step whose loss was finite but whose gradients were not (the run stopped before its update)
    nonfinite_grad_step: int | None = None
    nonfinite_grad_module: str | None = None  # where backward made them (None: unknown, or the loss)
    target_range: tuple[float, float] | None = None  # min and max of the loss's regression target
    # per step, the update ratio of each module with trainable parameters (``ratio_modules``)
    ratio_modules: tuple[str, ...] = ()
    step_ratios: tuple[tuple[float, ...], ...] = ()

    @property
    def steps_run(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "steps_run": self.steps_run,
            "loss": [_num(x) for x in self.loss],
            "grad_norm": [_num(x) for x in self.grad_norm],
            "loss_name": self.loss_name,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "mode": self.mode,
            "seconds": round(self.seconds, 4),
            "stopped": self.stopped,
            "nonfinite_step": self.nonfinite_step,
            "nonfinite_module": self.nonfinite_module,
            "nonfinite_grad_step": self.nonfinite_grad_step,
            "nonfinite_grad_module": self.nonfinite_grad_module,
            "target_range": list(self.target_range) if self.target_range is not None else None,
        }


@dataclass(frozen=True)
class ModelInfo:
    name: str
    class_name: str
    source: str  # "torchvision" | "sample" | "file" | "module" | "object" | "pickle"
    total_params: int
    trainable_params: int
    buffer_elements: int
    param_bytes: int
    buffer_bytes: int
    description: str = ""
    packed_params: int = 0  # of ``total_params``: quantized weights kept packed (counted as frozen)

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params


def fast_new(cls: type[Any], **values: Any) -> Any:
    """Make a frozen dataclass instance without its ``__init__``, which sets each field through
    ``object.__setattr__`` (a 25-field row then costs 10 us: a second per 20,000-module model).
    Fields not given take their defaults; the values are not checked, so callers give them all
    the types the class declares."""
    obj = object.__new__(cls)
    obj.__dict__.update(field_defaults(cls))
    obj.__dict__.update(values)
    return obj


def fast_from(cls: type[Any], values: dict[str, Any]) -> Any:
    """``fast_new`` from a dict the caller builds and gives away: it becomes the instance's
    ``__dict__`` as it is, so it must hold every field (spread ``field_defaults(cls)`` first for
    the ones left at their defaults). A keyword call costs more than the row itself on wide rows."""
    obj = object.__new__(cls)
    _set_attr(obj, "__dict__", values)
    return obj


_set_attr = object.__setattr__  # a frozen dataclass refuses its own __setattr__, even for __dict__
_DEFAULTS: dict[type, dict[str, Any]] = {}


def field_defaults(cls: type[Any]) -> dict[str, Any]:
    """Field name -> default of a dataclass, for the fields that have one (read only: shared)."""
    got = _DEFAULTS.get(cls)
    if got is None:
        got = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                got[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                raise TypeError(f"fast_new cannot make {cls.__name__}: {f.name} has a default factory")
        _DEFAULTS[cls] = got
    return got


def _num(x: float | None) -> float | str | None:
    """JSON has no NaN/Infinity: non-finite floats become strings."""
    if x is None:
        return None
    if math.isfinite(x):
        return float(f"{x:.6g}")
    if math.isnan(x):
        return "nan"
    return "inf" if x > 0 else "-inf"


def _jsonable(x: Any) -> Any:
    kind = type(x)
    if kind is int or kind is str or kind is bool or x is None:  # the common cases, by exact type
        return x
    if kind is list or kind is tuple:
        return [v if type(v) is int else _jsonable(v) for v in x]  # shapes: ints, one call per list
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return _num(x)
    if isinstance(x, (bool, int, str)):
        return x
    return str(x)
