"""Provides the search bar: find modules by path, class name or glob, pick one to jump to it."""

from __future__ import annotations

import fnmatch
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

MAX_SHOWN = 200


def find_modules(entries: list[tuple[str, str]], query: str) -> list[str]:
    """Paths whose path or class name contains ``query`` (case-insensitive); ``*`` makes it a glob.

    Exact class-name matches come first, then the rest in model order.
    """
    q = query.strip()
    if not q:
        return []
    if any(ch in q for ch in "*?["):
        return [p for p, t in entries if fnmatch.fnmatchcase(p, q) or fnmatch.fnmatchcase(t, q)]
    low = q.lower()
    exact = [p for p, t in entries if t.lower() == low]
    seen = set(exact)
    rest = [p for p, t in entries if p not in seen and (low in p.lower() or low in t.lower())]
    return exact + rest


class SearchBar(Vertical):
    """An input over a list of matching modules; hidden until the app opens it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close search", show=False),
        Binding("down", "move(1)", "Next match", show=False),
        Binding("up", "move(-1)", "Previous match", show=False),
    ]

    class Picked(Message):
        """The user chose a module; ``matches`` are every hit, for next/previous."""

        def __init__(self, path: str, matches: list[str]) -> None:
            super().__init__()
            self.path = path
            self.matches = matches

    class Closed(Message):
        """Search dismissed without a pick."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.entries: list[tuple[str, str]] = []  # (path, class name), set by the app
        self.types: dict[str, str] = {}
        self.matches: list[str] = []

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="path, class name or glob (layer1.*, *.bn*, Conv2d)", id="search-input"
        )
        yield OptionList(id="search-results")

    def open(self) -> None:
        self.display = True
        self.types = dict(self.entries)
        inp = self.query_one(Input)
        inp.focus()
        self._update(inp.value)

    def action_close(self) -> None:
        self.display = False
        self.post_message(self.Closed())

    def action_move(self, step: int) -> None:
        results = self.query_one(OptionList)
        if results.option_count:
            current = results.highlighted if results.highlighted is not None else -1
            results.highlighted = max(0, min(results.option_count - 1, current + step))

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self._update(event.value)

    def _update(self, query: str) -> None:
        self.matches = find_modules(self.entries, query)
        results = self.query_one(OptionList)
        options: list[Option] = []
        for p in self.matches[:MAX_SHOWN]:
            prompt = Text(p or "(root)", style="bold", no_wrap=True, overflow="ellipsis")
            prompt.append(f"  {self.types.get(p, '')}", style="dim")
            options.append(Option(prompt, id=f"m-{len(options)}"))
        results.set_options(options)
        results.display = bool(options)
        if options:
            results.highlighted = 0
        n = len(self.matches)
        more = f" (first {MAX_SHOWN})" if n > MAX_SHOWN else ""
        self.border_title = (
            f"Search · {n:,} match{'es' if n != 1 else ''}{more}" if query.strip() else "Search"
        )

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        results = self.query_one(OptionList)
        index = results.highlighted if results.highlighted is not None else 0
        self._pick(index)

    @on(OptionList.OptionSelected, "#search-results")
    def _result_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._pick(event.option_index)

    def _pick(self, index: int) -> None:
        if not self.matches:
            self.app.bell()
            return
        self.display = False
        self.post_message(
            self.Picked(self.matches[min(index, len(self.matches) - 1)], list(self.matches))
        )
