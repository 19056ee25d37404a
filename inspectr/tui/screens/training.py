"""Provides the Training view (the loss curve, the gradient flow along the depth, the update
ratios) and ``Trainer``, the app's part that trains in a worker and feeds the view."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from inspectr.core.inspection import Report
from inspectr.errors import InspectrError
from inspectr.report.training import training_view
from inspectr.tui.base import InspectorBase


class TrainingScreen(Screen[None]):
    """Shows the latest training run (attribute ``report``) or the live loss of a running one.

    The app sets the data (``show_report``, ``show_progress``); the screen posts ``RetrainRequested``
    and ``CancelRequested`` up to the app, which owns the worker.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", tooltip="Back to the module tree (training goes on)"),
        Binding("t", "retrain", "Train again", tooltip="Train N steps again from the model as it is"),
        Binding("c", "cancel", "Cancel", tooltip="Stop the running training"),
    ]

    class RetrainRequested(Message):
        """The user asked for another training run."""

    class CancelRequested(Message):
        """The user asked to stop the running training."""

    def __init__(self, report: Report | None) -> None:
        super().__init__()
        self.report = report
        self.live: list[float] = []
        self.total = 0
        self.status = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="training-box"):
            yield Static(id="training-body")
        yield Footer()

    def on_mount(self) -> None:
        box = self.query_one("#training-box")
        box.border_title = "Training"
        box.border_subtitle = "t again · c cancel · esc back"
        self._paint(mounting=True)

    def show_progress(self, step: int, total: int, loss: float) -> None:
        if step == 1:
            self.live = []
        self.live.append(loss)
        self.total = total
        self.status = f"training: step {step} of {total} · loss {loss:.4g}"
        self._paint()

    def show_started(self, steps_label: str) -> None:
        self.report, self.live, self.status = None, [], f"probing, then training {steps_label}…"
        self._paint()

    def show_report(self, report: Report | None, status: str = "") -> None:
        self.report, self.status = report, status
        self._paint()

    def on_resize(self) -> None:
        self._paint()

    def _paint(self, mounting: bool = False) -> None:
        if mounting or self.is_mounted:
            body = self.query_one("#training-body", Static)
            width = body.size.width or self.app.size.width - 4
            body.update(training_view(self.report, self.live, self.total, self.status, width))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_retrain(self) -> None:
        self.post_message(self.RetrainRequested())

    def action_cancel(self) -> None:
        self.post_message(self.CancelRequested())


