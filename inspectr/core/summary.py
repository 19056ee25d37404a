"""Provides the module tree with exact parameter counts, read from a live model without running it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from inspectr.core.quantized import PACKED, packed_weights
from inspectr.core.result import ModelInfo, ModuleRow, ParamInfo, fast_new
from inspectr.core.walk import ModelWalk, walk

if TYPE_CHECKING:
    from inspectr.core.probe import ProbeResult


@dataclass(frozen=True)
class Structure:
    """The static part of a report: one row per module (``named_modules()`` order) and totals."""

    rows: tuple[ModuleRow, ...]
    model: ModelInfo


def trainable_state(total: int, trainable: int) -> str:
    if total == 0:
        return "n/a"
    if trainable == total:
        return "all"
    if trainable == 0:
        return "none"
    return "partial"


def _subtree_counts(tree: ModelWalk) -> tuple[dict[int, int], dict[int, int]]:
    """(total, trainable) parameter count per module id, each tensor once per subtree.

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
    for _, mod in tree.modules:
        for p in mod._parameters.values():
            if p is None:
                continue
            entry = owners.get(id(p))
            if entry is None:
                owners[id(p)] = (p, [mod])
            elif mod not in entry[1]:
                entry[1].append(mod)
    total: dict[int, int] = {}
    trainable: dict[int, int] = {}
    if not tree.aliases and all(len(mods) == 1 for _, mods in owners.values()):
        # a plain tree (the common case): a module's count is its own plus its children's
        for _, mod in reversed(tree.modules):
            n = t = 0
            for p in {id(p): p for p in mod._parameters.values() if p is not None}.values():
                n += p.numel()
                if p.requires_grad:
                    t += p.numel()
            for child in mod._modules.values():
                if child is not None:
                    n += total[id(child)]
                    t += trainable[id(child)]
            total[id(mod)] = n
            trainable[id(mod)] = t
        return total, trainable
    for p, mods in owners.values():
        n = p.numel()
        ids = ancestors(mods[0]) if len(mods) == 1 else set().union(*(ancestors(m) for m in mods))
        for mid in ids:
            total[mid] = total.get(mid, 0) + n
            if p.requires_grad:
                trainable[mid] = trainable.get(mid, 0) + n
    return total, trainable


def summarize(model: nn.Module, name: str, source: str, description: str = "",
              tree: ModelWalk | None = None, result: ProbeResult | None = None) -> Structure:
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
    total_of, trainable_of = _subtree_counts(tree)
    owner_of: dict[int, str] = {}  # parameter id -> "module.param" where first seen
    rows: list[ModuleRow] = []
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
    for path, mod in tree.modules:
        own: list[ParamInfo] = []
        own_count = 0
        own_sq = 0.0
        own_grads = False
        in_module: set[int] = set()
        for pname, p in mod._parameters.items():
            if p is None or id(p) in in_module:  # named_parameters(recurse=False) yields each once
                continue
            in_module.add(id(p))
            full = f"{path}.{pname}" if path else pname
            shared = owner_of.get(id(p))
            if shared is None:
                owner_of[id(p)] = full
                own_count += p.numel()
            own.append(
                fast_new(
                    ParamInfo,
                    name=pname,
                    shape=tuple(p.shape),
                    numel=p.numel(),
                    dtype=dtype_name(p.dtype),
                    device=str(p.device),
                    requires_grad=p.requires_grad,
                    shared_with=shared,
                    grad_norm=norms.get(full),
                )
            )
            if shared is None and own[-1].grad_norm is not None:
                own_sq += own[-1].grad_norm ** 2
                own_grads = True
        for pname, t in packed.get(path, ()):
            own_count += t.numel()
            own.append(fast_new(ParamInfo, name=pname + PACKED, shape=tuple(t.shape), numel=t.numel(),
                                dtype=dtype_name(t.dtype), device=str(t.device), requires_grad=False,
                                shared_with=None, grad_norm=None))
        total = total_of.get(id(mod), 0) + packed_below.get(path, 0)
        trainable = trainable_of.get(id(mod), 0)
        buffers = sum(b.numel() for b in mod._buffers.values() if b is not None)
        try:
            extra = mod.extra_repr()
        except Exception:  # a user's extra_repr must never break the inspection
            extra = ""
        m = measures.get(path)
        probed = {} if m is None else dict(
            calls=m.calls,
            order=m.order,
            input_shapes=m.input_shapes,
            output_shapes=m.output_shapes,
            output_structure=m.output_structure,
            stats=m.stats,
            functional=m.functional,
            grad_norm=m.grad_norm,
            grad_rms=m.grad_rms,
            flops_forward=flops_f.get(path) if flops_f else None,
            flops_backward=flops_b.get(path) if flops_b else None,
            time_ms=m.time_ms,
            saved_bytes=m.saved_bytes,
            output_bytes=m.output_bytes,
        )
        rows.append(
            fast_new(
                ModuleRow,
                param_grad_norm=own_sq ** 0.5 if own_grads else None,
                **probed,
                path=path,
                type=module_type(mod),
                depth=0 if path == "" else path.count(".") + 1,
                params=total,
                own_params=own_count,
                trainable_params=trainable,
                trainable=trainable_state(total, trainable),
                buffers=buffers,
                parameters=tuple(own),
                aliases=tree.aliases.get(path, ()),
                extra_repr=extra,
                is_leaf=not any(c is not None for c in mod._modules.values()),
                packed_params=packed_below.get(path, 0),
            )
        )
    params = [p for _, p in tree.params]
    bufs = list({id(b): b for _, mod in tree.modules for b in mod._buffers.values() if b is not None}.values())
    packed_all = [t for weights in packed.values() for _, t in weights]
    info = ModelInfo(
        name=name,
        class_name=module_type(model),
        source=source,
        total_params=sum(p.numel() for p in params) + sum(t.numel() for t in packed_all),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        buffer_elements=sum(b.numel() for b in bufs),
        param_bytes=sum(p.numel() * p.element_size() for p in params + packed_all),
        buffer_bytes=sum(b.numel() * b.element_size() for b in bufs),
        description=description,
        packed_params=sum(t.numel() for t in packed_all),
    )
    return Structure(rows=tuple(rows), model=info)


def module_type(mod: nn.Module) -> str:
    """The class name a row shows: a TorchScript module's original class, not ``RecursiveScriptModule``."""
    if isinstance(mod, torch.jit.RecursiveScriptModule):
        return getattr(mod, "original_name", None) or type(mod).__name__
    return type(mod).__name__


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
