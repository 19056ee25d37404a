"""Provides ``InspectrCallback`` for the Hugging Face ``Trainer``: ``inspectr.watch`` on its run.

    from inspectr.integrations.transformers import InspectrCallback
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[InspectrCallback(run="runs/exp1", every=50)])

The watch is driven by the Trainer's own events (``Watch(..., own_hooks=False)``): the gradients are
read at ``on_pre_optimizer_step``, which comes after the gradient clipping (``max_grad_norm``) and
the AMP unscaling, just before ``optimizer.step()``; the update is over at ``on_optimizer_step``.
The loss is the one the Trainer logs (``on_log``, every ``logging_steps`` steps: set
``logging_steps=1`` for a loss per step), with its ``learning_rate`` as ``lr``. ``transformers`` is
imported only when the callback is.
"""

from __future__ import annotations

from typing import Any

from inspectr.errors import InspectrError, TrainingProblem
from inspectr.integrations import lazy_callback


def _build() -> Any:
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise InspectrError("inspectr.integrations.transformers needs Hugging Face transformers, which is not "
                            "installed.", "Install the extra: pip install inspectr[hf] (or pip install "
                            "transformers accelerate).") from None
    from inspectr.core.runs.watch import Watch

    class InspectrCallback(TrainerCallback):  # type: ignore[misc]
        """Watch a Hugging Face ``Trainer``'s run into ``run`` (see ``inspectr.watch``).

        Args:
            run: the run folder.
            every: the sampling period in optimizer steps.
            halt_on: ``"error"`` stops the training (``inspectr.TrainingProblem``) at the first
                error finding, after the run is saved.
        """

        def __init__(self, run: Any = "runs/exp1", every: int = 50, halt_on: str | None = None) -> None:
            self.run, self.every, self.halt_on = run, every, halt_on
            self.watch: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                           **kwargs: Any) -> None:
            # accelerate wraps the optimizer; the watch reads the real one's parameter groups
            inner = getattr(optimizer, "optimizer", optimizer)
            self.watch = Watch(model, inner, run=self.run, every=self.every, halt_on=self.halt_on, own_hooks=False)
            self.watch.__enter__()

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._drive("before_update")

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._drive("after_update")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if self.watch is None or not self.watch.active or not logs or "loss" not in logs:
                return
            scalars = {"loss": float(logs["loss"])}
            if isinstance(logs.get("learning_rate"), (int, float)):
                scalars["lr"] = float(logs["learning_rate"])
            self.watch.log(**scalars)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            watch, self.watch = self.watch, None
            if watch is not None and watch.active:
                watch.__exit__(None, None, None)

        def _drive(self, event: str) -> None:
            if self.watch is None or not self.watch.active:
                return
            try:
                getattr(self.watch, event)()
            except TrainingProblem as problem:  # the Trainer has no exception event: close the run here
                watch, self.watch = self.watch, None
                watch.__exit__(TrainingProblem, problem, problem.__traceback__)
                raise

    return InspectrCallback


__getattr__ = lazy_callback(_build)
