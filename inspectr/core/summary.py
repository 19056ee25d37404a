"""Provides the module tree with exact parameter counts, read from a live model without running it.

A probe's measures, when there are some, go into the same rows in the same sweep. The summary
sits below the probe in the stage order, so it names what it reads of a probe as protocols
(``Measured``, ``Probed``) that the probe's ``ModuleMeasure`` and ``ProbeResult`` satisfy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from inspectr.core.result import (
    ActivationStats,
    FunctionalActivation,
    ModelInfo,
    ModuleRow,
    ParamInfo,
    fast_from,
    fast_new,
)
from inspectr.core.sources.quantized import PACKED, packed_weights
from inspectr.core.values import dtype_name
from inspectr.core.walk import ModelWalk, walk


class Measured(Protocol):
    """What a row reads of one module's probe measures."""

    @property
    def calls(self) -> int: ...
    @property
    def order(self) -> int | None: ...
    @property
    def input_shapes(self) -> tuple[Any, ...]: ...
    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]: ...
    @property
    def output_structure(self) -> str: ...
    @property
    def stats(self) -> ActivationStats | None: ...
    @property
    def functional(self) -> tuple[FunctionalActivation, ...]: ...
    @property
    def grad_norm(self) -> float | None: ...
    @property
    def grad_rms(self) -> float | None: ...
    @property
    def time_ms(self) -> float | None: ...
    @property
    def saved_bytes(self) -> int | None: ...
    @property
    def output_bytes(self) -> int | None: ...


