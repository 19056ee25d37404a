"""Provides the messages the app's workers post back to the UI thread (``post_message`` is thread-safe)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from inspectr.core.inspection import Report
    from inspectr.core.sources.base import LoadedModel
    from inspectr.errors import InspectrError
    from inspectr.tui.trainable import TrainableState


class ModelBuilt(Message):
    """The model exists; ``report`` is a quick skeleton (names, classes, counts): the first paint."""

    def __init__(
        self,
        generation: int,
        loaded: LoadedModel,
        report: Report,
        trainable: TrainableState,
        built_at: float,
    ) -> None:
        super().__init__()
        self.generation = generation
        self.loaded = loaded
        self.report = report
        self.trainable = trainable
        self.built_at = built_at  # perf_counter when the model existed
        self.painted = threading.Event()  # set once the tree is on screen (or the message dropped)


class StructureReady(Message):
    """The full structure (``inspect(..., probe=False)``): extra_repr, parameter tables."""

    def __init__(self, generation: int, report: Report) -> None:
        super().__init__()
        self.generation = generation
        self.report = report


class LoadFailed(Message):
    """Building the model failed: the app exits with the CLI's message and exit code."""

    def __init__(self, generation: int, error: InspectrError) -> None:
        super().__init__()
        self.generation = generation
        self.error = error


class ProbeFinished(Message):
    """A probe landed; the app drops it when ``generation`` is older than the latest request."""

    def __init__(self, generation: int, report: Report, version: int) -> None:
        super().__init__()
        self.generation = generation
        self.report = report
        self.version = version  # the TrainableState version the probe ran with


class ProbeFailed(Message):
    """The probe could not run at all (no inputs, bad options): shown in the app, which stays up."""

    def __init__(self, generation: int, message: str) -> None:
        super().__init__()
        self.generation = generation
        self.message = message


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
