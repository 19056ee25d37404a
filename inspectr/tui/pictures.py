"""Provides ``WeightPicture``: a module's weights reduced to a histogram and its first conv filters.

The app owns the live model, so it reads weights here; the detail pane gets only plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

HIST_BINS = 32
MAX_FILTERS = 16
CHEAP_NUMEL = 1 << 18  # weights up to this size are summarised on the UI thread


@dataclass(frozen=True)
class WeightPicture:
    """What the detail pane draws for one module's weight tensor."""

    name: str  # the parameter, e.g. "weight"
    numel: int
    low: float
    high: float
    histogram: tuple[int, ...]
    # first filters: (filter, row, col, channel); channel is 3 for RGB filters, else 1 (mean over inputs)
    filters: tuple[tuple[tuple[tuple[float, ...], ...], ...], ...] = ()
    rgb: bool = False
    out_channels: int = 0


def pick_weight(params: list[tuple[str, nn.Parameter]]) -> tuple[str, nn.Parameter] | None:
    """The parameter worth a picture: ``weight`` if the module has one, else its largest."""
    usable = [
        (n, p) for n, p in params if p.is_floating_point() and not p.is_meta and p.numel() > 0
    ]
    if not usable:
        return None
    for n, p in usable:
        if n == "weight":
            return n, p
    return max(usable, key=lambda np: np[1].numel())


def weight_picture(name: str, weight: object, conv: bool) -> WeightPicture | None:
    """Summarise one weight tensor (read-only, no autograd).

    Args:
        name: the parameter's name, shown in the pane.
        weight: the tensor.
        conv: draw the first filters (a 2-D convolution's [out, in, kh, kw] weight).
    """
    import torch

    if (
        not isinstance(weight, torch.Tensor)
        or weight.is_meta
        or not weight.is_floating_point()
        or weight.numel() == 0
    ):
        return None
    with torch.no_grad():
        w = weight.detach()
        flat = w.reshape(-1).float()
        finite = flat[torch.isfinite(flat)]
        if finite.numel() == 0:
            return None
        low, high = float(finite.min()), float(finite.max())
        if high > low:
            hist = torch.histc(finite.cpu(), bins=HIST_BINS, min=low, max=high)
            histogram = tuple(int(c) for c in hist.tolist())
        else:
            histogram = (int(finite.numel()),)
        filters: tuple = ()
        rgb = False
        if conv and w.dim() == 4 and w.shape[2] * w.shape[3] > 1:
            f = w[:MAX_FILTERS].float().cpu()
            rgb = f.shape[1] == 3
            if not rgb:
                f = f.mean(dim=1, keepdim=True)
            f = torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
            # (out, ch, kh, kw) -> (out, kh, kw, ch)
            filters = tuple(
                tuple(tuple(tuple(px) for px in row) for row in filt)
                for filt in f.permute(0, 2, 3, 1).tolist()
            )
    return WeightPicture(
        name, int(w.numel()), low, high, histogram, filters, rgb, int(w.shape[0]) if w.dim() else 0
    )
