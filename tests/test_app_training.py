"""Pilot-driven tests of training in the app: ``t`` trains in a worker, the Training view shows it."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from inspectr.core.sources.base import LoadedModel
from inspectr.tui.app import InspectrApp
from inspectr.tui.screens.training import TrainingScreen
from inspectr.tui.widgets.layer_detail import LayerDetail
from inspectr.tui.widgets.module_tree import ModuleTree
from inspectr.tui.widgets.status_bar import StatusBar
from tests.test_app import detail_text, drive, labels, settle, text_of, until


class SlowSteps(nn.Module):
    """Each forward sleeps: a training run takes a while, and the UI must answer meanwhile."""

    def __init__(self, seconds: float = 0.15) -> None:
        super().__init__()
        self.seconds = seconds
        self.fc1 = nn.Linear(8, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.fc2(self.act(self.fc1(x)))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(max(batch_size, 16), 8)


def view_text(app: InspectrApp) -> str:
    return text_of(app.screen.query_one("#training-body").content)


def test_t_trains_and_the_view_shows_loss_flow_and_ratios() -> None:
    app = InspectrApp("sample:sick_dying_relu", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("t")
        assert isinstance(app.screen, TrainingScreen)
        await settle(pilot)
        assert app.report is not None and app.report.training is not None
        assert app.report.training.steps_run == 20  # the model's example_training
        text = view_text(app)
        assert "20 of 20 steps · SGD (lr 1)" in text
        assert "Loss per step" in text and "step 20" in text
        assert "dying_units at act2" in text
        assert "Gradient flow and update ratios" in text
        for layer in ("fc1", "act1", "fc2", "act2", "head"):  # along the depth, in forward order
            assert f"\n{layer} " in text
        assert text.index("\nfc1 ") < text.index("\nfc2 ") < text.index("\nhead ")
        status = app.query_one(StatusBar)
        assert status.probe_state == "trained" and "20 steps" in status.probe_detail
        await pilot.press("escape")
        assert not isinstance(app.screen, TrainingScreen)
        got = labels(app.query_one(ModuleTree))
        assert "dead 100%" in got["act2"] and "dying_units" in got["act2"]
        assert "Δ" in got["head"]
        tree = app.query_one(ModuleTree)
        tree.reveal("act2")
        await pilot.pause()
        assert app.query_one(LayerDetail).path == "act2"
        assert "dead at end" in detail_text(app) and "100.0% after 20 steps (step 0: 0.0%)" in detail_text(app)
        tree.reveal("fc2")
        await pilot.pause()
        assert "||Δw||/||w||" in detail_text(app)
        await pilot.press("v")  # the last run again, without training
        await pilot.pause()
        assert isinstance(app.screen, TrainingScreen) and "dying_units" in view_text(app)

    drive(app, script)


def test_ui_answers_while_training_and_c_cancels_leaving_the_model() -> None:
    torch.manual_seed(0)
    model = SlowSteps()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    app = InspectrApp(None, {"steps": 40}, loaded=LoadedModel(model, "slow", "object"))

    async def script(pilot: Any) -> None:
        await settle(pilot)  # the app's own probe (with --steps: it trains too)
        status = app.query_one(StatusBar)
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        await until(pilot, lambda: len(screen.live) >= 2)
        assert "training: step" in view_text(app)
        await pilot.press("escape")  # the UI answers while the worker trains
        assert not isinstance(app.screen, TrainingScreen)
        await pilot.press("down")
        assert app.query_one(LayerDetail).path == "fc1"
        assert any(w.group == "train" and w.is_running for w in app.workers)
        assert status.probe_state == "training"
        await pilot.press("v" if app.report and app.report.training else "t")
        await until(pilot, lambda: isinstance(app.screen, TrainingScreen))
        if not app._training:  # "v" opened a finished run: start one to cancel
            await pilot.press("t")
            await until(pilot, lambda: len(app.screen.live) >= 1)
        await pilot.press("c")
        assert "cancelled" in view_text(app)
        await settle(pilot)
        assert status.probe_state == "stale"
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k

    drive(app, script)


def test_training_failure_is_shown_and_the_app_stays_up() -> None:
    frozen = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    frozen.requires_grad_(False)
    frozen.example_input = lambda batch_size=4: torch.randn(batch_size, 4)  # type: ignore[assignment]
    app = InspectrApp(None, {}, loaded=LoadedModel(frozen, "frozen", "object"))

    async def script(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert "no trainable parameters" in view_text(app)
        assert app.query_one(StatusBar).probe_state == "failed"
        await pilot.press("escape")
        assert app.is_running

    drive(app, script)
