"""Findings: every sick model names the right module; healthy models raise nothing."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import inspectr
import sample_models

SICK = {n: s for n, s in sample_models.GALLERY.items() if not s.healthy}
HEALTHY = [n for n, s in sample_models.GALLERY.items() if s.healthy]
TORCHVISION_FAST = ["alexnet", "resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1",
                    "shufflenet_v2_x1_0", "efficientnet_b0", "regnet_y_400mf", "googlenet", "mnasnet0_5",
                    "vgg11", "densenet121"]


def problems(report):
    return [(f.kind, f.severity, f.module) for f in report.findings if f.severity in ("error", "warning")]


@pytest.mark.parametrize("name", sorted(SICK))
def test_sick_model_found_on_expected_path(name):
    kind, path = SICK[name].expected
    # models sick only once they train are run with their example_training steps
    r = inspectr.inspect(name, steps=True if SICK[name].needs_steps else None)
    hits = [(k, m) for k, _, m in problems(r)]
    assert (kind, path) in hits, f"{name}: expected {kind} at {path!r}, got {hits}"
    # the culprit only: no other module is blamed for the same kind
    assert [m for k, m in hits if k == kind] == [path]


@pytest.mark.parametrize("name", HEALTHY)
@pytest.mark.parametrize("mode", ["own", "train", "eval"])
def test_healthy_sample_models_raise_nothing(name, mode):
    r = inspectr.inspect(name, mode=mode)
    assert r.probe.ok, r.probe.error
    assert problems(r) == []


@pytest.mark.parametrize("name", TORCHVISION_FAST)
def test_healthy_torchvision_raise_nothing(name):
    r = inspectr.inspect(name)
    assert r.probe.ok, r.probe.error
    assert problems(r) == []


def test_nan_only_culprit_blamed_not_downstream():
    r = inspectr.inspect("sick_nan")
    nan_mods = [f.module for f in r.findings if f.kind == "nan"]
    assert nan_mods == ["blocks.1.mix.log_scale"]
    # downstream modules do carry NaN, but are not blamed
    downstream = [m for m in r.modules if m.stats and m.stats.nan and m.path != "blocks.1.mix.log_scale"]
    assert downstream


def test_unused_is_warning_in_train_and_info_in_eval():
    assert ("unused_parameters", "warning", "aux_head") in [(f.kind, f.severity, f.module) for f in inspectr.inspect("sick_unused", mode="train").findings]
    assert ("unused_parameters", "info", "aux_head") in [(f.kind, f.severity, f.module) for f in inspectr.inspect("sick_unused", mode="eval").findings]


def test_frozen_layers_have_no_param_gradients_and_no_unused_finding():
    r = inspectr.inspect("lenet", freeze=["conv*"])
    assert r.module("conv1").trainable == "none"
    assert r.module("conv1").param_grad_norm is None
    assert r.module("fc1").param_grad_norm is not None
    assert r.model.frozen_params == r.module("conv1").params + r.module("conv2").params
    assert problems(r) == []


# Healthy models whose output sums to a constant: under a sum() loss every gradient upstream
# was zero or rounding noise, and they were blamed for vanishing gradients.
HEADLESS = {
    "layernorm": lambda: nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.LayerNorm(16)),
    "layernorm_no_affine": lambda: nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16, elementwise_affine=False)),
    "softmax": lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=-1)),
    "batchnorm": lambda: nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16)),
}


@pytest.mark.parametrize("name", sorted(HEADLESS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_outputs_that_sum_to_a_constant_raise_no_gradient_finding(name, mode):
    torch.manual_seed(0)
    r = inspectr.inspect(HEADLESS[name](), inputs=torch.randn(4, 16), mode=mode)
    assert r.probe.ok and r.probe.backward == "ran"
    assert [f.kind for f in r.findings] == []
    # the gradient reaches the first layer at a healthy size
    assert r.module("0").grad_norm > 1e-2 * r.module("").grad_norm


def test_vanishing_gradient_before_a_final_layernorm_is_still_found():
    torch.manual_seed(0)
    body = [m for _ in range(30) for m in (nn.Linear(16, 16), nn.Sigmoid())]
    model = nn.Sequential(OrderedDict(inp=nn.Linear(16, 16), body=nn.Sequential(*body), norm=nn.LayerNorm(16)))
    r = inspectr.inspect(model, inputs=torch.randn(4, 16), mode="train")
    assert problems(r) == [("vanishing_gradient", "error", "body")]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_headless_gpt2_model_has_no_vanishing_gradient(mode):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.GPT2Model(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    r = inspectr.inspect(model, inputs=torch.randint(0, 100, (2, 8)), mode=mode)  # last op: ln_f
    assert r.probe.ok and r.probe.backward == "ran"
    assert "vanishing_gradient" not in [f.kind for f in r.findings]
    assert problems(r) == []


# ---------------------------------------------------------------- NaN/Inf born in backward


class WhereSqrt(nn.Module):
    """The issue's model: the root's own forward guards sqrt with torch.where (no module of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc(x)
        h = torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h))
        return self.out(h)


