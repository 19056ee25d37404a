"""Provides the run's heatmap pane: layers x sampled steps of one statistic, redrawn to its width."""

from __future__ import annotations

from textual.containers import ScrollableContainer
from textual.events import Resize
from textual.widgets import Static

from inspectr.core.runs.report import RunReport
from inspectr.report.run_views import heatmap_lines


class RunHeatmap(Static):
    """Set ``report``, ``key``, ``step`` and ``module`` with ``show``; it draws on resize too."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.report: RunReport | None = None
        self.key = "param_grad_norm"
        self.step: int | None = None
        self.module: str | None = None
        self.line_of: dict[str, int] = {}

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
        picture, self.line_of = heatmap_lines(self.report, self.key, max(20, width), step=self.step,
                                              module=self.module)
        self.update(picture)

    def scroll_to_module(self) -> None:
        """Bring the highlighted module's row into view in the scrolling pane that holds the heatmap."""
        line = self.line_of.get(self.module) if self.module is not None else None
        pane = self.parent
        if line is None or not isinstance(pane, ScrollableContainer):
            return
        height = pane.scrollable_content_region.height
        if not pane.scroll_y <= line < pane.scroll_y + height:
            pane.scroll_to(y=max(0, line - height // 2), animate=False)

    def on_resize(self, event: Resize) -> None:
        self._draw()
