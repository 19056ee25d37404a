"""Pilot-driven tests of the inspector app (no pytest-asyncio here: each test runs ``asyncio.run``).

Snapshots: ``INSPECTR_UPDATE_SNAPSHOTS=1 pytest tests/test_app.py`` rewrites tests/snapshots/*.svg.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from rich.style import Style
from textual.worker import WorkerCancelled
from torch import nn

from inspectr.core.sources.base import LoadedModel
from inspectr.tui.app import InspectrApp
from inspectr.tui.screens.gallery import GalleryScreen
from inspectr.tui.widgets.findings_list import FindingsList
from inspectr.tui.widgets.layer_detail import LayerDetail
from inspectr.tui.widgets.module_tree import ModuleTree
from inspectr.tui.widgets.search_bar import SearchBar, find_modules
from inspectr.tui.widgets.status_bar import StatusBar

SIZE = (120, 40)
SNAPSHOTS = Path(__file__).parent / "snapshots"


def drive(
    app: InspectrApp, script: Callable[[Any], Awaitable[None]], size: tuple[int, int] = SIZE
) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())


async def settle(pilot: Any) -> None:
    """Until no worker runs: load -> message -> probe -> message."""
    app = pilot.app
    end = time.perf_counter() + 30
    while time.perf_counter() < end:
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # a probe superseded by a newer one is cancelled: by design
            pass
        await pilot.pause()
        if app._reprobe_timer is not None:  # a debounced re-probe is due
            await pilot.pause(0.1)
            continue
        if not any(w.is_running for w in app.workers):
            await pilot.pause()
            if not any(w.is_running for w in app.workers) and app._reprobe_timer is None:
                return
    raise AssertionError("workers never settled")


async def until(pilot: Any, check: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > end:
            raise AssertionError("condition not reached")
        await pilot.pause(0.02)


def labels(tree: ModuleTree) -> dict[str, str]:
    """Every open node's label as plain text, by module path (the tree as plain data)."""
    out = {}

    def walk(node: Any) -> None:
        out[node.data] = tree.render_label(node, Style(), Style()).plain
        if node.is_expanded:
            for child in node.children:
                walk(child)

    walk(tree.root)
    return out


def text_of(renderable: Any, width: int = 100) -> str:
    c = Console(width=width, file=io.StringIO(), record=True, no_color=True)
    c.print(renderable)
    return c.export_text()


def detail_text(app: InspectrApp) -> str:
    return text_of(app.query_one("#detail-body").content)


