"""Provides the contract every model source keeps: ``LoadedModel`` (a built model and what its
source learned about it) and ``Inputs`` (the arguments of one forward, which a source may know:
a Hugging Face config, an archive's stored example).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import nn

from inspectr.core.values import dtype_name


@dataclass
class LoadedModel:
    """A built model plus what the loader learned about it."""

    model: nn.Module
    name: str
    source: str
    description: str = ""
    file_module: ModuleType | None = None
    registry_family: str | None = None
    notes: list[str] = field(default_factory=list)
    on_meta: bool = False
    expected: tuple[str, str] | None = None
    example: Any = None  # batch size -> Inputs, for formats that know their input (archives)


@dataclass(frozen=True)
class Inputs:
    """Positional and keyword inputs for the probe, and where they came from."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def describe(self) -> tuple[str, ...]:
        out = [_describe_value(a) for a in self.args]
        out += [f"{k}={_describe_value(v)}" for k, v in self.kwargs.items()]
        return tuple(out)

    def to(self, device: torch.device | str) -> Inputs:
        return Inputs(move_to(self.args, device), move_to(self.kwargs, device), self.source)


def move_to(x: Any, device: torch.device | str) -> Any:
    """``x`` with every tensor in it (nested in dicts, lists, tuples, namedtuples) on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: move_to(v, device) for k, v in x.items()}
    if isinstance(x, list):
        return [move_to(v, device) for v in x]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        return x.to(device)  # keeps batch_sizes on the CPU, as packing requires
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(move_to(v, device) for v in x))
    if isinstance(x, tuple):
        return tuple(move_to(v, device) for v in x)
    return x


def _describe_value(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        dt = dtype_name(x.dtype)
        extra = ""
        if (not x.is_floating_point() and x.dtype != torch.bool and x.numel() and not x.is_meta
                and x.layout == torch.strided):
            extra = f" in [{int(x.min())}, {int(x.max())}]"
        layout = " sparse" if x.is_sparse else ""
        return f"{dt}{layout}[{', '.join(map(str, x.shape))}]{extra}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_describe_value(v) for v in list(x)[:3])
        more = f", … {len(x)} items" if len(x) > 3 else ""
        return f"[{inner}{more}]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_describe_value(v)}" for k, v in x.items()) + "}"
    return repr(x)


def param_float_dtype(model: nn.Module) -> torch.dtype:
    """The model's floating-point dtype (float32 when it has no floating parameters)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def cast_floats(inp: Inputs, dtype: torch.dtype) -> Inputs:
    """Synthesized float inputs in the model's own dtype (a .half() model gets half inputs)."""
    if dtype == torch.float32:
        return inp

    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(dtype) if x.is_floating_point() else x
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(cast(v) for v in x)
        return x

    return Inputs(cast(inp.args), cast(inp.kwargs), inp.source)
