"""Provides the operation behind a failure: a replay of a failing forward under a ``TorchFunctionMode``
that names the torch call that first made a NaN or Inf (and whether it made it from finite inputs
or only passed it on), or the call that raised with its operand shapes and where a wrong size came
from, each with the user's source line.

The probe's module hooks name the module; a module holds dozens of calls, and the fix is on one
line. This pass runs only after the module-level pass has seen a failure (the pattern of JAX's
``debug_nans``), so a healthy probe pays nothing. During the replay each call costs a frame walk
(code object and instruction offset, no text) and, when ``check`` is on, one finiteness test of
its outputs; text, columns and context are resolved for the one culprit shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from inspectr.core.probe.op_site import OpSite
from inspectr.core.probe.size_origin import explain_failure
from inspectr.core.probe.source_line import (
    Site,
    SourceLine,
    op_name,
    resolve,
    traceback_site,
    user_frame,
)
from inspectr.core.state import INPLACE_DUNDERS, ParamGuard
from inspectr.core.values import iter_tensors

__all__ = ["FailedOp", "OpSite", "OpTrace", "OpTracer"]


@dataclass(frozen=True)
class FailedOp:
    """The torch call a failing forward raised in, and where its offending operand came from."""

    site: OpSite
    explanation: str  # "`classifier` (Linear) expects 512 features and got 2048: 2048 = 128×4×4 from ..."
    size_origin: OpSite | None  # the call that made the offending operand (None: the model's input)


@dataclass(frozen=True)
class OpTrace:
    """What the replay found (torch-free)."""

    nan: OpSite | None = None  # the call that made the NaN of the watched module's output
    inf: OpSite | None = None
    from_inf: OpSite | None = None  # the call that made the Inf a NaN was made from
    failed: FailedOp | None = None
    error_source: SourceLine | None = None  # the user's line in the replay's traceback


class _Call:
    """One call during the replay, as cheap as it can be kept: text comes later, for the culprit."""

    __slots__ = ("func", "site", "module", "operands", "output", "parent")

    def __init__(self, func: Any, site: Site | None, module: str | None,
                 operands: tuple[tuple[int, ...], ...], output: tuple[int, ...] | None,
                 parent: _Call | None = None) -> None:
        self.func, self.site, self.module, self.operands, self.output = func, site, module, operands, output
        self.parent = parent  # the call that made its first operand


class _Origin:
    __slots__ = ("call", "created", "inputs_finite", "from_inf")

    def __init__(self, call: _Call, created: bool, inputs_finite: bool = True, from_inf: _Origin | None = None) -> None:
        self.call, self.created, self.inputs_finite, self.from_inf = call, created, inputs_finite, from_inf


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The tensor operands of a call (one level into lists: ``torch.cat([a, b])``)."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _checkable(t: torch.Tensor) -> bool:
    return ((t.is_floating_point() or t.is_complex()) and not t.is_meta and t.layout == torch.strided
            and t.numel() > 0)


def _kinds(t: torch.Tensor) -> tuple[bool, bool]:
    """(holds NaN, holds Inf)."""
    if not _checkable(t) or bool(torch.isfinite(t).all()):
        return False, False
    return bool(torch.isnan(t).any()), bool(torch.isinf(t).any())


def _mutates(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.startswith("__")) or name in INPLACE_DUNDERS


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in t.shape)
    except (TypeError, RuntimeError):  # symbolic sizes
        return ()


class OpTracer(TorchFunctionMode):
    """Sees every torch call of one forward; use ``with tracer.watching(): forward`` then ``result``.

    Args:
        named: the model's modules (path, module): the running module of each call.
        params: parameters to back up before an in-place op changes them (for ``preserved``).
        check: test each call's outputs for NaN/Inf (off for a forward that raised).
        watch: the module whose output the NaN/Inf is traced back from (the module-level
            culprit); None: the first call that made one.
    """

    def __init__(self, named: list[tuple[str, nn.Module]], params: list[torch.Tensor], check: bool,
                 watch: str | None = None) -> None:
        super().__init__()
        self.named = named
        self.types = {path: type(m).__name__ for path, m in named}
        self.guard = ParamGuard(params)
        self.check = check
        self.watch = watch
        self.stack: list[str] = []
        self.in_watch = 0
        self.made: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> the _Call that made it
        self.bad: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> {"nan"|"inf": _Origin}
        self.created: list[tuple[str, _Origin, bool]] = []  # (kind, origin, inside the watched module)
        self.found: dict[str, _Origin] = {}
        self.failed: tuple[_Call, list[torch.Tensor], BaseException] | None = None

    @contextmanager
    def watching(self) -> Iterator[None]:
        handles = []
        try:
            for path, mod in self.named:
                if isinstance(mod, torch.jit.ScriptModule):
                    continue
                handles.append(mod.register_forward_pre_hook(self._pre(path)))
                handles.append(mod.register_forward_hook(self._post(path)))
            with self:
                yield
        finally:
            for h in handles:
                h.remove()
            self.stack.clear()

    def _pre(self, path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            self.stack.append(path)
            if path == self.watch:
                self.in_watch += 1

        return hook

    def _post(self, path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            while self.stack and self.stack.pop() != path:
                pass  # frames of calls the model caught an exception from
            if path == self.watch:
                self.in_watch = max(0, self.in_watch - 1)
                if self.check:
                    self._watched(output)

        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        self.guard.before_call(func, args)
        target = args[0] if args and isinstance(args[0], torch.Tensor) and _mutates(func) else None
        before = None
        if self.check and target is not None:
            try:
                before = _kinds(target)
            except Exception:
                before = None
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            ins = _inputs(args, kwargs)
            self.failed = (self._call(func, ins, None), ins, exc)
            raise
        if isinstance(out, torch.Tensor):
            outs: list[torch.Tensor] = [out]
        elif isinstance(out, (tuple, list)):
            outs = [t for t in out if isinstance(t, torch.Tensor)]
        else:
            outs = [target] if target is not None else []  # __setitem__ returns None
        if not outs:
            return out
        ins = _inputs(args, kwargs)
        call = self._call(func, ins, outs[0])
        for t in outs:
            self.made[t] = call
        if self.check:
            try:
                self._check(call, outs, ins, target, before)
            except Exception:  # a tensor the tests cannot read (a subclass, a fake): that call goes unjudged
                pass
        return out

    def _call(self, func: Any, ins: list[torch.Tensor], out: torch.Tensor | None) -> _Call:
        return _Call(func, user_frame(2), self.stack[-1] if self.stack else None,
                     tuple(_shape(t) for t in ins), _shape(out) if out is not None else None,
                     self.made.get(ins[0]) if ins and not self.check else None)

    def _check(self, call: _Call, outs: list[torch.Tensor], ins: list[torch.Tensor], target: torch.Tensor | None,
               before: tuple[bool, bool] | None) -> None:
        for t in outs:
            nan, inf = _kinds(t)
            if not (nan or inf):
                if t in self.bad:
                    del self.bad[t]  # an in-place op made it finite again (nan_to_num_)
                continue
            record: dict[str, _Origin] = {}
            for kind, present in (("nan", nan), ("inf", inf)):
                if present:
                    record[kind] = self._origin(kind, call, t, ins, target, before)
            self.bad[t] = record

    def _origin(self, kind: str, call: _Call, t: torch.Tensor, ins: list[torch.Tensor],
                target: torch.Tensor | None, before: tuple[bool, bool] | None) -> _Origin:
        """Where the ``kind`` values of ``t`` come from: an operand that held them, or this call."""
        index = 0 if kind == "nan" else 1
        finite_in = True
        inf_from: _Origin | None = None
        for i in ins:
            if i is target and before is not None:
                held = before  # the operand an in-place op wrote: as it was before the call
            else:
                known = self.bad.get(i)
                if known is not None:
                    if kind in known:
                        return known[kind]
                    inf_from = inf_from or known.get("inf")
                    finite_in = False
                    continue
                held = _kinds(i)
            if held[index]:
                prior = self.bad.get(i) if i is target else None
                if prior is not None and kind in prior:
                    return prior[kind]
                return _Origin(call, created=False)  # a parameter or input that already held it
            if held[0] or held[1]:
                finite_in = False
        origin = _Origin(call, created=True, inputs_finite=finite_in, from_inf=inf_from if kind == "nan" else None)
        self.created.append((kind, origin, self.in_watch > 0))
        return origin

    def _watched(self, output: Any) -> None:
        for t in iter_tensors(output):
            if not _checkable(t):
                continue
            nan, inf = _kinds(t)
            record = self.bad.get(t) or {}
            for kind, present in (("nan", nan), ("inf", inf)):
                if present and kind not in self.found:
                    origin = record.get(kind) or next(
                        (o for k, o, inside in self.created if k == kind and inside), None)
                    if origin is not None:
                        self.found[kind] = origin

    def _site(self, origin: _Origin | None) -> OpSite | None:
        if origin is None:
            return None
        return self.site_of(origin.call, origin.created, origin.inputs_finite)

    def site_of(self, call: _Call, created: bool = True, inputs_finite: bool = True) -> OpSite:
        """Resolve one call's text: only ever for a culprit."""
        mtype = self.types.get(call.module) if call.module is not None else None
        return OpSite(op_name(call.func, call.site), created, call.module, mtype, call.operands, call.output,
                      resolve(call.site), inputs_finite)

    def result(self, exc: BaseException | None = None) -> OpTrace:
        """What the replay found; ``exc``: the exception the replayed forward raised (None: it ran)."""
        found = dict(self.found)
        if self.watch is None:  # no module to trace back from: the first call that made each kind
            for kind, origin, _ in self.created:
                found.setdefault(kind, origin)
        nan = found.get("nan")
        from_inf = self._site(nan.from_inf) if nan is not None and nan.from_inf is not None else None
        failed = None
        if exc is not None and self.failed is not None and _same(self.failed[2], exc):
            call, ins, _ = self.failed
            site = self.site_of(call)
            origin_call = self.made.get(ins[0]) if ins else None
            made_by = self.site_of(origin_call) if origin_call is not None else None
            before = origin_call.parent if origin_call is not None else None
            made_before = self.site_of(before) if before is not None else None
            failed = FailedOp(site, explain_failure(site, made_by, [_shape(t) for t in ins], exc, made_before),
                              made_by)
        self.failed = None  # the exception holds the frames, and they the tensors
        return OpTrace(self._site(nan), self._site(found.get("inf")), from_inf, failed,
                       resolve(traceback_site(exc.__traceback__)) if exc is not None else None)


def _same(recorded: BaseException, final: BaseException) -> bool:
    """The forward's exception is the one a torch call raised, or raised from it."""
    seen: set[int] = set()
    e: BaseException | None = final
    while e is not None and id(e) not in seen:
        if e is recorded:
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
