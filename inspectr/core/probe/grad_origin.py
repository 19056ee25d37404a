"""Provides the origin of a non-finite gradient: the backward op that first turned finite incoming
gradients into NaN or Inf, with the module and the source line of its forward call.

A forward can stay finite while its backward is not: ``torch.where(h > 0, torch.sqrt(h), 0)``
still differentiates sqrt where h <= 0, and 0 times its infinite (or NaN) derivative is NaN;
``torch.sqrt(w)`` of a parameter initialised to zero has an infinite gradient. Module output
gradients show where the NaN arrives, not which op made it, so a pass whose gradients came out
non-finite is replayed under ``GradOriginTracer`` (the failure path only: a healthy pass pays
nothing). It tags every autograd node the forward makes with the module running at the time and
the user's line that called the op, and hooks each node to compare the gradients it receives
with those it sends on. Backward runs the nodes one by one, so the first node whose incoming
gradients are finite and whose outgoing ones are not is where the NaN or Inf was born.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from inspectr.core.probe.source_line import (
    Site,
    SourceLine,
    op_name,
    resolve,
    stack_source,
    user_frame,
)
from inspectr.core.state import ParamGuard


@dataclass(frozen=True)
class GradOrigin:
    """Where the first non-finite gradient of a backward pass was born (torch-free)."""

    module: str | None  # the innermost module running when the forward op was called ("" the root;
    # None: outside every module, e.g. in a training step's loss)
    module_type: str | None
    op: str  # the forward call as written: "torch.sqrt", "Tensor.log", "/", "MyFn.apply", else the node's name
    node: str  # the autograd node, e.g. "SqrtBackward0"
    kind: str  # "nan" | "inf": NaN when its output gradients hold any NaN
    count: int  # non-finite values in the gradients it sent on
    numel: int  # of so many values
    location: str = ""  # "file:line" of the user's code that called the op ("" unknown)
    code: str = ""  # that line, stripped
    later: int = 0  # further backward ops that turned finite gradients non-finite after it
    source: SourceLine | None = None  # the user's line with the call's columns and the lines around it


def _finite(g: torch.Tensor) -> bool:
    if g.is_sparse:
        g = g._values()
    if g.is_nested or g.is_meta or not (g.is_floating_point() or g.is_complex()):
        return True
    return bool(torch.isfinite(g).all())


def _counts(grads: list[torch.Tensor]) -> tuple[str, int, int]:
    """(kind, non-finite values, values) over the gradients a node sent on."""
    nan = bad = numel = 0
    for g in grads:
        v = g._values() if g.is_sparse else g
        nan += int(torch.isnan(v).sum())
        bad += int((~torch.isfinite(v)).sum())
        numel += v.numel()
    return ("nan" if nan else "inf"), bad, numel


def short_location(location: str) -> str:
    """``/long/path/model.py:12`` -> ``model.py:12``."""
    return os.path.basename(location) if location else ""


class _OpWatch(TorchFunctionMode):
    """Sees each torch call of the forward and hands its outputs to the tracer."""

    def __init__(self, tracer: GradOriginTracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.tracer.guard.before_call(func, args)
        out = func(*args, **(kwargs or {}))
        self.tracer.seen(out, func)
        return out


Tag = tuple[str | None, Any, Site | None]  # (module path, the torch function or None, the user's frame)


class GradOriginTracer:
    """Tags the autograd nodes of one forward and finds where backward first went non-finite.

    Use ``with tracer.watching(): forward``, then run the backward (outside it), then read
    ``origin``; ``close()`` (or leaving ``traced``) removes every hook it placed.
    """

    def __init__(self, named: list[tuple[str, nn.Module]], params: list[torch.Tensor]) -> None:
        self.named = named
        self.types = {path: type(m).__name__ for path, m in named}
        # parameters a forward changes in place are copied first, for the caller's ``preserved``
        self.guard = ParamGuard(params)
        self.stack: list[str] = []
        self.nodes: dict[int, Any] = {}  # id -> node, held so that ids stay unique while tagging
        self.handles: list[RemovableHandle] = []
        self.origin: GradOrigin | None = None
        self.later = 0

    @contextmanager
    def watching(self) -> Iterator[None]:
        """The forward runs inside: module hooks keep the running module, the mode sees each op."""
        module_handles = []
        try:
            for path, mod in self.named:
                if isinstance(mod, torch.jit.ScriptModule):
                    continue
                module_handles.append(mod.register_forward_pre_hook(self._pre(path)))
                module_handles.append(mod.register_forward_hook(self._post(path)))
            # nodes no torch call shows (a custom autograd Function) keep the stack that made them
            with _OpWatch(self), torch.autograd.set_detect_anomaly(True, check_nan=False):
                yield
        finally:
            for h in module_handles:
                h.remove()
            self.stack.clear()

    def close(self) -> GradOrigin | None:
        """Remove the node hooks and let the graph go; returns ``origin`` with the count of later births."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.nodes.clear()
        if self.origin is not None and self.later:
            self.origin = replace(self.origin, later=self.later)
        return self.origin

    def _pre(self, path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            self.stack.append(path)

        return hook

    def _post(self, path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            while self.stack and self.stack.pop() != path:
                pass  # frames of calls the model caught an exception from
            # nodes no torch call showed (a custom autograd Function, ops run while torch
            # functions were disabled) belong to the module that returned them
            self.seen(output, None, path)

        return hook

    def seen(self, out: Any, func: Any, path: str | None = None) -> None:
        """Tag the nodes behind ``out`` that have no tag yet: made by ``func`` (or inside it)."""
        if isinstance(out, torch.Tensor):
            tensors: Any = (out,)
        elif isinstance(out, (tuple, list)):
            tensors = [t for t in out if isinstance(t, torch.Tensor)]
        else:
            return
        fresh = []
        for t in tensors:
            if t.requires_grad:
                fn = t.grad_fn
                if fn is not None and id(fn) not in self.nodes:
                    fresh.append(fn)
        if not fresh:
            return
        where = path if path is not None else (self.stack[-1] if self.stack else None)
        tag = (where, func, user_frame(2) if func is not None else None)
        for fn in fresh:
            self._adopt(fn, tag)

    def _adopt(self, node: Any, tag: Tag) -> None:
        """Hook ``node`` and the untagged nodes behind it: the inner steps of a composite call
        (``F.normalize``'s norm and clamp) share the tag of the call that made them. A custom
        Function's node was made by its ``apply``, which no torch call shows: it keeps only the
        module, and its line comes from the stack anomaly mode recorded."""
        todo = [node]
        while todo:
            n = todo.pop()
            if n is None or id(n) in self.nodes:
                continue
            self.nodes[id(n)] = n
            if type(n).__name__ == "AccumulateGrad":
                continue  # a leaf: it sends nothing on
            own = (tag[0], None, None) if isinstance(n, BackwardCFunction) else tag
            self.handles.append(n.register_hook(self._hook(n, own)))
            todo.extend(f for f, _ in n.next_functions)

    def _hook(self, node: Any, tag: Tag) -> Callable[..., None]:
        name = node.name()

        def hook(grad_inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            bad = [g for g in grad_inputs if g is not None and not _finite(g)]
            if not bad or any(g is not None and not _finite(g) for g in grad_outputs):
                return  # finite, or passing on what it received
            if self.origin is not None:
                self.later += 1
                return
            kind, count, numel = _counts(bad)
            path, func, site = tag
            mtype = self.types.get(path) if path is not None else None
            if func is not None:
                op, source = op_name(func, site), resolve(site)
            else:  # a custom Function's node (or one made while torch functions were off)
                op = f"{name[:-len('Backward')]}.apply" if name.endswith("Backward") else name
                source = stack_source(node.metadata.get("traceback_"))
            self.origin = GradOrigin(path, mtype, op, name, kind, count, numel,
                                     source.location if source is not None else "",
                                     source.code if source is not None else "", source=source)

        return hook


def has_nonfinite(values: Any) -> bool:
    """Whether any of the floats (None skipped) is NaN or Inf."""
    return any(v is not None and not math.isfinite(v) for v in values)
