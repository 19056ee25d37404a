"""Provides the run app (``inspectr RUN``, ``inspectr runs/``) and ``run_runs_app``.

A run is read from its store on a worker thread every ``POLL`` seconds (or three times as long
as a read takes, for big runs) while its status is "running" (another process writes it); each read replaces the ``RunReport`` and only the panes
whose part of the run changed are redrawn. A finished run is read once and stays on screen.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Sparkline, Static, Tree
from textual_plotext import PlotextPlot

from inspectr.core.runs.listing import list_runs, writer_gone
from inspectr.core.runs.report import RunReport, load_run
from inspectr.errors import InspectrError, print_error
from inspectr.report.run_views import STATISTICS, cost_line, spark_values, statistic, status_text
from inspectr.tui.screens.ranks import RanksScreen
from inspectr.tui.screens.run_picker import RunPickerScreen
from inspectr.tui.widgets.run_findings import RunFindings
from inspectr.tui.widgets.run_heatmap import RunHeatmap
from inspectr.tui.widgets.run_tree import RunTree

POLL = 1.0  # seconds between reads of a running run


class RunApp(App[int]):
    """A watched run, live: module tree, heatmap, loss and scalar curves, findings, the watch's cost."""

    CSS_PATH = "run_app.tcss"
    TITLE = "inspectr"
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "next_statistic", "Statistic", tooltip="Heatmap and sparklines: gradient norm, "
                "update ratio, dead fraction"),
        Binding("f", "focus_findings", "Findings"),
        Binding("m", "focus_tree", "Modules"),
        Binding("r", "runs", "Runs", tooltip="Back to the runs of the folder"),
        Binding("k", "ranks", "Ranks", tooltip="torch.distributed: ranks x layers, pick the rank shown"),
        Binding("q", "quit", "Quit"),
    ]

    class RunRead(Message):
        """A worker read the run."""

        def __init__(self, report: RunReport, generation: int, seconds: float, note: str | None) -> None:
            super().__init__()
            self.note = note  # the writer looks gone
            self.report = report
            self.generation = generation
            self.seconds = seconds  # the read took

    class RunReadFailed(Message):
        def __init__(self, error: InspectrError, generation: int) -> None:
            super().__init__()
            self.error = error
            self.generation = generation

    def __init__(self, run: str | None = None, *, folder: str | None = None, poll: float = POLL) -> None:
        """Args:
        run: the run folder to open.
        folder: a folder of runs: the picker first (and ``r`` goes back to it).
        poll: seconds between reads while the run is running.
        """
        super().__init__()
        self.run_path = run
        self.folder = folder
        self.poll_seconds = poll
        self.report: RunReport | None = None  # as read: every rank
        self.rank: int | None = None  # the rank the panes show (None: the first)
        self.error: InspectrError | None = None
        self.key = STATISTICS[0][0]
        self.reads = 0  # reads that changed something
        self.note: str | None = None
        self._gen = 0
        self._seen: dict[str, Any] = {}
        self._timer: Timer | None = None
        self._reading = False

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        with Horizontal(id="run-main"):
            with Vertical(id="run-left"):
                yield RunTree(id="run-tree")
                yield Static(id="spark-title")
                yield Sparkline([], id="module-spark")
            with Vertical(id="run-right"):
                with VerticalScroll(id="heatmap-box"):
                    yield RunHeatmap(id="heatmap")
                with Horizontal(id="curves"):
                    yield PlotextPlot(id="loss-plot")
                    yield PlotextPlot(id="scalar-plot")
                yield RunFindings(id="run-findings")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#run-tree").border_title = "Modules"
        self.query_one("#heatmap-box").border_title = f"Heatmap · {statistic(self.key)[1]} · s switches"
        self.query_one("#run-findings").border_title = "Findings"
        if self.run_path is not None:
            self.open_run(self.run_path)
        elif self.folder is not None:
            self.action_runs()

    # reading the run
    def open_run(self, path: str) -> None:
        self.run_path = path
        self.report = None
        self.rank = None
        self._seen = {}
        self._gen += 1
        self.query_one(RunTree).report = None
        self.query_one("#run-status", Static).update(Text(f"reading {path} …", style="dim"))
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.poll()

    def poll(self) -> None:
        if self.run_path is not None and not self._reading:
            self._reading = True
            self._read(self.run_path, self._gen)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self, path: str, generation: int) -> None:
        t0 = time.perf_counter()
        try:
            report = load_run(path)
            note = writer_gone(path, report.run)
            self.post_message(self.RunRead(report, generation, time.perf_counter() - t0, note))
        except InspectrError as err:
            self.post_message(self.RunReadFailed(err, generation))

    def on_run_app_run_read_failed(self, message: RunReadFailed) -> None:
        self._reading = False
        if message.generation != self._gen:
            return
        self._timer = self.set_timer(self.poll_seconds, self.poll)  # e.g. the writer held a lock too long
        if self.report is None and self.folder is None:  # nothing to show: the CLI prints why
            self.error = message.error
            self.exit(message.error.exit_code)
            return
        self.query_one("#run-status", Static).update(Text(str(message.error), style="bold red"))

    def on_run_app_run_read(self, message: RunRead) -> None:
        self._reading = False
        if message.generation != self._gen:
            return  # a read of a run no longer shown
        report = message.report
        if report.run.get("status") == "running":
            # the next read: every POLL seconds, or less often when a read of a big run takes long
            self._timer = self.set_timer(max(self.poll_seconds, 3 * message.seconds), self.poll)
        else:
            self._timer = None  # the run has ended: keep showing it, stop reading
        parts = {"steps": (len(report.steps), report.run.get("status"), report.run.get("watch_seconds"), message.note),
                 "samples": len(report.samples),
                 # what they are, not how many: a nonfinite finding ends not_learning, one for one
                 "findings": tuple((f.kind, f.module, f.detail.get("step")) for f in report.findings)}
        changed = {k for k, v in parts.items() if self._seen.get(k) != v}
        if not changed:
            return
        self._seen = parts
        if len(report.ranks) != len(self.report.ranks if self.report is not None else ()):
            self.refresh_bindings()  # the ranks key shows for torch.distributed runs only
        self.report = report
        self.note = message.note
        self.reads += 1
        self._show(changed)

    def shown(self) -> RunReport | None:
        """The run as the panes show it: the picked rank's steps and samples."""
        if self.report is None or self.rank is None:
            return self.report
        return self.report.for_rank(self.rank)

    def _show(self, changed: set[str]) -> None:
        report = self.shown()
        assert report is not None
        if "steps" in changed:
            status = status_text(report)
            if len(report.ranks) > 1:
                status.append(f" · {len(report.ranks)} ranks, showing rank "
                              f"{report.ranks[0]['rank'] if self.rank is None else self.rank} (k: ranks)", style="cyan")
            status.append(" · " + cost_line(report), style="dim")
            if self.note:
                status.append(f" · {self.note}", style="bold yellow")
            for e in report.events:
                status.append(f" · watch part off at step {e['step']}: {e['part']}", style="yellow")
            self.query_one("#run-status", Static).update(status)
            self._plot_curves(report)
        if "samples" in changed:
            self.query_one(RunTree).show(report, self.key)
            self.query_one(RunHeatmap).show(report, key=self.key)
            self._show_spark()
        if "findings" in changed:
            self.query_one(RunFindings).show(report.findings)

    def _plot_curves(self, report: RunReport) -> None:
        loss = self.query_one("#loss-plot", PlotextPlot)
        plt = loss.plt
        plt.clear_data()
        plt.clear_figure()
        points = [(s, v) for s, v in report.loss if v is not None and math.isfinite(v)]
        if points:
            plt.plot([s for s, _ in points], [v for _, v in points], marker="braille")
        bad = [s for s, v in report.loss if v is not None and not math.isfinite(v)]
        plt.title("loss" + (f" (✖ from {bad[0]})" if bad else ""))
        loss.refresh()
        other = self.query_one("#scalar-plot", PlotextPlot)
        plt = other.plt
        plt.clear_data()
        plt.clear_figure()
        series = dict(report.scalars)
        if not series:  # nothing else logged: the global gradient norm the watch records every step
            series = {"grad norm": tuple((s["step"], s["grad_norm"]) for s in report.steps)}
        for name, rows in series.items():
            pts = [(s, v) for s, v in rows if v is not None and math.isfinite(v)]
            if pts:
                plt.plot([s for s, _ in pts], [v for _, v in pts], marker="braille",
                         label=name if len(series) > 1 else None)
        plt.title(" · ".join(series))
        other.refresh()

    def _show_spark(self) -> None:
        report = self.shown()
        tree = self.query_one(RunTree)
        node = tree.cursor_node
        path = node.data if node is not None and node.data is not None else ""
        _, title, log = statistic(self.key)
        values = spark_values(report, path, self.key) if report is not None else []
        label = Text(f"{path or '(root)'} · {title}{' (log10)' if log else ''}", style="bold")
        label.append(f" over {len(values)} samples", style="dim")
        if not values and report is not None:  # the root, a container: the global norm, every step
            norms = [s["grad_norm"] for s in report.steps]
            values = [math.log10(v) for v in norms if v is not None and math.isfinite(v) and v > 0]
            label = Text(f"{path} has no {title} · " if path else "(root) · ", style="dim")
            label.append("global gradient norm (log10)", style="bold")
            label.append(f" over {len(values)} steps", style="dim")
        self.query_one("#module-spark", Sparkline).data = values
        self.query_one("#spark-title", Static).update(label)

    # reacting to the user
    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        path = event.node.data
        if path is not None and self.report is not None:
            self.query_one(RunHeatmap).show(module=path)
            self._show_spark()

    def on_run_findings_finding_selected(self, message: RunFindings.FindingSelected) -> None:
        self.query_one(RunTree).select_path(message.path)
        hm = self.query_one(RunHeatmap)
        hm.show(step=message.step, module=message.path)
        hm.scroll_to_module()
        self._show_spark()

    def action_next_statistic(self) -> None:
        keys = [k for k, _, _ in STATISTICS]
        self.key = keys[(keys.index(self.key) + 1) % len(keys)]
        self.query_one("#heatmap-box").border_title = f"Heatmap · {statistic(self.key)[1]} · s switches"
        report = self.shown()
        if report is not None:
            self.query_one(RunTree).show(report, self.key)
            self.query_one(RunHeatmap).show(key=self.key)
            self._show_spark()

    def action_focus_findings(self) -> None:
        self.query_one(RunFindings).focus()

    def action_focus_tree(self) -> None:
        self.query_one(RunTree).focus()

    def action_ranks(self) -> None:
        if self.report is None or len(self.report.ranks) < 2:
            self.notify("This run has one process: the ranks view is for torch.distributed runs.")
            return
        self.push_screen(RanksScreen(self.report))

    def on_ranks_screen_rank_picked(self, message: RanksScreen.RankPicked) -> None:
        self.rank = message.rank
        if self.report is not None:
            self._show({"steps", "samples", "findings"})

    def action_runs(self) -> None:
        if self.folder is None:
            self.notify("Open a folder of runs (inspectr runs/) to pick another one.")
            return
        runs = list_runs(self.folder)

        def picked(path: str | None) -> None:
            if path is None:
                if self.report is None:
                    self.exit(0)
                return
            self.open_run(path)

        self.push_screen(RunPickerScreen(self.folder, runs), picked)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "runs":
            return self.folder is not None and not isinstance(self.screen, RunPickerScreen)
        if action == "ranks" and (self.report is None or len(self.report.ranks) < 2):
            return False
        if action in ("next_statistic", "focus_findings", "focus_tree", "ranks"):
            return not isinstance(self.screen, (RunPickerScreen, RanksScreen))  # the picker's footer lists its own keys
        return True


def run_runs_app(run: str | None = None, folder: str | None = None) -> int:
    """Open the run app on ``run`` or on the picker of ``folder``; returns the exit code."""
    app = RunApp(run, folder=folder)
    app.run()
    if app.error is not None:
        print_error(app.error)
        return app.error.exit_code
    return app.return_code or 0
