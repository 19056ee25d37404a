"""Provides the bytes autograd saves for backward, module by module, counted as the probe runs.

Counted exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves
passes through ``pack``; its storage counts once (a ReLU output saved by the ReLU and by the
Linear after it is one allocation), parameters never count (they live anyway), and the bytes go
to the innermost module running when the tensor was saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class SavedBytes:
    """Saved-for-backward bytes per module path of one pass.

    Args:
        stack: the probe's stack of running modules (the path is each entry's first item).
        params: the model's parameters (their storages are never counted).
    """

    def __init__(self, stack: list[Any], params: list[torch.Tensor]) -> None:
        self.stack = stack
        self.param_storages = {_storage_key(p) for p in params}
        self.counted: set[Any] = set()
        self.keep: list[torch.Tensor] = []  # meta tensors: their ids name them, so keep them alive
        self.by_module: dict[str, int] = {}

    def pack(self, t: torch.Tensor) -> tuple[torch.Tensor, int]:
        # called for every tensor autograd saves: kept to a few attribute reads
        if t.is_meta:
            key: Any = _storage_key(t)
            nbytes = _storage_bytes(t)
        else:
            try:
                storage = t.untyped_storage()
                key = storage.data_ptr()
                nbytes = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # wrapper subclasses, sparse
                key, nbytes = ("object", id(t)), t.numel() * t.element_size()
        if key not in self.counted and key not in self.param_storages:
            self.counted.add(key)
            if t.is_meta:
                self.keep.append(t)
            path = self.stack[-1][0] if self.stack else ""
            self.by_module[path] = self.by_module.get(path, 0) + nbytes
        return t, t._version

    @staticmethod
    def unpack(packed: tuple[torch.Tensor, int]) -> torch.Tensor:
        t, version = packed
        # with hooks installed autograd no longer checks versions itself: a model that changes a
        # saved tensor in place must fail here as it would in training
        if t._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{t.type()} {list(t.shape)}] is at version {t._version}; "
                f"expected version {version} instead."
            )
        return t

    @contextmanager
    def counting(self) -> Iterator[None]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
            yield


def _storage_key(t: torch.Tensor) -> Any:
    if t.is_meta:  # meta storages have no address: a view counts as its base
        base = t._base if t._base is not None else t
        return ("meta", id(base))
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # wrapper subclasses, sparse: no plain storage
        return ("object", id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    if t.is_meta:
        base = t._base if t._base is not None else t
        return base.numel() * base.element_size()
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()
