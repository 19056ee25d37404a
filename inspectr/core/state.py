"""Provides snapshot and restore of everything a probe or a training run may touch in a model.

``preserved`` puts back parameters and buffers (dicts and values), train/eval flags,
``requires_grad``, ``.grad`` and the RNG states, also on error or Ctrl-C. ``ParamGuard`` copies
a parameter just before a forward changes it in place, so that it can be put back too.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from inspectr.core.walk import ModelWalk, walk

# in-place Tensor dunders (besides the ``name_`` methods) that can change a parameter
INPLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__"}


class ParamGuard:
    """Copies of parameters taken just before an in-place op changes them (tensor id -> (tensor, copy))."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.by_ptr: dict[int, torch.Tensor] = {p.data_ptr(): p for p in params if not p.is_meta}
        self.backups: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def before_call(self, func: object, args: tuple[object, ...]) -> None:
        """Back up ``args[0]`` when ``func`` is an in-place op on a parameter."""
        if not self.by_ptr or not args or not isinstance(args[0], torch.Tensor):
            return
        name = getattr(func, "__name__", "")
        if not ((name.endswith("_") and not name.startswith("__")) or name in INPLACE_DUNDERS):
            return
        t = args[0]
        if t.is_meta or t.layout != torch.strided:
            return
        p = self.by_ptr.get(t.data_ptr())
        if p is not None and id(p) not in self.backups:
            self.backups[id(p)] = (p, p.detach().clone())


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, and put it back as it was.

    An inspection allocates hundreds of thousands of small objects (hook closures, rows, stat
    tuples) while a large model's object graph is alive: each collection then scans that graph
    again (0.4 s of the summary alone on a 20,000-module model). Reference counting still frees
    everything that is not in a cycle.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Everything allocated meanwhile counts as new: the first collection after ``enable``
            # would scan all of it (0.1-0.25 s after a 20,000-module inspection, while the
            # report it scans is alive). freeze + unfreeze moves every tracked object to the
            # oldest generation and zeroes the counters without a scan; cyclic garbage among
            # them is freed by the next full collection. Skipped when the program froze objects
            # itself: unfreeze would thaw those too.
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def seed_torch(seed: int) -> None:
    """``torch.manual_seed`` for the generators a probe draws from: the CPU's, and those of
    CUDA and MPS once started (``preserved`` puts the same ones back). ``torch.manual_seed``
    also queues a seed for every device not started yet (a stack trace each, a millisecond in
    all), which the user's program would run when it starts that device: a trace of the probe."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.manual_seed(seed)


@contextmanager
def preserved(model: nn.Module, extra_params: list[torch.Tensor] | None = None,
              backups: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
              tree: ModelWalk | None = None) -> Iterator[None]:
    """Put back everything a forward/backward pass can change, even on error or Ctrl-C.

    Restores: every module's parameter and buffer dicts as they were (identity, and buffers
    registered or set during the pass are dropped), buffer values (BatchNorm running stats),
    ``.training`` of every module, ``requires_grad`` and ``.grad`` of every parameter, the
    torch/CUDA/Python RNG states, and the values of parameters a forward changed in place
    (``backups``: tensor id -> (tensor, copy taken just before the in-place op)).
    ``tree``: the model's ``walk`` when the caller has it already.
    """
    modules = [m for _, m in (tree or walk(model)).modules]
    training = [m.training for m in modules]
    # (module, its parameter dict, its buffer dict); None for an empty dict
    dicts = [(m, dict(m._parameters) if m._parameters else None, dict(m._buffers) if m._buffers else None)
             for m in modules]
    copies = [(b, b.detach().clone()) for _, _, bs in dicts if bs for b in bs.values()
              if b is not None and not b.is_meta]
    unique = {id(p): p for _, ps, _ in dicts if ps for p in ps.values() if p is not None}
    for p in extra_params or []:
        unique[id(p)] = p
    grads = [(p, p.grad, p.requires_grad) for p in unique.values()]
    py_state = random.getstate()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        for p in unique.values():
            p.grad = None
        yield
    finally:
        for m, ps, bs in dicts:
            for now, then in ((m._parameters, ps), (m._buffers, bs)):
                if not isinstance(now, dict):
                    continue  # a ScriptModule's view of its C++ slots: TorchScript cannot add or swap them
                if then is None:
                    if now:
                        now.clear()
                elif len(now) != len(then) or any(now.get(k) is not v for k, v in then.items()):
                    now.clear()
                    now.update(then)
        with torch.no_grad():
            for b, copy in copies:
                b.copy_(copy)
            for t, copy in (backups or {}).values():
                t.copy_(copy)
        for p, g, rg in grads:
            p.grad = g
            if p.requires_grad != rg:
                p.requires_grad_(rg)
        for m, flag in zip(modules, training):
            if m.training != flag:
                m.training = flag
        random.setstate(py_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
