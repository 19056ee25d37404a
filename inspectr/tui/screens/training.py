"""Provides the Training view: the loss curve, the gradient flow along the depth and the update ratios."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from inspectr.core.inspection import Report
from inspectr.report.training import training_view


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
