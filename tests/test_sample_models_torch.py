"""Tests the sample models with plain torch: each builds, trains, and is sick only as documented."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from sample_models import GALLERY
from sample_models.custom_autograd import SparseLinearFunction
from sample_models.fx_fused import SmallConvBNNet, fuse_conv_bn

HEALTHY = sorted(name for name, entry in GALLERY.items() if entry.healthy)
SICK = sorted(name for name, entry in GALLERY.items() if not entry.healthy)


def build(name: str, seed: int = 0) -> tuple[nn.Module, Any]:
    torch.manual_seed(seed)
    model = GALLERY[name].factory()
    return model, model.example_input()


def call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested output of tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)


def float_sum(output: Any) -> torch.Tensor:
    return sum((t.sum() for t in tensors(output) if t.is_floating_point()), torch.zeros(()))


def test_gallery_has_every_family() -> None:
    assert len(HEALTHY) >= 20
    assert set(SICK) == {
        "sick_config_driven", "sick_early_exit", "sick_dead_relu", "sick_vanishing",
        "sick_exploding", "sick_nan", "sick_overflow", "sick_unused",
        # sick once they train (``--steps``), and the seeds' frozen-backbone recipe
        "sick_diverging", "sick_dying_relu", "sick_not_learning", "sick_frozen_bn",
        "sick_zero_gate",
        # a finite forward whose backward makes NaN / Inf, at step 0 and once trained
        "sick_nan_grad", "sick_inf_grad", "sick_nan_grad_training",
        # an output ReLU trained toward targets below 0
        "sick_relu_output",
    }


def test_no_name_is_a_torchvision_model() -> None:
    import torchvision

    assert not set(GALLERY) & set(torchvision.models.list_models())


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_entry_builds_a_module_with_example_input(name: str) -> None:
    entry = GALLERY[name]
    assert entry.name == name
    assert entry.description and "\n" not in entry.description
    assert entry.seed
    assert (entry.expected is None) == entry.healthy
    model, inputs = build(name)
    assert isinstance(model, nn.Module)
    assert callable(getattr(model, "example_input", None))
    assert isinstance(inputs, (torch.Tensor, tuple, dict))
    assert entry.factory.__doc__, "the model (or its factory) documents its seed and fixes"


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_example_input_is_deterministic(name: str) -> None:
    model, _ = build(name)
    torch.manual_seed(1)
    first = list(tensors(model.example_input(2)))
    torch.manual_seed(1)
    second = list(tensors(model.example_input(2)))
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert torch.equal(a.to_dense(), b.to_dense())


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_token_ids_are_in_range(name: str) -> None:
    model, inputs = build(name)
    embeddings = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    for t in tensors(inputs):
        if not t.is_floating_point():
            assert embeddings, f"{name} takes integer input but has no embedding"
            assert 0 <= t.min() and t.max() < min(embeddings)


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_model_trains(name: str) -> None:
    model, inputs = build(name)
    output = call(model, inputs)
    outputs = [t for t in tensors(output) if t.is_floating_point()]
    assert outputs
    assert all(torch.isfinite(t).all() for t in outputs)
    float_sum(output).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_model_runs_small_batches_and_eval(name: str) -> None:
    model, _ = build(name)
    call(model, model.example_input(1))
    model.eval()
    with torch.no_grad():
        outputs = list(tensors(call(model, model.example_input(2))))
    assert all(torch.isfinite(t).all() for t in outputs if t.is_floating_point())


@pytest.mark.parametrize("name", SICK)
def test_sick_expected_path_is_a_module(name: str) -> None:
    model, _ = build(name)
    kind, path = GALLERY[name].expected  # type: ignore[misc]
    assert kind
    assert path in dict(model.named_modules())


@pytest.mark.parametrize(("name", "path"), [
    ("sick_config_driven", "layers.5"),
    ("sick_early_exit", "exit_heads.0.2"),
])
def test_sick_forward_error_raises_in_expected_module(name: str, path: str) -> None:
    model, inputs = build(name)
    names = {module: n for n, module in model.named_modules()}
    entered: list[str] = []
    handles = [m.register_forward_pre_hook(lambda m, _: entered.append(names[m]))
               for m in model.modules()]
    with pytest.raises(RuntimeError):
        call(model, inputs)
    for handle in handles:
        handle.remove()
    assert entered[-1] == path


def test_sick_config_driven_registers_layers_twice() -> None:
    model, _ = build("sick_config_driven")
    unique = list(model.named_modules())
    all_paths = list(model.named_modules(remove_duplicate=False))
    assert len(all_paths) > len(unique)


def test_sick_nan_output_has_nan_from_finite_input() -> None:
    model, inputs = build("sick_nan")
    seen: dict[str, torch.Tensor] = {}
    model.get_submodule("blocks.1.mix.log_scale").register_forward_hook(
        lambda m, i, o: seen.update(input=i[0], output=o)
    )
    output = call(model, inputs)
    assert torch.isfinite(seen["input"]).all()
    assert seen["output"].isnan().any()
    assert output.isnan().any()


def test_sick_overflow_output_has_inf_from_finite_input() -> None:
    model, inputs = build("sick_overflow")
    seen: dict[str, torch.Tensor] = {}
    model.get_submodule("head.energy").register_forward_hook(
        lambda m, i, o: seen.update(input=i[0])
    )
    output = call(model, inputs)
    assert torch.isfinite(seen["input"]).all()
    assert output.isinf().any()


@pytest.mark.parametrize(("name", "victim", "bad"), [("sick_nan_grad", "fc.weight", torch.isnan),
                                                      ("sick_inf_grad", "gated.gain_sq", torch.isinf)])
def test_sick_grad_models_have_a_finite_forward_and_nonfinite_gradients(name: str, victim: str, bad: Any) -> None:
    model, inputs = build(name)
    output = call(model, inputs)
    assert torch.isfinite(output).all()
    output.sum().backward()
    assert bad(dict(model.named_parameters())[victim].grad).any()


def test_sick_nan_grad_training_is_finite_at_step_0() -> None:
    model, inputs = build("sick_nan_grad_training")
    seen: dict[str, torch.Tensor] = {}
    model.get_submodule("compress").register_forward_hook(lambda m, i, o: seen.update(input=i[0]))
    call(model, inputs).sum().backward()
    assert (seen["input"] > 0).all()  # no unit at or below 0: sqrt's gradient is finite everywhere
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_sick_unused_aux_head_gets_no_gradient() -> None:
    model, inputs = build("sick_unused")
    call(model, inputs).sum().backward()
    aux = list(model.get_submodule("aux_head").parameters())
    assert aux and all(p.grad is None for p in aux)
    others = [p for n, p in model.named_parameters() if not n.startswith("aux_head.")]
    assert all(p.grad is not None for p in others)


def test_sick_dead_relu_is_mostly_zero() -> None:
    model, inputs = build("sick_dead_relu")
    relu = model.get_submodule(GALLERY["sick_dead_relu"].expected[1])  # type: ignore[index]
    assert isinstance(relu, nn.ReLU)
    seen: dict[str, torch.Tensor] = {}
    relu.register_forward_hook(lambda m, i, o: seen.update(output=o))
    call(model, inputs)
    assert (seen["output"] == 0).float().mean() > 0.9


def _linear_output_grad_norms(name: str) -> list[float]:
    model, inputs = build(name)
    norms: dict[int, float] = {}

    def track(index: int):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            output.register_hook(lambda g: norms.__setitem__(index, g.norm().item()))
        return hook

    linears = [m for m in model.get_submodule("body") if isinstance(m, nn.Linear)]
    for index, linear in enumerate(linears):
        linear.register_forward_hook(track(index))
    output = call(model, inputs)
    assert torch.isfinite(output).all()
    output.sum().backward()
    return [norms[i] for i in range(len(linears))]


def test_sick_vanishing_gradient_shrinks_toward_the_input() -> None:
    norms = _linear_output_grad_norms("sick_vanishing")
    assert norms[0] < 1e-8 * norms[-1]


def test_sick_exploding_gradient_grows_toward_the_input() -> None:
    norms = _linear_output_grad_norms("sick_exploding")
    assert norms[0] > 1e6 * norms[-1]
    assert all(torch.isfinite(torch.tensor(norms)))


def test_early_exit_returns_logits_depth_and_confidences() -> None:
    model, inputs = build("early_exit")
    logits, used_layers, confidences = call(model, inputs)
    assert logits.shape == (inputs.shape[0], 10)
    assert isinstance(used_layers, int)
    assert len(confidences) == used_layers
    assert all(isinstance(c, float) for c in confidences)


def test_se_resnet_blocks_do_not_share_activations() -> None:
    model, _ = build("se_resnet")
    relus = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus})


def test_config_driven_registers_each_layer_once() -> None:
    model, _ = build("config_driven")
    unique = list(model.named_modules())
    assert len(unique) == len(list(model.named_modules(remove_duplicate=False)))


def test_gcn_adjacency_is_sparse_symmetric_with_self_loops() -> None:
    model, (x, adj) = build("gcn")
    assert adj.is_sparse
    dense = adj.to_dense()
    assert x.shape[0] == dense.shape[0] == dense.shape[1] == 32
    assert torch.allclose(dense, dense.T)
    assert (dense.diagonal() > 0).all()


def test_sparse_linear_backward_matches_autograd() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, dtype=torch.double, requires_grad=True)
    mask = (torch.rand(4, 5) < 0.5).double()
    assert torch.autograd.gradcheck(SparseLinearFunction.apply, (x, w, b, mask))
    SparseLinearFunction.apply(x, w, b, mask).sum().backward()
    assert (w.grad[mask == 0] == 0).all()


def test_fx_fusion_removes_batchnorm_and_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = SmallConvBNNet()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    fused = fuse_conv_bn(torch.fx.symbolic_trace(copy.deepcopy(model)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-5)


def test_fx_fused_keeps_example_input_through_deepcopy() -> None:
    model, _ = build("fx_fused")
    assert isinstance(model, torch.fx.GraphModule)
    clone = copy.deepcopy(model)
    assert clone.example_input(2).shape == (2, 3, 32, 32)
