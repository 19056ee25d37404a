"""Provides the inspector app and ``run_app(spec, options) -> exit code``.

Wiring only: workers load and probe the model and post messages; the app hands results down
to the widgets as attributes and reacts to the widgets' messages.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer
from textual.worker import get_current_worker

from inspectr.errors import InspectrError, print_error
from inspectr.tui.messages import (
    LoadFailed,
    ModelBuilt,
    ProbeFailed,
    ProbeFinished,
    StructureReady,
    TrainingFailed,
    TrainingFinished,
    TrainingProgressed,
)
from inspectr.tui.screens.export import EXTENSIONS, ExportDialog
from inspectr.tui.screens.gallery import GalleryScreen
from inspectr.tui.screens.help import HelpScreen
from inspectr.tui.screens.training import TrainingScreen
from inspectr.tui.widgets.findings_list import FindingsList
from inspectr.tui.widgets.layer_detail import LayerDetail
from inspectr.tui.widgets.module_tree import ModuleTree
from inspectr.tui.widgets.search_bar import SearchBar
from inspectr.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from inspectr.core.inspection import Report
    from inspectr.core.result import ModuleRow
    from inspectr.core.sources.base import LoadedModel
    from inspectr.tui.trainable import TrainableState

REPROBE_DELAY = 0.5  # seconds of quiet after a freeze toggle before the probe re-runs
LOAD_KEYS = ("kwargs", "weights", "pretrained", "trust_pickle")
FREEZE_KEYS = ("freeze", "unfreeze", "freeze_plan")


class InspectrApp(App[int]):
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
        self.training_screen: TrainingScreen | None = None

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

    @property
    def probe_enabled(self) -> bool:
        return bool(self.options.get("probe", True))

    def _probe_options(self) -> dict[str, Any]:
        skip = (*LOAD_KEYS, *FREEZE_KEYS, "probe", "histograms", "cancelled", "loaded", "on_step")
        return {k: v for k, v in self.options.items() if k not in skip}

    # ------------------------------------------------------------ loading

    def load_model(self, spec: str | None, *, from_gallery: bool = False) -> None:
        """Build the model named by ``spec`` (None: the one given at construction) in a worker."""
        self.spec = spec or self.spec
        self._from_gallery = from_gallery
        self._load_gen += 1
        self._probe_gen += 1  # a probe of the previous model is now stale
        gc.unfreeze()  # the previous model may go now
        self._train_gen += 1  # so is a training run
        self._training = False
        self._loaded, self._trainable, self.report = None, None, None
        self._rows = {}
        self.layer_detail.set_model(None)
        self.status_bar.set_probe("loading", spec or "")
        self.layer_detail.show_message(Text(f"Loading {spec or 'the model'}…", style="dim"))
        self._load(self._load_gen, spec, not from_gallery)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, generation: int, spec: str | None, user_options: bool) -> None:
        from inspectr.core.freeze import apply_globs, apply_plan, load_plan
        from inspectr.core.inspect import inspect, parse_kwargs, resolve_device
        from inspectr.core.sources.loader import load
        from inspectr.tui.trainable import TrainableState

        # a gallery pick takes the device, not the constructor/freeze flags meant for the CLI's model
        opts = self.options if user_options else {"device": self.options.get("device")}
        try:
            device = resolve_device(opts.get("device"))
            if spec is None and self._given is not None:
                loaded = self._given
            else:
                loaded = load(
                    spec or "",
                    parse_kwargs(opts.get("kwargs")),
                    opts.get("weights"),
                    bool(opts.get("trust_pickle")),
                    device,
                    pretrained=bool(opts.get("pretrained")),
                )
            built = time.perf_counter()
            with self._model_lock:
                # --freeze-plan / --freeze / --unfreeze, once, in inspect's order
                plan_file = opts.get("freeze_plan")
                if plan_file:
                    apply_plan(loaded.model, load_plan(plan_file))
                apply_globs(loaded.model, opts.get("freeze") or [], opts.get("unfreeze") or [])
                trainable = TrainableState(loaded.model)
                skeleton = trainable.skeleton(
                    loaded.name, loaded.source, loaded.description, device
                )
                built_message = ModelBuilt(generation, loaded, skeleton, trainable, built)
                self.post_message(built_message)
                # let the first paint have the interpreter before the full structure is counted
                worker = get_current_worker()
                for _ in range(50):
                    if built_message.painted.wait(timeout=0.1) or worker.is_cancelled:
                        break
                report = inspect(None, loaded=loaded, probe=False, device=device)
                trainable.apply()  # toggles made meanwhile
        except InspectrError as err:
            self.post_message(LoadFailed(generation, err))
            return
        except Exception as exc:  # a user's model can raise anything while it is built
            wrapped = InspectrError(
                f"Loading {spec or 'the model'} failed: {type(exc).__name__}: {exc}.",
                "Run `inspectr SPEC --report --debug` to see the traceback.",
            )
            self.post_message(LoadFailed(generation, wrapped))
            return
        self.post_message(StructureReady(generation, report))

    def on_model_built(self, message: ModelBuilt) -> None:
        if message.generation != self._load_gen:
            message.painted.set()
            return
        self._loaded, self._trainable, self.report = (
            message.loaded,
            message.trainable,
            message.report,
        )
        self._rows = {}
        self.layer_detail.set_model(message.trainable.params_of)
        tree = self.module_tree
        tree.show_model(message.report, message.trainable)
        m = message.report.model
        tree.border_title = f"{m.name} · {m.class_name}"
        self.sub_title = m.name
        self.search_bar.entries = list(message.trainable.types.items())
        self._update_totals()
        self._set_context(message.report.probe.device, self._mode_label())
        self._show_detail("")
        tree.focus()
        self.timings["skeleton"] = time.perf_counter() - message.built_at
        self.call_after_refresh(self._painted, message)

    def on_structure_ready(self, message: StructureReady) -> None:
        if message.generation != self._load_gen or self._trainable is None:
            return
        self.report = message.report
        self._rows = {r.path: r for r in message.report.modules}
        self.module_tree.update_report(message.report)
        self._refresh_detail()
        # the model, its rows and tree nodes live as long as the app shows them: keep the cycle
        # collector from walking them again and again (a 20,000-module model: 0.3 s pauses)
        gc.collect()
        gc.freeze()
        if self.probe_enabled:
            self.request_probe()
        else:
            self.status_bar.set_probe("off")
            self.findings_list.show_state(
                "The probe is off (--no-probe): structure and counts only."
            )

    def _painted(self, message: ModelBuilt) -> None:
        self.timings["first_paint"] = time.perf_counter() - message.built_at
        message.painted.set()

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.generation != self._load_gen:
            return
        if self._from_gallery:
            self.notify(
                str(message.error), title="Could not load the model", severity="error", markup=False
            )
            self.action_gallery()
            return
        self.error = message.error
        self.exit(message.error.exit_code, return_code=message.error.exit_code)

    def _set_context(self, device: str, mode: str) -> None:
        self.status_bar.set_context(device, mode)
        self.module_tree.border_subtitle = f"{device} · {mode} mode"  # seen even at 80 columns

    def _mode_label(self) -> str:
        mode = self.options.get("mode", "own")
        if mode in ("train", "eval"):
            return mode
        model = self._loaded.model if self._loaded else None
        return "train" if model is None or model.training else "eval"

    # ------------------------------------------------------------ probing

    def request_probe(self) -> None:
        """Start a probe; any probe still running is told to stop and its result is dropped."""
        if self._loaded is None or not self.probe_enabled:
            return
        self._probe_gen += 1
        self.status_bar.set_probe("running")
        if self.report is not None and not self.report.probe.ran:
            self.findings_list.show_state("Probing…")
        self._probe(self._probe_gen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe")
    def _probe(self, generation: int) -> None:
        from inspectr.core.inspect import inspect
        from inspectr.core.probe.run import ProbeCancelled

        worker = get_current_worker()
        loaded, trainable = self._loaded, self._trainable
        if loaded is None or trainable is None:
            return

        def cancelled() -> bool:
            return generation != self._probe_gen or worker.is_cancelled

        with self._model_lock:  # an older probe still unwinding finishes first
            if cancelled():
                return
            version = trainable.version
            trainable.apply()
            try:
                report = inspect(
                    None,
                    loaded=loaded,
                    histograms=True,
                    cancelled=cancelled,
                    **self._probe_options(),
                )
            except ProbeCancelled:
                return
            except InspectrError as err:
                self.post_message(ProbeFailed(generation, str(err)))
                return
            except Exception as exc:  # the probe reports model errors itself; this is anything else
                self.post_message(ProbeFailed(generation, f"{type(exc).__name__}: {exc}"))
                return
            finally:
                trainable.apply()  # toggles made while the probe held the model
        self.post_message(ProbeFinished(generation, report, version))

    def on_probe_finished(self, message: ProbeFinished) -> None:
        if message.generation != self._probe_gen or self._trainable is None:
            return
        report = message.report
        self.report = report
        self._rows = {r.path: r for r in report.modules}
        self.status_bar.set_memory(report.memory.training_peak_bytes if report.memory else None)
        self._probe_version = message.version
        self.module_tree.update_report(report)
        self.findings_list.show_findings(report.findings)
        status = self.status_bar
        self._set_context(report.probe.device, report.probe.mode)
        p = report.probe
        if p.error is not None:
            where = p.error.module or "(root)"
            kind = f", {p.error.module_type}" if p.error.module_type else ""
            status.set_probe("failed", f"at {where} ({p.error.phase}{kind})")
        elif message.version != self._trainable.version:
            status.set_probe("stale", "freezing changed during the probe")
        else:
            status.set_probe(
                "done",
                f"{p.seconds:.2f} s" + ("" if p.backward == "ran" else f" · backward {p.backward}"),
            )
        self._refresh_detail()

    def on_probe_failed(self, message: ProbeFailed) -> None:
        if message.generation != self._probe_gen:
            return
        self.status_bar.set_probe("failed", "")
        self.findings_list.show_findings((), failure=message.message)
        self.notify(
            message.message,
            title="The probe did not run",
            severity="error",
            markup=False,
            timeout=10,
        )

    def action_reprobe(self) -> None:
        if self._loaded is None:
            return
        if not self.probe_enabled:
            self.options["probe"] = True
        self.request_probe()

    # ------------------------------------------------------------ training

    def action_train(self) -> None:
        """Probe and train N steps in a worker; the Training view shows the loss as it goes."""
        if self._loaded is None or self._trainable is None:
            self.notify("No model loaded yet.", severity="warning")
            return
        self._train_gen += 1
        self._probe_gen += 1  # the training run probes too: a probe still running is stale
        self._training = True
        steps = self.options.get("steps") or True
        label = f"{steps} steps" if steps is not True else "N steps"
        self.status_bar.set_probe("training", label)
        self._open_training_view()
        if self.training_screen is not None:
            self.training_screen.show_started(label)
        self._train_worker(self._train_gen, steps)

    def action_training_view(self) -> None:
        if self.report is None or self.report.training is None:
            self.notify("No training run yet: press t to train.", timeout=3)
            return
        self._open_training_view()

    def _open_training_view(self) -> None:
        if self.training_screen is not None and self.training_screen in self.screen_stack:
            return
        screen = TrainingScreen(self.report if self.report and self.report.training else None)

        def closed(_: None) -> None:
            self.training_screen = None

        self.training_screen = screen
        self.push_screen(screen, closed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _train_worker(self, generation: int, steps: int | bool) -> None:
        from inspectr.core.inspect import inspect
        from inspectr.core.probe.run import ProbeCancelled

        worker = get_current_worker()
        loaded, trainable = self._loaded, self._trainable
        if loaded is None or trainable is None:
            return

        def cancelled() -> bool:
            return generation != self._train_gen or worker.is_cancelled

        def on_step(step: int, total: int, loss: float) -> None:
            self.post_message(TrainingProgressed(generation, step, total, loss))

        options = {k: v for k, v in self._probe_options().items() if k != "steps"}
        with self._model_lock:
            if cancelled():
                return
            trainable.apply()
            try:
                report = inspect(None, loaded=loaded, histograms=True, cancelled=cancelled,
                                 steps=steps, on_step=on_step, **options)
            except ProbeCancelled:
                self.post_message(TrainingFailed(generation, "cancelled; the model is as it was"))
                return
            except InspectrError as err:
                self.post_message(TrainingFailed(generation, str(err)))
                return
            except Exception as exc:  # the user's model or loss can raise anything
                self.post_message(TrainingFailed(generation, f"{type(exc).__name__}: {exc}"))
                return
            finally:
                trainable.apply()
        self.post_message(TrainingFinished(generation, report))

    def on_training_progressed(self, message: TrainingProgressed) -> None:
        if message.generation != self._train_gen:
            return
        self.status_bar.set_probe("training", f"step {message.step} of {message.total} · loss {message.loss:.4g}")
        if self.training_screen is not None:
            self.training_screen.show_progress(message.step, message.total, message.loss)

    def on_training_finished(self, message: TrainingFinished) -> None:
        if message.generation != self._train_gen or self._trainable is None:
            return
        self._training = False
        report = message.report
        self.report = report
        self._rows = {r.path: r for r in report.modules}
        self.module_tree.update_report(report)
        self.findings_list.show_findings(report.findings)
        tr = report.training
        if tr is None:  # the probe failed or there was no gradient path: the notes say why
            why = next((n for n in report.probe.notes if n.startswith("training skipped")), "training skipped")
            self.status_bar.set_probe("failed", why)
            if self.training_screen is not None:
                self.training_screen.show_report(None, why)
            return
        end = f"loss {tr.loss[0]:.4g} → {tr.loss[-1]:.4g}" if tr.loss else ""
        self.status_bar.set_probe("trained", f"{tr.steps_run} steps · {end} · {tr.seconds:.1f} s")
        if self.training_screen is not None:
            self.training_screen.show_report(report)
        self._refresh_detail()

    def on_training_failed(self, message: TrainingFailed) -> None:
        if message.generation != self._train_gen:
            return
        self._training = False
        self.status_bar.set_probe("failed", f"training: {message.message}")
        if self.training_screen is not None:
            self.training_screen.show_report(None, f"Training did not run: {message.message}")
        self.notify(message.message, title="Training did not run", severity="error", markup=False, timeout=10)

    def on_training_screen_retrain_requested(self, _: TrainingScreen.RetrainRequested) -> None:
        self.action_train()

    def on_training_screen_cancel_requested(self, _: TrainingScreen.CancelRequested) -> None:
        if self._training:
            self._train_gen += 1  # the worker sees it between steps and unwinds, restoring the model
            self._training = False
            self.status_bar.set_probe("stale", "training cancelled")
            if self.training_screen is not None:
                self.training_screen.show_report(None, "Training cancelled; the model is as it was.")

    # ------------------------------------------------------------ detail

    def on_module_tree_module_highlighted(self, message: ModuleTree.ModuleHighlighted) -> None:
        self._show_detail(message.path)

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

    # ------------------------------------------------------------ export

    def action_export(self) -> None:
        if self.report is None:
            self.notify("Nothing to export yet: the model is still loading.", severity="warning")
            return

        def chosen(fmt: str | None) -> None:
            if fmt:
                self._export(fmt, Path.cwd() / f"{self._file_stem()}.{EXTENSIONS[fmt]}")

        self.push_screen(ExportDialog(self._file_stem()), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, fmt: str, path: Path) -> None:
        from inspectr.report.render import write_export

        report, trainable = self.report, self._trainable
        if report is None or trainable is None:
            return
        try:
            write_export(trainable.report_view(report), fmt, path)
        except OSError as exc:
            self.call_from_thread(
                self.notify, f"Could not write {path}: {exc}", severity="error", markup=False
            )
            return
        note = "" if report.probe.ran else " (structure only: the probe had not finished)"
        self.call_from_thread(
            self.notify,
            f"Wrote the {fmt} report to {path}{note}",
            title="Exported",
            markup=False,
            timeout=8,
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