class Sleepy(nn.Module):
    """A model whose forward takes a while: the UI must keep answering meanwhile."""

    def __init__(self, seconds: float = 0.6) -> None:
        super().__init__()
        self.seconds = seconds
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.head(self.body(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 4)


def test_tree_fills_and_labels_show_counts() -> None:
    app = InspectrApp("sample:lenet", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        got = labels(tree)
        assert set(got) == {"", "conv1", "conv2", "fc1", "fc2", "fc3"}
        assert "lenet LeNet 61.7K" in got[""]
        assert "conv1 Conv2d 156" in got["conv1"]
        assert "[4, 6, 28, 28]" in got["conv1"]  # output shape once the probe landed
        assert got["fc1"].startswith("●")  # trainable marker
        status = app.query_one(StatusBar)
        assert (status.total, status.trainable) == (61_706, 61_706)
        assert status.probe_state == "done"
        assert "61,706" in text_of(status.render())
        assert gc.get_freeze_count() > 0  # the shown model is kept out of the collector's scans

    drive(app, script)
    assert gc.get_freeze_count() == 0  # and handed back to it when the app quits


def test_highlight_updates_detail() -> None:
    app = InspectrApp("sample:lenet", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        detail = app.query_one(LayerDetail)
        assert detail.path == ""
        await pilot.press("down", "down")
        assert detail.path == "conv2"
        text = detail_text(app)
        assert "conv2  Conv2d" in text and "kernel_size=(5, 5)" in text
        assert "2,416 total" in text
        assert "first 16 of 16 filters" in text  # the conv heatmap from the live weights
        assert "range" in text and "values" in text  # weight histogram

    drive(app, script)


def test_a_large_weight_is_pictured_by_a_worker_and_lands_in_the_detail() -> None:
    big = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4096, 3))  # 294,912 weights: off the UI thread
    app = InspectrApp(None, {"probe": False}, loaded=LoadedModel(big, "big", "object"))

    async def script(pilot: Any) -> None:
        await settle(pilot)
        detail = app.query_one(LayerDetail)
        app.query_one(ModuleTree).reveal("1")
        await until(pilot, lambda: detail.path == "1")
        await until(pilot, lambda: "first 16 of 4096 filters" in detail_text(app))
        app.query_one(ModuleTree).reveal("0")  # the small one: drawn at once
        await until(pilot, lambda: detail.path == "0")
        assert "first 8 of 8 filters" in detail_text(app)

    drive(app, script)


def test_space_freezes_subtree_then_the_model() -> None:
    app = InspectrApp("sample:cifar_cnn", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        status = app.query_one(StatusBar)
        model = app._loaded.model
        total = sum(p.numel() for p in model.parameters())
        first = next(
            r.path for r in app.report.modules if r.depth == 1 and not r.is_leaf and r.params
        )
        assert tree.reveal(first)
        sub = dict(model.named_modules())[first]
        n = sum(p.numel() for p in sub.parameters())
        gen = app._probe_gen
        await pilot.press("space")
        # at once: labels and totals, before any probe
        assert status.trainable == total - n
        assert labels(tree)[first].startswith("▼ ❄") or labels(tree)[first].startswith("▶ ❄")
        assert labels(tree)[""].split()[1] == "◐"
        assert status.probe_state == "stale"
        # toggle another branch quickly: still one probe after the debounce
        other = next(
            r.path for r in app.report.modules if r.depth == 1 and r.path != first and r.params
        )
        tree.reveal(other)
        await pilot.press("space")
        await settle(pilot)
        assert app._probe_gen == gen + 1
        assert all(not p.requires_grad for p in dict(model.named_modules())[other].parameters())
        assert all(not p.requires_grad for p in sub.parameters())
        assert status.probe_state == "done"
        # frozen layers show no parameter gradients after the re-probe
        frozen_rows = [
            r for r in app.report.modules if r.path == first or r.path.startswith(first + ".")
        ]
        assert all(p.grad_norm is None for r in frozen_rows for p in r.parameters)
        assert app.report.model.trainable_params < total
        # and back
        tree.reveal(first)
        await pilot.press("space")
        await settle(pilot)
        assert all(p.requires_grad for p in sub.parameters())

    drive(app, script)


def test_search_jumps_and_cycles() -> None:
    app = InspectrApp("sample:lenet", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("slash")
        search = app.query_one(SearchBar)
        assert search.display
        await pilot.press(*"fc2")
        assert search.matches == ["fc2"]
        await pilot.press("enter")
        assert not search.display
        assert app.query_one(ModuleTree).highlighted_path == "fc2"
        assert app.query_one(LayerDetail).path == "fc2"
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"Linear", "enter")  # class names match too
        assert app.query_one(ModuleTree).highlighted_path == "fc1"
        await pilot.press("n")
        assert app.query_one(ModuleTree).highlighted_path == "fc2"
        await pilot.press("N", "N")
        assert app.query_one(ModuleTree).highlighted_path == "fc3"

    drive(app, script)


def test_find_modules_globs_and_classes() -> None:
    entries = [
        ("", "Net"),
        ("layer1", "Sequential"),
        ("layer1.0.bn1", "BatchNorm2d"),
        ("fc", "Linear"),
    ]
    assert find_modules(entries, "*.bn*") == ["layer1.0.bn1"]
    assert find_modules(entries, "linear") == ["fc"]
    assert find_modules(entries, "layer") == ["layer1", "layer1.0.bn1"]
    assert find_modules(entries, "  ") == []


def test_export_writes_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = InspectrApp("sample:lenet", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("down", "enter")  # markdown
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("down", "down", "enter")  # json
        await settle(pilot)

    drive(app, script)
    md = (tmp_path / "inspectr-lenet.md").read_text()
    assert md.startswith("# lenet (LeNet)")
    data = json.loads((tmp_path / "inspectr-lenet.json").read_text())
    assert data["model"]["total_params"] == 61_706 and data["probe"]["ok"]


def test_save_plan_writes_a_plan_that_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspectr.freeze import apply_plan, load_plan
    from sample_models import GALLERY

    monkeypatch.chdir(tmp_path)
    app = InspectrApp("sample:lenet", {"probe": False})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("down", "space", "s")
        await settle(pilot)

    drive(app, script)
    plan = load_plan(tmp_path / "inspectr-lenet-freeze.json")
    fresh = GALLERY["lenet"].factory()
    apply_plan(fresh, plan)
    assert [p.requires_grad for p in fresh.conv1.parameters()] == [False, False]
    assert all(p.requires_grad for p in fresh.fc1.parameters())


def test_ui_answers_keys_while_the_probe_runs() -> None:
    model = Sleepy(3.0)
    app = InspectrApp(None, {}, loaded=LoadedModel(model, "sleepy", "object"))

    async def script(pilot: Any) -> None:
        status = app.query_one(StatusBar)
        await until(pilot, lambda: status.probe_state == "running")
        await pilot.press("down")
        assert app.query_one(LayerDetail).path == "body"
        await pilot.press("space")
        assert status.trainable == sum(p.numel() for p in model.head.parameters())
        # answered while the forward still sleeps: the probe worker has not finished
        assert any(w.group == "probe" and w.is_running for w in app.workers)
        await settle(pilot)
        assert not any(p.requires_grad for p in model.body.parameters())
        assert status.probe_state == "done"
        assert app.report.model.trainable_params == status.trainable

    drive(app, script)


def test_load_error_exits_with_code_2(tmp_path: Path) -> None:
    app = InspectrApp(str(tmp_path / "missing.py") + ":Net", {})

    async def script(pilot: Any) -> None:
        await until(pilot, lambda: app.return_code is not None)

    drive(app, script)
    assert app.return_code == 2
    assert app.error is not None and "does not exist" in app.error.message


def test_probe_error_is_shown_and_the_app_stays_up() -> None:
    app = InspectrApp("sample:sick_config_driven", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        assert app.is_running
        status = app.query_one(StatusBar)
        assert status.probe_state == "failed"
        findings = app.query_one(FindingsList)
        error = next(f for f in findings.findings if f.kind == "forward_error")
        assert error.module and status.probe_detail.startswith(f"at {error.module}")
        findings.focus()
        findings.highlighted = list(findings.findings).index(error)
        await pilot.press("enter")
        assert app.query_one(ModuleTree).highlighted_path == error.module

    drive(app, script)


def test_bare_app_shows_the_gallery_and_loads_a_pick() -> None:
    app = InspectrApp(None, {"probe": False})

    async def script(pilot: Any) -> None:
        await pilot.pause()
        assert isinstance(app.screen, GalleryScreen)
        lst = app.screen.query_one("#gallery-list")
        ids = [lst.get_option_at_index(i).id for i in range(lst.option_count)]
        assert "lenet" in ids and "sick_dead_relu" in ids
        assert ids.index("lenet") < ids.index("sick_dead_relu")  # healthy first, sick after
        lst.highlighted = ids.index("mlp")
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, GalleryScreen)
        assert app.report is not None and app.report.model.name == "mlp"
        assert len(labels(app.query_one(ModuleTree))) > 1

    drive(app, script)


def test_20000_module_model_opens_and_navigates() -> None:
    """Behaviour only; the timings are measured by benchmarks/app_first_paint.py."""
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20_000)])
    app = InspectrApp(None, {"probe": False}, loaded=LoadedModel(model, "stack", "object"))

    async def script(pilot: Any) -> None:
        await until(pilot, lambda: "first_paint" in app.timings)
        tree = app.query_one(ModuleTree)
        await until(
            pilot, lambda: app.query_one(StatusBar).probe_state == "off"
        )  # full structure in
        await pilot.press("end")
        assert tree.highlighted_path == "19999"
        await pilot.press("space")
        assert app.query_one(StatusBar).trainable == 20_000 * 20 - 20

    drive(app, script)