class Probed(Protocol):
    """What the rows read of a probe pass: measures per module path, gradient norms per
    parameter name, FLOPs per module path."""

    @property
    def measures(self) -> Mapping[str, Measured]: ...
    @property
    def param_grad_norms(self) -> Mapping[str, float | None]: ...
    @property
    def flops_forward(self) -> Mapping[str, int]: ...
    @property
    def flops_backward(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class Structure:
    """The static part of a report: one row per module (``named_modules()`` order) and totals."""

    rows: tuple[ModuleRow, ...]
    model: ModelInfo
    packed_names: bool = False  # a parameter name ends with ``PACKED``: else ``packed_note`` finds nothing


def trainable_state(total: int, trainable: int) -> str:
    if total == 0:
        return "n/a"
    if trainable == total:
        return "all"
    if trainable == 0:
        return "none"
    return "partial"


def _shared_counts(tree: ModelWalk) -> tuple[dict[int, int], dict[int, int], dict[int, str]]:
    """For a tree with tied parameters or modules at several paths: (total, trainable) parameter
    count per module id, each tensor once per subtree, and each tensor's first full name.

    A parameter counts in every module above any module that owns it (under every path the
    owner is registered at): one walk up per owner, instead of ``parameters()`` per module.
    """
    module_at: dict[str, nn.Module] = {}
    for _, mod in tree.modules:
        for path in tree.paths_of[id(mod)]:
            module_at[path] = mod
    above: dict[int, set[int]] = {}

    def ancestors(mod: nn.Module) -> set[int]:
        got = above.get(id(mod))
        if got is None:
            got = set()
            for path in tree.paths_of[id(mod)]:
                parts = path.split(".") if path else []
                for i in range(len(parts) + 1):
                    got.add(id(module_at[".".join(parts[:i])]))
            above[id(mod)] = got
        return got

    owners: dict[int, tuple[torch.Tensor, list[nn.Module]]] = {}
    first_name: dict[int, str] = {}
    for path, mod in tree.modules:
        for pname, p in mod._parameters.items():
            if p is None:
                continue
            entry = owners.get(id(p))
            if entry is None:
                owners[id(p)] = (p, [mod])
                first_name[id(p)] = f"{path}.{pname}" if path else pname
            elif mod not in entry[1]:
                entry[1].append(mod)
    total: dict[int, int] = {}
    trainable: dict[int, int] = {}
    for p, mods in owners.values():
        n = p.numel()
        ids = ancestors(mods[0]) if len(mods) == 1 else set().union(*(ancestors(m) for m in mods))
        for mid in ids:
            total[mid] = total.get(mid, 0) + n
            if p.requires_grad:
                trainable[mid] = trainable.get(mid, 0) + n
    return total, trainable, first_name


class _Unprobed:
    """The measures of a module the probe did not see: a row's defaults."""

    calls = 0
    order = None
    input_shapes: tuple[Any, ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    output_structure = ""
    stats = None
    functional = ()
    grad_norm = None
    grad_rms = None
    time_ms = None
    saved_bytes = None
    output_bytes = None


_UNPROBED = _Unprobed()


def summarize(model: nn.Module, name: str, source: str, description: str = "",
              tree: ModelWalk | None = None, result: Probed | None = None) -> Structure:
    """Count every module's parameters, each tensor once however often it is shared or tied.

    Args:
        model: the live model (read only).
        name: what the user called it (spec or class name).
        source: where it came from ("torchvision", "sample", "file", "object"...).
        description: one line shown in the report header.
        tree: the model's ``walk`` when the caller has it already.
        result: a probe of the model: its measures go into the rows (each row is made once).

    Returns:
        A ``Structure`` whose root row total equals ``sum(p.numel() for p in model.parameters())``.
    """
    tree = tree or walk(model)
    norms = result.param_grad_norms if result is not None else {}
    measures = result.measures if result is not None else {}
    flops_f = (result.flops_forward if result is not None else None) or {}
    flops_b = (result.flops_backward if result is not None else None) or {}
    packed = {path: w for path, mod in tree.modules if (w := packed_weights(mod))}
    packed_below: dict[str, int] = {}  # quantized weights kept packed, per subtree: counted, never trainable
    for path, weights in packed.items():
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            packed_below[key] = packed_below.get(key, 0) + sum(t.numel() for _, t in weights)
    # A plain tree (the common case: every module at one path, every tensor registered once)
    # is counted in the same pass that makes the rows, children before parents: a module's
    # count is its own plus its children's, and no parameter is shared.
    plain = not tree.aliases and not tree.tied
    total_of: dict[int, int] = {}
    trainable_of: dict[int, int] = {}
    first_name: dict[int, str] = {}
    if not plain:
        total_of, trainable_of, first_name = _shared_counts(tree)
    # 20,000-module models: names per type, dtype and device are made once, and each row is
    # made from one dict (a keyword call per row costs more than the rest of the row)
    type_names: dict[type, str | None] = {}
    dtypes: dict[torch.dtype, tuple[str, int]] = {}
    device_names: dict[torch.device, str] = {}
    aliases = tree.aliases
    # a parameter name ends like a packed weight's: ``packed_note`` has something to find
    suffixed = bool(packed) or any(n.endswith(PACKED) for n, _ in tree.params)
    all_params = all_trainable = all_bytes = 0
    buffer_seen: set[int] = set()
    all_buffers = all_buffer_bytes = 0
    rows: list[ModuleRow] = []
    for path, mod in reversed(tree.modules):
        own: list[ParamInfo] = []
        own_count = own_trainable = 0
        own_sq = 0.0
        own_grads = False
        params = mod._parameters
        if params:
            in_module: set[int] = set()
            for pname, p in params.items():
                if p is None:
                    continue
                if not plain:  # named_parameters(recurse=False) yields each tensor once
                    if id(p) in in_module:
                        continue
                    in_module.add(id(p))
                    suffixed = suffixed or pname.endswith(PACKED)  # a tied name is not in tree.params
                full = f"{path}.{pname}" if path else pname
                shared = None if plain or (first := first_name[id(p)]) == full else first
                numel = p.numel()
                requires_grad = p.requires_grad
                dtype = p.dtype
                dtype_info = dtypes.get(dtype)
                if dtype_info is None:
                    dtype_info = dtypes[dtype] = (dtype_name(dtype), p.element_size())
                if shared is None:
                    own_count += numel
                    all_bytes += numel * dtype_info[1]
                    if requires_grad:
                        own_trainable += numel
                device = p.device
                device_s = device_names.get(device)
                if device_s is None:
                    device_s = device_names[device] = str(device)
                grad_norm = norms.get(full)
                own.append(fast_from(ParamInfo, {
                    "name": pname, "shape": tuple(p.shape), "numel": numel, "dtype": dtype_info[0],
                    "device": device_s, "requires_grad": requires_grad, "shared_with": shared,
                    "grad_norm": grad_norm,
                }))
                if shared is None and grad_norm is not None:
                    own_sq += grad_norm ** 2
                    own_grads = True
        all_params += own_count
        all_trainable += own_trainable
        total, trainable = own_count, own_trainable  # a plain tree's subtree counts, children added below
        if packed and path in packed:
            for pname, t in packed[path]:
                own_count += t.numel()
                own.append(fast_new(ParamInfo, name=pname + PACKED, shape=tuple(t.shape), numel=t.numel(),
                                    dtype=dtype_name(t.dtype), device=str(t.device), requires_grad=False,
                                    shared_with=None, grad_norm=None))
        children = mod._modules
        is_leaf = True
        if plain:
            for child in children.values():
                if child is not None:
                    is_leaf = False
                    total += total_of[id(child)]
                    trainable += trainable_of[id(child)]
            total_of[id(mod)] = total
            trainable_of[id(mod)] = trainable
        else:
            total = total_of.get(id(mod), 0)
            trainable = trainable_of.get(id(mod), 0)
            is_leaf = not any(c is not None for c in children.values())
        below = packed_below.get(path, 0) if packed else 0
        total += below
        buffers = 0
        if mod._buffers:
            for b in mod._buffers.values():
                if b is not None:
                    buffers += b.numel()
                    if id(b) not in buffer_seen:
                        buffer_seen.add(id(b))
                        all_buffers += b.numel()
                        all_buffer_bytes += b.numel() * b.element_size()
        try:
            extra = mod.extra_repr()
        except Exception:  # a user's extra_repr must never break the inspection
            extra = ""
        cls = type(mod)
        type_s = type_names.get(cls)
        if type_s is None:
            type_s = module_type(mod)
            if not issubclass(cls, torch.jit.RecursiveScriptModule):  # those are named per instance
                type_names[cls] = type_s
        m = measures.get(path, _UNPROBED)
        rows.append(fast_from(ModuleRow, {  # every field, in order: a dict made at its size
            "path": path,
            "type": type_s,
            "depth": 0 if path == "" else path.count(".") + 1,
            "params": total,
            "own_params": own_count,
            "trainable_params": trainable,
            "trainable": trainable_state(total, trainable),
            "buffers": buffers,
            "parameters": tuple(own),
            "aliases": aliases.get(path, ()) if aliases else (),
            "extra_repr": extra,
            "is_leaf": is_leaf,
            "calls": m.calls,
            "input_shapes": m.input_shapes,
            "output_shapes": m.output_shapes,
            "output_structure": m.output_structure,
            "stats": m.stats,
            "functional": m.functional,
            "grad_norm": m.grad_norm,
            "grad_rms": m.grad_rms,
            "param_grad_norm": own_sq ** 0.5 if own_grads else None,
            "flops_forward": flops_f.get(path) if flops_f and m is not _UNPROBED else None,
            "flops_backward": flops_b.get(path) if flops_b and m is not _UNPROBED else None,
            "time_ms": m.time_ms,
            "order": m.order,
            "saved_bytes": m.saved_bytes,
            "output_bytes": m.output_bytes,
            "packed_params": below,
            "update_ratio": None,  # the training measures: ``--steps`` fills them in later
            "distance_from_init": None,
            "train_grad_norm": None,
            "end_dead_fraction": None,
        }))
    rows.reverse()
    packed_all = [t for weights in packed.values() for _, t in weights]
    packed_count = sum(t.numel() for t in packed_all)
    info = ModelInfo(
        name=name,
        class_name=module_type(model),
        source=source,
        total_params=all_params + packed_count,
        trainable_params=all_trainable,
        buffer_elements=all_buffers,
        param_bytes=all_bytes + sum(t.numel() * t.element_size() for t in packed_all),
        buffer_bytes=all_buffer_bytes,
        description=description,
        packed_params=packed_count,
    )
    return Structure(rows=tuple(rows), model=info, packed_names=suffixed)


def module_type(mod: nn.Module) -> str:
    """The class name a row shows: a TorchScript module's original class, not ``RecursiveScriptModule``."""
    if isinstance(mod, torch.jit.RecursiveScriptModule):
        return getattr(mod, "original_name", None) or type(mod).__name__
    return type(mod).__name__


#END
