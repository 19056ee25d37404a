"""Provides ``LongTable``: rich's ``Table``, same output, drawn fast when it has thousands of rows.

rich lays out every cell through its general machinery (measure, pad, wrap, justify, crop,
shape): about 0.1 ms a cell, 20 s for the module tree of a 20,000-module model. Two facts
make it linear and cheap without changing a character:

- a column's width depends only on the largest minimum and the largest maximum width of its
  cells, so rich measures a stand-in column holding just those cells (and every cell that
  is not a ``Text``);
- a one-line ``Text`` cell that fits its column comes out of rich as the text justified with
  spaces, between its padding: those segments are made directly (``Text.render`` still
  styles them), once per distinct cell. A row with any other cell is drawn by rich's steps.

A table using what this does not cover (a footer, row styles, lines between rows, an edge,
vertical padding, column styles) is drawn by rich itself.
"""

from __future__ import annotations

from dataclasses import replace

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.table import Column, Row, Table
from rich.text import Span, Text

_Line = list[Segment]
_MISSING: _Line = []


class LongTable(Table):
    """A ``rich.table.Table`` whose layout and rows take time linear in its cells."""

    def add_row(self, *renderables: RenderableType | None, style: str | Style | None = None,
                end_section: bool = False) -> None:
        if len(renderables) != len(self.columns) or any(type(r) is not Text for r in renderables):
            super().add_row(*renderables, style=style, end_section=end_section)
            return
        for column, renderable in zip(self.columns, renderables):  # what add_row does with Texts
            column._cells.append(renderable)
        self.rows.append(Row(style=style, end_section=end_section))

    def _measure_column(self, console: Console, options: ConsoleOptions, column: Column) -> Measurement:
        cache: dict[int, tuple[int, Column]] = self.__dict__.setdefault("_stand_ins", {})
        got = cache.get(column._index)
        if got is None or got[0] != len(column._cells):
            got = cache[column._index] = (len(column._cells), _widest(column))
        return super()._measure_column(console, options, got[1])

    def _render(self, console: Console, options: ConsoleOptions, widths: list[int]) -> list[Segment]:
        top, right, bottom, left = self.padding
        if (self.show_footer or self.show_lines or self.leading or self.show_edge or self.row_styles
                or self.collapse_padding or top or bottom or not self.box or not self.show_header
                or any(row.style is not None or row.end_section for row in self.rows)
                or any(c.style for c in self.columns)):
            return list(super()._render(console, options, widths))
        head = Table.__new__(Table)  # the header row and its rule, drawn by rich
        head.__dict__.update(self.__dict__)
        head.columns = [c.copy() for c in self.columns]
        head.rows = []
        out = list(Table._render(head, console, options, widths))
        self._body(console, options, widths, out)
        return out

    def _body(self, console: Console, options: ConsoleOptions, widths: list[int], out: list[Segment]) -> None:
        """Append the body rows to ``out``, as ``Table._render`` draws them."""
        _, right, _, left = self.padding
        safe = self.safe_box if self.safe_box is not None else console.safe_box
        assert self.box is not None
        box = self.box.substitute(options, safe=safe)
        border_style = console.get_style(self.style or "") + console.get_style(self.border_style or "")
        row_style = Style.null()
        mid, foot = [Segment(text, row_style.background_style + border_style) if not text.strip()
                     else Segment(text, border_style) for text in (box.mid_vertical, box.foot_vertical)]
        new_line = Segment.line()
        pad_style = console.get_style("none")  # Padding's default style
        last_column = len(self.columns) - 1
        layout = []  # per column: inner width, justify (None: rich draws it), left and right padding
        for index, (width, column) in enumerate(zip(widths, self.columns)):
            pad_left = 0 if index == 0 and not self.pad_edge else left
            pad_right = 0 if index == last_column and not self.pad_edge else right
            layout.append((width - pad_left - pad_right, column.justify if column.overflow != "ignore" else None,
                           Segment(" " * pad_left, pad_style) if pad_left else None,
                           Segment(" " * pad_right, pad_style) if pad_right else None))
        made: dict[tuple[object, ...], _Line | None] = {}  # most cells repeat (types, shapes, blanks)
        rows = list(zip(*(column._cells for column in self.columns)))
        last_row = len(rows) - 1
        for index, row in enumerate(rows):
            divider = foot if index == last_row else mid
            line: _Line | None = []
            for column_index, (renderable, (inner, justify, pad_l, pad_r)) in enumerate(zip(row, layout)):
                segments = None
                if justify and type(renderable) is Text:
                    key = (renderable.plain, renderable.style, renderable.justify, renderable.overflow,
                           renderable.end, *renderable.spans, inner, justify)
                    segments = made.get(key, _MISSING)
                    if segments is _MISSING:
                        segments = made[key] = _one_line(console, renderable, inner, justify)
                if segments is None:
                    line = None
                    break
                if column_index:
                    line.append(divider)
                if pad_l is not None:
                    line.append(pad_l)
                line += segments
                if pad_r is not None:
                    line.append(pad_r)
            if line is None:
                out += self._rich_row(console, options, widths, row, index == last_row, divider)
            else:
                out += line
                out.append(new_line)

    def _rich_row(self, console: Console, options: ConsoleOptions, widths: list[int],
                  row: tuple[RenderableType, ...], last: bool, divider: Segment) -> list[Segment]:
        """One body row as ``Table._render`` draws it (cells of several lines, wrapped, cropped)."""
        top, right, bottom, left = self.padding
        last_column = len(self.columns) - 1
        cells: list[list[_Line]] = []
        vertical = []
        for index, (width, renderable, column) in enumerate(zip(widths, row, self.columns)):
            pad = (top, 0 if index == last_column and not self.pad_edge else right,
                   0 if last and not self.pad_edge else bottom, 0 if index == 0 and not self.pad_edge else left)
            render_options = options.update(width=width, justify=column.justify, no_wrap=column.no_wrap,
                                            overflow=column.overflow, height=None, highlight=column.highlight)
            cells.append(console.render_lines(Padding(renderable, pad), render_options, style=Style.null()))
            vertical.append(getattr(renderable, "vertical", None) or column.vertical)
        height = max(len(cell) for cell in cells)
        align = {"top": Segment.align_top, "middle": Segment.align_middle}
        shaped = [Segment.set_shape(align.get(v, Segment.align_bottom)(cell, width, height, Style.null()), width, height)
                  for cell, v, width in zip(cells, vertical, widths)]
        out: list[Segment] = []
        for line_no in range(height):
            for index, cell in enumerate(shaped):
                if index:
                    out.append(divider)
                out += cell[line_no]
            out.append(Segment.line())
        return out