@pytest.mark.parametrize(
    "name,size,keys",
    [
        ("main_80x24", (80, 24), ()),
        ("main_160x50", (160, 50), ("down", "down")),
        ("help_120x40", (120, 40), ("question_mark",)),
    ],
)
def test_snapshots(name: str, size: tuple[int, int], keys: tuple[str, ...]) -> None:
    """SVG of the screen for a fixed model with the probe off (no timings to churn)."""
    app = InspectrApp("sample:cifar_cnn", {"probe": False})
    svg: list[str] = []

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await pilot.pause()
        svg.append(app.export_screenshot(title=name))

    drive(app, script, size)
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("INSPECTR_UPDATE_SNAPSHOTS") or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg[0])
    assert svg[0] == path.read_text(), (
        f"{name} changed: look at it, then INSPECTR_UPDATE_SNAPSHOTS=1"
    )


def test_memory_in_status_bar_and_detail_follows_freezing_at_once() -> None:
    app = InspectrApp("sample:lenet", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        status = app.query_one(StatusBar)
        mem = app.report.memory
        assert mem is not None and status.training_peak == mem.training_peak_bytes
        assert "to train" in text_of(status.render(), 140)
        tree = app.query_one(ModuleTree)
        assert tree.reveal("fc1")
        await pilot.pause()
        text = detail_text(app)
        assert "memory" in text and "saved for backward" in text and "gradients + AdamW state" in text
        await pilot.press("space")  # freeze fc1 (48,120 of lenet's 61,706 parameters)
        # at once, before the re-probe: gradients and optimizer state lose fc1's share
        now = app.report.memory
        assert now is not None and now.grad_bytes == mem.grad_bytes - 48_120 * 4
        assert now.optimizer_bytes == 2 * now.grad_bytes
        assert status.training_peak == now.training_peak_bytes < mem.training_peak_bytes
        await settle(pilot)
        assert app.report.memory is not None and app.report.memory.grad_bytes == now.grad_bytes
        assert status.training_peak == app.report.memory.training_peak_bytes

    drive(app, script)
