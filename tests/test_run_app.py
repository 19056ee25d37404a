"""Tests the run app (``inspectr RUN``) with Pilot, live on a run being written, the runs
listing (``inspectr runs/``: the picker and the table) and the pure views behind them. No
pytest-asyncio here: each Pilot test runs ``asyncio.run`` (``sync``)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, run_cli
from rich.console import Console
from rich.text import Text
from torch import nn

import inspectr
from inspectr.core.runs.listing import find_runs, list_runs
from inspectr.core.runs.report import RunReport
from inspectr.report.formatting import sci
from inspectr.report.run_views import cost_line, heatmap, thin
from inspectr.tui.run_app import RunApp
from inspectr.tui.screens.run_picker import RunPickerScreen
from inspectr.tui.widgets.run_findings import RunFindings
from inspectr.tui.widgets.run_heatmap import RunHeatmap
from inspectr.tui.widgets.run_tree import RunTree

F = nn.functional


class Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


def exp_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), Exp(), nn.Linear(16, 2))


def train(model: nn.Module, opt: torch.optim.Optimizer, w, steps: range, scale_at: int | None = None,
          pause: Callable[[int], None] | None = None) -> None:
    g = torch.Generator().manual_seed(1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.5)
    for i in steps:
        if pause is not None:
            pause(i)
        x, y = torch.randn(8, 8, generator=g), torch.randint(0, 2, (8,), generator=g)
        if scale_at == i:
            x = x * 1e3
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        w.log(loss=loss, lr=sched.get_last_lr()[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/sick (Inf from module 3 at step 7) and runs/sweep/healthy (finished, quiet)."""
    root = tmp_path_factory.mktemp("runs")
    model = exp_net()
    opt = torch.optim.SGD(model.parameters(), 0.05)
    with inspectr.watch(model, opt, run=root / "sick", every=2) as w:
        train(model, opt, w, range(12), scale_at=7)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=root / "sweep" / "healthy", every=3) as w:
        train(model, opt, w, range(10))
    return root


