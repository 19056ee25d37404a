"""Provides what inspectr knows of quantized modules: their packed weights, and that autograd stops at them.

``torch.ao.quantization.quantize_dynamic`` swaps ``nn.Linear`` (``nn.LSTM``...) for modules
that keep int8 weights packed in a ``ScriptObject``: no ``nn.Parameter``, so ``parameters()``
counts 0, and no derivative, so backward sends ``None`` to everything before them.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from inspectr.core.result import ModuleRow

PACKED = " (packed)"  # suffix of a packed weight's name in a row's parameters
_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.nn.quantized")


def is_quantized(mod: nn.Module) -> bool:
    """A quantized module that keeps its weights packed (reference modules keep float Parameters)."""
    return bool(packed_weights(mod))


def packed_weights(mod: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of the weights a quantized module keeps packed; [] for any other module.

    Linear, Conv and Embedding expose ``weight()``/``bias()``; dynamic RNNs ``get_weight()``/
    ``get_bias()`` (dicts by gate name).
    """
    if not type(mod).__module__.startswith(_QUANTIZED_PACKAGES) or any(
            p is not None for p in mod._parameters.values()):  # reference modules keep float Parameters
        return []
    with warnings.catch_warnings():  # torch deprecates quantized tensors; unpacking them warns
        warnings.simplefilter("ignore", UserWarning)
        return _unpacked(mod)


def _unpacked(mod: nn.Module) -> list[tuple[str, torch.Tensor]]:
    out: list[tuple[str, torch.Tensor]] = []
    for name in ("weight", "bias"):
        fn = getattr(mod, name, None)
        if callable(fn) and not isinstance(fn, (torch.Tensor, nn.Module)):
            try:
                t = fn()
            except Exception:  # an exotic module must never break the summary
                continue
            if isinstance(t, torch.Tensor):
                out.append((name, t))
    for name in ("get_weight", "get_bias"):
        fn = getattr(mod, name, None)
        if callable(fn):
            try:
                values = fn()
            except Exception:
                continue
            if isinstance(values, dict):
                out += [(k, v) for k, v in values.items() if isinstance(v, torch.Tensor)]
    return out


def packed_note(rows: tuple[ModuleRow, ...]) -> str | None:
    """The report's note on the packed weights it counted, or None when there are none."""
    paths = [r.path for r in rows if any(p.name.endswith(PACKED) for p in r.parameters)]
    if not paths:
        return None
    count = sum(p.numel for r in rows for p in r.parameters if p.name.endswith(PACKED))
    shown = ", ".join(p or "(root)" for p in paths[:4]) + (", …" if len(paths) > 4 else "")
    return (f"quantized layers ({shown}): their {count:,} packed weights (quantized weights, float biases) "
            "are counted as frozen parameters, marked q in the Params column; they have no autograd")


def backward_stops(quantized: list[str], order: dict[str, int | None], unused: list[str]) -> tuple[list[str], str]:
    """Unused parameters that are not, and the note on where backward stops.

    Backward stops at the quantized layers that ran: parameters of modules that ran before the
    last of them got no gradient for that reason, not because the model leaves them unused.

    Args:
        quantized: paths of the quantized modules that ran.
        order: module path -> position of its first call (None: never ran).
        unused: trainable parameters (full names) that got no gradient.

    Returns:
        (the parameters still unused, the note)
    """
    last = max(o for p in quantized if (o := order.get(p)) is not None)
    still: list[str] = []
    blocked = 0
    for name in unused:
        path = name.rsplit(".", 1)[0] if "." in name else ""
        o = order.get(path)
        if o is not None and o < last:
            blocked += 1
        else:
            still.append(name)
    shown = ", ".join(quantized[:4]) + (", …" if len(quantized) > 4 else "")
    note = (f"backward stops at the quantized layers ({shown}): packed weights have no autograd, so no "
            "gradient flows through them to the modules before them")
    if blocked:
        note += f" ({blocked} parameter tensor{'s' if blocked != 1 else ''} before them got none)"
    return still, note
