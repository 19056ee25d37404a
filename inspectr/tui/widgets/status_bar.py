"""Provides the status bar: exact parameter totals, the probe's state, device and mode."""

from __future__ import annotations

import time

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static

from inspectr.report.formatting import human_bytes

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusBar(Static):
    """One line; the app sets ``set_totals``, ``set_probe`` and ``set_context``."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.total: int | None = None  # None until a model is loaded
        self.trainable = 0
        self.probe_state = (
            "idle"  # idle | waiting | running | done | failed | stale | off | loading
        )
        self.probe_detail = ""
        self.device = ""
        self.mode = ""
        self.training_peak: int | None = None  # the memory estimate's, with the current freezing
        self._started = 0.0
        self._ticker: Timer | None = None

    def set_totals(self, total: int, trainable: int) -> None:
        self.total, self.trainable = total, trainable
        self.refresh()

    def set_memory(self, training_peak: int | None) -> None:
        self.training_peak = training_peak
        self.refresh()

    def set_context(self, device: str, mode: str) -> None:
        self.device, self.mode = device, mode
        self.refresh()

    def set_probe(self, state: str, detail: str = "") -> None:
        """``running`` and ``loading`` animate until the next state arrives."""
        busy_states = ("running", "loading", "training")
        if state in busy_states and (self.probe_state not in busy_states or state != self.probe_state):
            self._started = time.perf_counter()
        self.probe_state, self.probe_detail = state, detail
        busy = state in busy_states
        if busy and self._ticker is None:
            self._ticker = self.set_interval(0.1, self.refresh)
        elif not busy and self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.set_class(state == "failed", "-failed")
        self.set_class(state == "stale", "-stale")
        self.refresh()

    @property
    def probe_text(self) -> Text:
        compact = self.size.width < 100
        state, detail = self.probe_state, self.probe_detail
        elapsed = time.perf_counter() - self._started
        if state in ("running", "loading", "training"):
            frame = SPINNER[int(elapsed * 10) % len(SPINNER)]
            what = {"loading": "loading model", "training": "training"}.get(state, "probing")
            tail = f" · {detail}" if detail and not compact else ""
            return Text(f"{frame} {what}… {elapsed:.1f} s{tail}", style="bold")
        if state == "trained":
            return Text(f"✓ {detail}" if compact else f"✓ trained: {detail}", style="green")
        if state == "done":
            return Text(f"✓ {detail}" if compact else f"✓ probed in {detail}", style="green")
        if state == "failed":
            if compact:
                detail = detail.split(" (", 1)[0]
            return Text(f"✖ probe failed{(' ' + detail) if detail else ''}", style="bold red")
        if state == "stale":
            return Text(
                "◌ stale" if compact else f"◌ stale: {detail or 'changed since the probe'}",
                style="yellow",
            )
        if state == "waiting":
            return Text("◌ probe queued", style="dim")
        if state == "off":
            return Text("probe off", style="dim")
        return Text(detail, style="dim")

    def render(self) -> RenderableType:
        left = Text(no_wrap=True, overflow="ellipsis")
        if self.total is not None:
            self._totals(left, self.total)
        right = self.probe_text
        right.no_wrap = True
        right.overflow = "ellipsis"
        if (
            self.device or self.mode
        ) and self.size.width >= 100:  # at 80 columns the counts come first
            right.append(
                f" · {self.device}" + (f" · {self.mode}" if self.mode else ""), style="dim"
            )
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True, overflow="ellipsis")
        grid.add_row(left, right)
        return grid

    def _totals(self, left: Text, total: int) -> None:
        frozen = total - self.trainable
        left.append(f"{total:,}", style="bold")
        left.append(" params · ", style="dim")
        left.append(f"{self.trainable:,}")
        left.append(" trainable · ", style="dim")
        left.append(f"{frozen:,}", style="bold blue" if frozen else "")
        left.append(" frozen", style="dim")
        if self.training_peak is not None:
            left.append(" · ", style="dim")
            left.append(human_bytes(self.training_peak), style="bold")
            left.append(" to train", style="dim")
