"""Provides one walk of a model's module tree, shared by the summary, the probe and the restore.

``named_modules()`` and ``parameters()`` are generators that re-walk the tree on every call;
called per module they make an inspection quadratic in depth and slow on 20,000-module models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelWalk:
    """The module tree of one model as plain lists, read once.

    Attributes:
        modules: ``named_modules()``: each module once, under its first path, in that order.
        aliases: first path -> the other paths the same module object is registered under.
        params: each parameter tensor once, under its first full name (``named_parameters()``).
        paths_of: id(module) -> every path it is registered under (first path first).
    """

    modules: tuple[tuple[str, nn.Module], ...]
    aliases: dict[str, tuple[str, ...]]
    params: tuple[tuple[str, nn.Parameter], ...]
    paths_of: dict[int, tuple[str, ...]]


def walk(model: nn.Module) -> ModelWalk:
    """Read ``model``'s module tree once (no module is called, nothing is changed)."""
    paths: dict[int, list[str]] = {}
    first: list[tuple[str, nn.Module]] = []
    for path, mod in model.named_modules(remove_duplicate=False):
        seen = paths.get(id(mod))
        if seen is None:
            paths[id(mod)] = [path]
            first.append((path, mod))
        else:
            seen.append(path)
    params: list[tuple[str, nn.Parameter]] = []
    seen_params: set[int] = set()
    for path, mod in first:
        for name, p in mod._parameters.items():
            if p is not None and id(p) not in seen_params:
                seen_params.add(id(p))
                params.append((f"{path}.{name}" if path else name, p))
    aliases = {ps[0]: tuple(ps[1:]) for ps in paths.values() if len(ps) > 1}
    return ModelWalk(tuple(first), aliases, tuple(params), {k: tuple(v) for k, v in paths.items()})


def copies_on(model: nn.Module, device: str, float_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's parameters (as ``nn.Parameter`` with their ``requires_grad``) and buffers as
    copies on ``device``, name -> tensor, for ``torch.func.functional_call``: a pass on them
    never touches the model. ``float_dtype`` casts floating parameters too."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        dtype = float_dtype if float_dtype is not None and p.is_floating_point() else p.dtype
        out[name] = nn.Parameter(p.detach().to(device, dtype=dtype), requires_grad=p.requires_grad)
    for name, b in model.named_buffers():
        out[name] = b.detach().to(device).clone() if device != "meta" else b.to(device)
    return out


def first_device(tree: ModelWalk) -> torch.device:
    """The device of the model's first parameter or buffer (cpu when it has none)."""
    for _, mod in tree.modules:
        for t in (*mod._parameters.values(), *mod._buffers.values()):
            if t is not None:
                return t.device
    return torch.device("cpu")
