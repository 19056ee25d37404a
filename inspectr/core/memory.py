"""Provides what training costs in memory: the bytes autograd saves for backward, module by
module, counted as the probe runs, and the model-level estimate built on them (parameters,
gradients, optimizer state, activations, peaks, the largest batch that fits).

Counted exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves
passes through ``pack``; its storage counts once (a ReLU output saved by the ReLU and by the
Linear after it is one allocation), parameters never count (they live anyway), saves of a branch
the forward dropped never count (backward will not need them), and the bytes go to the innermost
module running when the tensor was saved.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate, islice, repeat
from operator import add, ge, itemgetter, mul
from typing import TYPE_CHECKING, Any
from weakref import ref

import torch

from inspectr.errors import InspectrError

if TYPE_CHECKING:
    from inspectr.core.optim import OptimizerChoice
    from inspectr.core.result import ModuleRow


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


def batch_size_of(x: Any) -> int | None:
    """The leading size of the first tensor (or the length of a list of tensors) in ``x``."""
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() else None
    if isinstance(x, list) and x and all(isinstance(t, torch.Tensor) for t in x):
        return len(x)
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        for v in x:
            b = batch_size_of(v)
            if b is not None:
                return b
    return None


# --- the estimate ------------------------------------------------------------------------

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
LINEAR_TOLERANCE = 0.01  # activation bytes within 1% of the straight line count as linear
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int | float) -> int:
    """``24GiB``, ``80GB``, ``1.5T`` (binary), ``123456`` -> bytes; errors name the flag."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).upper() not in _UNITS:
            raise InspectrError(f"--fit {text!r} is not a memory size.",
                                "Write a number with a unit, e.g. --fit 24GiB, --fit 80GB or --fit 16G.")
        value, unit = float(m.group(1)), m.group(2).upper()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise InspectrError(f"--fit {text!r} must be more than zero bytes.", "E.g. --fit 24GiB.")
    return size


