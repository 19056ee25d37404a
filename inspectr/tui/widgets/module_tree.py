"""Provides the module tree: every module of the model as a lazily expanded node."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from inspectr.core.inspection import Report
from inspectr.core.result import Finding, ModuleRow
from inspectr.report.formatting import SEVERITY_MARK, human, sci, shape_text
from inspectr.tui.trainable import TrainableState

TOGGLE = Style(meta={"toggle": True})  # Tree's click-on-the-arrow marker
EMPTY = Text()
AUTO_EXPAND_LINES = 48  # expand level by level while the open tree stays about a screenful
MARKERS = {"all": "●", "none": "❄", "partial": "◐", "n/a": " "}
SEVERITIES = ("error", "warning", "info")


class ModuleTree(Tree[str]):
    """The model's modules; ``node.data`` is the module path (``""`` for the root).

    Labels are derived on every paint from the report (attribute ``report``) and the live
    freeze state (attribute ``trainable``), so toggling a layer or landing a probe only needs
    a repaint. Children are added when a node is first expanded.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "space", "toggle_freeze", "Freeze", tooltip="Toggle requires_grad of the whole subtree"
        ),
        Binding("right,l", "expand_or_child", "Expand", show=False),
        Binding("left,h", "collapse_or_parent", "Collapse / parent", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "module-tree--type",
        "module-tree--params",
        "module-tree--shape",
        "module-tree--trainable",
        "module-tree--frozen",
        "module-tree--partial",
        "module-tree--shared",
        "module-tree--error",
        "module-tree--warning",
        "module-tree--info",
        "module-tree--muted",
    }

    class ModuleHighlighted(Message):
        """The cursor moved to a module."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    class FreezeToggled(Message):
        """The user asked to freeze or unfreeze a module's subtree."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", data="", id=id, classes=classes)
        self.guide_depth = 3
        self.auto_expand = True
        self.report: Report | None = None
        self.trainable: TrainableState | None = None
        self._rows: dict[str, ModuleRow] = {}
        self._kids: dict[str, list[str]] = {}
        self._alias_of: dict[str, str] = {}  # alias path -> the path named_modules() keeps
        self._node_of: dict[str, TreeNode[str]] = {}
        self._filled: set[str] = set()
        self._findings: dict[str, list[Finding]] = {}
        self._inside: dict[str, list[int]] = {}  # path -> finding counts below it, per severity
        self._widths: dict[str, int] = {}

    # ------------------------------------------------------------ attributes down

    def show_model(self, report: Report, trainable: TrainableState) -> None:
        """Start over with a new model: root expanded, then levels while they fit a screen.

        The structure comes from ``trainable`` (paths, classes, counts), so ``report`` may be the
        row-less skeleton; ``update_report`` brings measures and findings later.
        """
        self.clear()
        self.trainable = trainable
        self._node_of = {"": self.root}
        self._filled = set()
        self._kids = {}
        self._alias_of = {}
        for path in trainable.types:
            if path:
                self._kids.setdefault(_parent(path), []).append(path)
        for first, aliases in trainable.aliases.items():
            for alias in aliases:
                self._alias_of[alias] = first
                self._kids.setdefault(_parent(alias), []).append(alias)
        self.update_report(report)
        self.root.data = ""
        self.root.allow_expand = bool(self._kids.get(""))
        self._auto_expand()
        self.move_cursor(self.root)

    def update_report(self, report: Report) -> None:
        """New measures and findings for the same model (a probe landed)."""
        self.report = report
        self._index(report)
        self._invalidate()

    def refresh_labels(self) -> None:
        """The freeze state changed: repaint, keep the layout (cheap even with 20,000 nodes)."""
        self._updates += 1
        self._line_cache.clear()
        self.refresh()

    def reveal(self, path: str) -> bool:
        """Expand the ancestors of ``path`` and put the cursor on it."""
        known = self.trainable is not None and path in self.trainable.types
        path = path if known or path in self._alias_of else ""
        node = self.root
        parts = path.split(".") if path else []
        for i in range(len(parts)):
            self._fill(node)
            if not node.is_expanded:
                node.expand()
            child = self._node_of.get(".".join(parts[: i + 1]))
            if child is None:
                break
            node = child
        _ = self._tree_lines  # lay out now so the node has its line number
        self.move_cursor(node, animate=False)
        self.scroll_to_node(node, animate=False)
        return node.data == path

    @property
    def highlighted_path(self) -> str | None:
        node = self.cursor_node
        return None if node is None else node.data

    def resolve(self, path: str) -> str:
        """An alias path -> the module's own path."""
        return self._alias_of.get(path, path)

    # ------------------------------------------------------------ building

    def _index(self, report: Report) -> None:
        self._rows = {r.path: r for r in report.modules}
        self._findings = {}
        self._inside = {}
        for f in report.findings:
            self._findings.setdefault(f.module, []).append(f)
            sev = SEVERITIES.index(f.severity) if f.severity in SEVERITIES else 2
            p = f.module
            while p:
                p = _parent(p)
                self._inside.setdefault(p, [0, 0, 0])[sev] += 1
        self._widths = {}

    def _fill(self, node: TreeNode[str]) -> None:
        """Add the node's children once (lazy: a 20,000-child root is one bulk add)."""
        path = node.data or ""
        if path in self._filled or path in self._alias_of:
            return
        self._filled.add(path)
        kids = self._kids.get(path, ())
        if not kids:
            return
        try:
            # Tree.add invalidates the whole tree per node; add in bulk and invalidate once
            for child in kids:
                new = self._add_node(node, EMPTY, child)
                new._allow_expand = bool(self._kids.get(child)) and child not in self._alias_of
                node._children.append(new)
                self._node_of[child] = new
            node._updates += 1
            self._invalidate()
        except AttributeError:  # Tree internals moved: the public, slower way
            for child in kids:
                if child in self._node_of:
                    continue
                expandable = bool(self._kids.get(child)) and child not in self._alias_of
                self._node_of[child] = node.add(EMPTY, child, allow_expand=expandable)

    def _auto_expand(self) -> None:
        self._fill(self.root)
        self.root.expand()
        level = [self.root]
        lines = 1 + len(self.root.children)
        while True:
            nxt = [c for n in level for c in n.children if c.allow_expand]
            grow = sum(len(self._kids.get(c.data or "", ())) for c in nxt)
            if not nxt or lines + grow > AUTO_EXPAND_LINES:
                break
            for c in nxt:
                self._fill(c)
                c.expand()
            lines += grow
            level = nxt

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        self._fill(event.node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        event.stop()
        if event.node.data is not None:
            self.post_message(self.ModuleHighlighted(self.resolve(event.node.data)))

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()

    # ------------------------------------------------------------ actions

    def action_toggle_freeze(self) -> None:
        path = self.highlighted_path
        if path is not None:
            self.post_message(self.FreezeToggled(self.resolve(path)))

    def action_expand_or_child(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            self._fill(node)
            node.expand()
        elif node.children:
            _ = self._tree_lines
            self.move_cursor(node.children[0])

    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.allow_expand:
            node.collapse()
        elif node.parent is not None:
            self.move_cursor(node.parent)

    # ------------------------------------------------------------ labels

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"module-tree--{name}", partial=True)

    def render_label(self, node: TreeNode[str], base_style: Style, style: Style) -> Text:
        path = node.data or ""
        text = Text(no_wrap=True, end="")
        if self.trainable is None:
            return Text("loading…", style=self._style("muted"))
        if node.allow_expand:
            text.append("▼ " if node.is_expanded else "▶ ", base_style + TOGGLE)
        alias = self._alias_of.get(path)
        name = (
            path.rsplit(".", 1)[-1]
            if path
            else (self.report.model.name if self.report else "model")
        )
        if alias is not None:
            text.append("⇄ ", self._style("shared"))
            text.append(name, style)
            text.append(f"  same module as {alias}", self._style("shared"))
            return text
        row = self._rows.get(path)
        type_name = (
            row.type
            if row is not None
            else (self.trainable.types.get(path) if self.trainable else None)
        )
        state, total = "n/a", 0
        if self.trainable is not None:
            total, trainable = self.trainable.counts(path)
            state = self.trainable.state(path)
        marker_style = {"all": "trainable", "none": "frozen", "partial": "partial"}.get(
            state, "muted"
        )
        text.append(MARKERS[state] + " ", self._style(marker_style))
        text.append(name, style + Style(bold=not path))
        if type_name is None:
            return text
        # findings first: they must stand out even where a narrow pane cuts the label
        for f in self._findings.get(path, ()):
            text.append(f" {SEVERITY_MARK.get(f.severity, '●')} {f.kind}", self._style(f.severity))
        inside = self._inside.get(path)
        if inside and not node.is_expanded:
            for sev, count in zip(SEVERITIES, inside):
                if count:
                    text.append(f" {SEVERITY_MARK[sev]}{count} inside", self._style(sev))
        text.append(f" {type_name}", self._style("type"))
        if total:
            text.append(f" {human(total)}", self._style("params"))
        if self.trainable is not None and path in self.trainable.aliases:
            text.append(" ⇄", self._style("shared"))
        if row is not None and row.calls:
            text.append(f" {shape_text(row)}", self._style("shape"))
        if row is not None and row.update_ratio is not None:  # after training steps (``t``)
            text.append(f" Δ{sci(row.update_ratio)}", self._style("muted"))
        if row is not None and row.end_dead_fraction is not None:
            dead = row.end_dead_fraction
            text.append(f" dead {dead:.0%}", self._style("error" if dead >= 0.7 else "muted"))
        return text

    def get_label_width(self, node: TreeNode[str]) -> int:
        # called for every open line on each layout: estimate from plain strings, cached
        path = node.data or ""
        width = self._widths.get(path)
        if width is None:
            row = self._rows.get(path)
            width = 12 + len(path.rsplit(".", 1)[-1] or "model")
            if self.trainable is not None and path in self.trainable.types:
                width += len(self.trainable.types[path]) + sum(
                    len(f.kind) + 3 for f in self._findings.get(path, ())
                )
                if row is not None and row.calls:
                    width += len(shape_text(row)) + 1
                if row is not None and row.update_ratio is not None:
                    width += 10
                if row is not None and row.end_dead_fraction is not None:
                    width += 10
            elif path in self._alias_of:
                width += 17 + len(self._alias_of[path])
            self._widths[path] = width
        return width


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""
