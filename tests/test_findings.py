"""Findings: every sick model names the right module; healthy models raise nothing."""

from __future__ import annotations

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
