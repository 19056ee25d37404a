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
        tied: some parameter tensor is registered more than once (tied weights); True when unknown.
    """

    modules: tuple[tuple[str, nn.Module], ...]
    aliases: dict[str, tuple[str, ...]]
    params: tuple[tuple[str, nn.Parameter], ...]
    paths_of: dict[int, tuple[str, ...]]
    tied: bool = True


def walk(model: nn.Module) -> ModelWalk:
    """Read ``model``'s module tree once (no module is called, nothing is changed)."""
    paths: dict[int, tuple[str, ...]] = {}
    first: list[tuple[str, nn.Module]] = []
    again = False  # some module is registered at more than one path
    for path, mod in _all_modules(model):
        seen = paths.get(id(mod))
        if seen is None:
            paths[id(mod)] = (path,)
            first.append((path, mod))
        else:
            paths[id(mod)] = (*seen, path)
            again = True
    params: list[tuple[str, nn.Parameter]] = []
    seen_params: set[int] = set()
    registered = 0
    for path, mod in first:
        own = mod._parameters
        if not own:
            continue
        for name, p in own.items():
            if p is not None:
                registered += 1
                if id(p) not in seen_params:
                    seen_params.add(id(p))
                    params.append((f"{path}.{name}" if path else name, p))
    aliases = {ps[0]: ps[1:] for ps in paths.values() if len(ps) > 1} if again else {}
    return ModelWalk(tuple(first), aliases, tuple(params), paths, tied=registered != len(params))


_NAMED_MODULES = nn.Module.named_modules


def _all_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules(remove_duplicate=False)`` as one list, without a generator per level (those
    pass every module up through each level above it). A class that overrides ``named_modules``
    is asked itself."""
    out: list[tuple[str, nn.Module]] = []
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        prefix, mod = stack.pop()
        if type(mod).named_modules is not _NAMED_MODULES:
            return list(model.named_modules(remove_duplicate=False))
        out.append((prefix, mod))
        children = mod._modules
        if children:
            below = [(f"{prefix}.{name}" if prefix else name, child) for name, child in children.items()
                     if child is not None]
            below.reverse()
            stack += below
    return out


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
