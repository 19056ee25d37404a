"""Provides the user's line behind a finding, drawn two ways: ``file:line``, the code and a caret
under the call (the text report, a CI log), and the lines around it highlighted by rich's
``Syntax`` (the app's detail pane). Both read ``detail["source"]`` (the watch: ``op_source``) and
a forward error's ``size_origin``; nothing is read from disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

from inspectr.core.result import Finding


def finding_sources(f: Finding) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, source dict) for each line a finding names: the culprit call's, then where a
    wrong size came from."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    d = f.detail
    src = d.get("op_source") if isinstance(d.get("op_source"), Mapping) else d.get("source")
    if isinstance(src, Mapping) and src.get("file"):
        op = d.get("op")
        out.append((f"`{op}`" if op else "raised", src))
    origin = d.get("size_origin")
    if isinstance(origin, Mapping) and isinstance(origin.get("source"), Mapping) and origin["source"].get("file"):
        o = origin["source"]
        if not out or (out[0][1].get("file"), out[0][1].get("line")) != (o.get("file"), o.get("line")):
            out.append((f"size from `{origin.get('op')}`", o))
    return out


def caret_lines(src: Mapping[str, Any], label: str = "", indent: str = "") -> Text:
    """``at model.py:12 in forward``, the line, and ``^^^^`` under the call (plain text in a log)."""
    t = Text()
    file, line = str(src.get("file", "")), src.get("line")
    t.append(f"{indent}at ", style="dim")
    t.append(f"{os.path.basename(file)}:{line}", style="bold")
    fn = src.get("function")
    if fn:
        t.append(f" in {fn}", style="dim")
    if label:
        t.append(f" ({label})", style="dim")
    code = str(src.get("code") or "")
    if not code:
        return t
    gutter = f"{indent}{line:>5} │ "
    t.append("\n" + gutter, style="dim")
    t.append(code)
    col, end = src.get("col"), src.get("end_col")
    if isinstance(col, int) and isinstance(end, int) and end > col:
        t.append("\n" + " " * (len(gutter) - 2) + "│ ", style="dim")
        t.append(" " * col + "^" * (end - col), style="bold red")
    return t


def source_block(f: Finding) -> RenderableType | None:
    """The caret lines of every source a finding names (None: it names none)."""
    parts = [caret_lines(src, label) for label, src in finding_sources(f)]
    return Group(*parts) if parts else None


def source_syntax(src: Mapping[str, Any]) -> RenderableType:
    """The lines around the culprit with line numbers, the culprit's line highlighted."""
    line = int(src.get("line") or 0)
    context = [str(x) for x in src.get("context") or []]
    first = int(src.get("context_first") or line)
    if not context:  # no lines around it were kept: the line alone
        context, first = [str(src.get("code") or "")], line
    syntax = Syntax("\n".join(context), "python", line_numbers=True, start_line=first, highlight_lines={line},
                    theme="ansi_dark", word_wrap=True, background_color="default")
    col, end, row = src.get("col"), src.get("end_col"), line - first
    if isinstance(col, int) and isinstance(end, int) and end > col and 0 <= row < len(context):
        indent = len(context[row]) - len(context[row].lstrip())
        syntax.stylize_range("bold underline", (row + 1, indent + col), (row + 1, indent + end))
    return syntax


def source_panel(f: Finding) -> RenderableType | None:
    """For the app: each source's ``file:line`` title and its highlighted lines."""
    parts: list[RenderableType] = []
    for label, src in finding_sources(f):
        title = Text(f"{src.get('file')}:{src.get('line')}", style="bold")
        title.append(f"  {label}", style="dim")
        parts += [title, source_syntax(src)]
    return Group(*parts) if parts else None
