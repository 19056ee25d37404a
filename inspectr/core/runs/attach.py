"""Provides what ``inspectr watch -- COMMAND`` runs inside each Python process of COMMAND once
torch is imported (``install``): torch's global optimizer step hooks start a ``Watch`` on the
model an optimizer trains at its first step, and count its steps from then on.

- The model: the root module(s) holding the optimizer's parameters, found once per optimizer
  among the live ``nn.Module`` objects (``roots_of``): from each module owning a parameter of
  the optimizer, up through its parents while a parent holds no parameter of another optimizer
  (a GAN's container of generator and discriminator is not the generator's model).
- The first optimizer records into RUN, a second one (a GAN) into RUN/opt1, and so on; under
  torch.distributed every rank watches into the same RUN, which the watch makes one run holding
  every rank (rank 0 writes it).
- The loss: the last one-element tensor ``torch.autograd.backward`` (so ``loss.backward()``)
  was called on before the step, kept on its device (``w.log(loss=...)``, no sync).
- A status line on a terminal's stderr (rank 0 only) every few seconds; the watches are closed
  at exit (``atexit``), with the status ``crashed`` when an uncaught exception ended the program.

Anything failing here is reported on stderr once and the command goes on unwatched (that
optimizer) or without a loss curve: the user's program is never stopped by the watch, except by
``--halt-on error``, which is asked for.
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspectr.core.runs.attach_env import ENV_COMMAND, ENV_EVERY, ENV_HALT_ON, ENV_RUN, ENV_STATUS
from inspectr.core.runs.watch import Watch
from inspectr.errors import TrainingProblem

MAX_WATCHES = 8  # optimizers made anew every epoch must not make a run per epoch
STATUS_SECONDS = 3.0
LOSS_SOURCE = "the last one-element tensor backward() was called on before each step"


def install(torch_module: Any = None) -> Attachment | None:
    """Set up the watch in this process from the environment; None when ``ENV_RUN`` is unset."""
    run = os.environ.get(ENV_RUN)
    if not run:
        return None
    every = int(os.environ.get(ENV_EVERY) or 50)
    halt_on = os.environ.get(ENV_HALT_ON) or None
    attachment = Attachment(Path(run), every, halt_on, os.environ.get(ENV_STATUS) == "1")
    attachment.install()
    return attachment


def roots_of(optimizer: Any) -> list[nn.Module]:
    """The top-most live modules holding the parameters ``optimizer`` updates (see the module doc)."""
    mine = {id(p) for g in optimizer.param_groups for p in g["params"]}
    modules: list[nn.Module] = []
    optimizers: list[Any] = []
    kinds: dict[type, int] = {}  # one pass over every object, one issubclass per type (type(): no __class__)
    for o in gc.get_objects():
        t = type(o)
        k = kinds.get(t)
        if k is None:
            k = kinds[t] = 1 if issubclass(t, nn.Module) else 2 if issubclass(t, torch.optim.Optimizer) else 0
        if k == 1:
            modules.append(o)
        elif k == 2 and o is not optimizer:
            optimizers.append(o)
    others = {id(p) for o in optimizers for g in o.param_groups for p in g["params"]} - mine
    parents: dict[int, list[nn.Module]] = {}
    for m in modules:
        for c in m.children():
            parents.setdefault(id(c), []).append(m)
    clash: dict[int, bool] = {}

    def holds_others(m: nn.Module) -> bool:
        if id(m) not in clash:
            clash[id(m)] = any(id(p) in others for p in m.parameters())
        return clash[id(m)]

    roots: list[nn.Module] = []
    for owner in modules:
        if not any(id(p) in mine for p in owner.parameters(recurse=False)):
            continue
        node, seen = owner, {id(owner)}
        while True:
            up = [p for p in parents.get(id(node), []) if id(p) not in seen and not holds_others(p)]
            if not up:
                break
            node = up[0]
            seen.add(id(node))
        if all(node is not r for r in roots):
            roots.append(node)
    inside = {id(s) for r in roots for s in r.modules() if s is not r}
    return [r for r in roots if id(r) not in inside]


def one_model(roots: list[nn.Module]) -> nn.Module:
    """One module to watch: the root, or a ModuleDict over several (by class name; theirs are untouched)."""
    if len(roots) == 1:
        return roots[0]
    names: dict[str, nn.Module] = {}
    for r in roots:
        name = type(r).__name__
        n = 1
        while name in names:
            name, n = f"{type(r).__name__}_{n}", n + 1
        names[name] = r
    return nn.ModuleDict(names)


class Attachment:
    """The watches of one process, keyed by optimizer, fed by torch's global hooks."""

    def __init__(self, run: Path, every: int, halt_on: str | None, status: bool) -> None:
        self.run = run
        self.every = every
        self.halt_on = halt_on
        self.status = status and os.environ.get("RANK", "0") == "0"
        self.pid = os.getpid()
        self.watches: dict[int, Watch] = {}  # id(optimizer) -> its watch (which keeps it alive)
        self.skipped: set[int] = set()
        self.loss: torch.Tensor | None = None  # the last one-element tensor backward was called on
        self.loss_count = 0
        self.logged: dict[int, int] = {}  # id(optimizer) -> loss_count when its loss was logged
        self.loss_off = False
        self.started = time.perf_counter()
        self.last_status = self.started
        self.status_shown = False
        self.closed = False

    def install(self) -> None:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self.handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]
        backward = torch.autograd.backward

        @functools.wraps(backward)
        def watched_backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.loss_off:
                try:
                    if isinstance(tensors, torch.Tensor) and tensors.numel() == 1:
                        self.loss = tensors.detach()
                        self.loss_count += 1
                except Exception as exc:
                    self.loss_off = True
                    self._say(f"the loss could not be read ({type(exc).__name__}: {exc}); no loss curve")
            return backward(tensors, *args, **kwargs)

        torch.autograd.backward = watched_backward  # Tensor.backward calls it through the module
        self._close_before_destroy()

    def _close_before_destroy(self) -> None:
        """Under torch.distributed the watches close (their last rows gathered at rank 0, a matched
        collective) when the script destroys the default process group, every rank at the same
        point: at exit it would be gone, and each rank's steps since its last sample lost."""
        import torch.distributed as dist

        if not dist.is_available():
            return
        destroy = dist.destroy_process_group

        @functools.wraps(destroy)
        def watched_destroy(group: Any = None, *args: Any, **kwargs: Any) -> Any:
            if group is None and self.watches and not self.closed:
                self.close()
            return destroy(group, *args, **kwargs)

        dist.destroy_process_group = watched_destroy

    # ----------------------------------------------------------------- torch's global hooks
    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if os.getpid() != self.pid or self.closed:
            return  # a forked worker, or after exit
        w = self.watches.get(id(optimizer))
        if w is None:
            if id(optimizer) in self.skipped:
                return
            w = self._attach(optimizer)
            if w is None:
                return
        w.before_update()  # TrainingProblem goes through: --halt-on error

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        w = self.watches.get(id(optimizer))
        if w is None or os.getpid() != self.pid or self.closed:
            return
        w.after_update()
        if self.loss is not None and not self.loss_off and self.logged.get(id(optimizer)) != self.loss_count:
            self.logged[id(optimizer)] = self.loss_count
            try:
                w.log(loss=self.loss)
            except TrainingProblem:
                raise
            except Exception as exc:
                self.loss_off = True
                self._say(f"the loss could not be logged ({type(exc).__name__}: {exc}); no loss curve")
        if self.status:
            now = time.perf_counter()
            if now - self.last_status >= STATUS_SECONDS:
                self.last_status = now
                self._show_status(now)

    # ----------------------------------------------------------------- attaching
    def _attach(self, optimizer: Any) -> Watch | None:
        t0 = time.perf_counter()
        if len(self.watches) >= MAX_WATCHES:
            self.skipped.add(id(optimizer))
            self._say(f"{type(optimizer).__name__} is not watched: {MAX_WATCHES} optimizers already are "
                      "(an optimizer made anew every epoch?)")
            return None
        try:
            roots = roots_of(optimizer)
            if not roots:
                self.skipped.add(id(optimizer))
                self._say(f"{type(optimizer).__name__} is not watched: no nn.Module holds its parameters")
                return None
            n = len(self.watches)
            folder = self.run if n == 0 else self.run / f"opt{n}"
            w = Watch(one_model(roots), optimizer, run=folder, every=self.every, halt_on=self.halt_on,
                      own_hooks=False)
            w.__enter__()
        except Exception as exc:
            self.skipped.add(id(optimizer))
            self._say(f"{type(optimizer).__name__} is not watched ({type(exc).__name__}: {exc}); training goes on")
            return None
        command = os.environ.get(ENV_COMMAND)
        w.batch.meta.update(attached="inspectr watch", optimizer_index=n, rank=os.environ.get("RANK"),
                            world_size=os.environ.get("WORLD_SIZE"), roots=[type(r).__name__ for r in roots],
                            command=json.loads(command) if command else sys.argv, loss_source=LOSS_SOURCE,
                            attach_seconds=round(time.perf_counter() - t0, 6))
        w.overhead += time.perf_counter() - t0
        self.watches[id(optimizer)] = w
        if n == 0:
            atexit.register(self.close)
        return w

    # ----------------------------------------------------------------- the terminal and the end
    def _say(self, text: str) -> None:
        self._clear_status()
        sys.stderr.write(f"inspectr watch: {text}\n")

    def _show_status(self, now: float) -> None:
        ws = list(self.watches.values())
        findings = sum(len(w.findings) for w in ws)
        cost = sum(w.overhead for w in ws) / max(now - self.started, 1e-9)
        steps = " · ".join(f"step {w.step:,}" for w in ws)
        try:
            sys.stderr.write(f"\r\x1b[2Kinspectr: {self.run} · {steps} · {findings} finding"
                             f"{'' if findings == 1 else 's'} · watch cost {100 * cost:.1f}%\r")
            sys.stderr.flush()
            self.status_shown = True
        except Exception:
            self.status = False

    def _clear_status(self) -> None:
        if self.status_shown:
            self.status_shown = False
            try:
                sys.stderr.write("\r\x1b[2K")
                sys.stderr.flush()
            except Exception:
                pass

    def close(self) -> None:
        """At exit: close every watch (status finished, or crashed after an uncaught exception)."""
        if self.closed or os.getpid() != self.pid:
            return
        self.closed = True
        self._clear_status()
        exc = getattr(sys, "last_value", None)
        for opt_id, w in self.watches.items():
            if opt_id not in self.logged:
                w.batch.meta["loss_note"] = ("No loss curve: no backward() of a one-element tensor was seen "
                                             "before this optimizer's steps.")
            try:
                w.__exit__(None if exc is None else type(exc), exc, None)
            except TrainingProblem:
                pass  # found at the last read; it is in the run
            except Exception as err:
                sys.stderr.write(f"inspectr watch: the run in {w.folder} was not closed cleanly ({err})\n")