def _one_line(console: Console, text: Text, width: int, justify: str) -> _Line | None:
    """The segments rich makes of a one-line ``Text`` that fits ``width`` (its padding aside),
    justified left or right; None for any other cell."""
    if text.justify or text.overflow or text.end not in ("\n", "") or justify not in ("left", "right"):
        return None
    plain = text.plain
    if plain.isascii() and plain.isprintable():
        size = len(plain)
    elif "\n" in plain or "\t" in plain:
        return None
    else:
        size = cell_len(plain)
    # wrapping crops trailing spaces by characters, right justification strips them
    if size > width or len(plain) > width or (justify == "right" and plain != plain.rstrip()):
        return None
    gap = width - size
    spans = text.spans
    if justify == "left":
        padded = plain + " " * gap
    else:
        padded = " " * gap + plain
        spans = [Span(start + gap, end + gap, style) for start, end, style in spans] if gap else spans
    if text.style:  # joining the wrapped lines turns a line's style into a span
        spans = [Span(0, len(padded), text.style), *spans]
    if not spans:
        return [Segment(padded)]  # Text.render of an unstyled text
    return list(Text(padded, spans=list(spans)).render(console))


def _widest(column: Column) -> Column:
    """``column`` with only the cells that decide its width: the ``Text`` with the longest word,
    the one with the longest line, and every cell of another kind."""
    keep: list[RenderableType] = []
    best_min = best_max = -1
    widest_min = widest_max = None
    seen: set[int] = set()  # a Text shared by many rows is measured once
    for cell in column._cells:
        if type(cell) is not Text:
            keep.append(cell)
            continue
        if id(cell) in seen:
            continue
        seen.add(id(cell))
        low, high = _text_width(cell.plain)
        if low > best_min:
            best_min, widest_min = low, cell
        if high > best_max:
            best_max, widest_max = high, cell
    if widest_min is not None:
        keep.append(widest_min)
    if widest_max is not None and widest_max is not widest_min:
        keep.append(widest_max)
    return replace(column, _cells=keep)


def _text_width(plain: str) -> tuple[int, int]:
    """``Text.__rich_measure__``: (longest word, longest line) in cells."""
    if plain.isascii() and plain.isprintable():
        words = plain.split()
        return (max(map(len, words)) if words else len(plain)), len(plain)
    lines = plain.splitlines()
    longest_line = max(map(cell_len, lines)) if lines else 0
    words = plain.split()
    return (max(map(cell_len, words)) if words else longest_line), longest_line
