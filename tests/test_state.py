"""The probe leaves no trace: parameters, buffers, modes, requires_grad, .grad, RNG, hooks."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import live_tensors
from torch import nn

import inspectr
from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.sources.loader import load

FAST_TORCHVISION = ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "efficientnet_b0",
                    "shufflenet_v2_x0_5", "googlenet", "regnet_x_400mf", "mnasnet0_5"]


def snapshot(m: nn.Module):
    return {
        "state": {k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
        "training": [x.training for x in m.modules()],
        "rg": [p.requires_grad for p in m.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in m.parameters()],
        "hooks": sum(len(x._forward_hooks) + len(x._forward_pre_hooks) + len(x._backward_hooks)
                     for x in m.modules()),
        "rng": torch.get_rng_state().clone(),
        "pyrng": random.getstate(),
        "grad_mode": torch.is_grad_enabled(),
    }


def assert_same(a, b):
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), f"{k} changed"
    assert a["training"] == b["training"]
    assert a["rg"] == b["rg"]
    for x, y in zip(a["grad"], b["grad"]):
        assert (x is None) == (y is None) and (x is None or torch.equal(x, y))
    assert a["hooks"] == b["hooks"]
    assert torch.equal(a["rng"], b["rng"])
    assert a["pyrng"] == b["pyrng"]
    assert a["grad_mode"] == b["grad_mode"]


def prepare(m: nn.Module):
    """Give the model mixed state: some frozen params, existing grads, one submodule in eval."""
    params = list(m.parameters())
    params[0].requires_grad_(False)
    for p in params[1:3]:
        p.grad = torch.full_like(p, 0.5)
    mods = list(m.modules())
    if len(mods) > 2:
        mods[2].eval()
    return m


def check(spec: str, mode: str = "own"):
    loaded = load(spec)
    m = prepare(loaded.model)
    inputs = _inputs(spec, loaded)
    before = snapshot(m)
    r = inspectr.inspect(m, mode=mode, inputs=inputs)
    assert_same(before, snapshot(m))
    return r


def _inputs(spec, loaded):
    from inspectr.core.inspect import pick_inputs

    inp, _ = pick_inputs(loaded, None, None, None, "cpu")
    return inp


@pytest.mark.parametrize("spec", ["lenet", "fc_bn", "cifar_cnn", "se_resnet", "vit_tiny", "lstm_classifier",
                                  "transformer_seq2seq", "gcn", "gat", "moe_router", "early_exit",
                                  "sparse_linear", "fx_fused", "sick_nan", "sick_config_driven"])
@pytest.mark.parametrize("mode", ["own", "train", "eval"])
def test_sample_models_left_untouched(spec, mode):
    check(spec, mode)


@pytest.mark.parametrize("spec", FAST_TORCHVISION)
def test_torchvision_left_untouched(spec):
    check(spec, "train")


@pytest.mark.parametrize("spec", ["lenet", "early_exit", "moe_router", "transformer_seq2seq",
                                  "sick_config_driven", "sick_early_exit", "sick_nan", "sick_unused"])
@pytest.mark.parametrize("steps", [None, 2])
def test_an_inspection_leaves_no_tensor_alive(spec, steps):
    # the probe, the training steps and the memory passes hold autograd graphs and hooks: a cycle
    # through autograd's C++ side (a saved tensor holding its node, a hook holding the probe)
    # escapes gc, and such a leak grows with every re-probe in the app
    loaded = load(spec)
    inspectr.inspect(spec, loaded=loaded, steps=steps)
    before = live_tensors()
    inspectr.inspect(spec, loaded=loaded, steps=steps)
    assert live_tensors() == before


def test_untouched_when_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            self.bn(x)
            raise ValueError("boom")

    m = Boom()
    x = torch.randn(8, 4)
    before = snapshot(m)
    r = inspectr.inspect(m, inputs=x)
    assert r.probe.error.message.startswith("boom")
    assert_same(before, snapshot(m))


def test_untouched_on_keyboard_interrupt():
    class Interrupt(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            self.bn(x)
            raise KeyboardInterrupt

    m = Interrupt()
    x = torch.randn(8, 4)
    before = snapshot(m)
    with pytest.raises(KeyboardInterrupt):
        inspectr.inspect(m, inputs=x)
    assert_same(before, snapshot(m))


def test_user_input_tensor_not_modified():
    class InPlace(nn.Module):
        def forward(self, x):
            x.mul_(2)
            return x

    x = torch.ones(2, 3)
    inspectr.inspect(InPlace(), inputs=x)
    assert torch.equal(x, torch.ones(2, 3))
    assert not x.requires_grad


def test_backward_seeds_leave_the_global_rng_alone():
    # checked outside the probe too: the probe restores the RNG, which would hide a draw from it
    outs = [torch.zeros(3, 4), torch.zeros(5, dtype=torch.complex64), torch.empty(2, device="meta")]
    before = torch.get_rng_state()
    seed_gradients(outs, 0)
    assert torch.equal(torch.get_rng_state(), before)


def test_user_rng_stream_goes_on_as_without_the_probe():
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8), nn.LayerNorm(8))
    x = torch.randn(4, 8)
    torch.manual_seed(7)
    random.seed(7)
    expected = torch.rand(5), random.random()
    torch.manual_seed(7)
    random.seed(7)
    inspectr.inspect(m, inputs=x, mode="train")
    assert torch.equal(torch.rand(5), expected[0]) and random.random() == expected[1]
