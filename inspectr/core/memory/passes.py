"""Provides byte-counting forwards at any batch size (``--fit``, mixed precision): on meta copies
of the model (no arithmetic, but every op runs Python shape code) or on the probe's device,
whichever an estimate says is cheaper.

All passes share one session: the model's state is saved once, meta copies are swapped in once,
and two global module hooks (filtered by module identity) stand in for a pair of hooks per
module: on a 20,000-module model, per-module handles and a ``functional_call`` per pass cost
about as much as a pass on the device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as nn_module

from inspectr.core.memory.estimate import Footprint, batch_size_of
from inspectr.core.probe.saved_bytes import SavedBytes
from inspectr.core.result import ModuleRow
from inspectr.core.sources.base import Inputs, cast_floats
from inspectr.core.sources.build_guard import available_for
from inspectr.core.state import preserved
from inspectr.core.values import iter_tensors
from inspectr.core.walk import ModelWalk, copies_on

try:  # what functional_call does on every call: here entered once for all the passes
    from torch.nn.utils.stateless import _reparametrize_module
except ImportError:  # pragma: no cover - a torch without it: functional_call on every pass
    _reparametrize_module = None

# Rough costs, in seconds, for choosing where the passes run. On meta every op goes through
# Python shape functions and decompositions (LayerNorm, GELU, Dropout: about 1 ms a module,
# less for a conv; counted low so that only a clear gain leaves meta); on a real device a small
# module costs tens of microseconds and a large one its arithmetic.
META_CALL_S = 3e-4
DEVICE_CALL_S = {"cpu": 3e-5, "cuda": 3e-5}
FLOP_S = {"cpu": 1e-10, "cuda": 1e-13}  # per FLOP (2 CPU cores do about 1e10 FLOP/s)
BYTE_S = {"cpu": 2e-10, "cuda": 1e-12}  # per byte of activations written
FLOPS_PER_BYTE = 100  # when the probe counted no FLOPs: a conv net does about 50 per saved byte


def device_is_cheaper(rows: Sequence[ModuleRow], fp: Footprint, device: str, copy_bytes: int,
                      reuse_probe: bool) -> bool:
    """Whether the passes at twice and four times the probe batch cost less on ``device`` than
    on meta (which needs one at the probe batch too), and their memory (activations at four
    times the batch, ``copy_bytes`` of tensor copies) takes at most half of what is free there.

    Args:
        rows: the probe's rows (module calls, FLOPs); ``fp``: its footprint at the probe batch.
        reuse_probe: the probe's own count serves as the pass at the probe batch on ``device``.
    """
    kind = torch.device(device).type
    if kind not in DEVICE_CALL_S or not rows:
        return False
    calls = sum(r.calls for r in rows if r.is_leaf)
    written = fp.activation_bytes + sum(fp.outputs.values())
    flops = rows[0].flops_forward or FLOPS_PER_BYTE * written
    multiples = (2, 4) if reuse_probe else (1, 2, 4)
    on_device = sum(k * (flops * FLOP_S[kind] + written * BYTE_S[kind]) + calls * DEVICE_CALL_S[kind]
                    for k in multiples)
    on_meta = 3 * calls * META_CALL_S
    needs = 4 * (fp.activation_bytes + fp.final) + copy_bytes
    return on_device < on_meta and needs <= available_for(device) // 2


class CountingPasses:
    """Byte-counting forwards at any batch size, in one session: open it with ``with``; the
    model is put back as it was when it closes (weights, buffers, modes, ``requires_grad``,
    RNG). On meta the passes run on meta copies; on the device on the probe's copies, else on
    the model's own tensors, with a copy of the weights to put back any a forward changes.

    Args:
        inputs: the probe inputs, on the probe device; ``batch``: their batch size.
        device: the probe device (``meta`` for shape-only probes); ``param_map``: the probe's
            copies of the model's tensors there, when it did not run on the model's own.
        amp: count under ``torch.autocast`` in this dtype (on meta, which autocast cannot run
            on, every float is cast instead).
        on_device: count on ``device`` rather than on meta copies; ``device_cheap``: passes
            there are cheap (``device_is_cheaper``), so a third size may check linearity.
        probe: the probe's own footprint when it counted as these passes do (no autocast, every
            module in the mode the passes use): it stands for the pass at the probe batch
            wherever the passes run on the probe's device.
    """

    def __init__(self, model: nn.Module, tree: ModelWalk, inputs: Inputs, batch: int, training: bool,
                 device: str, param_map: dict[str, torch.Tensor] | None, amp: torch.dtype | None,
                 on_device: bool, device_cheap: bool = False, probe: Footprint | None = None) -> None:
        self.model, self.tree, self.inputs, self.batch = model, tree, inputs, batch
        self.training, self.device, self.param_map, self.amp = training, device, param_map, amp
        self.meta = device == "meta" or not on_device  # where the passes run
        self.device_cheap = device_cheap
        self.pure_cast = amp is not None and device == "meta"
        self.trains = any(p.requires_grad for _, p in tree.params)
        self.probe = probe
        self.cache: dict[int, Footprint] = self._seeded()
        self.meta_error = ""
        self._session: contextlib.ExitStack | None = None
        self._call_map: dict[str, torch.Tensor] | None = None  # for functional_call on every pass
        self._stack: list[tuple[str]] = []
        self._outputs: dict[str, int] = {}
        self._final = 0
        self._counter: SavedBytes | None = None

    def _seeded(self) -> dict[int, Footprint]:
        probe = self.probe
        where_probed = not self.meta or self.device == "meta"
        return {probe.batch: probe} if probe is not None and probe.batch and where_probed else {}

    @property
    def cheap(self) -> bool:
        """Another pass costs little: on meta (no arithmetic), or on a device where it is cheap."""
        return self.meta or self.device_cheap

    def __enter__(self) -> CountingPasses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks and put the model back (also after an error)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __call__(self, b: int) -> Footprint:
        """The footprint at batch ``b`` (counted once, then cached). Exceptions of the model's
        forward propagate, except a failure on meta copies (data-dependent ops have no meta
        kernel): then every pass moves to the probe device, which is slower but real."""
        if b in self.cache:
            return self.cache[b]
        try:
            fp = self._count(b)
        except Exception as exc:
            if not self.meta or self.device == "meta":
                raise
            self.close()
            self.meta = False
            self.meta_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            self.cache = self._seeded()  # what meta counted so far is counted again on the device
            return self(b)
        self.cache[b] = fp
        return fp

    def _count(self, b: int) -> Footprint:
        if self._session is None:
            self._open()
        assert self._counter is not None
        args = rebatch(self.inputs.args, self.batch, b, meta=self.meta)
        kwargs = rebatch(self.inputs.kwargs, self.batch, b, meta=self.meta)
        if self.pure_cast and self.amp is not None:
            cast = cast_floats(Inputs(args, kwargs, ""), self.amp)
            args, kwargs = cast.args, cast.kwargs
        self._stack.clear()
        self._outputs, self._final = {}, 0
        counter = self._counter
        counter.restart()
        a, k = (_grad_inputs(args), _grad_inputs(kwargs)) if not self.trains else (args, kwargs)
        if self.amp is not None and not self.pure_cast:
            device_type = next((t.device.type for t in iter_tensors((a, k))), "cpu")
            autocast: Any = torch.autocast(device_type, dtype=self.amp)
        else:
            autocast = contextlib.nullcontext()
        try:
            with torch.enable_grad(), counter.counting(), autocast:
                # held until counting ends: the output holds the graph whose saves count
                if self._call_map is not None:
                    out = torch.func.functional_call(self.model, self._call_map, a, k)
                else:
                    out = self.model(*a, **k)
            del out
        finally:
            # a failed pass leaves frames on the stack holding their inputs, and so the graph,
            # whose saves hold the counter, which holds the stack: a cycle no collector sees
            self._stack.clear()
        return Footprint(batch_size_of((args, kwargs)), dict(counter.by_module), self._outputs, self._final)

    def _open(self) -> None:
        """Save the model's state, swap its tensors for copies where the passes need them,
        install the hooks."""
        session = contextlib.ExitStack()
        try:
            tensors = self._tensors()
            extra = [t for t in (tensors or {}).values() if isinstance(t, nn.Parameter)]
            backups: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            session.enter_context(preserved(self.model, extra, backups, tree=self.tree))
            self.model.train(self.training)
            if tensors is not None:
                if _reparametrize_module is not None:
                    session.enter_context(_reparametrize_module(self.model, tensors, tie_weights=True))
                else:
                    self._call_map = tensors
            elif not self.meta:
                self._guard_weights(session, backups)
            self._counter = SavedBytes(self._stack, [p for _, p in self.tree.params] + extra)
            self._hook(session)
        except BaseException:
            session.close()
            raise
        self._session = session

    def _tensors(self) -> dict[str, torch.Tensor] | None:
        """Name -> tensor the passes run on (None: the model's own)."""
        if self.pure_cast:
            return copies_on(self.model, "meta", self.amp)
        if self.param_map is not None and (not self.meta or self.device == "meta"):
            return self.param_map  # the probe's copies, on the device the passes run on
        if not self.meta or all(t.is_meta for t in _own_tensors(self.tree)):
            return None
        return copies_on(self.model, "meta")

    def _guard_weights(self, session: contextlib.ExitStack, backups: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Passes on the model's own tensors: a forward that changes a weight in place (a
        clamp, a renormalization) has it put back by ``preserved`` from a copy taken here. Only
        changed weights are written back, so the others keep their version counters (a graph
        the caller holds stays valid)."""
        params = [p for _, p in self.tree.params if not p.is_meta]
        size = sum(p.numel() * p.element_size() for p in params)
        if size > available_for(self.device) // 2:
            return  # no room for copies
        copies = [(p, p.detach().clone()) for p in params]

        def changed() -> None:
            backups.update({id(p): (p, c) for p, c in copies if not torch.equal(p, c)})

        session.callback(changed)  # runs before ``preserved`` puts things back

    def _hook(self, session: contextlib.ExitStack) -> None:
        """Two global module hooks that keep the stack of running modules (for the saved-bytes
        counter) and add up leaf and model outputs; modules of other models, and calls from
        other threads, pass through."""
        paths = {id(m): path for path, m in self.tree.modules}
        leaves = {id(m) for _, m in self.tree.modules if not m._modules}
        root = id(self.model)
        stack = self._stack
        thread = threading.get_ident()

        def pre(m: nn.Module, _args: Any) -> None:
            path = paths.get(id(m))
            if path is not None and threading.get_ident() == thread:
                stack.append((path,))

        def post(m: nn.Module, _args: Any, out: Any) -> None:
            key = id(m)
            path = paths.get(key)
            if path is None or threading.get_ident() != thread:
                return
            if stack:
                stack.pop()
            leaf = key in leaves
            if leaf or key == root:
                if type(out) is torch.Tensor:
                    n = out.numel() * out.element_size()
                else:
                    seen = {id(t): t for t in iter_tensors(out)}
                    n = sum(t.numel() * t.element_size() for t in seen.values())
                if leaf:
                    self._outputs[path] = self._outputs.get(path, 0) + n
                if key == root:
                    self._final += n

        session.callback(nn_module.register_module_forward_pre_hook(pre).remove)
        session.callback(nn_module.register_module_forward_hook(post, always_call=True).remove)


def _own_tensors(tree: ModelWalk) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for _, m in tree.modules:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None:
                seen[id(t)] = t
    return list(seen.values())


def _grad_inputs(x: Any) -> Any:
    """Floating tensors of ``x`` as non-leaf copies that require grad, as the probe makes them
    when no parameter trains (so gradients, and what autograd saves, still reach the input)."""
    if isinstance(x, torch.Tensor):
        return x.detach().requires_grad_(True).clone() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {key: _grad_inputs(v) for key, v in x.items()}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_grad_inputs(v) for v in x)
    return x


def rebatch(x: Any, old: int, new: int, meta: bool) -> Any:
    """``x`` with every tensor whose leading size is ``old`` grown to ``new`` (rows repeated in
    turn, so token ids stay valid; empty meta tensors when ``meta``); lists of ``old`` tensors
    likewise. Everything else is kept."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0 or x.shape[0] != old:
            return x.to("meta") if meta else x
        if meta:
            return torch.empty((new, *x.shape[1:]), dtype=x.dtype, device="meta")
        return x[torch.arange(new, device=x.device) % old]
    if isinstance(x, list) and len(x) == old and x and all(isinstance(t, torch.Tensor) for t in x):
        return [rebatch(x[i % old], -1, -1, meta) for i in range(new)]
    if isinstance(x, dict):
        return {k: rebatch(v, old, new, meta) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(rebatch(v, old, new, meta) for v in x)
    return x
