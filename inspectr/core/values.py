"""Provides pictures of the values a module takes and returns: shapes, structure, the tensors inside."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def describe(x: Any) -> Any:
    """A JSON-able picture of a value: tensors become their shape, containers recurse."""
    if isinstance(x, torch.Tensor):
        return list(x.shape)
    if isinstance(x, dict):
        return {str(k): describe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [describe(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x if not isinstance(x, str) else "str"
    return cache_text(x) or type(x).__name__


def cache_text(x: Any) -> str | None:
    """A key/value cache (transformers' ``DynamicCache``...) as ``DynamicCache(2 layers × k/v
    [2, 2, 16, 8])``; None for anything else. Read by attribute: transformers is never imported."""
    layers = getattr(x, "layers", None)
    if isinstance(layers, list) and layers and all(
            hasattr(la, "keys") and hasattr(la, "values") and not callable(la.keys) for la in layers):
        keys = layers[0].keys
        shape = f" × k/v [{', '.join(map(str, keys.shape))}]" if isinstance(keys, torch.Tensor) else ""
        return f"{type(x).__name__}({len(layers)} layers{shape})"
    own, cross = getattr(x, "self_attention_cache", None), getattr(x, "cross_attention_cache", None)
    if own is not None and cross is not None:
        return f"{type(x).__name__}(self: {cache_text(own) or type(own).__name__}, cross: {cache_text(cross) or type(cross).__name__})"
    return None


def iter_tensors(x: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested output: tuples, lists, dicts, namedtuples, dataclass-like objects."""
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from iter_tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from iter_tensors(v)
    elif hasattr(x, "__dataclass_fields__"):
        for name in x.__dataclass_fields__:
            yield from iter_tensors(getattr(x, name, None))


def structure(x: Any, depth: int = 0) -> str:
    """A short human description of an output, e.g. ``(Tensor[2, 10], int, list[3])``."""
    if isinstance(x, torch.Tensor):
        try:
            return _tensor_text(x.shape, x.dtype)
        except TypeError:  # symbolic sizes do not hash
            return _tensor_text.__wrapped__(x.shape, x.dtype)
    if depth > 2:
        return "…"
    if isinstance(x, dict):
        items = list(x.items())
        inner = ", ".join(f"{k}: {structure(v, depth + 1)}" for k, v in items[:4])
        return "{" + inner + (", …" if len(items) > 4 else "") + "}"
    if isinstance(x, (list, tuple)):
        name = type(x).__name__ if hasattr(x, "_fields") else ("" if isinstance(x, tuple) else "list")
        if len(x) > 4 and all(not isinstance(v, torch.Tensor) for v in x):
            kinds = sorted({type(v).__name__ for v in x})
            return f"{name or 'tuple'}[{len(x)}×{'/'.join(kinds)}]"
        inner = ", ".join(structure(v, depth + 1) for v in list(x)[:4])
        more = f", … {len(x)} items" if len(x) > 4 else ""
        return f"{name}({inner}{more})" if name != "list" else f"[{inner}{more}]"
    if x is None:
        return "None"
    return cache_text(x) or type(x).__name__


@functools.lru_cache(maxsize=4096)
def _tensor_text(shape: torch.Size, dtype: torch.dtype) -> str:
    """``Tensor[2, 10]`` (and the dtype when not float32): a deep model repeats a few shapes."""
    dt = "" if dtype == torch.float32 else f" {str(dtype).replace('torch.', '')}"
    return f"Tensor[{', '.join(map(str, shape))}]{dt}"


def measurable(t: torch.Tensor) -> bool:
    """Plain dense tensors only: sparse, nested and wrapper subclasses are shown, not measured."""
    return t.layout == torch.strided and type(t) in (torch.Tensor, nn.Parameter) and not t.is_nested


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
