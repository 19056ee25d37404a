"""Provides why an output is exactly zero: a parameter initialised to exactly zero (a norm
weight, a gate, a scale), as opposed to units the pre-activation keeps below zero.

Zero-initialising the last scale of a residual branch is a design (timm's ``zero_init_last``,
ReZero, LayerScale, adaLN-zero, Fixup): the branch starts as the identity and trains from
there. A rectifier after such a parameter (timm's ``BatchNormAct2d`` holds its activation
inside the norm layer) returns zeros for every sample, which looks like dead units but is not.

The probe names the zero parameter behind each such output. Whether a skip path goes around it
is read from the gradients: the parameter's zero blocks every gradient through it, so when the
model's first layers still get a gradient, some other path carries the signal (a residual
connection, a parallel branch); when they get none, nothing passes until the parameter moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import takewhile

import torch
from torch import nn

from inspectr.core.probe.hooks import ModuleMeasure
from inspectr.core.walk import ModelWalk

# a measure whose dead fraction reaches this is explained, if a zero parameter explains it
ZERO_SHARE = 0.5


@dataclass(frozen=True)
class ZeroInit:
    """An output that is exactly zero because a parameter starts at exactly zero."""

    output: str  # the module whose output is all zero (the rectifier)
    parameter: str  # the parameter's full name
    owner: str  # the module that holds the parameter
    blocked: tuple[str, ...] | None  # leaves before it that get no gradient when nothing goes
    # around it (in run order); () when a skip or parallel path carries the signal; None when
    # the probe ran no backward and cannot tell


def _all_zero(t: torch.Tensor) -> bool:
    return (t.is_floating_point() and t.numel() > 0 and not t.is_meta
            and t.layout == torch.strided and not bool(t.any()))


def _multiplier(name: str) -> bool:
    """A parameter that scales its input (a bias adds: a zero bias blocks nothing)."""
    return "bias" not in name.rsplit(".", 1)[-1]


def zero_inits(measures: Mapping[str, ModuleMeasure], tree: ModelWalk, backward_ran: bool,
               tensors: Mapping[str, torch.Tensor] | None = None) -> tuple[ZeroInit, ...]:
    """The rectified outputs that are zero because a parameter is initialised to zero.

    Args:
        measures: the probe's measures, module path -> measure.
        tree: the model's walk.
        backward_ran: gradients were measured (else ``blocked`` is None).
        tensors: parameters by full name in place of the model's own (a ``param_map``).

    Returns:
        One ``ZeroInit`` per explained output, in run order. Costs nothing when no output is
        mostly zero; otherwise one ``any()`` over the few parameters near each such output.
    """
    dead = [(m.order, path) for path, m in measures.items() if m.order is not None and _mostly_dead(m)]
    if not dead:
        return ()
    modules = dict(tree.modules)
    leaves = {path for path, mod in tree.modules if not mod._modules}
    ran = sorted((m.order, path) for path, m in measures.items() if m.order is not None and path in leaves)
    out = []
    for order, path in sorted(dead):
        found = _zero_parameter(path, order, modules, ran, tensors)
        if found is None:
            continue
        owner, name = found
        owner_order = measures[owner].order if owner in measures else None
        start = min(o for o in (order, owner_order) if o is not None)
        out.append(ZeroInit(path, name, owner, _blocked(measures, ran, start) if backward_ran else None))
    return tuple(out)


def _mostly_dead(m: ModuleMeasure) -> bool:
    st = m.stats
    if st is not None and st.dead_fraction is not None and st.dead_fraction >= ZERO_SHARE:
        return True
    return any(f.dead_fraction is not None and f.dead_fraction >= ZERO_SHARE for f in m.functional)


def _zero_parameter(path: str, order: int, modules: dict[str, nn.Module], ran: list[tuple[int, str]],
                    tensors: Mapping[str, torch.Tensor] | None) -> tuple[str, str] | None:
    """(owner path, full name) of an all-zero multiplier feeding ``path``: held by the module
    itself or one above it (an activation inside its norm layer, a gate applied in ``forward``),
    else by the leaf that ran just before it (``Sequential(conv, norm, act)``)."""
    owners = [path]
    parts = path.split(".") if path else []
    owners += [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]
    before = [p for o, p in ran if o < order]
    if before:
        owners.append(before[-1])
    for owner in owners:
        mod = modules.get(owner)
        if mod is None:
            continue
        for pname, p in mod._parameters.items():
            if p is None or not _multiplier(pname):
                continue
            full = f"{owner}.{pname}" if owner else pname
            t = tensors.get(full, p) if tensors is not None else p
            if _all_zero(t.detach()):
                return owner, full
    return None


def _blocked(measures: Mapping[str, ModuleMeasure], ran: list[tuple[int, str]], start: int) -> tuple[str, ...]:
    """The leaves, in run order from the model's first, that got no gradient when the first one
    got none (the zero blocks the whole path), limited to those that ran before ``start`` when
    any did (a rectifier inside a ``forward`` runs after the module's children started); else ()."""
    measured = [(o, p, rms) for o, p in ran if (rms := measures[p].grad_rms) is not None]
    prefix = list(takewhile(lambda m: m[2] == 0.0, measured))
    if not prefix:
        return ()
    before = [p for o, p, _ in prefix if o < start]
    return tuple(before or [p for _, p, _ in prefix])
