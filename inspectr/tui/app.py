"""Provides the inspector app and ``run_app(spec, options) -> exit code``.

Wiring only: the app composes the panes and reacts to their messages; its parts run the slow
work in workers and hand the results down to the widgets as attributes: ``Loader``
(tui/loading.py), ``Prober`` (tui/probing.py), ``Trainer`` (tui/screens/training.py) and
``Exporter`` (tui/screens/export.py), on the state of ``InspectorBase`` (tui/base.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from inspectr.errors import print_error
from inspectr.tui.loading import Loader
from inspectr.tui.probing import Prober
from inspectr.tui.screens.export import Exporter
from inspectr.tui.screens.gallery import GalleryScreen
from inspectr.tui.screens.help import HelpScreen
from inspectr.tui.screens.training import Trainer
from inspectr.tui.widgets.findings_list import FindingsList
from inspectr.tui.widgets.layer_detail import LayerDetail
from inspectr.tui.widgets.module_tree import ModuleTree
from inspectr.tui.widgets.search_bar import SearchBar
from inspectr.tui.widgets.status_bar import StatusBar

REPROBE_DELAY = 0.5  # seconds of quiet after a freeze toggle before the probe re-runs


class InspectrApp(Loader, Prober, Trainer, Exporter):
    """Browse a model's modules, see each layer's measures, freeze layers live."""

    CSS_PATH = "app.tcss"
    TITLE = "inspectr"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", tooltip="Find modules by path, class name or glob"),
        Binding(
            "e", "export", "Export", tooltip="Write the report as text, markdown, JSON, HTML or SVG"
        ),
        Binding(
            "s",
            "save_plan",
            "Save plan",
            tooltip="Save the freeze plan as JSON in the current directory",
        ),
        Binding(
            "t",
            "train",
            "Train",
            show=False,  # the footer is full at 80 columns; help and the palette list it
            tooltip="Train N steps on the probe batch (--steps, the model's example_training, "
            "else 20) and open the Training view",
        ),
        Binding("v", "training_view", "Training view", show=False, tooltip="Open the last training run"),
        Binding("r", "reprobe", "Re-probe", show=False, tooltip="Run the probe again"),
        Binding("f", "focus_findings", "Findings", show=False, tooltip="Focus the findings list"),
        Binding("escape", "focus_tree", "Tree", show=False, tooltip="Focus the module tree"),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
        Binding("g", "gallery", "Gallery", show=False, tooltip="Open the sample model gallery"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield SearchBar(id="search")
                yield ModuleTree(id="tree")
            with Vertical(id="right"):
                yield LayerDetail(id="detail")
                yield FindingsList(id="findings")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        # kept: App.query_one sees only the active screen, and dialogs sit on top of this one
        self.module_tree = self.query_one(ModuleTree)
        self.layer_detail = self.query_one(LayerDetail)
        self.findings_list = self.query_one(FindingsList)
        self.status_bar = self.query_one(StatusBar)
        self.search_bar = self.query_one(SearchBar)
        self.search_bar.display = False
        self.module_tree.root.allow_expand = False
        self.module_tree.border_title = "Modules"
        self.layer_detail.border_title = "Layer"
        self.findings_list.show_state("Findings appear after the probe.")
        if self._given is not None:
            self.load_model(None)
        elif self.spec:
            self.load_model(self.spec)
        else:
            self.action_gallery()

    def on_unmount(self) -> None:
        # the frozen model and rows go back to the collector: an app run from Python (the API,
        # tests) must not leave them uncollectable after it quits
        gc.unfreeze()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # over the gallery or a dialog, only help and quit make sense
        stack = self.screen_stack
        if action in ("help", "quit", "command_palette") or not stack:
            return True
        return stack[-1] is stack[0]

    # ------------------------------------------------------------ detail

    def on_module_tree_module_highlighted(self, message: ModuleTree.ModuleHighlighted) -> None:
        self._show_detail(message.path)

    # ------------------------------------------------------------ freezing

    def on_module_tree_freeze_toggled(self, message: ModuleTree.FreezeToggled) -> None:
        trainable = self._trainable
        if trainable is None:
            return
        new = trainable.toggle(message.path)
        if new is None:
            self.notify(
                f"{message.path or 'the model'} has no parameters to freeze.",
                markup=False,
                timeout=3,
            )
            return
        if self._model_lock.acquire(blocking=False):  # else the probe worker applies it when done
            try:
                trainable.apply()
            finally:
                self._model_lock.release()
        self.module_tree.refresh_labels()
        self._update_totals()
        self._refresh_detail()
        if self.probe_enabled:
            self.status_bar.set_probe("stale", "re-probing…")
            if self._reprobe_timer is not None:
                self._reprobe_timer.stop()
            self._reprobe_timer = self.set_timer(REPROBE_DELAY, self._reprobe_after_freeze)

    def _reprobe_after_freeze(self) -> None:
        self._reprobe_timer = None
        if self.is_running:
            self.request_probe()

    def action_save_plan(self) -> None:
        if self._loaded is None:
            self.notify("No model loaded yet.", severity="warning")
            return
        if self._model_lock.locked():
            self.notify("Saving once the running probe lets go of the model…", timeout=3)
        self._save_plan(Path.cwd() / f"{self._file_stem()}-freeze.json")

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save_plan(self, path: Path) -> None:
        from inspectr.core.freeze import plan_from_model, save_plan

        loaded, trainable = self._loaded, self._trainable
        if loaded is None or trainable is None:
            return
        try:
            with self._model_lock:
                trainable.apply()
                plan = plan_from_model(loaded.model)
                save_plan(plan, path)
        except OSError as exc:
            self.call_from_thread(
                self.notify, f"Could not write {path}: {exc}", severity="error", markup=False
            )
            return
        frozen = sum(1 for _, t in plan.entries if not t)
        what = (
            f"{frozen} frozen entr{'y' if frozen == 1 else 'ies'}" if frozen else "nothing frozen"
        )
        spec = self.spec or loaded.name
        text = (
            f"Saved the freeze plan ({what}) to {path}\n"
            f"Python: inspectr.freeze.apply_plan(model, inspectr.freeze.load_plan({path.name!r}))\n"
            f"CLI: inspectr {spec} --report --freeze-plan {path.name}"
        )
        self.call_from_thread(
            self.notify, text, title="Freeze plan saved", markup=False, timeout=15
        )

    # ------------------------------------------------------------ search, findings, focus

    def action_search(self) -> None:
        if self._loaded is not None:
            self.search_bar.open()

    @on(SearchBar.Picked)
    def _search_picked(self, message: SearchBar.Picked) -> None:
        self._matches = message.matches
        self._match_index = (
            message.matches.index(message.path) if message.path in message.matches else 0
        )
        tree = self.module_tree
        tree.reveal(message.path)
        tree.focus()
        if len(self._matches) > 1:
            self.notify(
                f"{len(self._matches):,} matches: n / N for the next and previous", timeout=3
            )

    @on(SearchBar.Closed)
    def _search_closed(self) -> None:
        self.module_tree.focus()

    def action_next_match(self, step: int = 1) -> None:
        if not self._matches:
            self.action_search()
            return
        self._match_index = (self._match_index + step) % len(self._matches)
        self.module_tree.reveal(self._matches[self._match_index])

    def on_findings_list_finding_selected(self, message: FindingsList.FindingSelected) -> None:
        tree = self.module_tree
        tree.reveal(message.path)
        tree.focus()

    def action_focus_findings(self) -> None:
        self.findings_list.focus()

    def action_focus_tree(self) -> None:
        search = self.search_bar
        if search.display:
            search.display = False
        self.module_tree.focus()

    # ------------------------------------------------------------ screens and commands

    def action_gallery(self) -> None:
        from inspectr.core.sources.registry import sample_entries

        entries = [(e.name, e.description, e.healthy) for e in sample_entries().values()]

        def picked(name: str | None) -> None:
            if name:
                self.load_model(f"sample:{name}", from_gallery=True)

        self.push_screen(GalleryScreen(entries, can_go_back=self._loaded is not None), picked)

    def action_help(self) -> None:
        keys: list[tuple[str, str]] = [
            ("↑ ↓ / j k", "move in the tree"),
            ("→ ← / l h", "expand / collapse or go to parent"),
            ("enter", "expand or collapse"),
        ]
        for binding in [*ModuleTree.BINDINGS, *self.BINDINGS]:
            if isinstance(binding, Binding) and binding.key not in ("right,l", "left,h", "j", "k"):
                shown = " / ".join(
                    self.get_key_display(Binding(k, "")) for k in binding.key.split(",")
                )
                keys.append((shown, binding.tooltip or binding.description))
        keys += [("tab", "next pane"), ("ctrl+p", "command palette")]
        self.push_screen(HelpScreen(keys))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Search modules", "Find modules by path, class name or glob", self.action_search
        )
        yield SystemCommand(
            "Export report",
            "Write the report as text, markdown, JSON, HTML or SVG",
            self.action_export,
        )
        yield SystemCommand(
            "Save freeze plan",
            "Save which layers train as JSON, to apply in training",
            self.action_save_plan,
        )
        yield SystemCommand(
            "Re-probe", "Run the probe forward/backward pass again", self.action_reprobe
        )
        yield SystemCommand(
            "Train N steps", "Train on the probe batch and watch every layer (Training view)",
            self.action_train,
        )
        yield SystemCommand(
            "Sample gallery", "Open another model from the sample gallery", self.action_gallery
        )
        yield SystemCommand("Help", "Keys and what the tree's marks mean", self.action_help)


def run_app(spec: str | None, options: dict[str, Any] | None = None) -> int:
    """Open the app on ``spec`` (None: the gallery); returns the exit code.

    Args:
        spec: a model spec as the CLI takes it.
        options: keyword arguments of ``inspectr.core.inspect.inspect``.

    Returns:
        0 after a normal quit; a load error's exit code (2), its message printed as the CLI does.
    """
    app = InspectrApp(spec, options)
    app.run()
    if app.error is not None:
        print_error(app.error)
        return app.error.exit_code
    return app.return_code or 0
