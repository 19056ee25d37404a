"""The probe's speed contract (issue 18): one forward (forward-only included), each tensor
measured once, exact figures where findings judge them and sampled ones flagged."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import inspectr
from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.probe.stats import STAT_SAMPLE


class _OpCount(TorchDispatchMode):
    """Counts every aten op dispatched while it is on."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _ops_of_inspect(model: nn.Module, x: torch.Tensor) -> int:
    with _OpCount() as count:
        inspectr.inspect(model, inputs=x, flops=False)
    return count.ops


@pytest.mark.parametrize("width", [16, 4096, 16384])  # outputs batched; reduced at once; and a hooked gradient
def test_containers_around_a_layer_add_no_tensor_op(width: int):
    # a container whose output is its last child's tensor reuses the child's measurement of the
    # output and of its gradient: wrapping a layer in three containers runs no more tensor ops
    torch.manual_seed(0)
    layer = nn.Linear(64, width)
    x = torch.randn(8, 64)
    bare = _ops_of_inspect(layer, x)
    wrapped = nn.Sequential(nn.Sequential(nn.Sequential(layer)))
    assert _ops_of_inspect(wrapped, x) == bare
    r = inspectr.inspect(wrapped, inputs=x)
    inner, outer = r.module("0.0.0"), r.module("")
    assert inner.stats == outer.stats and inner.grad_norm == outer.grad_norm


def test_forward_only_runs_one_forward_and_counts_the_full_probes_saved_bytes():
    # the memory block of a forward-only probe comes from the probe's own forward (no counting
    # pass on meta copies), byte for byte what the full probe counts, module by module
    torch.manual_seed(0)
    model = torchvision.models.get_model("resnet18", weights=None)
    x = torch.randn(2, 3, 64, 64)
    full = inspectr.inspect(model, inputs=x)
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        fwd = inspectr.inspect(model, inputs=x, backward=False)
    finally:
        handle.remove()
    assert calls == [1]
    assert fwd.probe.backward == "off"
    saved = {r.path: r.saved_bytes for r in full.modules}
    assert sum(v or 0 for v in saved.values()) > 0
    assert {r.path: r.saved_bytes for r in fwd.modules} == saved
    assert fwd.memory.activation_bytes == full.memory.activation_bytes
    assert fwd.memory.training_peak_bytes == full.memory.training_peak_bytes


def test_forward_only_that_needs_its_saved_tensors_still_reports():
    # a forward that takes a gradient inside itself (a gradient penalty) needs the saved tensors
    # the forward-only count does not keep: the probe runs it again without counting
    class Penalty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.requires_grad_(True) if not x.requires_grad else x
            y = torch.tanh(self.fc(x))
            (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
            return y + g

    r = inspectr.inspect(Penalty(), inputs=torch.randn(4, 8), backward=False)
    assert r.probe.ok and r.probe.error is None
    assert r.module("fc").stats is not None
    assert r.memory is not None and r.memory.activation_bytes > 0


def test_sampled_figures_are_flagged_in_the_json():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10))
    x = torch.randn(2, 3, 32, 32)  # conv and ReLU outputs: 32,768 values; the head's: 20
    r = inspectr.inspect(model, inputs=x)
    doc = json.loads(json.dumps(r.to_dict()))
    stats = {m["path"]: m["stats"] for m in doc["modules"]}
    assert 2 * 16 * 32 * 32 > STAT_SAMPLE
    assert "std" in stats["0"]["sampled"] and "min" in stats["0"]["sampled"]
    assert "zero_fraction" not in stats["1"]["sampled"]  # a rectifier's zeros are judged: exact
    assert stats["3"]["sampled"] == []  # a small output: every figure exact
    assert r.module("0").stats.sampled == tuple(stats["0"]["sampled"])


def test_large_output_gradient_norms_are_exact():
    # findings judge gradient norms: exact on outputs of any size, and the same number for a
    # container and the child whose output it returns
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.Tanh(), nn.Conv2d(32, 8, 3, padding=1))
    x = torch.randn(2, 3, 48, 48)  # 147,456 values out of the first conv: over 4 * STAT_SAMPLE
    r = inspectr.inspect(model, inputs=x)
    grads: dict[str, torch.Tensor] = {}
    h = x.clone()
    outs = []
    for i, layer in enumerate(model):
        h = layer(h)
        h.register_hook(lambda g, i=i: grads.__setitem__(str(i), g))
        outs.append(h)
    (y,) = outs[-1:]
    y.backward(seed_gradients([y], 0)[0])
    assert grads["0"].numel() > 4 * STAT_SAMPLE
    for path, g in grads.items():
        assert r.module(path).grad_norm == pytest.approx(float(g.double().norm()), rel=1e-5), path
    assert r.module("").grad_norm == r.module("2").grad_norm
