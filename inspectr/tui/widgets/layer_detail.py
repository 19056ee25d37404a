"""Provides the layer detail pane: the report's module detail plus pictures of the weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.color import Color
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from inspectr.core.inspection import Report
from inspectr.core.result import ModuleRow
from inspectr.report.formatting import sci, sparkline
from inspectr.report.module_detail import module_detail
from inspectr.tui.pictures import CHEAP_NUMEL, WeightPicture, pick_weight, weight_picture

NEUTRAL = (48, 48, 56)
NEGATIVE = (70, 140, 255)
POSITIVE = (255, 96, 72)


class FilterHeatmap:
    """The first filters of a conv layer, two pixels per cell (``▀`` with fore/background colours)."""

    def __init__(self, picture: WeightPicture) -> None:
        self.picture = picture

    def _colours(self) -> list[list[list[Color]]]:
        filters = self.picture.filters
        values = [v for f in filters for row in f for px in row for v in px]
        if self.picture.rgb:
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            return [
                [
                    [Color.from_rgb(*(int(255 * (c - low) / span) for c in px[:3])) for px in row]
                    for row in f
                ]
                for f in filters
            ]
        top = max(abs(v) for v in values) or 1.0
        out = []
        for f in filters:
            rows = []
            for row in f:
                line = []
                for px in row:
                    t = max(-1.0, min(1.0, px[0] / top))
                    end = POSITIVE if t > 0 else NEGATIVE
                    a = abs(t) ** 0.8
                    line.append(
                        Color.from_rgb(*(int(n + (e - n) * a) for n, e in zip(NEUTRAL, end)))
                    )
                rows.append(line)
            out.append(rows)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        filters = self._colours()
        if not filters:
            return
        kh, kw = len(filters[0]), len(filters[0][0])
        scale = max(1, round(9 / max(kh, kw)))
        while scale > 1 and (kh * scale) % 2:  # whole cells: no half-painted last row
            scale -= 1
        w, h = kw * scale, kh * scale
        per_row = max(1, min(len(filters), (options.max_width + 1) // (w + 1)))
        for start in range(0, len(filters), per_row):
            group = filters[start : start + per_row]
            for y in range(0, h, 2):
                for n, f in enumerate(group):
                    if n:
                        yield Segment(" ")
                    for x in range(w):
                        top = f[y // scale][x // scale]
                        bottom = f[(y + 1) // scale][x // scale] if y + 1 < h else None
                        yield Segment("▀", Style(color=top, bgcolor=bottom))
                yield Segment.line()
            if start + per_row < len(filters):
                yield Segment.line()


def picture_renderable(picture: WeightPicture) -> RenderableType:
    parts: list[RenderableType] = [Text("\nWeights", style="bold")]
    g = Table.grid(padding=(0, 2))
    g.add_column(style="dim", no_wrap=True)
    g.add_column()
    g.add_row(picture.name, Text(sparkline(picture.histogram), style="green"))
    g.add_row("range", f"{sci(picture.low)} … {sci(picture.high)} · {picture.numel:,} values")
    parts.append(g)
    if picture.filters:
        shown = len(picture.filters)
        how = "RGB, min–max scaled" if picture.rgb else "mean over input channels; blue < 0 < red"
        parts.append(Text(f"first {shown} of {picture.out_channels} filters ({how})", style="dim"))
        parts.append(FilterHeatmap(picture))
    return Group(*parts)


class LayerDetail(VerticalScroll):
    """Everything about the highlighted module; set with ``set_model`` once per model, then ``show``.

    Weight pictures are made here: at once when the weight is small, else by a worker whose
    result lands later (``Drawn``); each module's picture is made once per model.
    """

    class Drawn(Message):
        """A weight picture computed off the UI thread (big tensors)."""

        def __init__(self, generation: int, path: str, picture: WeightPicture | None) -> None:
            super().__init__()
            self.generation = generation
            self.path = path
            self.picture = picture

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.path: str | None = None
        self._report: Report | None = None
        self._row: ModuleRow | None = None
        self._weights_of: Callable[[str], list[tuple[str, Any]]] | None = None
        self._pictures: dict[str, WeightPicture | None] = {}
        self._generation = 0  # of the model: a picture drawn for an earlier one is dropped

    def compose(self) -> ComposeResult:
        yield Static(Text("Loading…", style="dim"), id="detail-body")

    def set_model(self, weights_of: Callable[[str], list[tuple[str, Any]]] | None) -> None:
        """A new model (None: none yet): ``weights_of(path)`` gives a module's own parameters."""
        self._weights_of = weights_of
        self._pictures = {}
        self._generation += 1

    def show(self, report: Report, row: ModuleRow, *, keep_scroll: bool = False) -> None:
        """Show one module (its weight picture may follow when a worker has drawn it)."""
        moved = row.path != self.path
        self.path = row.path
        self._report, self._row = report, row
        self._update_body()
        if moved and not keep_scroll:
            self.scroll_home(animate=False)

    def show_message(self, text: Text) -> None:
        self.path = None
        self.query_one("#detail-body", Static).update(text)

    def _picture(self, row: ModuleRow) -> WeightPicture | None:
        """From the cache, drawn now when cheap, else drawn by a worker and shown when it lands."""
        if row.path in self._pictures:
            return self._pictures[row.path]
        chosen = pick_weight(self._weights_of(row.path)) if self._weights_of is not None else None
        if chosen is None:
            self._pictures[row.path] = None
            return None
        name, weight = chosen
        conv = "Conv" in row.type
        if weight.numel() <= CHEAP_NUMEL:
            self._pictures[row.path] = weight_picture(name, weight, conv)
            return self._pictures[row.path]
        self._draw(self._generation, row.path, name, weight, conv)
        return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="picture")
    def _draw(self, generation: int, path: str, name: str, weight: Any, conv: bool) -> None:
        self.post_message(self.Drawn(generation, path, weight_picture(name, weight, conv)))

    def on_layer_detail_drawn(self, message: Drawn) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        self._pictures[message.path] = message.picture
        if message.path == self.path and self._row is not None:
            self._update_body()

    def _update_body(self) -> None:
        assert self._report is not None and self._row is not None
        parts: list[RenderableType] = [module_detail(self._report, self._row)]
        picture = self._picture(self._row)
        if picture is not None:
            parts.append(picture_renderable(picture))
        self.query_one("#detail-body", Static).update(Group(*parts))
