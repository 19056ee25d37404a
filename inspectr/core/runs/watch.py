"""Provides ``Watch``, what ``inspectr.watch(model, optimizer, run=..., every=...)`` returns: it
watches the user's own training loop and records the run in its store.

Cheap every step, rich at sampled steps, exact at the first failure:

- every step: the global gradient norm (one reduction of the per-parameter norms, on the device)
  read just before the update, at the optimizer's pre-step hook, so after clipping and AMP
  unscaling; its NaN/Inf check; the step time; what ``log`` was given. On CPU the norm is read at
  once (there is no device to wait for); on other devices the values stay on the device and are
  read together at the next sampled step, so no step but a sampled one waits for the device.
- sampled steps (0, every, 2*every...): per module, the parameter gradient norm, the update ratio
  ||dw||/||w|| of the step, the distance from the start weights, and the probe's output and
  output-gradient statistics from hooks armed for that step's forward only.
- the first non-finite step (CPU, read at the step): its forward replayed on the same inputs with
  the weights before the update, under the full probe (``probe.run.run_probe``, which puts back
  everything: parameters, buffers, gradients, RNG), to name the module that made the NaN.

Never harm the training: no RNG drawn, no tensor of the user's changed; an exception inside a
hook is caught, recorded in the run as an event and that part switches off.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspectr.core.findings.common import UPDATE_MIN_RMS
from inspectr.core.findings.op_culprit import with_call, with_grad_origin
from inspectr.core.probe.culprits import nonfinite_culprit
from inspectr.core.probe.grad_stats import norms as tensor_norms
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import run_probe
from inspectr.core.result import Finding
from inspectr.core.runs.findings import (
    SPIKE_FACTOR,
    grad_spike_finding,
    nonfinite_finding,
    spike_median,
)
from inspectr.core.runs.ranks import NoWriter, RankLink, distributed, local
from inspectr.core.runs.sampler import ActivationWatch, ParamLayout, RunningStats
from inspectr.core.runs.store import Batch, RunWriter
from inspectr.core.values import iter_tensors
from inspectr.errors import InspectrError, TrainingProblem

FLUSH_SECONDS = 2.0  # on CPU, steps between samples are written at least this often (nothing to sync)


class Watch:
    """A context manager watching one training run; see ``inspectr.watch`` for the arguments.

    ``own_hooks=False`` (with an optimizer): the optimizer's step hooks are not used; the caller
    marks each update with ``before_update()`` (gradients final, update next) and ``after_update()``.
    The framework callbacks (``inspectr.integrations``) drive it so."""

    def __init__(self, model: Any, optimizer: Any = None, run: str | os.PathLike[str] = "runs/exp1",
                 every: int = 50, halt_on: str | None = None, own_hooks: bool = True) -> None:
        # own_hooks=False: the caller calls before_update()/after_update() at each step of the optimizer
        # (``inspectr watch -- COMMAND`` from torch's global optimizer hooks, the framework callbacks)
        if not isinstance(model, nn.Module):
            raise InspectrError(f"inspectr.watch needs the nn.Module being trained, got {type(model).__name__}.",
                                "Pass the model itself: inspectr.watch(model, optimizer, run=\"runs/exp1\").")
        if optimizer is not None and not hasattr(optimizer, "register_step_pre_hook"):
            raise InspectrError(
                f"inspectr.watch: optimizer= must be a torch.optim.Optimizer, got {type(optimizer).__name__}.",
                "Pass the optimizer your loop steps, or none: then each w.log(...) marks the end of a step.")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InspectrError(f"inspectr.watch: every={every!r} must be a whole number of steps, 1 or more.",
                                "E.g. every=50 samples the per-module statistics every 50 optimizer steps.")
        if halt_on not in (None, "error"):
            raise InspectrError(f"inspectr.watch: halt_on={halt_on!r} is not known.",
                                "Use halt_on=\"error\" to stop at the first error finding, or leave it out.")
        self.model = model
        self.optimizer = optimizer
        self.folder = Path(run)
        self.every = every
        self.halt_on = halt_on
        self.own_hooks = own_hooks
        self.step = 0  # optimizer steps completed
        self.active = False
        self.findings: list[Finding] = []
        self.off: set[str] = set()
        self.overhead = 0.0

    # ----------------------------------------------------------------- the context
    def __enter__(self) -> Watch:
        if self.active:
            raise InspectrError("This inspectr.watch is already running.", "Use one `with` block per watch.")
        t0 = time.perf_counter()
        self.layout = ParamLayout(self.model, self.optimizer)
        self.paths = {id(m): p for p, m in self.layout.modules}
        first = next(iter(self.model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        # under torch.distributed: every rank watches, rank 0 writes (see core/runs/ranks.py)
        self.link = RankLink(self.model, self.layout.params, self.device) if distributed() else None
        self.start = self.layout.snapshot()
        self.start_sq = tensor_norms(self.start).to("cpu", torch.float64).square() if self.start else None
        if self.link is not None and self.start_sq is not None:
            self.start_sq = self.link.reduce_squares(self.start_sq)
        self.eager = self.device.type == "cpu"  # reading a CPU value waits for nothing
        self.pending: dict[int, list[Any]] = {}  # step -> [grad_norm, seconds, nonfinite, loss]
        self.pending_scalars: list[tuple[int, str, Any]] = []
        self.batch = Batch()
        self.history: list[float] = []  # global gradient norms, for the spike rule
        self.spiked = False
        self.first_nonfinite: int | None = None
        self.last_inputs: tuple[Any, Any] | None = None
        self.before: list[torch.Tensor] | None = None
        self.sample_parts: dict[str, Any] = {}
        self.halted: Finding | None = None
        self.raised = False
        self.warned: set[str] = set()
        total = sum(p.numel() for p in {id(p): p for p in self.model.parameters()}.values())
        meta = {"model": type(self.model).__name__,
                "optimizer": None if self.optimizer is None else type(self.optimizer).__name__,
                "every": self.every, "halt_on": self.halt_on, "started": time.time(), "status": "running",
                "pid": os.getpid(), "device": str(self.device), "params": total,
                "trainable": sum(p.numel() for p in self.layout.params), "torch": torch.__version__,
                "check": "every step" if self.eager else "read at sampled steps"}
        meta["small_start"] = self._small_start()
        if self.link is not None:
            meta["world"] = self.link.world
        self.writer: RunWriter | NoWriter = (
            NoWriter() if self.link is not None and self.link.rank != 0
            else RunWriter(self.folder, [(i, *info) for i, info in enumerate(self.layout.module_info)], meta))
        self.acts = ActivationWatch(self.paths, lambda exc: self._failed("activations", exc))
        self.running = RunningStats(self.layout.modules)
        self.order_saved = False
        self.handles = [self.model.register_forward_pre_hook(self._capture_inputs, with_kwargs=True)]
        if self.optimizer is not None and self.own_hooks:
            self.handles.append(self.optimizer.register_step_pre_hook(self._pre_hook))
            self.handles.append(self.optimizer.register_step_post_hook(self._post_hook))
        self._prepare(0)
        self.active = True
        self.last_flush = self.t_step = time.perf_counter()
        self.overhead += self.t_step - t0
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.active:
            return
        self.active = False
        for h in self.handles:
            h.remove()
        self.acts.disarm()
        if self.link is not None:
            self.link.close()
            if exc_type is not None and not issubclass(exc_type, TrainingProblem):
                self.link.lost = True  # this rank alone left its loop: no collective the others would not match
        try:
            self._flush()
        except Exception as err:  # the run is saved as far as it can be; never mask the user's error
            self._failed("store", err)
        status = ("finished" if exc_type is None else "halted" if issubclass(exc_type, TrainingProblem)
                  else "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "crashed")
        self.batch.meta.update(status=status, ended=time.time(), steps=self.step,
                               watch_seconds=round(self.overhead, 6), parts_off=sorted(self.off))
        self.writer.put(self.batch)
        self.batch = Batch()
        self.writer.close()
        self.start = []
        self.before = None
        self.last_inputs = None
        if exc_type is None and self.halted is not None and not self.raised:
            raise TrainingProblem(self.halted)  # found when the device values were read at the end

    def _small_start(self) -> list[str]:
        """Modules whose trainable weights start near zero (RMS below UPDATE_MIN_RMS: zero-initialised
        heads, layer scales): their update ratio is large by nature at first, so it is not judged."""
        if self.start_sq is None:
            return []
        sums = self.layout.per_module(self.start_sq)
        numel: dict[int, int] = {}
        for i, p in zip(self.layout.owner.tolist(), self.layout.params):
            numel[i] = numel.get(i, 0) + p.numel()
        return [self.layout.modules[i][0] for i, norm in sums.items()
                if numel.get(i) and norm / math.sqrt(numel[i]) < UPDATE_MIN_RMS]

    # ----------------------------------------------------------------- the user's calls
    def log(self, loss: Any = None, **scalars: Any) -> None:
        """Record named scalars (floats or one-element tensors) for the step just taken.

        With an optimizer, the values belong to the last optimizer step (call it after
        ``optimizer.step()``); without one, each call marks the end of a step. Tensors are kept
        on their device and read at the next sampled step: no sync on the other steps.
        """
        if not self.active:
            raise InspectrError("w.log(...) was called outside its `with inspectr.watch(...) as w:` block.",
                                "Call it inside the block, once per step.")
        values = dict(scalars)
        if loss is not None:
            values = {"loss": loss, **values}
        for name, v in values.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise InspectrError(f"w.log({name}=...) got a tensor of shape {tuple(v.shape)}.",
                                        "Log one number per name: a scalar tensor or a float (e.g. loss.mean()).")
                values[name] = v.detach().reshape(())
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                values[name] = float(v)
            else:
                raise InspectrError(f"w.log({name}=...) got {type(v).__name__}, not a number.",
                                    "Log floats, ints or one-element tensors.")
        step = self.step if self.optimizer is None else max(self.step - 1, 0)
        for name, v in values.items():
            self.pending_scalars.append((step, name, v))
        if "loss" in values:
            self.pending.setdefault(step, [None, None, None, None])[3] = values["loss"]
        if self.optimizer is None:
            self._guarded("step", self._before_update)
            self._guarded("step", self._after_update)

    def before_update(self) -> None:
        """Mark that this step's gradients are final and its update is next (``own_hooks=False``):
        what the optimizer's step pre-hook does otherwise. Lightning's closure runs the forward and
        backward inside ``optimizer.step(closure)``, after that pre-hook, so its callback calls this."""
        if self.active:
            self._guarded("step", self._before_update)

    def after_update(self) -> None:
        """Mark that this step's update is done (``own_hooks=False``): the step pre-hook's pair."""
        if self.active:
            self._guarded("step", self._after_update)

    # ----------------------------------------------------------------- hooks
    def _pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._guarded("step", self._before_update)

    def _post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._guarded("step", self._after_update)

    def _capture_inputs(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        # a reference, not a copy: the replay of a non-finite step needs the batch that made it
        if torch.is_grad_enabled():
            self.last_inputs = (args, kwargs)

    def _guarded(self, part: str, fn: Any) -> None:
        if part in self.off or not self.active:
            return
        t0 = time.perf_counter()
        try:
            fn()
        except TrainingProblem:
            raise
        except Exception as exc:
            self._failed(part, exc)
        finally:
            self.overhead += time.perf_counter() - t0

    def _failed(self, part: str, exc: BaseException) -> None:
        self.off.add(part)
        if part == "activations":
            self.acts.disarm()
        message = f"{type(exc).__name__}: {exc}"
        self.batch.events.append((self.step, part, message))
        if part not in self.warned:
            self.warned.add(part)
            warnings.warn(f"inspectr.watch: its {part} part failed at step {self.step} ({message}); it is switched "
                          "off and recorded in the run, and training goes on.", RuntimeWarning, stacklevel=2)

    # ----------------------------------------------------------------- one step
    def _sampled(self, step: int) -> bool:
        return step % self.every == 0

    def _prepare(self, step: int) -> None:
        """Before step ``step``'s forward: arm the activation hooks when it is sampled (and,
        without an optimizer, keep the weights its update starts from)."""
        if not self._sampled(step):
            return
        if "activations" not in self.off:
            self.acts.arm()
        if self.optimizer is None and "sampling" not in self.off:
            self.before = self.layout.snapshot()

    def _before_update(self) -> None:
        s = self.step
        sampled = self._sampled(s)
        if self.acts.armed:
            stats, out_grads = self.acts.collect()
            self.overhead += self.acts.seconds  # its hooks ran inside the user's forward and backward
            self.acts.seconds = 0.0
            self.sample_parts = {"stats": stats, "out_grads": out_grads}
            if not self.order_saved and self.acts.order:  # once: the rules over the run need the forward order
                self.order_saved = True
                self.batch.meta["forward_order"] = list(self.acts.order)
        params = self.layout.params
        idx = [i for i, p in enumerate(params) if p.grad is not None]
        grads = [local(params[i].grad.detach()) for i in idx]  # type: ignore[union-attr]
        norms: torch.Tensor | None = None
        total: torch.Tensor | None = None
        sharded = self.link is not None and bool(self.link.shards)
        if grads and (sampled or self.eager or sharded):
            norms = tensor_norms(grads)
            total = torch.linalg.vector_norm(norms)
        elif grads:  # an unsampled step on a device: the global norm alone, in three launches
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, dtype=torch.float32)))
        record = self.pending.setdefault(s, [None, None, None, None])
        record[0] = total
        if sharded and norms is not None:
            self.link.keep_step_norm(s, norms, idx)  # type: ignore[union-attr]  # whole at the sample
        if sampled and norms is not None and "sampling" not in self.off:
            squares = norms.square() if self.link is None else self.link.reduce_squares(norms.square(), idx)
            self.sample_parts["grad"] = self.layout.per_module(squares, idx)
        if sampled and self.optimizer is not None and "sampling" not in self.off:
            self.before = self.layout.snapshot()
        if not self.eager:
            return
        value = math.nan if total is None else float(total)
        record[0] = None if total is None else value
        loss = record[3]
        loss_bad = isinstance(loss, (float, torch.Tensor)) and not math.isfinite(float(loss))
        bad = not math.isfinite(value) if total is not None else False
        record[2] = bad or loss_bad
        if (bad or loss_bad) and self.first_nonfinite is None:
            self.first_nonfinite = s
            self._record(self._explain_nonfinite(s, norms, idx))
        elif total is not None and math.isfinite(value):
            self._check_spike(s, value, norms, idx)

    def _after_update(self) -> None:
        s = self.step
        now = time.perf_counter()
        record = self.pending.setdefault(s, [None, None, None, None])
        record[1] = now - self.t_step
        if self.link is not None:
            self.batch.work.append((s, *self.link.work(self.t_step)))
        if self._sampled(s) and "sampling" not in self.off:
            self._sample(s)
        self.step = s + 1
        self._prepare(self.step)
        if self._sampled(s) or (self.eager and self.link is None and now - self.last_flush > FLUSH_SECONDS):
            self._flush()
            self.last_flush = now
            if self.halted is not None and not self.raised:  # found when the device values were read
                self._raise_halt()
        self.t_step = time.perf_counter()

    # ----------------------------------------------------------------- sampled steps
    def _sample(self, s: int) -> None:
        layout = self.layout
        parts, self.sample_parts = self.sample_parts, {}
        grad = parts.get("grad", {})
        upd: dict[int, float] = {}
        wn: dict[int, float] = {}
        dist: dict[int, float] = {}
        if self.before is not None:
            d_sq, w_sq = layout.distances(self.before)
            self.before = None
            if self.link is not None:
                d_sq, w_sq = self.link.reduce_squares(d_sq), self.link.reduce_squares(w_sq)
            upd, wn = layout.per_module(d_sq), layout.per_module(w_sq)
        if self.start and self.start_sq is not None:
            d0_sq, _ = layout.distances(self.start)
            if self.link is not None:
                d0_sq = self.link.reduce_squares(d0_sq)
            dist, w0 = layout.per_module(d0_sq), layout.per_module(self.start_sq)
            dist = {i: (d / w0[i] if w0.get(i) else d) for i, d in dist.items()}
        stats = parts.get("stats", {})
        out_grads = parts.get("out_grads", {})
        rows = []
        for i, (path, _) in enumerate(layout.modules):
            st = stats.get(path)
            if i not in grad and i not in upd and st is None and path not in out_grads:
                continue
            ratio = upd[i] / wn[i] if i in upd and wn.get(i) else (0.0 if upd.get(i) == 0 else None)
            rows.append((s, i, grad.get(i), ratio, dist.get(i), out_grads.get(path),
                         None if st is None else st.mean, None if st is None else st.std,
                         None if st is None else st.zero_fraction, None if st is None else st.dead_fraction,
                         None if st is None else int(st.nan + st.inf > 0)))
        self.batch.samples.extend(rows)
        self.batch.running.extend((s, i, d) for i, d in self.running.moved().items())

    def _flush(self) -> None:
        """Hand what was gathered since the last write to the writer: one transaction."""
        tensors = [v for rec in self.pending.values() for v in (rec[0], rec[2], rec[3]) if isinstance(v, torch.Tensor)]
        tensors += [v for _, _, v in self.pending_scalars if isinstance(v, torch.Tensor)]
        read: dict[int, float] = {}
        if tensors:  # one read for everything: the only sync between samples
            by_device: dict[torch.device, list[torch.Tensor]] = {}
            for t in tensors:
                by_device.setdefault(t.device, []).append(t)
            for group in by_device.values():
                values = torch.stack([t.to(torch.float64) for t in group]).tolist()
                read.update(zip((id(t) for t in group), values))

        last = max(self.pending, default=self.step)  # the step these rows end at (a sampled one)
        whole = self.link.global_norms() if self.link is not None and self.link.shards else {}
        for s, value in whole.items():  # sharded: the whole-model norm, reduced once at the sample
            if s in self.pending:
                self.pending[s][0] = value

        def num(v: Any) -> float | None:
            v = read.get(id(v), v) if isinstance(v, torch.Tensor) else v
            return None if v is None else float(v)

        for s in sorted(self.pending):
            norm, seconds, bad, loss = self.pending[s]
            norm_v, loss_v = num(norm), num(loss)
            nonfinite = bool(bad) if isinstance(bad, bool) else (
                (norm_v is not None and not math.isfinite(norm_v)) or (loss_v is not None and not math.isfinite(loss_v)))
            if not self.eager:
                if nonfinite and self.first_nonfinite is None:
                    self.first_nonfinite = s
                    self._record(nonfinite_finding(
                        s, None, False, False, [], late=True,
                        note=f"On {self.device.type} the per-step check is read at the sampled steps (no sync per "
                             "step), so this step was not replayed: rerun it on CPU to name the module."))
                elif norm_v is not None and math.isfinite(norm_v):
                    self._check_spike(s, norm_v, None, [])
            self.batch.steps.append((s, loss_v, norm_v, seconds, int(nonfinite)))
        self.batch.scalars.extend((s, name, num(v)) for s, name, v in self.pending_scalars)
        self.pending = {}
        self.pending_scalars = []
        if self.link is None:
            self.writer.put(self.batch)
            self.batch = Batch()
            return
        batch, self.batch = self.batch, Batch()
        batches, found = self.link.exchange(last, batch)
        for b in batches:
            self.writer.put(b)
        for f in found:  # rank 0: parameters that should be replicated, compared across ranks
            self._record(f)
        self.writer.put(self.batch)
        self.batch = Batch()

    # ----------------------------------------------------------------- findings
    def _record(self, finding: Finding) -> None:
        if self.link is not None and "rank" not in finding.detail:
            step = finding.detail.get("step")
            finding = self.link.tag(finding, self.pending.get(step, [None] * 4)[3] if step is not None else None)
        self.findings.append(finding)
        self.batch.findings.append((finding.detail.get("step"), finding.kind, finding.severity, finding.module,
                                    finding.message, json.dumps(finding.detail)))
        if finding.severity == "error" and self.halt_on == "error" and self.halted is None:
            self.halted = finding
            self.batch.meta["status"] = "halted"
            if self.eager:  # at the step itself, before its update; else once the flush is done
                self._flush()
                self._raise_halt()

    def _raise_halt(self) -> None:
        assert self.halted is not None
        self.raised = True
        self.writer.wait()  # the run is saved before training stops
        raise TrainingProblem(self.halted)

    def _check_spike(self, s: int, value: float, norms: torch.Tensor | None, idx: list[int]) -> None:
        median = spike_median(self.history)
        self.history.append(value)
        if len(self.history) > 256:
            del self.history[:128]
        if median is None or median <= 0 or value <= SPIKE_FACTOR * median or self.spiked:
            return
        self.spiked = True  # the first spike is where it went wrong; later ones follow from it
        module, share = "", 0.0
        if norms is not None:
            per = self.layout.per_module(norms.square(), idx)
            if per:
                top = max(per, key=lambda i: per[i])
                module, share = self.layout.modules[top][0], (per[top] / value) ** 2 if value else 0.0
        self._record(grad_spike_finding(s, value, median, module, share))

    def _explain_nonfinite(self, s: int, norms: torch.Tensor | None, idx: list[int]) -> Finding:
        """Name the module behind the first non-finite step: replay its forward under the probe."""
        grad_modules: list[str] = []
        if norms is not None:
            per = self.layout.per_module(norms.square(), idx)
            grad_modules = [self.layout.modules[i][0] for i in sorted(per) if not math.isfinite(per[i])]
        module, input_bad, replayed, note, trace = None, False, False, "", None
        origin = None
        target = self.model if self.link is None else self.link.replay_target(self.model)
        if target is None:
            note = ("(Not replayed: the model is sharded across ranks, and a replay on one rank would run its "
                    "collectives alone.)")
        elif self.last_inputs is not None and "replay" not in self.off:
            args, kwargs = self.last_inputs
            input_bad = any(t.is_floating_point() and not bool(torch.isfinite(t).all())
                            for t in iter_tensors((args, kwargs)))
            if not input_bad:
                try:
                    result = run_probe(target, tuple(args), dict(kwargs),
                                       ProbeOptions(backward=False, mode="own", flops=False))
                    module = nonfinite_culprit(result.measures)
                    trace = result.op_trace  # the torch call and line that made it
                    replayed = True
                    if module is None and grad_modules and self.link is None:
                        # born in backward: replay it too, from the probe's seed (one process only: under
                        # DDP a backward on one rank would start gradient all-reduces the others never join)
                        origin = run_probe(target, tuple(args), dict(kwargs),
                                           ProbeOptions(backward=True, mode="own", flops=False)).grad_origin
                except Exception as exc:
                    self._failed("replay", exc)
        else:
            note = "(The step's inputs were not seen: the model's forward ran outside the watch.)"
        found = nonfinite_finding(s, module, input_bad, replayed, grad_modules, note)
        return with_grad_origin(with_call(found, trace), origin)
