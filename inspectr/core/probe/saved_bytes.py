"""Provides ``SavedBytes``: the bytes autograd saves for backward, module by module, counted
as the probe runs.

Counted exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves
passes through ``pack``; its storage counts once (a ReLU output saved by the ReLU and by the
Linear after it is one allocation), parameters never count (they live anyway), saves of a branch
the forward dropped never count (backward will not need them), and the bytes go to the innermost
module running when the tensor was saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from weakref import ref

import torch

try:  # the address of a tensor's StorageImpl: one call; views share it, meta tensors have one too
    _storage_id: Callable[[torch.Tensor], int] = torch._C._storage_id
except AttributeError:  # pragma: no cover - a torch without it: the same address, two calls
    def _storage_id(t: torch.Tensor) -> int:
        return t.untyped_storage()._cdata

_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensor types whose storage holds their data


class _Saved:
    """What autograd holds for one saved tensor while the hooks are on: the tensor (detached)
    and its version (``unpack`` checks it), or None when the pass keeps no saves. Only the
    graph holds it: when the node that saved it is freed (a branch the forward computed and
    dropped), a weak reference to it dies."""

    __slots__ = ("t", "version", "__weakref__")

    def __init__(self, t: torch.Tensor | None, version: int) -> None:
        self.t = t
        self.version = version


NO_SAVES = "inspectr's forward-only probe keeps no saved tensors: this graph cannot run backward"
_PARAMETER: list[Any] = []  # the record of a parameter's storage: never counted, always alive


class _StorageRef:
    """A weak reference to a storage: ``expired`` once it is freed (its address free for reuse)."""

    __slots__ = ("cdata",)

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self.cdata = storage._weak_ref()

    def expired(self) -> bool:
        return bool(torch.UntypedStorage._expired(self.cdata))

    def __del__(self) -> None:
        torch.UntypedStorage._free_weak_ref(self.cdata)


class SavedBytes:
    """Saved-for-backward bytes per module path of one pass.

    A storage counts once (a ReLU output saved by the ReLU and by the Linear after it is one
    allocation) and only if the graph still holds it when the forward ends: a branch computed
    and dropped saves nothing backward will need, and its freed storage's address, taken by a
    later tensor, must not hide that tensor. The bytes go to the innermost module running at
    the first save the graph still holds. Read ``by_module`` after ``counting`` ends.

    Args:
        stack: the probe's stack of running modules (the path is each entry's first item).
        params: the model's parameters (their storages are never counted).
        keep: hand the saved tensors to autograd, for a backward. False (a forward-only probe):
            the graph holds a token in each tensor's place, so the forward frees its activations
            as one without autograd does (holding them costs a fifth of a ResNet-50 forward in
            fresh pages), and a weak reference to each storage tells a freed one's reused address
            from the storage itself. Such a graph cannot run backward (``unpack`` raises).
    """

    def __init__(self, stack: list[Any], params: list[torch.Tensor], keep: bool = True) -> None:
        self.stack = stack
        self.param_keys = frozenset(_storage_key(p) for p in params)
        self.keep = keep
        self.restart()

    def restart(self) -> None:
        """Forget what was counted, for another pass (the parameters stay known)."""
        # storage key -> its record [bytes, (weak reference, path) of each save]; a key whose
        # saves have all died and comes back is another storage at a reused address
        self.live: dict[Any, list[Any]] = dict.fromkeys(self.param_keys, _PARAMETER)
        self.records: list[list[Any]] = []  # every storage's record, in the order first saved
        self.by_module: dict[str, int] = {}
        self.storages: dict[Any, _StorageRef] = {}  # without ``keep``: storage key -> weak reference

    def pack(self, t: torch.Tensor) -> _Saved:
        # called for every tensor autograd saves (45,000 times in a 20,000-module forward): the
        # storage's address (a view's is its base's; meta tensors have one too, so they count as
        # on a device), one dict lookup, and a weak reference to what the graph keeps.
        #
        # A node that saves its own output gets it here with its grad_fn: that node -> the saved
        # variable -> ``saved`` -> the output -> that node is a cycle through C++ that no collector
        # sees, so a graph never run backward (a branch the forward dropped) would leak. Detached:
        # the same storage and version counter, no grad_fn; autograd puts its own back on unpack.
        key = _storage_key(t)
        plain = type(t) in _PLAIN
        # without ``keep`` only plain tensors with a storage give theirs up
        if self.keep or not plain or type(key) is tuple:
            saved = _Saved(t if t.is_leaf else t.detach(), t._version)
        else:
            saved = _Saved(None, 0)
        record = self.live.get(key)
        if record is _PARAMETER:
            return saved
        stack = self.stack
        path = stack[-1][0] if stack else ""
        if record is None or self._gone(key, record):
            if type(key) is tuple:  # sparse: no storage, counted by its own size
                size = t.numel() * t.element_size()
            else:  # a wrapper subclass's storage may hold no data (the tensors it wraps do)
                storage = t.untyped_storage()
                size = storage.nbytes() if plain else _storage_bytes(t)
                if saved.t is None:
                    self.storages[key] = _StorageRef(storage)
            record = [size, (ref(saved), path)]
            self.live[key] = record
            self.records.append(record)
        else:
            record.append((ref(saved), path))
        return saved

    def _gone(self, key: Any, record: list[Any]) -> bool:
        """Whether the storage a record counts is gone, its address now another storage's."""
        weak = self.storages.get(key)
        if weak is not None:
            return weak.expired()
        # the latest save first: while the graph lives it holds that one (and so the storage)
        return record[-1][0]() is None and _held_by(record) is None

    @staticmethod
    def unpack(saved: _Saved) -> torch.Tensor:
        t = saved.t
        if t is None:
            raise RuntimeError(NO_SAVES)
        # with hooks installed autograd no longer checks versions itself: a model that changes a
        # saved tensor in place must fail here as it would in training
        if t._version != saved.version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{t.type()} {list(t.shape)}] is at version {t._version}; "
                f"expected version {saved.version} instead."
            )
        return t

    def settle(self) -> None:
        """``by_module`` from the saves the graph still holds (call before backward frees them)."""
        by_module: dict[str, int] = {}
        for record in self.records:
            path = _held_by(record)
            if path is not None:
                by_module[path] = by_module.get(path, 0) + record[0]
        self.by_module = by_module
        self.storages = {}

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Count the saves of the forward run inside; ``by_module`` is set when it ends (the
        forward's outputs must still be referenced then: they hold the graph)."""
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
                yield
        finally:
            self.settle()


def _held_by(record: list[Any]) -> str | None:
    """The module path of a storage's first save the graph still holds; None when it holds none."""
    for i in range(1, len(record)):
        weak, path = record[i]
        if weak() is not None:
            return path
    return None


def _storage_key(t: torch.Tensor) -> Any:
    try:
        return _storage_id(t)
    except (RuntimeError, NotImplementedError):  # sparse: no storage
        return ("object", id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    """The bytes of a subclass tensor's storage; a wrapper's own size when its storage holds no
    data (the data lives in the tensors it wraps)."""
    try:
        storage = t.untyped_storage()
        if not t.is_meta:
            storage.data_ptr()  # raises for a storage without data
        return int(storage.nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()
