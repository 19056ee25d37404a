"""Probe tests on real models: shapes, nested outputs, errors, functional activations, FLOPs."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import inspectr
from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import run_probe
from inspectr.core.result import ModuleRow

Pair = collections.namedtuple("Pair", "logits aux")


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return {"pair": Pair(self.a(x), self.b(x)), "n": 7, "names": ["x", "y"], "none": None}


class FunctionalReLU(nn.Module):
    """F.relu inside forward on a layer whose bias kills every unit."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)
        with torch.no_grad():
            self.fc1.bias.fill_(-100.0)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(12, 5)  # receives 8 features: a shape bug

    def forward(self, x):
        return self.proj(x)


class ShapeBug(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.heads = nn.ModuleDict({"cls": Head()})

    def forward(self, x):
        return self.heads["cls"](self.body(x))


def test_nested_and_non_tensor_outputs():
    r = inspectr.inspect(Nested(), inputs=torch.randn(4, 8))
    root = r.module("")
    assert root.output_shapes == ((4, 4), (4, 3))
    assert "int" in root.output_structure and "None" in root.output_structure
    assert r.module("a").calls == 1 and r.module("a").input_shapes == ([4, 8],)
    assert r.probe.backward == "ran"
    assert r.module("a").grad_norm is not None


def test_forward_error_names_nested_module_and_keeps_what_ran():
    r = inspectr.inspect(ShapeBug(), inputs=torch.randn(4, 8))
    assert not r.probe.ok
    assert r.probe.error.module == "heads.cls.proj"
    assert r.probe.error.module_type == "Linear"
    assert r.probe.error.input_shapes == ([4, 8],)
    f = [f for f in r.findings if f.kind == "forward_error"]
    assert f and f[0].module == "heads.cls.proj" and f[0].severity == "error"
    assert "4x8" in f[0].message or "mat1" in f[0].message
    assert r.module("body.0").output_shapes == ((4, 8),)  # what ran is still reported


def test_functional_relu_dead_units_attributed_to_calling_module():
    r = inspectr.inspect(FunctionalReLU(), inputs=torch.randn(32, 16))
    dead = [f for f in r.findings if f.kind == "dead_units"]
    assert [f.module for f in dead] == [""]
    assert "F.relu" in dead[0].message
    fa = r.module("").functional
    assert fa and fa[0].op == "F.relu" and fa[0].dead_fraction == 1.0


def test_tensor_method_relu_is_seen():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).relu()

    r = inspectr.inspect(M(), inputs=torch.randn(8, 4))
    assert r.module("").functional[0].op == "Tensor.relu"


def test_inplace_relu_after_batchnorm_gets_gradients():
    """torchvision-style in-place ReLU after BatchNorm breaks full backward hooks; not ours."""
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Conv2d(8, 2, 1))
    r = inspectr.inspect(m, inputs=torch.randn(2, 3, 16, 16))
    assert r.probe.backward == "ran"
    for p in ("0", "1", "2", "3"):
        assert r.module(p).grad_norm and r.module(p).grad_norm > 0


def test_flops_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 14 * 14, 10))
    x = torch.randn(2, 3, 16, 16)
    with FlopCounterMode(display=False) as fc:
        m(x)
    r = inspectr.inspect(m, inputs=x)
    assert r.module("").flops_forward == fc.get_total_flops()
    assert r.module("0").flops_forward + r.module("3").flops_forward == fc.get_total_flops()
    assert r.module("").flops_backward > 0


def test_depthwise_backward_flops_are_twice_forward():
    m = nn.Conv2d(8, 8, 3, groups=8)
    x = torch.randn(2, 8, 10, 10)
    r = inspectr.inspect(m, inputs=x)
    assert r.module("").flops_backward == r.module("").flops_forward  # weight gradient only
    r = inspectr.inspect(m, inputs=x.requires_grad_())  # an input that asks for its gradient
    assert r.module("").flops_backward == 2 * r.module("").flops_forward


def test_fully_frozen_model_still_shows_gradient_flow():
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).requires_grad_(False)
    r = inspectr.inspect(m, inputs=torch.randn(4, 4))
    assert r.probe.backward == "ran"
    assert r.module("0").grad_norm and r.module("2").grad_norm
    assert all(m.param_grad_norm is None for m in r.modules)
    assert not any(p.requires_grad for p in m.parameters())


def test_no_backward_for_integer_outputs_says_why():
    class Argmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).argmax(-1)

    r = inspectr.inspect(Argmax(), inputs=torch.randn(4, 4))
    assert r.probe.ok and r.probe.backward == "skipped"
    assert "gradient path" in r.probe.backward_note
    assert r.module("fc").output_shapes == ((4, 3),)


def test_forward_only_option():
    r = inspectr.inspect("lenet", backward=False)
    assert r.probe.backward == "off"
    assert all(m.grad_norm is None for m in r.modules)
    assert r.module("conv1").stats is not None


def test_shared_module_counted_once_and_marked():
    lin = nn.Linear(4, 4)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    r = inspectr.inspect(m, inputs=torch.randn(2, 4))
    assert r.model.total_params == sum(p.numel() for p in m.parameters()) == 20
    assert r.module("0").aliases == ("2",)
    assert r.module("0").calls == 2


def test_tied_parameters_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.out = nn.Linear(8, 50, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, ids):
            return self.out(self.emb(ids))

    m = Tied()
    r = inspectr.inspect(m, inputs=torch.randint(0, 50, (2, 5)))
    assert r.model.total_params == sum(p.numel() for p in m.parameters()) == 400
    assert r.module("").params == 400
    assert r.module("out").parameters[0].shared_with == "emb.weight"