def sync(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def plain(renderable, width: int = 100) -> str:
    c = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    c.print(renderable)
    return c.export_text()


async def settle(app: RunApp, pilot, until: Callable[[], bool] = lambda: True, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.report is not None and until():
            return
        assert time.monotonic() < end, "the app did not get there in time"
        await pilot.pause(0.1)


# ----------------------------------------------------------------------------- the app on a run
@sync
async def test_the_tree_shows_every_module_with_its_latest_values(runs: Path) -> None:
    app = RunApp(str(runs / "sweep" / "healthy"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        tree = app.query_one(RunTree)
        assert set(tree.nodes_by_path) == {"", "0", "1", "2"}
        label = tree.render_label(tree.nodes_by_path["0"], tree.rich_style, tree.rich_style).plain
        step, values = app.report.samples[-1]
        assert step == 9
        assert label.startswith("0 grad ") and "upd" in label and label.endswith("Linear 144")
        relu = tree.render_label(tree.nodes_by_path["1"], tree.rich_style, tree.rich_style).plain
        assert f"dead {values['1']['dead_fraction']:.0%}" in relu
        status = str(app.query_one("#run-status").render())
        assert "finished" in status and "10 steps" in status and "watch cost" in status
        assert app._timer is None  # a finished run is read once


@sync
async def test_the_heatmap_switches_statistic_and_the_sparkline_follows(runs: Path) -> None:
    app = RunApp(str(runs / "sweep" / "healthy"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        hm = app.query_one(RunHeatmap)
        assert hm.key == "param_grad_norm"
        assert "gradient norm (log)" in plain(heatmap(app.report, hm.key, 80))
        await pilot.press("s")
        assert hm.key == app.key == "update_ratio"
        assert "update ratio (log)" in plain(heatmap(app.report, hm.key, 80))
        await pilot.press("s")
        assert hm.key == "dead_fraction"
        text = plain(heatmap(app.report, hm.key, 80))
        assert "dead fraction:" in text and "\n1 " in "\n" + text  # only the ReLU has a dead fraction
        assert "\n0 " not in "\n" + text
        app.query_one(RunTree).select_path("1")
        await pilot.pause()
        assert list(app.query_one("#module-spark").data) == [
            v["1"]["dead_fraction"] for _, v in app.report.samples]


@sync
async def test_selecting_a_finding_moves_the_tree_and_the_heatmap(runs: Path) -> None:
    app = RunApp(str(runs / "sick"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        findings = app.query_one(RunFindings)
        first = findings.findings[0]
        assert (first.kind, first.module, first.detail["step"]) == ("nonfinite", "3", 7)
        findings.focus()
        findings.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        tree = app.query_one(RunTree)
        assert tree.cursor_node is not None and tree.cursor_node.data == "3"
        hm = app.query_one(RunHeatmap)
        assert (hm.step, hm.module) == (7, "3")
        drawn = plain(heatmap(app.report, hm.key, 100, step=hm.step, module=hm.module))
        assert "▼" in drawn.splitlines()[0]
        assert drawn.splitlines()[hm.line_of["3"]].startswith("3 ")


@sync
async def test_the_heatmap_is_built_off_the_ui_thread_and_a_late_picture_is_dropped(runs: Path, monkeypatch) -> None:
    import inspectr.tui.widgets.run_heatmap as pane

    built_on: list[threading.Thread] = []
    real = pane.heatmap_lines

    def recording(*args, **kwargs):
        built_on.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(pane, "heatmap_lines", recording)
    app = RunApp(str(runs / "sick"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        hm = app.query_one(RunHeatmap)
        assert built_on and threading.main_thread() not in built_on
        assert hm.current and "gradient norm" in plain(hm.content)
        # a picture that finishes after a newer one was asked for is never shown
        hm.on_run_heatmap_drawn(RunHeatmap.Drawn(Text("a stale picture"), {}, 0))
        assert hm.current and "stale" not in plain(hm.content)
        await pilot.press("s")  # the next statistic: a new picture
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert hm.current and "stale" not in plain(hm.content) and "update ratio" in plain(hm.content)


@sync
async def test_the_loss_and_lr_are_plotted(runs: Path) -> None:
    app = RunApp(str(runs / "sweep" / "healthy"))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        loss = app.query_one("#loss-plot").plt.build()
        lr = app.query_one("#scalar-plot").plt.build()
        assert "loss" in loss and any(ch in loss for ch in "⠁⠂⠄⡀⠈⠐⠠⢀")
        assert "lr" in lr


@sync
async def test_the_app_follows_a_run_while_it_is_written(tmp_path: Path) -> None:
    """A training thread writes 6 steps, waits until the app has read them, writes 10 more and
    ends: the app shows the new steps after a poll, then the finished status, and stops reading."""
    folder = tmp_path / "live"
    go_on, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def pause(i: int) -> None:
        if i == 6:
            time.sleep(2.5)  # the watch writes at sampled steps and at least every 2 s
            started.set()
            go_on.wait(30)

    def training() -> None:
        try:
            model = exp_net()
            opt = torch.optim.SGD(model.parameters(), 0.01)
            with inspectr.watch(model, opt, run=folder, every=2) as w:
                train(model, opt, w, range(16), pause=pause)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=training)
    thread.start()
    try:
        assert started.wait(30) and not errors
        app = RunApp(str(folder), poll=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            assert app.report.run["status"] == "running" and 1 <= len(app.report.steps) <= 6
            assert app._timer is not None
            before = app.reads
            go_on.set()
            await settle(app, pilot, lambda: app.report.run.get("status") == "finished", timeout=30)
            assert len(app.report.steps) == 16 and app.reads > before
            assert "16 steps" in str(app.query_one("#run-status").render())
            assert app._timer is None
    finally:
        go_on.set()
        thread.join(30)
    assert not errors


# ----------------------------------------------------------------------------- runs in a folder
def test_runs_are_found_one_and_two_levels_down(runs: Path) -> None:
    assert find_runs(runs) == [runs / "sick", runs / "sweep" / "healthy"]
    sick, healthy = list_runs(runs)
    assert (sick.status, sick.steps, sick.errors) == ("finished", 12, 1)
    assert (healthy.model, healthy.status, healthy.steps, healthy.errors, healthy.warnings) == (
        "Sequential", "finished", 10, 0, 0)
    assert healthy.last_loss == pytest.approx(inspectr.load_run(runs / "sweep" / "healthy").loss[-1][1])


@sync
async def test_the_picker_opens_the_chosen_run(runs: Path) -> None:
    app = RunApp(folder=str(runs))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunPickerScreen)
        assert [r.path for r in app.screen.runs] == [str(runs / "sick"), str(runs / "sweep" / "healthy")]
        await pilot.press("down", "enter")
        await settle(app, pilot)
        assert app.report.path == str(runs / "sweep" / "healthy")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RunPickerScreen)


def test_cli_lists_the_runs_of_a_folder(runs: Path) -> None:
    proc = run_cli(runs, "--report", env={"COLUMNS": "140"})
    assert proc.returncode == 0, proc.stderr
    assert "2 run(s) in" in proc.stdout
    lines = {ln.split()[0]: ln.split() for ln in proc.stdout.splitlines() if ln.startswith(str(runs))}
    assert lines[str(runs / "sick")][1:5] == ["Sequential", "finished", "12", "nan"]
    assert lines[str(runs / "sweep" / "healthy")][1:4] == ["Sequential", "finished", "10"]
    assert lines[str(runs / "sick")][5:9] == ["✖", "1", "▲", "0"]


def test_cli_on_a_folder_with_no_run_and_no_model_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    proc = run_cli(tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, "holds no inspectr run", "inspectr runs/")


def test_cli_report_and_check_still_work_on_one_run(runs: Path) -> None:
    proc = run_cli(runs / "sick", "--check")
    assert proc.returncode == 1 and "nonfinite  step 7  3:" in proc.stdout


# ----------------------------------------------------------------------------- the pure views
def test_thinning_keeps_the_ends_and_the_chosen_step() -> None:
    assert thin(5, 10) == [0, 1, 2, 3, 4]
    cols = thin(100, 10, keep=37)
    assert len(cols) == 10 and cols[0] == 0 and cols[-1] == 99 and 37 in cols


def test_the_heatmap_fits_80_columns_uses_160_and_marks_non_finite(runs: Path) -> None:
    """300 sampled steps of two layers: thinned to the width, wider with more room; a sick run's
    non-finite samples are drawn as ✖."""
    modules = tuple({"path": p, "type": "Linear", "params": 10, "trainable": 10, "in_optimizer": True}
                    for p in ("encoder.layers.0.attention", "head"))
    samples = tuple((s, {m["path"]: {"param_grad_norm": 10 ** (s / 1000), "update_ratio": None}
                         for m in modules}) for s in range(0, 3000, 10))
    report = RunReport("runs/x", {"status": "running"}, (), {}, modules, samples, (), ())
    narrow, wide = plain(heatmap(report, "param_grad_norm", 80), 300), plain(heatmap(report, "param_grad_norm", 160), 300)
    assert max(len(ln.rstrip()) for ln in narrow.splitlines()) <= 80
    assert max(len(ln.rstrip()) for ln in wide.splitlines()) <= 160
    assert 150 <= len(wide.splitlines()[0].rstrip()) <= 160 and len(narrow.splitlines()[0].rstrip()) <= 80
    assert "of 300 sampled steps" in narrow and "step 0" in narrow and "2990" in narrow
    sick = plain(heatmap(inspectr.load_run(runs / "sick"), "param_grad_norm", 60), 200)
    assert "✖" in sick


def test_a_module_gone_non_finite_says_since_when_and_what_it_read_before(runs: Path) -> None:
    from inspectr.report.run_views import latest_text, nonfinite_since

    report = inspectr.load_run(runs / "sick")  # Inf from module 3 at step 7, sampled every 2 steps
    steps = [s for s, _ in report.samples]
    first_bad = min(s for s in steps if s >= 7)
    last_good = max(s for s in steps if s < 7)
    assert nonfinite_since(report, "2")[0] == first_bad
    label = latest_text(report, "2", "param_grad_norm").plain
    before = report.samples[steps.index(last_good)][1]["2"]["param_grad_norm"]
    assert f"non-finite by step {first_bad}" in label
    assert f"(step {last_good}: grad {sci(before)}" in label
    # a healthy run's labels say nothing of it
    healthy = inspectr.load_run(runs / "sweep" / "healthy")
    since, finite = nonfinite_since(healthy, "0")
    assert since is None and finite is not None and finite[0] == healthy.samples[-1][0]
    assert "non-finite" not in latest_text(healthy, "0", "param_grad_norm").plain


def test_the_cost_line_while_running_and_after(runs: Path) -> None:
    report = inspectr.load_run(runs / "sweep" / "healthy")
    assert cost_line(report).startswith("watch cost ") and "%" in cost_line(report)
    running = type(report)(report.path, {k: v for k, v in report.run.items() if k != "watch_seconds"},
                           report.steps, report.scalars, report.modules, report.samples, report.findings, report.events)
    assert cost_line(running).startswith("watch cost ≈")


def test_on_a_terminal_the_cli_opens_the_app_on_a_run_and_on_a_folder(runs: Path, monkeypatch) -> None:
    """``inspectr RUN`` and ``inspectr runs/`` on a terminal open the run app (not the report)."""
    import sys

    from inspectr import cli
    from inspectr.tui import run_app

    opened: list[tuple[str | None, str | None]] = []
    monkeypatch.setattr(run_app, "run_runs_app", lambda run=None, folder=None: opened.append((run, folder)) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    assert cli.main([str(runs / "sick")]) == 0
    assert cli.main([str(runs)]) == 0
    assert opened == [(str(runs / "sick"), None), (None, str(runs))]


def test_a_running_run_whose_writer_is_gone_gets_a_note(runs: Path, tmp_path: Path) -> None:
    """A "running" run (as a kill -9 leaves it) with a dead pid and no write for minutes."""
    import shutil
    import subprocess
    import sys

    from inspectr.core.runs.listing import STALE_SECONDS, summarize, writer_gone

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    folder = tmp_path / "killed"
    shutil.copytree(runs / "sweep" / "healthy", folder)
    meta = {"status": "running", "pid": pid}
    later = time.time() + STALE_SECONDS + 60
    assert "killed?" in writer_gone(folder, meta, now=later)
    assert writer_gone(folder, meta) is None  # written just now
    assert writer_gone(folder, {"status": "running", "pid": __import__("os").getpid()}, now=later) is None
    assert writer_gone(folder, {"status": "finished", "pid": pid}, now=later) is None
    assert summarize(folder).note is None  # finished


@sync
async def test_findings_that_change_but_keep_their_count_are_redrawn(runs: Path, monkeypatch) -> None:
    """A live run whose not_learning finding gives way to a nonfinite one (one finding either
    way) shows the new one; a one-process run offers no ranks key."""
    from dataclasses import replace

    from inspectr.core.result import Finding
    from inspectr.tui import run_app

    sick = inspectr.load_run(runs / "sick")
    running = replace(sick, run=dict(sick.run, status="running"))
    before = replace(running, findings=(Finding("not_learning", "warning", "", "plateau", {"step": 0}),))
    after = replace(running, findings=(Finding("nonfinite", "error", "3", "step 7: NaN", {"step": 7}),))
    reads = iter([before, after])
    monkeypatch.setattr(run_app, "load_run", lambda path: next(reads, after))
    app = RunApp(str(runs / "sick"), poll=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.report is not None and app.report.findings[0].kind == "nonfinite":
                break
        await pilot.pause()
        assert [f.kind for f in app.query_one(RunFindings).findings] == ["nonfinite"]
        assert not app.check_action("ranks", ())
        ranks_key = app.active_bindings.get("k")
        assert ranks_key is None or not ranks_key.enabled
