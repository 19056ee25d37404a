"""Provides the run's module tree: each module with its type, its latest sampled values and a
sparkline of the chosen statistic; labels are derived from the run on every render."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from inspectr.core.runs.report import RunReport
from inspectr.report.formatting import human
from inspectr.report.run_views import latest_text


class RunTree(Tree[str]):
    """The modules of a run (its ``modules`` table); ``node.data`` is the module path."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("(root)", data="", id=id)
        self.report: RunReport | None = None
        self.key = "param_grad_norm"
        self.nodes_by_path: dict[str, TreeNode[str]] = {}
        self.module_of: dict[str, dict[str, Any]] = {}

    def show(self, report: RunReport, key: str) -> None:
        """Show ``report``: the tree is built once (a run's modules never change), labels follow."""
        first = self.report is None
        self.report, self.key = report, key
        if first:
            self._add_modules(report)
        self._invalidate()

    def _add_modules(self, report: RunReport) -> None:
        self.clear()
        self.nodes_by_path = {"": self.root}
        self.module_of = {m["path"]: m for m in report.modules}
        parents = {m["path"].rpartition(".")[0] for m in report.modules if m["path"]}  # O(n), not O(n²)
        self.root.data = ""
        for m in report.modules:
            path = m["path"]
            if not path:
                continue
            parent = self.nodes_by_path.get(path.rpartition(".")[0], self.root)
            leaf = path not in parents
            self.nodes_by_path[path] = (parent.add_leaf if leaf else parent.add)(path.rpartition(".")[2], data=path)
        self.root.expand_all()
        self.move_cursor(self.root)

    def render_label(self, node: TreeNode[str], base_style, style) -> Text:  # type: ignore[no-untyped-def]
        label = super().render_label(node, base_style, style)
        path = node.data
        if self.report is None or path is None:
            return label
        label.append_text(latest_text(self.report, path, self.key))
        kind = self.module_of.get(path)
        if kind is not None:  # after the values: a narrow pane cuts the type, not the numbers
            label.append(f" {kind['type']}", style="dim")
            if kind["params"]:
                label.append(f" {human(kind['params'])}", style="dim italic")
        return label

    def select_path(self, path: str) -> bool:
        """Move the cursor to ``path``'s module (opening its parents); False when it is not in the run."""
        node = self.nodes_by_path.get(path)
        if node is None:
            return False
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.move_cursor(node)
        self.scroll_to_node(node)
        return True
