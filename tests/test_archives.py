"""Tests archives as models (TorchScript, torch.export .pt2) and dynamically quantized models, by API and CLI."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, run_cli, strict_json, write_file
from torch import nn

import inspectr
from inspectr.core.sources.archives import EXPORTED, TORCHSCRIPT, archive_kind, pt2_pickled_parts
from sample_models.classic import MLP, LeNet
from sample_models.sick import DeadReLUMLP

LENET_PATHS = ["", "conv1", "conv2", "fc1", "fc2", "fc3"]


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit and quantization are deprecated in this torch
        yield


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _copy(v: object) -> object:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, tuple):  # a quantized layer's (packed weight, bias)
        return tuple(_copy(x) for x in v)
    return v


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.is_quantized:
            return b.is_quantized and torch.equal(a.int_repr(), b.int_repr()) and a.q_scale() == b.q_scale()
        return torch.equal(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def snapshot(model: nn.Module) -> dict[str, object]:
    return {k: _copy(v) for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, object], training: bool) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert _same(v, after[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert model.training == training


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LeNet scripted and traced, LeNet and MLP exported, each saved the way users save them."""
    folder = tmp_path_factory.mktemp("archives")
    torch.manual_seed(0)
    lenet, mlp = LeNet(), MLP()
    with quiet():
        torch.jit.save(torch.jit.script(lenet), folder / "lenet_script.pt")
        # no usual extension: archives are told apart by content
        torch.jit.save(torch.jit.trace(lenet, torch.randn(2, 1, 32, 32)), folder / "lenet_traced.model")
    torch.export.save(torch.export.export(lenet, (torch.randn(2, 1, 32, 32),)), folder / "lenet.pt2")
    torch.export.save(torch.export.export(mlp, (torch.randn(3, 784),)), folder / "mlp.pt2")
    dyn = torch.export.export(MLP().eval(), (torch.randn(5, 784),),
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
    dyn.example_inputs = None  # the program then gives only its placeholders' shapes
    torch.export.save(dyn, folder / "mlp_no_example.pt2")
    return {"folder": folder, "script": folder / "lenet_script.pt", "traced": folder / "lenet_traced.model",
            "lenet_pt2": folder / "lenet.pt2", "mlp_pt2": folder / "mlp.pt2",
            "no_example": folder / "mlp_no_example.pt2"}


def test_formats_are_told_apart_by_content(saved: dict[str, Path], tmp_path: Path) -> None:
    assert archive_kind(str(saved["script"])) == TORCHSCRIPT
    assert archive_kind(str(saved["traced"])) == TORCHSCRIPT
    assert archive_kind(str(saved["lenet_pt2"])) == EXPORTED
    state = tmp_path / "state.pt"
    torch.save(LeNet().state_dict(), state)  # a torch.save zip is not an archive
    assert archive_kind(str(state)) is None
    assert pt2_pickled_parts(str(saved["mlp_pt2"])) == []


# ---------------------------------------------------------------- TorchScript


def test_scripted_object_by_api_is_inspected_and_left_as_it_was() -> None:
    torch.manual_seed(0)
    original = LeNet()
    with quiet():
        scripted = torch.jit.script(original)
    before = snapshot(scripted)
    report = inspectr.inspect(scripted, torch.randn(4, 1, 32, 32))
    assert_untouched(scripted, before, training=True)
    assert [r.path for r in report.modules] == LENET_PATHS
    assert [r.type for r in report.modules] == ["LeNet", "Conv2d", "Conv2d", "Linear", "Linear", "Linear"]
    assert report.model.total_params == count(original)
    assert report.module("fc1").params == count(original.fc1)
    assert report.probe.ok and report.probe.backward == "ran"
    assert report.module("").output_shapes == ((4, 10),)
    assert report.module("conv1").output_shapes == ()  # hooks cannot run inside TorchScript: said, not faked
    assert any("TorchScript: no forward hooks" in n for n in report.probe.notes)
    grads = {p.name: p.grad_norm for p in report.module("fc1").parameters}
    assert grads["weight"] is not None and grads["weight"] > 0
    assert report.findings == ()


def test_traced_file_by_api_guesses_its_input(saved: dict[str, Path]) -> None:
    report = inspectr.inspect(str(saved["traced"]))
    assert report.model.total_params == count(LeNet())
    assert report.inputs == ("float32[4, 1, 32, 32]",)  # 28x28 fails in fc1, 32x32 runs
    assert report.probe.ok and report.findings == ()


@pytest.mark.parametrize("key", ["script", "traced"])
def test_torchscript_by_cli_needs_no_trust_pickle(saved: dict[str, Path], key: str) -> None:
    proc = run_cli(saved[key], "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = strict_json(proc.stdout)
    assert doc["model"]["total_params"] == count(LeNet())
    assert doc["model"]["class"] == "LeNet"
    assert [m["path"] for m in doc["modules"]] == LENET_PATHS
    assert doc["probe"]["backward"] == "ran"
    check = run_cli(saved[key], "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 finding(s)" in check.stdout and "Traceback" not in check.stderr


def test_torchscript_rejects_kwargs(saved: dict[str, Path]) -> None:
    assert_clean_error(run_cli(saved["script"], "--kwargs", '{"a": 1}'), "TorchScript", "--kwargs")


# ---------------------------------------------------------------- torch.export


def test_exported_program_by_cli_keeps_paths_counts_shapes_and_flops(saved: dict[str, Path]) -> None:
    proc = run_cli(saved["lenet_pt2"], "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = strict_json(proc.stdout)
    rows = {m["path"]: m for m in doc["modules"]}
    assert list(rows) == LENET_PATHS
    assert rows["fc1"]["type"] == "Linear" and rows["conv1"]["type"] == "Conv2d"
    assert doc["model"]["total_params"] == count(LeNet())
    assert rows["fc1"]["params"] == count(LeNet().fc1)
    assert rows["conv1"]["output_shapes"] == [[2, 6, 28, 28]]  # the stored example inputs: batch 2
    assert rows["fc1"]["grad_norm"] is not None
    eager = inspectr.inspect(LeNet(), torch.randn(2, 1, 32, 32))
    assert doc["model"]["flops_forward"] == eager.flops_forward
    assert doc["findings"] == []
    check = run_cli(saved["mlp_pt2"], "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{count(MLP()):,} params" in check.stdout


def test_exported_report_says_what_the_format_fixes(saved: dict[str, Path]) -> None:
    proc = run_cli(saved["mlp_pt2"], "--report", env={"COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "fixed in the graph at export time" in out
    assert "torch.export.unflatten" in out
    assert "├─ fc1" in proc.stdout


def test_exported_program_object_by_api_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    ep = torch.export.export(MLP(), (torch.randn(3, 784),))
    before = {k: v.detach().clone() for k, v in ep.state_dict.items()}
    report = inspectr.inspect(ep)
    for k, v in before.items():
        assert torch.equal(ep.state_dict[k], v), k
        assert ep.state_dict[k].grad is None
        assert ep.state_dict[k].requires_grad
    assert report.model.name == "MLP"
    assert report.model.total_params == count(MLP())
    assert report.module("relu").calls == 2
    assert report.findings == ()


def test_exported_program_without_example_inputs_uses_its_placeholders(saved: dict[str, Path]) -> None:
    report = inspectr.inspect(str(saved["no_example"]))
    assert report.inputs == ("float32[5, 784]",)
    assert report.probe.ok and report.findings == ()


def test_exported_sick_model_is_blamed_on_its_original_path() -> None:
    m = DeadReLUMLP()
    report = inspectr.inspect(torch.export.export(m, (m.example_input(),)))
    assert [(f.kind, f.module) for f in report.findings] == [("dead_units", "act2")]


def test_pt2_that_is_not_an_exported_program_is_a_clean_error(tmp_path: Path) -> None:
    bogus = write_file(tmp_path, "model.pt2", "not a zip")
    assert_clean_error(run_cli(bogus), "model.pt2", "not a torch.export program")


# ---------------------------------------------------------------- dynamically quantized

QUANTIZED = '''\
import torch
from torch import nn
from sample_models.classic import LeNet


def lenet_q():
    torch.manual_seed(0)
    return torch.ao.quantization.quantize_dynamic(LeNet(), {nn.Linear}, dtype=torch.qint8)


def wide_q():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 20000), nn.ReLU(), nn.Linear(20000, 4))
    return torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)


def example_input():
    return torch.randn(4, 1, 32, 32)
'''


def quantized(model: nn.Module) -> nn.Module:
    with quiet():
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def test_quantized_model_counts_packed_weights_and_has_no_false_findings() -> None:
    torch.manual_seed(0)
    float_model = LeNet()
    q = quantized(float_model)
    before = snapshot(q)
    report = inspectr.inspect(q, torch.randn(4, 1, 32, 32), mode="train")
    assert_untouched(q, before, training=False)  # quantize_dynamic returns an eval model; train was a copy's
    q_fc = count(float_model.fc1) + count(float_model.fc2) + count(float_model.fc3)
    assert report.model.total_params == count(float_model)
    assert report.model.packed_params == q_fc
    assert report.model.trainable_params == count(float_model) - q_fc
    assert report.module("fc1").params == count(float_model.fc1)
    assert report.module("fc1").packed_params == count(float_model.fc1)
    assert {p.name for p in report.module("fc1").parameters} == {"weight (packed)", "bias (packed)"}
    assert report.probe.ok and report.probe.backward == "ran"
    assert report.findings == ()  # conv1/conv2 get no gradient because backward stops at fc1: not "unused"
    notes = " ".join(report.probe.notes)
    assert "backward stops at the quantized layers (fc1, fc2, fc3)" in notes
    assert "packed weights" in notes and "marked q" in notes


def test_quantized_wide_model_is_not_a_backward_error() -> None:
    torch.manual_seed(0)
    q = quantized(nn.Sequential(nn.Linear(64, 20000), nn.ReLU(), nn.Linear(20000, 4)))
    report = inspectr.inspect(q, torch.randn(4, 64))  # outputs above 65,536 values: tensor hooks get None
    assert report.probe.ok and report.probe.backward == "ran", report.probe.error
    assert report.findings == ()


def test_quantized_by_cli(tmp_path: Path) -> None:
    path = write_file(tmp_path, "qmodels.py", QUANTIZED)
    proc = run_cli(f"{path}:lenet_q", "--report", env={"COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    assert "48,120 q" in proc.stdout
    assert "autograd kernel was not registered" not in proc.stderr
    check = run_cli(f"{path}:wide_q", "--input", "4,64", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 finding(s)" in check.stdout