class Trainer(InspectorBase):
    """Probes and trains N steps in a worker (``t``), shown in the Training view as it goes.

    A cancel or a newer load bumps the generation; the worker sees it between steps and unwinds,
    restoring the model, and whatever it still posts is dropped.
    """

    training_screen: TrainingScreen | None = None  # while it is open

    class TrainingProgressed(Message):
        """One training step finished (``t``): its number and loss."""

        def __init__(self, generation: int, step: int, total: int, loss: float) -> None:
            super().__init__()
            self.generation = generation
            self.step = step
            self.total = total
            self.loss = loss

    class TrainingFinished(Message):
        """The probe and the training steps landed: ``report.training`` is set."""

        def __init__(self, generation: int, report: Report) -> None:
            super().__init__()
            self.generation = generation
            self.report = report

    class TrainingFailed(Message):
        """Training could not run (no trainable parameters, a loss that does not fit...)."""

        def __init__(self, generation: int, message: str) -> None:
            super().__init__()
            self.generation = generation
            self.message = message

    def action_train(self) -> None:
        """Probe and train N steps in a worker; the Training view shows the loss as it goes."""
        if self._loaded is None or self._trainable is None:
            self.notify("No model loaded yet.", severity="warning")
            return
        self._train_gen += 1
        self._probe_gen += 1  # the training run probes too: a probe still running is stale
        self._training = True
        steps = self.options.get("steps") or True
        label = f"{steps} steps" if steps is not True else "N steps"
        self.status_bar.set_probe("training", label)
        self._open_training_view()
        if self.training_screen is not None:
            self.training_screen.show_started(label)
        self._train_worker(self._train_gen, steps)

    def action_training_view(self) -> None:
        if self.report is None or self.report.training is None:
            self.notify("No training run yet: press t to train.", timeout=3)
            return
        self._open_training_view()

    def _open_training_view(self) -> None:
        if self.training_screen is not None and self.training_screen in self.screen_stack:
            return
        screen = TrainingScreen(self.report if self.report and self.report.training else None)

        def closed(_: None) -> None:
            self.training_screen = None

        self.training_screen = screen
        self.push_screen(screen, closed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _train_worker(self, generation: int, steps: int | bool) -> None:
        from inspectr.core.inspect import inspect
        from inspectr.core.probe.run import ProbeCancelled

        worker = get_current_worker()
        loaded, trainable = self._loaded, self._trainable
        if loaded is None or trainable is None:
            return

        def cancelled() -> bool:
            return generation != self._train_gen or worker.is_cancelled

        def on_step(step: int, total: int, loss: float) -> None:
            self.post_message(Trainer.TrainingProgressed(generation, step, total, loss))

        options = {k: v for k, v in self._probe_options().items() if k != "steps"}
        with self._model_lock:
            if cancelled():
                return
            trainable.apply()
            try:
                report = inspect(None, loaded=loaded, histograms=True, cancelled=cancelled,
                                 steps=steps, on_step=on_step, **options)
            except ProbeCancelled:
                self.post_message(Trainer.TrainingFailed(generation, "cancelled; the model is as it was"))
                return
            except InspectrError as err:
                self.post_message(Trainer.TrainingFailed(generation, str(err)))
                return
            except Exception as exc:  # the user's model or loss can raise anything
                self.post_message(Trainer.TrainingFailed(generation, f"{type(exc).__name__}: {exc}"))
                return
            finally:
                trainable.apply()
        self.post_message(Trainer.TrainingFinished(generation, report))

    def on_trainer_training_progressed(self, message: Trainer.TrainingProgressed) -> None:
        if message.generation != self._train_gen:
            return
        self.status_bar.set_probe("training", f"step {message.step} of {message.total} · loss {message.loss:.4g}")
        if self.training_screen is not None:
            self.training_screen.show_progress(message.step, message.total, message.loss)

    def on_trainer_training_finished(self, message: Trainer.TrainingFinished) -> None:
        if message.generation != self._train_gen or self._trainable is None:
            return
        self._training = False
        report = message.report
        self.report = report
        self._rows = {r.path: r for r in report.modules}
        self.module_tree.update_report(report)
        self.findings_list.show_findings(report.findings)
        tr = report.training
        if tr is None:  # the probe failed or there was no gradient path: the notes say why
            why = next((n for n in report.probe.notes if n.startswith("training skipped")), "training skipped")
            self.status_bar.set_probe("failed", why)
            if self.training_screen is not None:
                self.training_screen.show_report(None, why)
            return
        end = f"loss {tr.loss[0]:.4g} → {tr.loss[-1]:.4g}" if tr.loss else ""
        self.status_bar.set_probe("trained", f"{tr.steps_run} steps · {end} · {tr.seconds:.1f} s")
        if self.training_screen is not None:
            self.training_screen.show_report(report)
        self._refresh_detail()

    def on_trainer_training_failed(self, message: Trainer.TrainingFailed) -> None:
        if message.generation != self._train_gen:
            return
        self._training = False
        self.status_bar.set_probe("failed", f"training: {message.message}")
        if self.training_screen is not None:
            self.training_screen.show_report(None, f"Training did not run: {message.message}")
        self.notify(message.message, title="Training did not run", severity="error", markup=False, timeout=10)

    def on_training_screen_retrain_requested(self, _: TrainingScreen.RetrainRequested) -> None:
        self.action_train()

    def on_training_screen_cancel_requested(self, _: TrainingScreen.CancelRequested) -> None:
        if self._training:
            self._train_gen += 1  # the worker sees it between steps and unwinds, restoring the model
            self._training = False
            self.status_bar.set_probe("stale", "training cancelled")
            if self.training_screen is not None:
                self.training_screen.show_report(None, "Training cancelled; the model is as it was.")