@pytest.mark.parametrize("tie", [False, True])
def test_subtree_counts_match_parameters_of_each_module(tie):
    """The one-pass counts (children before parents; shared tensors once per subtree) against
    ``parameters()`` of every module, with part of the model frozen."""
    m = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)))
    m[0][1].weight.requires_grad_(False)
    if tie:
        m[1].weight = m[0][0].weight  # the same tensor under two modules
        m[1].again = m[1].bias  # and twice in one module
    r = inspectr.inspect(m, inputs=torch.randn(2, 4))
    for path, mod in m.named_modules():
        row = r.module(path)
        assert row.params == sum(p.numel() for p in mod.parameters())
        assert row.trainable_params == sum(p.numel() for p in mod.parameters() if p.requires_grad)
    assert r.model.total_params == sum(p.numel() for p in m.parameters())
    assert r.model.param_bytes == sum(p.numel() * p.element_size() for p in m.parameters())
    fields = [f.name for f in dataclasses.fields(ModuleRow)]  # rows are made from a dict: all fields, in order
    assert all(list(row.__dict__) == fields for row in r.modules)


def test_meta_device_shape_only():
    r = inspectr.inspect("resnet18_scratch", device="meta")
    assert r.probe.shape_only and r.probe.device == "meta"
    assert r.module("").output_shapes
    assert r.module("").flops_forward > 0
    assert r.module("").stats is None


def test_large_model_goes_to_meta_by_itself(tmp_path):
    # 8 billion float32 parameters: 32 GB, more than this machine has
    f = tmp_path / "huge.py"
    f.write_text(
        "import torch.nn as nn\n"
        "class Huge(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.layers = nn.Sequential(*[nn.Linear(20000, 20000) for _ in range(20)])\n"
        "    def forward(self, x):\n"
        "        return self.layers(x)\n"
    )
    r = inspectr.inspect(f"{f}:Huge")
    assert r.probe.shape_only
    assert r.model.total_params == 20 * (20000 * 20000 + 20000)
    assert r.module("").output_shapes == ((4, 20000),)
    assert any("meta device" in n for n in r.probe.notes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_probe_leaves_cpu_model_on_cpu():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    r = inspectr.inspect(m, inputs=torch.randn(4, 8), device="cuda")
    assert r.probe.device == "cuda" and r.probe.ok
    assert next(m.parameters()).device.type == "cpu"
    assert r.module("0").param_grad_norm is not None


def test_cancel_between_phases_restores_model():
    from inspectr.core.probe.run import ProbeCancelled

    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    before = m[1].running_mean.clone()
    with pytest.raises(ProbeCancelled):
        run_probe(m, (torch.randn(8, 4),), {}, ProbeOptions(cancelled=lambda: True))
    assert torch.equal(m[1].running_mean, before)
    assert not m[0]._forward_hooks and not m[0]._forward_pre_hooks


def _grad_norms(r):
    return {p: m.grad_norm for p, m in r.measures.items()}, r.param_grad_norms


def test_backward_seed_gives_the_same_gradients_every_run_whatever_the_global_rng():
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 4), nn.LayerNorm(4))
    x = torch.randn(4, 8)
    torch.manual_seed(123)
    a = run_probe(m, (x,), {}, ProbeOptions(mode="train"))
    torch.manual_seed(456)  # another state of the user's RNG: the same numbers
    b = run_probe(m, (x,), {}, ProbeOptions(mode="train"))
    assert _grad_norms(a) == _grad_norms(b)
    assert all(v for v in a.param_grad_norms.values())
    c = run_probe(m, (x,), {}, ProbeOptions(mode="train", seed=1))
    assert _grad_norms(c) != _grad_norms(a)


def test_backward_seeds_fit_their_outputs():
    outs = [torch.zeros(3, 4), torch.zeros(5, dtype=torch.complex64), torch.zeros(2, 2, dtype=torch.bfloat16),
            torch.zeros(4, dtype=torch.float8_e4m3fn), torch.zeros(6, 2).t(), torch.empty(2, 7, device="meta")]
    seeds = seed_gradients(outs, 0)
    assert [(s.shape, s.dtype, s.device) for s in seeds] == [(o.shape, o.dtype, o.device) for o in outs]
    again = seed_gradients(outs, 0)
    assert all(torch.equal(s, t) for s, t in zip(seeds[:-1], again[:-1]))
    assert not torch.equal(seed_gradients(outs[:1], 1)[0], seeds[0])
    # standard normal: RMS 1 per value, as the ones of sum() had; complex: E|w|^2 = 1
    big = seed_gradients([torch.zeros(100_000), torch.zeros(100_000, dtype=torch.complex64)], 0)
    assert [float(w.abs().square().mean().sqrt()) for w in big] == [pytest.approx(1.0, abs=0.02)] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_backward_seeds_drawn_on_cuda_leave_its_rng_alone():
    out = torch.zeros(3, 1000, device="cuda")
    torch.cuda.manual_seed(5)
    before = torch.cuda.get_rng_state()
    seeds = seed_gradients([out], 0)
    assert seeds[0].device == out.device and torch.equal(seeds[0], seed_gradients([out], 0)[0])
    assert torch.equal(torch.cuda.get_rng_state(), before)
    m = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
    x = torch.randn(4, 8)  # one input: the same seed must give the same backward weighting
    a = inspectr.inspect(m, inputs=x, device="cuda", mode="train")
    b = inspectr.inspect(m, inputs=x, device="cuda", mode="train")
    assert a.probe.ok and [f.kind for f in a.findings] == []
    assert a.module("0").grad_norm == b.module("0").grad_norm
