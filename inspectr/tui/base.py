"""Provides ``InspectorBase``: the app's state and the helpers its parts share.

The app is one ``App`` put together from parts, each in the room of its job: ``Loader``
(tui/loading.py), ``Prober`` (tui/probing.py), ``Trainer`` (beside the Training screen) and
``Exporter`` (beside the export dialog); ``InspectrApp`` (tui/app.py) wires them to the widgets.
Every part subclasses this class, so the state they share is declared once, here. The parts
share one namespace too: their methods and messages take distinct names (``Loader.LoadFailed``,
``Prober.ProbeFailed``), or one would silently hide another's (tests/test_app_parts.py).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from textual.app import App

from inspectr.errors import InspectrError

if TYPE_CHECKING:
    from textual.timer import Timer

    from inspectr.core.inspection import Report
    from inspectr.core.result import ModuleRow
    from inspectr.core.sources.base import LoadedModel
    from inspectr.tui.trainable import TrainableState
    from inspectr.tui.widgets.findings_list import FindingsList
    from inspectr.tui.widgets.layer_detail import LayerDetail
    from inspectr.tui.widgets.module_tree import ModuleTree
    from inspectr.tui.widgets.search_bar import SearchBar
    from inspectr.tui.widgets.status_bar import StatusBar

LOAD_KEYS = ("kwargs", "weights", "pretrained", "trust_pickle")
FREEZE_KEYS = ("freeze", "unfreeze", "freeze_plan")


class InspectorBase(App[int]):
    """The state of one inspector session: the model, its report, the workers' generations."""

    # set in InspectrApp.on_mount: App.query_one sees only the active screen, and dialogs sit
    # on top of the one that holds them
    module_tree: ModuleTree
    layer_detail: LayerDetail
    findings_list: FindingsList
    status_bar: StatusBar
    search_bar: SearchBar

    def __init__(
        self,
        spec: str | None = None,
        options: dict[str, Any] | None = None,
        *,
        loaded: LoadedModel | None = None,
    ) -> None:
        """Args:
        spec: the model spec, or None (with ``loaded`` None) for the gallery.
        options: keyword arguments of ``inspectr.core.inspect.inspect`` (the CLI's flags).
        loaded: an already built model (tests, benchmarks, the Python API).
        """
        super().__init__()
        self.spec = spec
        self.options = dict(options or {})
        self.error: InspectrError | None = None
        self.report: Report | None = None
        self.timings: dict[str, float] = {}
        self._given = loaded
        self._loaded: LoadedModel | None = None
        self._trainable: TrainableState | None = None
        self._rows: dict[str, ModuleRow] = {}
        self._load_gen = 0
        self._probe_gen = 0
        self._probe_version = -1
        self._from_gallery = False
        self._model_lock = threading.Lock()  # held by whoever runs torch code on the model
        self._reprobe_timer: Timer | None = None
        self._matches: list[str] = []
        self._match_index = 0
        self._train_gen = 0
        self._training = False  # a training worker is running

    if TYPE_CHECKING:  # one part calls another's; each is defined once, by its part

        def request_probe(self) -> None: ...

        def action_gallery(self) -> None: ...

    @property
    def probe_enabled(self) -> bool:
        return bool(self.options.get("probe", True))

    def _probe_options(self) -> dict[str, Any]:
        skip = (*LOAD_KEYS, *FREEZE_KEYS, "probe", "histograms", "cancelled", "loaded", "on_step")
        return {k: v for k, v in self.options.items() if k not in skip}

    def _set_context(self, device: str, mode: str) -> None:
        self.status_bar.set_context(device, mode)
        self.module_tree.border_subtitle = f"{device} · {mode} mode"  # seen even at 80 columns

    def _show_detail(self, path: str, *, keep_scroll: bool = False) -> None:
        if self.report is None or self._trainable is None:
            return
        row = self._rows.get(path)
        if row is None:  # before the full structure: what the freeze state knows
            if path not in self._trainable.types:
                return
            row = self._trainable.skeleton_row(path)
        self.layer_detail.border_title = path or "(root)"
        self.layer_detail.show(self.report, self._trainable.row_view(row), keep_scroll=keep_scroll)

    def _refresh_detail(self) -> None:
        path = self.layer_detail.path
        if path is not None:
            self._show_detail(path, keep_scroll=True)

    def _update_totals(self) -> None:
        if self._trainable is not None:
            total, trainable = self._trainable.counts("")
            self.status_bar.set_totals(total, trainable)
            if self.report is not None and self.report.memory is not None:
                self.report = self._trainable.report_view(self.report)  # memory follows the freeze
                self.status_bar.set_memory(self.report.memory.training_peak_bytes if self.report.memory else None)

    def _file_stem(self) -> str:
        name = self.report.model.name if self.report else "model"
        name = name.replace("\\", "/").rsplit("/", 1)[-1].replace(".py:", "-").replace(":", "-")
        return "inspectr-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model")
