"""Provides ``InspectrCallback`` for PyTorch Lightning: ``inspectr.watch`` on a ``Trainer``'s run.

    from inspectr.integrations.lightning import InspectrCallback
    trainer = Trainer(callbacks=[InspectrCallback(run="runs/exp1", every=50)])

Lightning's automatic optimization calls ``optimizer.step(closure)`` and runs the forward and
backward inside the closure, after the optimizer's step pre-hook: those hooks are the wrong
boundary here, so the watch is driven by hand (``Watch(..., own_hooks=False)``). Its gradients are
read at ``on_before_optimizer_step``, which Lightning calls after the backward and the AMP
unscaling and before its own gradient clipping (``gradient_clip_val``); the update is over at
``on_train_batch_end``, where the loss ``training_step`` returned is logged (with gradient
accumulation, the mean over the step's batches). The first optimizer is watched. The unified package
``lightning`` is used, else ``pytorch_lightning``; both are imported only when the callback is.
"""

from __future__ import annotations

import sys
from typing import Any

from inspectr.errors import InspectrError
from inspectr.integrations import lazy_callback


def _callback_base() -> Any:
    """Lightning's ``Callback``: from the package the user's Trainer comes from."""
    order = ("pytorch_lightning", "lightning.pytorch") if (
        "pytorch_lightning" in sys.modules and "lightning" not in sys.modules) else ("lightning.pytorch",
                                                                                     "pytorch_lightning")
    for name in order:
        try:
            module = __import__(name, fromlist=["Callback"])
        except ImportError:
            continue
        return module.Callback
    raise InspectrError("inspectr.integrations.lightning needs PyTorch Lightning, which is not installed.",
                        "Install the extra: pip install inspectr[lightning] (or pip install lightning).")


def _build() -> Any:
    from inspectr.core.runs.watch import Watch

    class InspectrCallback(_callback_base()):  # type: ignore[misc]
        """Watch a Lightning ``Trainer``'s run into ``run`` (see ``inspectr.watch``).

        Args:
            run: the run folder.
            every: the sampling period in optimizer steps.
            halt_on: ``"error"`` stops the training (``inspectr.TrainingProblem``) at the first
                error finding, after the run is saved.
        """

        def __init__(self, run: Any = "runs/exp1", every: int = 50, halt_on: str | None = None) -> None:
            super().__init__()
            self.run, self.every, self.halt_on = run, every, halt_on
            self.watch: Any = None
            self.optimizer: Any = None
            self.stepping = False
            self.losses: list[Any] = []

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.optimizer = trainer.optimizers[0] if trainer.optimizers else None
            self.watch = Watch(pl_module, self.optimizer, run=self.run, every=self.every, halt_on=self.halt_on,
                               own_hooks=False)
            self.watch.__enter__()
            self.stepping, self.losses = False, []

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            if self.watch is None or not self.watch.active or optimizer is not self.optimizer:
                return
            self.stepping = True
            self.watch.before_update()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.watch is None or not self.watch.active:
                return
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None and getattr(loss, "numel", lambda: 1)() == 1:
                self.losses.append(loss)
            if not self.stepping:
                return  # a batch accumulating gradients: the step is not over yet
            self.stepping = False
            self.watch.after_update()
            scalars: dict[str, Any] = {}
            if self.losses:
                import torch

                values = [v.detach().float().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                          for v in self.losses]
                # Lightning hands each batch's loss divided by accumulate_grad_batches: their sum is the
                # mean loss of the step's batches (training_step's own value without accumulation)
                scalars["loss"] = values[0] if len(values) == 1 else torch.stack(values).sum()
            if self.optimizer is not None:
                scalars["lr"] = float(self.optimizer.param_groups[0]["lr"])
            self.losses = []
            if scalars:
                self.watch.log(**scalars)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._close(None)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._close(exception)

        def _close(self, exc: BaseException | None) -> None:
            watch, self.watch = self.watch, None
            if watch is not None and watch.active:
                watch.__exit__(None if exc is None else type(exc), exc, None if exc is None else exc.__traceback__)

    return InspectrCallback


__getattr__ = lazy_callback(_build)
