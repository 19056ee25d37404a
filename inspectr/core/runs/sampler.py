"""Provides what the watch measures at a sampled step: per-module norms of parameter gradients,
updates and distances from the start (``ParamLayout``), and output and output-gradient statistics
from hooks armed for the sampled step's forward only (``ActivationWatch``).

The reductions are the probe's own (``probe.stats``, ``probe.grad_stats``): a run's numbers mean
what ``inspectr MODEL`` means by them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from inspectr.core.probe.grad_stats import GradSquares
from inspectr.core.probe.grad_stats import norms as tensor_norms
from inspectr.core.probe.hooks import type_facts
from inspectr.core.probe.stats import OutputStats, StatsAccumulator, finish_stats
from inspectr.core.result import ActivationStats
from inspectr.core.runs.ranks import local
from inspectr.core.values import iter_tensors, measurable

# a 3-D output is [batch, seq, features] after these (see probe.hooks: the same rule)


class ParamLayout:
    """The trainable parameters and the module that owns each directly, for per-module sums.

    Args:
        model: the watched model.
        optimizer: its optimizer, or None; a trainable parameter missing from every group is
            recorded (``in_optimizer``): it can never change.
    """

    def __init__(self, model: nn.Module, optimizer: Any) -> None:
        self.modules: list[tuple[str, nn.Module]] = []
        self.params: list[nn.Parameter] = []
        self.names: list[str] = []
        owner: list[int] = []
        seen: set[int] = set()
        in_opt = None if optimizer is None else {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.module_info: list[tuple[str, str, int, int, int]] = []  # path, type, params, trainable, in optimizer
        for path, module in model.named_modules():
            total = trainable = 0
            missing = False
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                total += p.numel()
                if p.requires_grad:
                    trainable += p.numel()
                    owner.append(len(self.modules))
                    self.params.append(p)
                    self.names.append(f"{path}.{name}" if path else name)
                    missing = missing or (in_opt is not None and id(p) not in in_opt)
            self.modules.append((path, module))
            self.module_info.append((path, type(module).__name__, total, trainable, 0 if missing else 1))
        self.owner = torch.tensor(owner, dtype=torch.long)
        self.owners = sorted(set(owner))

    def per_module(self, squares: torch.Tensor, present: list[int] | None = None) -> dict[int, float]:
        """Square roots of per-module sums of per-parameter squares: module index -> norm.

        ``squares`` holds one value per parameter in order, or, with ``present`` (parameter
        indices), one per parameter named there (those that had a gradient). A NaN or Inf among a
        module's squares makes its norm NaN or Inf."""
        sq = squares.detach().to("cpu", torch.float64)
        owner = self.owner
        if present is not None:
            owner = owner[torch.tensor(present, dtype=torch.long)]
        sums = torch.zeros(len(self.modules), dtype=torch.float64).index_add_(0, owner, sq)
        has = set(owner.tolist())
        values = sums.sqrt().tolist()
        return {i: values[i] for i in self.owners if i in has}

    def snapshot(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [local(p.detach()).clone() for p in self.params]

    def distances(self, before: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared ||w - before||, squared ||w||) per parameter."""
        with torch.no_grad():
            now = [local(p.detach()) for p in self.params]  # a shard's squares: summed by RankLink
            if not now:
                empty = torch.zeros(0, dtype=torch.float64)
                return empty, empty
            diff = torch._foreach_sub(now, before)
            return (tensor_norms(diff).to("cpu", torch.float64).square(),
                    tensor_norms(now).to("cpu", torch.float64).square())


class RunningStats:
    """The BatchNorm layers that track running statistics, and how far those moved between two
    sampled steps: ||r - r_prev|| / ||r_prev|| over running_mean and running_var together.

    Args:
        modules: the watched model's (path, module) pairs, in ``ParamLayout.modules`` order.
    """

    def __init__(self, modules: list[tuple[str, nn.Module]]) -> None:
        self.layers = [(i, m) for i, (_, m) in enumerate(modules)
                       if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                       and m.running_mean is not None and m.running_var is not None]
        self.last = self._snapshot()

    def _snapshot(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [torch.cat([m.running_mean.detach().flatten(), m.running_var.detach().flatten()]).float()
                    for _, m in self.layers]

    def moved(self) -> dict[int, float]:
        """Module index -> relative move since the previous call (or the start); one read."""
        if not self.layers:
            return {}
        now = self._snapshot()
        with torch.no_grad():
            rel = torch.stack([(b - a).norm() / a.norm().clamp_min(1e-12) for a, b in zip(self.last, now)])
            values = rel.to("cpu", torch.float64).tolist()
        self.last = now
        return {i: v for (i, _), v in zip(self.layers, values)}


class ActivationWatch:
    """Forward hooks (and gradient hooks on the outputs) armed for one sampled step.

    One global forward hook (``register_module_forward_hook``) is registered when armed and
    removed when disarmed, so steps that are not sampled pay nothing. Forwards with autograd off
    (evaluation inside the training loop) are not counted: they are not the step's forward.

    Args:
        paths: ``id(module) -> path`` of the watched model's modules.
        on_error: called with the exception when a hook fails; the watch then switches off.
    """

    def __init__(self, paths: dict[int, str], on_error: Callable[[BaseException], None]) -> None:
        self.paths = paths
        self.on_error = on_error
        self.handle: RemovableHandle | None = None
        self.grad_handles: list[RemovableHandle] = []
        self.outputs = OutputStats()
        self.accs: dict[str, StatsAccumulator] = {}
        self.grads = GradSquares()
        self.channel_first_1d = False
        self.order: list[str] = []  # module paths in the order their forward finished (first call)
        self.seconds = 0.0  # time spent in these hooks: part of the watch's own cost

    @property
    def armed(self) -> bool:
        return self.handle is not None

    def arm(self) -> None:
        if self.handle is None:
            self.outputs = OutputStats()
            self.accs = {}
            self.grads = GradSquares()
            self.order = []
            self.handle = nn.modules.module.register_module_forward_hook(self._hook)

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        for h in self.grad_handles:
            h.remove()
        self.grad_handles = []

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        path = self.paths.get(id(module))
        if path is None or not torch.is_grad_enabled():
            return
        t0 = time.perf_counter()
        try:
            kind, is_c1d, seq_layer, nonneg = type_facts(type(module))
            c1d = True if is_c1d else False if seq_layer else None  # the layout after it (None: unchanged)
            acc = self.accs.get(path)
            if acc is None:
                acc = self.accs[path] = StatsAccumulator()
                self.order.append(path)
            with torch.no_grad():
                for t in iter_tensors(output):
                    if t.is_floating_point() and measurable(t):
                        self.outputs.observe(acc, t, kind, self.channel_first_1d, nonneg)
            for t in iter_tensors(output):
                if t.requires_grad and t.grad_fn is not None:
                    self.grad_handles.append(t.register_hook(self._grad_hook(path)))
            if c1d is not None:
                self.channel_first_1d = c1d
        except Exception as exc:  # never let the watch break the user's forward
            self.disarm()
            self.on_error(exc)
        self.seconds += time.perf_counter() - t0

    def _grad_hook(self, path: str) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            t0 = time.perf_counter()
            try:
                if g is not None and g.is_floating_point():
                    self.grads.add(path, g)
            except Exception as exc:  # the watch's failure must not become the backward's
                self.on_error(exc)
            self.seconds += time.perf_counter() - t0
        return hook

    def collect(self) -> tuple[dict[str, ActivationStats], dict[str, float]]:
        """Disarm and reduce: output statistics and output-gradient norms per module path."""
        self.disarm()
        with torch.no_grad():
            self.outputs.flush()
            stats = {p: s for p, acc in self.accs.items() if (s := finish_stats(acc)) is not None}
            squares: dict[str, float] = {}
            for sq, owner in self.grads.totals():
                squares[owner] = squares.get(owner, 0.0) + sq
        self.accs = {}
        self.outputs = OutputStats()
        self.grads = GradSquares()
        return stats, {p: math.sqrt(v) if v >= 0 else math.nan for p, v in squares.items()}