def test_nan_born_in_backward_is_named_at_the_op_not_where_it_arrives():
    r = inspectr.inspect("sick_nan_grad")
    assert r.probe.ok and r.probe.backward == "ran"
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert (f.severity, f.module) == ("error", "compress")
    d = f.detail
    assert (d["op"], d["node"], d["nonfinite"]) == ("torch.sqrt", "SqrtBackward0", "NaN")
    assert 0 < d["count"] < d["numel"] == 4 * 64
    assert d["location"].endswith("sick.py:" + d["location"].rsplit(":", 1)[1]) and "torch.where" in d["code"]
    assert "torch.where differentiates both branches" in f.message and "clamp_min" in f.message
    # the gradient arrives as NaN at fc, which only passes it on: not blamed
    assert math.isnan(r.module("fc").grad_norm) and math.isnan(r.module("fc").param_grad_norm)
    assert math.isfinite(r.module("compress").grad_norm) and math.isfinite(r.module("head").param_grad_norm)
    assert problems(r) == [("nonfinite_grad", "error", "compress")]  # no vanishing/exploding from NaN norms


def test_inf_born_in_backward_of_a_parameter():
    r = inspectr.inspect("sick_inf_grad")
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert (f.module, f.detail["nonfinite"], f.detail["count"], f.detail["numel"]) == ("gated", "Inf", 1, 1)
    assert "sqrt(self.gain_sq)" in f.detail["code"] and "Inf" in f.message
    assert math.isinf(r.module("gated").param_grad_norm)
    assert problems(r) == [("nonfinite_grad", "error", "gated")]


def test_nan_born_in_the_roots_own_forward_names_the_root_and_line():
    torch.manual_seed(0)
    model = WhereSqrt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = inspectr.inspect(model, inputs=torch.randn(4, 16))
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert f.module == "" and "(root) (WhereSqrt)" in f.message
    assert f.detail["location"] == f"{__file__}:{WhereSqrt.forward.__code__.co_firstlineno + 2}"
    # the replay leaves no trace: no hook, no gradient, the same values
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class NaNGrad(torch.autograd.Function):
    """Identity forward; a backward that returns NaN (a hand-written derivative gone wrong)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class HandWritten(nn.Module):
    def forward(self, x):
        return NaNGrad.apply(x)


def test_nan_from_a_custom_autograd_function_is_blamed_on_its_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU(), HandWritten()), nn.Linear(8, 2))
    r = inspectr.inspect(model, inputs=torch.randn(4, 8))
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert f.module == "1.1" and f.detail["node"] == "NaNGradBackward"


def test_finite_gradients_trace_nothing():
    from inspectr.core.probe.run import run_probe

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert run_probe(model, (torch.randn(4, 8),), {}).grad_origin is None
    # a forward that is already NaN is the forward finding's, not a gradient one
    r = inspectr.inspect("sick_nan")
    assert [f.kind for f in r.findings if f.kind in ("nan", "nonfinite_grad")] == ["nan"]


def test_cli_check_fails_on_a_nan_born_in_backward():
    from conftest import run_cli

    proc = run_cli("sick_nan_grad", "--check")
    assert proc.returncode == 1, proc.stderr
    assert "nonfinite_grad" in proc.stdout and "compress" in proc.stdout and "SqrtBackward0" in proc.stdout
    proc = run_cli("sick_inf_grad", "--format", "json")
    doc = json.loads(proc.stdout)
    (f,) = [f for f in doc["findings"] if f["kind"] == "nonfinite_grad"]
    assert f["module"] == "gated" and f["detail"]["nonfinite"] == "Inf" and f["detail"]["op"] == "torch.sqrt"


def test_highest_paths_keeps_only_paths_with_nothing_above_them_in_the_set():
    from inspectr.core.findings.common import highest_paths

    assert highest_paths({"a.b", "a.b.c", "a.bc", "d.e.f", "d"}) == ["a.b", "a.bc", "d"]
    assert highest_paths({"", "a", "a.b"}) == [""]
    assert highest_paths(set()) == []
    deep = {f"0.{i}" for i in range(20_000)} | {f"0.{i}.w" for i in range(20_000)}
    assert highest_paths(deep) == sorted(f"0.{i}" for i in range(20_000))
    assert highest_paths(deep | {"0"}) == ["0"]
