"""Tests that outputs zero because a parameter starts at zero are told apart from dead units:
quiet inside a residual branch (timm's zero_init_last, a ReZero gate), ``zero_init_blocks``
naming the parameter on a path with no skip, and the same in ``--steps``."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli, strict_json
from torch import nn

import inspectr
from inspectr.core.inspection import Report


def kinds(report: Report) -> list[tuple[str, str]]:
    return [(f.kind, f.module) for f in report.findings if f.severity in ("warning", "error")]


def test_a_zero_init_residual_branch_with_the_activation_inside_its_norm_is_quiet() -> None:
    report = inspectr.inspect("zero_init_residual")
    assert report.probe.ok and report.probe.backward == "ran"
    act = report.module("blocks.0.conv2.bn.act")
    assert act.stats is not None and act.stats.dead_fraction == 1.0  # zeros for every sample, by design
    assert report.findings == ()


def test_the_same_zero_with_no_skip_names_the_parameter_and_the_path_it_blocks() -> None:
    report = inspectr.inspect("sick_zero_gate")
    found = [f for f in report.findings if f.kind == "zero_init_blocks"]
    assert [f.module for f in found] == ["blocks.0.conv2.bn"]  # the culprit; the next one is named in it
    first = found[0]
    assert first.detail["later"] == ["blocks.1.conv2.bn.weight"]
    assert first.severity == "warning"
    assert first.detail["parameter"] == "blocks.0.conv2.bn.weight"
    assert first.detail["first_blocked"] == "stem.conv"
    assert first.detail["blocked"] == 5  # stem.conv, stem.bn(.act), blocks.0.conv1.conv/.bn.act, blocks.0.conv2.conv
    assert "initialise it to a non-zero value" in first.message and "residual connection" in first.message
    # what follows a blocked path gets a constant: not dead units of its own
    assert not [f for f in report.findings if f.kind == "dead_units"]


class GatedMLP(nn.Module):
    """A ReZero-style scalar gate at 0 in front of a functional ReLU, with or without the skip."""

    def __init__(self, skip: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(16, 64)
        self.lin = nn.Linear(64, 64)
        self.gate = nn.Parameter(torch.zeros(1))
        self.out = nn.Linear(64, 4)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        g = torch.relu(self.gate * self.lin(h))
        return self.out(h + g if self.skip else g)


@pytest.mark.parametrize("skip", [True, False])
def test_a_zero_gate_in_front_of_a_functional_relu(skip: bool) -> None:
    torch.manual_seed(0)
    report = inspectr.inspect(GatedMLP(skip), inputs=torch.randn(32, 16))
    assert report.module("").functional[0].dead_fraction == 1.0
    if skip:
        assert kinds(report) == []
    else:
        assert kinds(report) == [("zero_init_blocks", "")]
        assert report.findings[0].detail["parameter"] == "gate"


def test_a_dead_relu_with_nonzero_weights_is_still_dead_units() -> None:
    report = inspectr.inspect("sick_dead_relu")
    assert ("dead_units", "act2") in kinds(report)
    assert not [f for f in report.findings if f.kind == "zero_init_blocks"]


def test_forward_only_stays_quiet_on_zeros_it_can_explain() -> None:
    """Without gradients a skip cannot be told from none: the zero output itself is not dead
    units, nothing is claimed blocked, and a dead output after it says where it may come from."""
    assert inspectr.inspect("zero_init_residual", backward=False).findings == ()
    report = inspectr.inspect("sick_zero_gate", backward=False)
    assert kinds(report) == [("dead_units", "blocks.1.conv1.bn.act")]  # its input is the zero: said so
    assert "because blocks.0.conv2.bn.weight starts at 0" in report.findings[0].message


def test_steps_do_not_call_a_zero_init_branch_dying() -> None:
    report = inspectr.inspect("zero_init_residual", steps=5)
    assert report.training is not None and report.training.steps_run == 5
    assert kinds(report) == []


def test_timm_zero_init_last_raises_no_dead_units() -> None:
    """timm's cs3darknet builds its last norm of each branch as BatchNormAct2d (SiLU inside)
    with weight 0; before, every block was reported as 100% dead."""
    pytest.importorskip("timm")
    report = inspectr.inspect("timm:cs3darknet_s", inputs=torch.randn(2, 3, 64, 64))
    assert report.probe.ok
    acts = [r for r in report.modules if ".blocks." in r.path and r.path.endswith("conv2.bn.act")]
    assert acts and all(r.stats is not None and r.stats.dead_fraction == 1.0 for r in acts)
    assert kinds(report) == []


def test_cli_json_names_the_blocking_parameter() -> None:
    proc = run_cli("sick_zero_gate", "--format", "json", "--check")
    assert proc.returncode == 0, proc.stderr  # a warning: --check fails on errors only
    data = strict_json(proc.stdout)
    found = [f for f in data["findings"] if f["kind"] == "zero_init_blocks"]
    assert found[0]["detail"]["parameter"] == "blocks.0.conv2.bn.weight"