@dataclass(frozen=True)
class Footprint:
    """What one forward holds, per module path: bytes autograd saved for backward while the
    module ran (its own, not its children's) and the output bytes of leaf modules."""

    batch: int | None
    saved: dict[str, int]
    outputs: dict[str, int]
    final: int = 0  # the model's output: the training loop holds it, the loss keeps its like

    @property
    def activation_bytes(self) -> int:
        return sum(self.saved.values())

    def at(self, other: Footprint, batch: int) -> Footprint:
        """The straight line through ``self`` and ``other`` (two batch sizes), at ``batch``."""
        b0, b1 = self.batch or 1, other.batch or 1
        def line(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            keys = a.keys() | b.keys()
            return {k: max(0, round(a.get(k, 0) + (b.get(k, 0) - a.get(k, 0)) * (batch - b0) / (b1 - b0)))
                    for k in keys}
        final = line({"": self.final}, {"": other.final})[""]
        return Footprint(batch, line(self.saved, other.saved), line(self.outputs, other.outputs), final)

    @classmethod
    def of_rows(cls, rows: Sequence[ModuleRow], batch: int | None) -> Footprint:
        return bytes_of_rows(rows, batch, 0, 0)[1]


@dataclass(frozen=True)
class ModelBytes:
    """The parts of a model's memory that do not depend on the batch."""

    param_bytes: int
    buffer_bytes: int
    grad_bytes: int  # trainable parameters only, each tensor once
    largest_trainable: int  # bytes of the largest trainable tensor (optimizer temporaries)
    grads_by_path: dict[str, int]  # trainable bytes a module owns directly
    order: tuple[str, ...]  # module paths in the order the forward first ran them

    @classmethod
    def of_rows(cls, rows: Sequence[ModuleRow], param_bytes: int, buffer_bytes: int) -> ModelBytes:
        return bytes_of_rows(rows, None, param_bytes, buffer_bytes)[0]

    @cached_property
    def grads_after(self) -> tuple[int, ...]:
        """Per module of ``order``: the trainable bytes of it and of every module after it."""
        return tuple(accumulate(map(self.grads_by_path.get, reversed(self.order), repeat(0))))[::-1]


def bytes_of_rows(rows: Sequence[ModuleRow], batch: int | None, param_bytes: int, buffer_bytes: int,
                  trainable: tuple[dict[str, int], int] | None = None) -> tuple[ModelBytes, Footprint]:
    """``ModelBytes.of_rows`` and ``Footprint.of_rows`` in one sweep over the rows: on a
    20,000-module model each sweep costs milliseconds, most of them in reaching the rows.

    Args:
        trainable: the trainable bytes per owning module and the largest trainable tensor, when
            the caller has them (``trainable_of``): the rows' parameters are then not read.
    """
    saved: dict[str, int] = {}
    outputs: dict[str, int] = {}
    orders: list[int] = []
    paths: list[str] = []
    for r in rows:
        path = r.path
        order = r.order
        if order is not None:
            orders.append(order)
            paths.append(path)
        n = r.saved_bytes
        if n:
            saved[path] = n
        n = r.output_bytes
        if n and r.is_leaf:
            outputs[path] = n
    if any(map(ge, orders, islice(orders, 1, None))):  # rows in the order they ran need no sort
        paths = [p for _, p in sorted(zip(orders, paths), key=itemgetter(0))]
    grads, largest = trainable if trainable is not None else _trainable_of_rows(rows)
    mb = ModelBytes(param_bytes, buffer_bytes, sum(grads.values()), largest, grads, tuple(paths))
    return mb, Footprint(batch, saved, outputs, rows[0].output_bytes or 0 if rows else 0)


def _trainable_of_rows(rows: Sequence[ModuleRow]) -> tuple[dict[str, int], int]:
    """Trainable bytes per module (each tensor under its first owner) and the largest trainable
    tensor's, from the rows' parameters."""
    grads: dict[str, int] = {}
    largest = 0
    sizes: dict[str, int] = {}
    for r in rows:
        params = r.parameters
        if params:
            own = 0
            for p in params:
                if p.requires_grad and p.shared_with is None:
                    size = sizes.get(p.dtype)
                    if size is None:
                        size = sizes[p.dtype] = _itemsize(p.dtype)
                    n = p.numel * size
                    own += n
                    if n > largest:
                        largest = n
            if own:
                grads[r.path] = own
    return grads, largest


def trainable_of(params: Iterable[tuple[str, torch.Tensor]]) -> tuple[dict[str, int], int, set[torch.dtype]]:
    """What ``_trainable_of_rows`` reads from the rows, from the live parameters (each once,
    under its first name, as ``ModelWalk.params`` holds them), plus every parameter dtype: one
    walk of the tensors instead of one of the rows' parameters and one for the dtypes.

    Returns:
        trainable bytes per owning module path, the largest trainable tensor's bytes, the dtypes.
    """
    grads: dict[str, int] = {}
    largest = 0
    dtypes: set[torch.dtype] = set()
    for name, p in params:
        dtypes.add(p.dtype)
        if p.requires_grad:
            n = p.nbytes
            owner = name.rpartition(".")[0]
            grads[owner] = grads.get(owner, 0) + n
            if n > largest:
                largest = n
    return grads, largest, dtypes


@dataclass(frozen=True)
class MemoryEstimate:
    """Training and inference memory of one model at one batch size (an estimate: see
    ``estimate``). JSON ``memory``."""

    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    buffer_bytes: int
    activation_bytes: int
    training_peak_bytes: int
    inference_peak_bytes: int
    batch_size: int | None
    optimizer: str
    dtype: str
    peak_phase: str  # where the training peak falls: "forward", "backward" or "optimizer step"
    max_batch_size: int | None = None
    fit_bytes: int | None = None
    activation_per_sample: int | None = None  # bytes saved per extra sample (two batch sizes)
    linear: bool | None = None  # activations measured linear in the batch (None: not measured)
    notes: tuple[str, ...] = field(default=())
    # what it was computed from, so a freeze can update it at once (not in the JSON)
    choice: OptimizerChoice | None = field(default=None, compare=False, repr=False)
    footprint: Footprint | None = field(default=None, compare=False, repr=False)
    input_bytes: int = field(default=0, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "param_bytes": self.param_bytes,
            "grad_bytes": self.grad_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "buffer_bytes": self.buffer_bytes,
            "activation_bytes": self.activation_bytes,
            "training_peak_bytes": self.training_peak_bytes,
            "inference_peak_bytes": self.inference_peak_bytes,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "dtype": self.dtype,
            "peak_phase": self.peak_phase,
            "max_batch_size": self.max_batch_size,
            "fit_bytes": self.fit_bytes,
            "activation_per_sample": self.activation_per_sample,
            "linear": self.linear,
            "notes": list(self.notes),
        }


def training_peak(mb: ModelBytes, fp: Footprint, opt: OptimizerChoice) -> tuple[int, str]:
    """The training peak and its phase, in steady state (optimizer state exists):

    - forward end: parameters + buffers + optimizer state + everything saved for backward +
      the model's output twice (the loop holds it; the loss saves a tensor of its size, as
      cross-entropy's log-softmax or MSE's difference do);
    - backward, at each module (reverse run order): what is still saved up to it, plus the
      gradients of it and every module after it, plus twice its output (the gradient arriving
      and the one leaving), plus the model's output;
    - optimizer step: parameters + buffers + gradients + optimizer state + the model's output +
      the step's temporaries (Adam's foreach step: two of the largest trainable tensor).
    """
    order = mb.order
    return _peak(mb, opt, fp.activation_bytes, fp.final, map(fp.saved.get, order, repeat(0)),
                 map(fp.outputs.get, order, repeat(0)))


def _peak(mb: ModelBytes, opt: OptimizerChoice, activation: int, final: int, saved: Iterable[int],
          outputs: Iterable[int]) -> tuple[int, str]:
    """``training_peak`` from the footprint's totals and its saved and output bytes per module
    of ``mb.order``."""
    base = mb.param_bytes + mb.buffer_bytes + opt.states_per_param * mb.grad_bytes + final
    best, phase = base + activation + final, "forward"
    if (mb.grad_bytes or activation) and mb.order:
        # at each module: saved up to it (a prefix sum), gradients from it on, twice its output
        back = base + max(map(add, map(add, accumulate(saved), mb.grads_after), map(mul, outputs, repeat(2))))
        if back > best:
            best, phase = back, "backward"
    if mb.grad_bytes:
        temps = 2 * mb.largest_trainable if opt.name in ("adam", "adamw") else 0
        step = base + mb.grad_bytes + temps
        if step > best:
            best, phase = step, "optimizer step"
    return best, phase


def inference_peak(mb: ModelBytes, fp: Footprint, input_bytes: int) -> int:
    """Parameters + buffers + the inputs + the largest pair of consecutive leaf outputs (a
    layer's input and output alive together), with autograd off."""
    outs = [out for out in map(fp.outputs.get, mb.order) if out is not None]
    pair = max(map(add, outs, [0, *outs]), default=0)  # each output with the one before it
    return mb.param_bytes + mb.buffer_bytes + input_bytes + pair


def estimate(mb: ModelBytes, fp: Footprint, opt: OptimizerChoice, dtype: str, input_bytes: int,
             notes: Sequence[str] = ()) -> MemoryEstimate:
    """The memory block at ``fp``'s batch size (see ``training_peak`` for the formula)."""
    peak, phase = training_peak(mb, fp, opt)
    return MemoryEstimate(
        param_bytes=mb.param_bytes,
        grad_bytes=mb.grad_bytes,
        optimizer_bytes=opt.states_per_param * mb.grad_bytes,
        buffer_bytes=mb.buffer_bytes,
        activation_bytes=fp.activation_bytes,
        training_peak_bytes=peak,
        inference_peak_bytes=inference_peak(mb, fp, input_bytes),
        batch_size=fp.batch,
        optimizer=opt.label,
        dtype=dtype,
        peak_phase=phase,
        notes=tuple(notes),
        choice=opt,
        footprint=fp,
        input_bytes=input_bytes,
    )


def refrozen(mem: MemoryEstimate, rows: Sequence[ModuleRow]) -> MemoryEstimate:
    """``mem`` for the trainable set ``rows`` show now (after freezing changed it): gradients,
    optimizer state and the training peak follow at once; activations stay as measured (a
    frozen layer may save less: the next probe says), and a ``--fit`` answer is dropped until
    then."""
    if mem.choice is None or mem.footprint is None:
        return mem
    mb = ModelBytes.of_rows(rows, mem.param_bytes, mem.buffer_bytes)
    if mb.grad_bytes == mem.grad_bytes:
        return mem
    new = estimate(mb, mem.footprint, mem.choice, mem.dtype, mem.input_bytes, mem.notes)
    return dataclasses.replace(new, fit_bytes=mem.fit_bytes)


class PeakLine:
    """``training_peak(mb, one.at(two, b), opt)[0]`` at any batch ``b``, for the many sizes a
    ``--fit`` search tries, without building a footprint for each: the same straight line and
    rounding per module as ``Footprint.at``, computed once per distinct pair of counts (a deep
    stack of like blocks has a handful)."""

    def __init__(self, mb: ModelBytes, opt: OptimizerChoice, one: Footprint, two: Footprint) -> None:
        self.mb, self.opt = mb, opt
        self.b0, self.b1 = one.batch or 1, two.batch or 1
        pairs: dict[tuple[int, int], int] = {}

        def index(a: int, b: int) -> int:
            return pairs.setdefault((a, b - a), len(pairs))

        order = mb.order
        self.saved = [index(one.saved.get(p, 0), two.saved.get(p, 0)) for p in order]
        ran = set(order)
        self.saved_elsewhere = [index(one.saved.get(k, 0), two.saved.get(k, 0))
                                for k in one.saved.keys() | two.saved.keys() if k not in ran]
        self.outputs = [index(one.outputs.get(p, 0), two.outputs.get(p, 0)) for p in order]
        self.final = index(one.final, two.final)
        self.pairs = tuple(pairs)

    def __call__(self, b: int) -> int:
        t, span = b - self.b0, self.b1 - self.b0
        at = [max(0, round(a + d * t / span)) for a, d in self.pairs]
        saved = [at[i] for i in self.saved]
        activation = sum(saved) + sum([at[i] for i in self.saved_elsewhere])
        return _peak(self.mb, self.opt, activation, at[self.final], saved, [at[i] for i in self.outputs])[0]


def fit_batch(limit: int, peak_at: Callable[[int], int], most: int = 2**40) -> int:
    """The largest batch whose training peak is at most ``limit`` (0: not even batch 1).

    ``peak_at(b)``: the training peak at batch ``b`` (interpolated or measured); it grows with
    the batch, so a doubling search and a bisection find the edge."""
    def fits(b: int) -> bool:
        return peak_at(b) <= limit

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= most and fits(hi):
        lo, hi = hi, hi * 2
    if hi > most:
        return lo
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _itemsize(dtype: str) -> int:
    t = getattr(torch, dtype.replace("torch.", ""), None)
    return t.itemsize if isinstance(t, torch.dtype) else 4
