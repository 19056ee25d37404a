"""Provides the run's heatmap pane: layers x sampled steps of one statistic, redrawn to its width.

The picture of a big run (200 modules x 1,000 samples) takes a quarter of a second to build, so
it is built on a worker thread; the pane shows the newest picture asked for, never an older one
that finished late.
"""

from __future__ import annotations

from rich.console import RenderableType
from textual import work
from textual.containers import ScrollableContainer
from textual.events import Resize
from textual.message import Message
from textual.widgets import Static

from inspectr.core.runs.report import RunReport
from inspectr.report.run_views import heatmap_lines


class RunHeatmap(Static):
    """Set ``report``, ``key``, ``step`` and ``module`` with ``show``; it draws on resize too."""

    class Drawn(Message):
        """A worker built the picture asked for as draw number ``token``."""

        def __init__(self, picture: RenderableType, line_of: dict[str, int], token: int) -> None:
            super().__init__()
            self.picture = picture
            self.line_of = line_of
            self.token = token

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.report: RunReport | None = None
        self.key = "param_grad_norm"
        self.step: int | None = None
        self.module: str | None = None
        self.line_of: dict[str, int] = {}
        self._asked = 0  # draws asked for; a picture is shown only when it answers the latest
        self._drawn = 0
        self._scroll = False  # bring the module's row into view once its picture is shown

    def show(self, report: RunReport | None = None, *, key: str | None = None, step: int | None = None,
             module: str | None = None) -> None:
        if report is not None:
            self.report = report
        if key is not None:
            self.key = key
        if step is not None:
            self.step = step
        if module is not None:
            self.module = module
        self._draw()

    def _draw(self) -> None:
        if self.report is None:
            return
        width = self.content_size.width or self.app.size.width // 2
        self._asked += 1
        self._build(self.report, self.key, max(20, width), self.step, self.module, self._asked)

    @work(thread=True, group="heatmap", exit_on_error=False)
    def _build(self, report: RunReport, key: str, width: int, step: int | None, module: str | None,
               token: int) -> None:
        picture, line_of = heatmap_lines(report, key, width, step=step, module=module)
        self.post_message(self.Drawn(picture, line_of, token))

    def on_run_heatmap_drawn(self, message: Drawn) -> None:
        message.stop()
        if message.token != self._asked:
            return  # a newer picture is on its way
        self.update(message.picture)
        self.line_of = message.line_of
        self._drawn = message.token
        if self._scroll:
            self._scroll = False
            self.call_after_refresh(self._scroll_now)

    @property
    def current(self) -> bool:
        """Whether the picture shown is the latest asked for."""
        return self._drawn == self._asked

    def scroll_to_module(self) -> None:
        """Bring the highlighted module's row into view in the scrolling pane that holds the
        heatmap, once the picture that highlights it is shown."""
        if self.current:
            self._scroll_now()
        else:
            self._scroll = True

    def _scroll_now(self) -> None:
        line = self.line_of.get(self.module) if self.module is not None else None
        pane = self.parent
        if line is None or not isinstance(pane, ScrollableContainer):
            return
        height = pane.scrollable_content_region.height
        if not pane.scroll_y <= line < pane.scroll_y + height:
            pane.scroll_to(y=max(0, line - height // 2), animate=False)

    def on_resize(self, event: Resize) -> None:
        self._draw()
