"""Provides the statistics of gradients: the sum of squares of each gradient reaching a module
output, and the norms of parameter gradients, small ones reduced a shape at a time."""

from __future__ import annotations

import weakref
from typing import Any

import torch

from inspectr.core.probe.stats import STAT_SAMPLE, WIDE_FLOATS, sum_sq


def square_sum(g: torch.Tensor) -> torch.Tensor:
    """Sum of squares of a gradient, exact (findings judge gradient norms): one pass, a dot
    product where the gradient is one block of memory."""
    if g.dtype not in WIDE_FLOATS:
        g = g.float()
    if g.layout != torch.strided or not g.is_contiguous():
        return torch.linalg.vector_norm(g).square()
    return sum_sq(g.reshape(-1))


_INDEXES: dict[tuple[torch.device, tuple[int, ...]], torch.Tensor] = {}


def _index(positions: list[int], dev: torch.device) -> torch.Tensor:
    """``positions`` as an index tensor on ``dev``, made once: a list copied to a GPU is a
    synchronous copy, and ``inspectr.watch`` asks for the same positions at every step."""
    key = (dev, tuple(positions))
    index = _INDEXES.get(key)
    if index is None:
        if len(_INDEXES) >= 256:
            _INDEXES.clear()
        index = _INDEXES[key] = torch.tensor(positions, device=dev)
    return index


def norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each tensor (float32 or wider, as computed), one 1-D tensor on the first
    tensor's device. Small tensors of one shape are stacked and reduced a shape at a time:
    ``torch._foreach_norm`` runs one kernel per tensor on CPU (70 ms for 20,000 parameters)."""
    if not tensors:
        return torch.zeros(0)
    dev = tensors[0].device
    out = torch.empty(len(tensors), dtype=torch.float64, device=dev)
    groups: dict[tuple[Any, ...], list[int]] = {}
    large: list[int] = []
    for i, t in enumerate(tensors):
        if t.numel() <= 4 * STAT_SAMPLE and t.layout == torch.strided and t.device == dev:
            key = (tuple(t.shape), t.dtype)
            group = groups.get(key)
            if group is None:
                groups[key] = [i]
            else:
                group.append(i)
        else:
            large.append(i)
    for idx in groups.values():
        rows = torch.stack([tensors[i] for i in idx]).reshape(len(idx), -1)
        if rows.dtype not in WIDE_FLOATS:
            rows = rows.float()
        out[_index(idx, dev)] = torch.linalg.vector_norm(rows, dim=1).double()
    if large:
        values = torch._foreach_norm([tensors[i] for i in large])
        out[_index(large, dev)] = torch.stack([v.to(dev, torch.float64) for v in values])
    return out


class GradSquares:
    """Sums of squares of the gradients reaching module outputs.

    Small gradients are kept (by reference: autograd does not accumulate into a gradient in
    place while someone else holds it) and reduced a shape at a time at the end, as outputs
    are; large ones are reduced at once (see ``square_sum``), once however many owners they
    have: a container returning its child's output gets the very gradient its child got, from
    the hook after the child's.
    """

    BATCH_BYTES = 64 << 20

    def __init__(self) -> None:
        # (shape, dtype, device) -> [(gradient, owner)]
        self.small: dict[tuple[Any, ...], list[tuple[torch.Tensor, Any]]] = {}
        self.small_bytes = 0
        self.reduced: list[tuple[torch.Tensor, list[Any]]] = []  # (square sums, owner of each)
        self.last: weakref.ref[torch.Tensor] | None = None  # the large gradient reduced last

    def add(self, owner: Any, g: torch.Tensor) -> None:
        if (g.numel() <= 4 * STAT_SAMPLE and g.dtype in WIDE_FLOATS and g.layout == torch.strided
                and type(g) is torch.Tensor):
            key = (tuple(g.shape), g.dtype, g.device)
            group = self.small.get(key)
            if group is None:
                self.small[key] = [(g, owner)]
            else:
                group.append((g, owner))
            self.small_bytes += g.numel() * g.element_size()
            if self.small_bytes > self.BATCH_BYTES:
                self._reduce_small()
        elif self.last is not None and self.last() is g:
            self.reduced[-1][1].append(owner)  # the same gradient, the same number: measured once
        else:
            with torch.no_grad():
                self.reduced.append((square_sum(g.detach()).reshape(1), [owner]))
            self.last = weakref.ref(g)

    def _reduce_small(self) -> None:
        with torch.no_grad():
            for items in self.small.values():
                rows = torch.stack([g for g, _ in items]).view(len(items), -1)
                self.reduced.append((torch.linalg.vector_norm(rows, dim=1).square(), [o for _, o in items]))
        self.small = {}
        self.small_bytes = 0

    def totals(self) -> list[tuple[float, Any]]:
        """(sum of squares, owner) of every gradient added; the gradients are let go."""
        self._reduce_small()
        out: list[tuple[float, Any]] = []
        if self.reduced:
            values = torch.cat([sq.to(torch.float64).cpu() for sq, _ in self.reduced]).tolist()
            i = 0
            for sq, owners in self.reduced:
                k = sq.numel()
                if k == len(owners):
                    out += zip(values[i:i + k], owners)
                else:  # one large gradient, several owners
                    out += [(values[i], o) for o in owners]
                i += k
        self.reduced = []
        self.last = None
        return out
