"""Provides the module tree with exact parameter counts, read from a live model without running it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inspectr.core.result import ModelInfo, ModuleRow, ParamInfo


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


def module_aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Map each module's first path to the other paths the same object is registered under."""
    first: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    for path, mod in model.named_modules(remove_duplicate=False):
        key = id(mod)
        if key in first:
            aliases.setdefault(first[key], []).append(path)
        else:
            first[key] = path
    return {k: tuple(v) for k, v in aliases.items()}


def summarize(model: nn.Module, name: str, source: str, description: str = "") -> Structure:
    """Count every module's parameters, each tensor once however often it is shared or tied.

    Args:
        model: the live model (read only).
        name: what the user called it (spec or class name).
        source: where it came from ("torchvision", "sample", "file", "object"...).
        description: one line shown in the report header.

    Returns:
        A ``Structure`` whose root row total equals ``sum(p.numel() for p in model.parameters())``.
    """
    aliases = module_aliases(model)
    owner_of: dict[int, str] = {}  # parameter id -> "module.param" where first seen
    rows: list[ModuleRow] = []
    for path, mod in model.named_modules():
        own: list[ParamInfo] = []
        own_count = 0
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{path}.{pname}" if path else pname
            shared = owner_of.get(id(p))
            if shared is None:
                owner_of[id(p)] = full
                own_count += p.numel()
            own.append(
                ParamInfo(
                    name=pname,
                    shape=tuple(p.shape),
                    numel=p.numel(),
                    dtype=dtype_name(p.dtype),
                    device=str(p.device),
                    requires_grad=p.requires_grad,
                    shared_with=shared,
                )
            )
        total = 0
        trainable = 0
        for p in mod.parameters():  # parameters() already yields each tensor once
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
        buffers = sum(b.numel() for b in mod.buffers(recurse=False))
        try:
            extra = mod.extra_repr()
        except Exception:  # a user's extra_repr must never break the inspection
            extra = ""
        rows.append(
            ModuleRow(
                path=path,
                type=type(mod).__name__,
                depth=0 if path == "" else path.count(".") + 1,
                params=total,
                own_params=own_count,
                trainable_params=trainable,
                trainable=trainable_state(total, trainable),
                buffers=buffers,
                parameters=tuple(own),
                aliases=aliases.get(path, ()),
                extra_repr=extra,
                is_leaf=next(iter(mod.children()), None) is None,
            )
        )
    params = list(model.parameters())
    bufs = list(model.buffers())
    info = ModelInfo(
        name=name,
        class_name=type(model).__name__,
        source=source,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        buffer_elements=sum(b.numel() for b in bufs),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in bufs),
        description=description,
    )
    return Structure(rows=tuple(rows), model=info)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
