"""Training steps (``--steps``): the loss, the per-layer measures, the findings, the model untouched."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
import torch
from torch import nn

import inspectr
import sample_models
from inspectr.core.findings.training import NOT_LEARNING_FRACTION
from inspectr.core.optim import choose_optimizer
from inspectr.core.training.loss import objective_for
from inspectr.core.training.steps import TrainingOptions, train_steps
from inspectr.errors import InspectrError
from tests.conftest import assert_clean_error, run_cli, strict_json

HEALTHY = [n for n, s in sample_models.GALLERY.items() if s.healthy]
TRAIN_SICK = [n for n, s in sample_models.GALLERY.items() if s.needs_steps]
TORCHVISION_SMALL = ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "shufflenet_v2_x0_5", "efficientnet_b0"]


def problems(report: Any) -> list[tuple[str, str, str]]:
    return [(f.kind, f.severity, f.module) for f in report.findings if f.severity in ("error", "warning")]


class SmallNet(nn.Module):
    """Conv, BatchNorm, dropout and a head: everything training can change."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.bn(self.conv(x))))
        return self.head(h.mean((2, 3)))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 8, 8)


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything the user owns in a model, and the RNG states."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "ids": [id(p) for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else (id(p.grad), p.grad.clone()) for p in model.parameters()],
        "torch_rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["ids"] == b["ids"]
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    for ga, gb in zip(a["grad"], b["grad"]):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert ga[0] == gb[0] and torch.equal(ga[1], gb[1])
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert a["py_rng"] == b["py_rng"]
    assert a["hooks"] == b["hooks"]


def user_owned_model() -> nn.Module:
    torch.manual_seed(0)
    model = SmallNet()
    model.head.weight.grad = torch.ones_like(model.head.weight)  # a .grad the user left there
    model.conv.bias.requires_grad_(False)
    model.drop.eval()  # a per-module mode the run must put back
    return model


# ---------------------------------------------------------------- core


def test_train_steps_records_every_step_and_layer() -> None:
    torch.manual_seed(0)
    model = SmallNet()
    x = model.example_input()
    run = train_steps(model, (x,), {}, TrainingOptions(steps=6, optimizer=choose_optimizer("adam", 1e-2)))
    assert run.steps_run == 6 and len(run.grad_norm) == 6 and run.stopped == ""
    assert all(v > 0 for v in run.grad_norm)
    assert set(run.update_ratio) == {"conv", "bn", "head"}
    assert all(0 < v < 1 for v in run.update_ratio.values())
    assert all(run.distance[p] > 0 for p in ("conv", "bn", "head"))
    assert run.final_loss is not None and run.final_loss < run.loss[0]
    assert run.end_measures["act"].stats is not None and run.end_measures["act"].stats.dead_fraction is not None
    assert len(run.step_ratios) == 6 and len(run.step_ratios[0]) == len(run.ratio_modules)


def test_update_ratio_is_the_median_of_dw_over_w() -> None:
    """One Linear, SGD without momentum: dw = lr * grad exactly, so the ratio can be recomputed."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    x = torch.randn(8, 4)
    twin = copy.deepcopy(lin)
    run = train_steps(lin, (x,), {}, TrainingOptions(steps=3, optimizer=choose_optimizer("sgd", 0.1)))
    ratios = []
    target = None
    for step in range(3):
        out = twin(x)
        if target is None:  # the inferred target: fixed random labels from the run's seed
            gen = torch.Generator().manual_seed(0)
            target = torch.randint(0, 3, (8,), generator=gen)
        loss = nn.functional.cross_entropy(out, target)
        twin.zero_grad()
        loss.backward()
        w = torch.cat([twin.weight.detach().flatten(), twin.bias.detach().flatten()])
        g = torch.cat([twin.weight.grad.flatten(), twin.bias.grad.flatten()])
        ratios.append(float((0.1 * g).norm() / w.norm()))
        assert run.loss[step] == pytest.approx(float(loss.detach()), rel=1e-5)
        with torch.no_grad():
            for p in twin.parameters():
                p -= 0.1 * p.grad
    assert run.update_ratio[""] == pytest.approx(sorted(ratios)[1], rel=1e-4)


@pytest.mark.parametrize("where", ["error", "interrupt"])
def test_model_untouched_after_an_error_or_ctrl_c_halfway(where: str) -> None:
    model = user_owned_model()
    before = snapshot(model)
    calls = []

    def loss_fn(out: torch.Tensor, target: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise (KeyboardInterrupt() if where == "interrupt" else ValueError("boom at step 3"))
        return out.square().mean()

    expected = KeyboardInterrupt if where == "interrupt" else InspectrError
    with pytest.raises(expected) as info:
        inspectr.inspect(model, steps=10, loss_fn=loss_fn, optimizer="sgd", lr=0.5, momentum=0.9)
    assert len(calls) == 3
    if where == "error":
        assert "boom at step 3" in str(info.value) and "loss" in str(info.value)
    assert_same(before, snapshot(model))


def test_model_untouched_after_training() -> None:
    model = user_owned_model()
    before = snapshot(model)
    r = inspectr.inspect(model, steps=8, optimizer="adamw", lr=0.05)
    assert r.training is not None and r.training.steps_run == 8
    assert r.module("head").distance_from_init > 0  # it did train, on the model itself
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", ["resnet18", "sick_frozen_bn", "vit_tiny"])
def test_spec_models_untouched_after_training(name: str) -> None:
    """BatchNorm running statistics, frozen parameters, the model's RNG: all as before."""
    from inspectr.core.sources.loader import load

    loaded = load(name, {}, None, False, "cpu", 0)
    model = loaded.model
    before = snapshot(model)
    specs = ["2,3,32,32"] if name == "resnet18" else None
    inspectr.inspect(None, loaded=loaded, steps=3, input_specs=specs)
    assert_same(before, snapshot(model))


def test_cancelled_between_steps_leaves_the_model() -> None:
    from inspectr.core.probe.run import ProbeCancelled

    model = user_owned_model()
    x = model.example_input()
    before = snapshot(model)
    seen = []

    def cancelled() -> bool:
        return len(seen) >= 2

    options = TrainingOptions(steps=10, on_step=lambda k, loss: seen.append(k), cancelled=cancelled)
    with pytest.raises(ProbeCancelled):
        train_steps(model, (x,), {}, options)
    assert seen == [1, 2]
    assert_same(before, snapshot(model))


# ---------------------------------------------------------------- loss inference


class Returns(nn.Module):
    """Returns what ``make`` builds from a Linear's output."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 24)
        self.make = make

    def forward(self, x: torch.Tensor) -> Any:
        return self.make(self.lin(x))


@pytest.mark.parametrize(("make", "name"), [
    (lambda h: h, "cross-entropy over 24 classes against fixed random labels"),
    (lambda h: h.reshape(4, 3, 8), "token cross-entropy over 8 classes against fixed random tokens"),
    (lambda h: h.reshape(4, 2, 3, 4), "mean squared error to a fixed random target"),
    (lambda h: h[:, 0], "mean squared error to a fixed random target"),
    (lambda h: {"loss": h.square().mean(), "logits": h}, "the model's own loss (output.loss)"),
    (lambda h: {"logits": h.reshape(4, 3, 8)}, "token cross-entropy over 8 classes against fixed random tokens"),
    (lambda h: (h, h[:, :1]), "cross-entropy over 24 classes against fixed random labels; "
                              "mean squared error to a fixed random target (summed over 2 outputs)"),
])
def test_loss_inferred_from_the_output(make: Any, name: str) -> None:
    torch.manual_seed(0)
    r = inspectr.inspect(Returns(make), inputs=torch.randn(4, 6), steps=20, lr=1e-2)
    assert r.training.loss_name == name
    assert r.training.loss[-1] < r.training.loss[0]  # each of them trains
    assert problems(r) == []


def test_inferred_targets_are_fixed_and_leave_the_rng() -> None:
    out = torch.randn(5, 7, requires_grad=True)
    state = torch.get_rng_state()
    a = objective_for(out, None, None, 3, False).compute(out)
    b = objective_for(out, None, None, 3, False).compute(out)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


def test_user_target_and_loss_fn() -> None:
    torch.manual_seed(0)
    model = Returns(lambda h: h)
    x = torch.randn(4, 6)
    labels = torch.tensor([0, 1, 2, 3])
    r = inspectr.inspect(model, inputs=x, steps=3, target=labels)
    assert r.training.loss_name == "cross-entropy over 24 classes against the given target"
    assert r.training.loss[0] == pytest.approx(float(nn.functional.cross_entropy(model(x), labels).detach()), rel=1e-5)
    r = inspectr.inspect(model, inputs=x, steps=3, target=torch.zeros(4, 24),
                         loss_fn=lambda out, t: (out - t).abs().mean())
    assert r.training.loss_name.endswith("(output, target)")
    assert r.training.loss[0] == pytest.approx(float(model(x).abs().mean().detach()), rel=1e-5)
    r = inspectr.inspect(model, inputs=x, steps=3, loss_fn=lambda out: out.square().mean())
    assert r.training.loss_name.endswith("(output)")


@pytest.mark.parametrize(("kwargs", "needles"), [
    ({"target": torch.zeros(3)}, ["does not fit", "loss_fn"]),
    ({"loss_fn": lambda out, t: out}, ["not a scalar", "loss.mean()"]),
    ({"loss_fn": lambda out, t: out.detach().sum()}, ["without a gradient path"]),
    ({"loss_fn": 3}, ["callable"]),
    ({"steps": 0}, ["--steps 0", "at least 1"]),
    ({"backward": False}, ["--no-backward"]),
])
def test_bad_training_requests_are_clear_errors(kwargs: dict[str, Any], needles: list[str]) -> None:
    kwargs = {"steps": 3, **kwargs}
    with pytest.raises(InspectrError) as info:
        inspectr.inspect(Returns(lambda h: h), inputs=torch.randn(4, 6), **kwargs)
    for needle in needles:
        assert needle in str(info.value)


def test_example_training_target_and_loss_fn_found_in_the_file(tmp_path: Any) -> None:
    path = tmp_path / "reg.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Reg(nn.Module):\n"
        "    example_training = {'optimizer': 'sgd', 'lr': 0.05, 'steps': 7}\n"
        "    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(3, 2)\n"
        "    def forward(self, x):\n        return self.lin(x)\n\n"
        "def example_input(batch_size=4):\n    return torch.randn(batch_size, 3)\n\n"
        "def example_target(batch_size=4):\n    return torch.zeros(batch_size, 2)\n\n"
        "def loss_fn(output, target):\n    return (output - target).abs().mean()\n"
    )
    r = inspectr.inspect(f"{path}:Reg", steps=True)
    assert r.training.steps == 7 and r.training.optimizer == "sgd" and r.training.lr == 0.05
    assert r.training.loss_name == "loss_fn(output, target)"
    r = inspectr.inspect(f"{path}:Reg", steps=3, lr=0.01, optimizer="adam")  # the caller's flags win
    assert (r.training.steps, r.training.optimizer, r.training.lr) == (3, "adam", 0.01)


# ---------------------------------------------------------------- findings


def test_sick_diverging_names_the_step_and_the_module() -> None:
    r = inspectr.inspect("sick_diverging", steps=True)
    (f,) = [f for f in r.findings if f.kind == "diverging"]
    assert (f.module, f.severity, f.detail["step"]) == ("head.variance", "error", 16)
    assert "step 16" in f.message and "Inf" in f.message
    assert r.training.nonfinite_step == 16 and r.training.steps_run == 16
    assert r.training.stopped == "the loss turned Inf at step 16"


def test_nan_gradients_from_a_finite_loss_name_the_step_and_the_op() -> None:
    r = inspectr.inspect("sick_nan_grad_training", steps=True)
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert (f.module, f.severity, f.detail["step"], f.detail["op"]) == ("compress", "error", 15, "torch.sqrt")
    assert f.message.startswith("Step 15's backward pass") and "torch.where" in f.detail["code"]
    tr = r.training
    # the run stops before step 15's update: every loss it ran is finite, the weights never saw NaN
    assert tr.steps_run == 15 and all(math.isfinite(x) for x in tr.loss)
    assert math.isnan(tr.grad_norm[-1]) and all(math.isfinite(x) for x in tr.grad_norm[:-1])
    assert (tr.nonfinite_grad_step, tr.nonfinite_grad_module, tr.nonfinite_step) == (15, "compress", None)
    assert tr.stopped == "the gradients turned NaN at step 15 (the loss was finite)"
    assert problems(r) == [("nonfinite_grad", "error", "compress")]  # nothing diverged: no second alarm


def test_nan_gradients_at_step_0_are_reported_once() -> None:
    r = inspectr.inspect("sick_nan_grad", steps=3)
    assert [f.module for f in r.findings if f.kind == "nonfinite_grad"] == ["compress"]
    assert "step" not in [f for f in r.findings if f.kind == "nonfinite_grad"][0].detail  # the probe's, at step 0
    assert r.training.nonfinite_grad_step == 1 and r.training.steps_run == 1
    assert "training stopped: the gradients turned NaN at step 1 (the loss was finite)" in r.probe.notes


def test_nan_gradients_born_in_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # sqrt at exactly 0 (a residual that cancels): infinite derivative, from the loss itself
        return torch.nn.functional.mse_loss(output, target) + torch.sqrt((output - output.detach()).square().mean())

    r = inspectr.inspect(model, inputs=torch.randn(8, 8), steps=3, loss_fn=loss_fn, target=torch.randn(8, 2))
    (f,) = [f for f in r.findings if f.kind == "nonfinite_grad"]
    assert f.module == "" and "the loss (outside every module)" in f.message and f.detail["op"] == "torch.sqrt"
    assert r.training.nonfinite_grad_step == 1 and r.training.nonfinite_grad_module is None


def test_sick_dying_relu_alive_at_step_0_dead_after() -> None:
    r = inspectr.inspect("sick_dying_relu", steps=True)
    (f,) = [f for f in r.findings if f.kind == "dying_units"]
    assert (f.module, f.severity) == ("act2", "error")
    assert r.module("act2").stats.dead_fraction == 0.0 and r.module("act2").end_dead_fraction == 1.0
    assert r.module("act1").end_dead_fraction < 0.5


class ReLUOut(nn.Module):
    """Linear, ReLU, Linear, ReLU: the last ReLU clips the outputs at 0."""

    def __init__(self, final: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8)]
        self.net = nn.Sequential(*layers, *([nn.ReLU()] if final else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_dying_output_relu_names_the_targets_range() -> None:
    r = inspectr.inspect("sick_relu_output", steps=True)
    (f,) = [f for f in r.findings if f.kind == "dying_units"]
    assert (f.module, f.severity, f.detail["output"]) == ("net.3", "error", True)
    assert f.detail["end_dead_fraction"] == 1.0 and f.detail["start_dead_fraction"] < 0.7
    lo, hi = f.detail["target_range"]
    assert lo < hi < 0 and f.detail["activation_range"] == [0.0, math.inf]
    assert "output units are dead" in f.message and "[0, ∞)" in f.message and f"{lo:.3g}" in f.message
    assert r.module("net.3").end_dead_fraction == 1.0 and r.training.target_range == (lo, hi)
    # the same network returning the last Linear's values fits the same targets: nothing to say
    twin = sample_models.GALLERY["sick_relu_output"].factory()
    twin.net = twin.net[:-1]
    r = inspectr.inspect(twin, steps=True)
    assert problems(r) == [] and r.training.loss[-1] < 0.5 * r.training.loss[0]


def test_dying_output_under_inspectrs_random_targets_says_so() -> None:
    # an image-to-image net ending in ReLU, no target given: mean squared error to N(0, 1) targets
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
    r = inspectr.inspect(model, inputs=torch.randn(4, 3, 8, 8), steps=20, lr=0.1)
    (f,) = [f for f in r.findings if f.kind == "dying_units"]
    assert f.module == "3" and "random targets inspectr drew" in f.message and "example_target" in f.message
    assert f.detail["target_range"][0] < 0 < f.detail["target_range"][1]


def test_dying_output_toward_reachable_targets_is_quiet() -> None:
    # regressed toward 0 everywhere: units that die output exactly their target
    torch.manual_seed(0)
    r = inspectr.inspect(ReLUOut(), inputs=torch.randn(32, 16), steps=20, lr=0.01, target=torch.zeros(32, 8))
    assert r.training.target_range == (0.0, 0.0) and r.module("net.3").end_dead_fraction >= 0.7
    assert [f for f in r.findings if f.kind == "dying_units"] == []


def test_squeezenet_relu_on_class_scores_stays_quiet() -> None:
    # its classifier ends Conv, ReLU, pool: under cross-entropy the ReLU dies on purpose
    r = inspectr.inspect("squeezenet1_1", steps=20, input_specs=["2,3,64,64"])
    assert r.training.target_range is None and r.module("classifier.2").end_dead_fraction >= 0.7
    assert problems(r) == []


def test_sick_not_learning_blames_the_softmax() -> None:
    r = inspectr.inspect("sick_not_learning", steps=True)
    (f,) = [f for f in r.findings if f.kind == "not_learning"]
    assert f.module == "net.5" and "Softmax" in f.message and f.detail["fraction"] > NOT_LEARNING_FRACTION
    twin = sample_models.GALLERY["sick_not_learning"].factory()
    twin.net = twin.net[:-1]  # the same network returning logits learns
    r = inspectr.inspect(twin, steps=20)
    assert problems(r) == []


def test_frozen_batchnorm_at_step_0_and_after_training() -> None:
    r = inspectr.inspect("sick_frozen_bn")
    (f,) = [f for f in r.findings if f.kind == "frozen_batchnorm_updating"]
    assert f.module == "" and len(f.detail["layers"]) == 20 and "bn1" in f.message
    r = inspectr.inspect("sick_frozen_bn", steps=5)
    (f,) = [f for f in r.findings if f.kind == "frozen_batchnorm_updating"]
    assert f.detail["max_drift"] > 0.01 and "moved by up to" in f.message
    # the fix: the frozen part in eval mode
    from inspectr.core.sources.loader import load

    loaded = load("sick_frozen_bn", {}, None, False, "cpu", 0)
    for name, m in loaded.model.named_modules():
        if name != "fc" and name:
            m.eval()
    r = inspectr.inspect(None, loaded=loaded, steps=3)
    assert [f for f in r.findings if f.kind == "frozen_batchnorm_updating"] == []


def test_stuck_parameters_behind_a_dead_relu() -> None:
    r = inspectr.inspect("sick_dead_relu", steps=5)
    stuck = sorted(f.module for f in r.findings if f.kind == "stuck_parameters")
    assert stuck == ["fc1", "fc2", "head"]
    assert "weight" in [f for f in r.findings if f.module == "head"][0].message


def test_unused_parameters_are_not_also_stuck() -> None:
    r = inspectr.inspect("sick_unused", steps=3)
    assert [f.module for f in r.findings if f.kind == "unused_parameters"] == ["aux_head"]
    assert [f for f in r.findings if f.kind == "stuck_parameters"] == []


class OneHugeLayer(nn.Module):
    """Four Linear layers; ``fc3``'s weights are drawn 10,000x too large, so Adam's steps barely
    move it: its update ratio sits far below the others'."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(16, 16) for _ in range(4))
        with torch.no_grad():
            self.fc3.weight.mul_(10000.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        x = torch.tanh(self.fc3(x) / 10000.0)
        return self.fc4(x)


def test_update_ratio_names_the_one_layer_outside_the_band() -> None:
    torch.manual_seed(0)
    r = inspectr.inspect(OneHugeLayer(), inputs=torch.randn(16, 16), steps=5)
    found = [(f.module, f.severity) for f in r.findings if f.kind == "update_ratio"]
    assert found == [("fc3", "warning")]
    assert r.module("fc3").update_ratio < 1e-5 < r.module("fc1").update_ratio


def test_training_skipped_when_the_probe_failed() -> None:
    r = inspectr.inspect("sick_config_driven", steps=5)
    assert r.training is None
    assert any(n.startswith("training skipped") for n in r.probe.notes)


@pytest.mark.parametrize("name", TRAIN_SICK)
def test_sick_only_under_training_is_clean_at_step_0(name: str) -> None:
    assert problems(inspectr.inspect(name)) == []


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_sample_models_train_without_alarms(name: str) -> None:
    r = inspectr.inspect(name, steps=20)
    assert r.training is not None and r.training.steps_run == 20, r.training
    assert problems(r) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_SMALL)
def test_torchvision_models_train_without_alarms(name: str) -> None:
    r = inspectr.inspect(name, steps=20, input_specs=["2,3,64,64"])
    assert r.training.steps_run == 20
    assert problems(r) == []
    assert r.training.loss[-1] < r.training.loss[0]


# ---------------------------------------------------------------- report and CLI


def test_json_carries_training_and_per_row_fields() -> None:
    from inspectr.report.render import export

    r = inspectr.inspect("lenet", steps=4)
    doc = strict_json(export(r, "json"))
    tr = doc["training"]
    assert tr["steps"] == 4 and len(tr["loss"]) == 4 and len(tr["grad_norm"]) == 4
    assert tr["loss_name"].startswith("cross-entropy") and tr["optimizer"] == "adamw" and tr["lr"] == 1e-3
    rows = {m["path"]: m for m in doc["modules"]}
    assert rows["fc1"]["update_ratio"] > 0 and rows["fc1"]["distance_from_init"] > 0
    assert rows[""]["end_dead_fraction"] is not None  # LeNet.forward calls F.relu: the root owns it
    assert strict_json(export(inspectr.inspect("lenet"), "json"))["training"] is None
    text = export(r, "text")
    assert "Training" in text and "AdamW (lr 0.001)" in text and "loss curve" in text
    md = export(r, "markdown")
    assert "## Training" in md and "| Module | Type | Update ratio |" in md
    assert "Training" in export(r, "html")


def test_nan_loss_is_valid_json() -> None:
    from inspectr.report.render import export

    doc = strict_json(export(inspectr.inspect("sick_diverging", steps=True), "json"))
    assert doc["training"]["loss"][-1] == "inf"
    assert doc["training"]["nonfinite_module"] == "head.variance"


def test_cli_steps_json_and_check() -> None:
    proc = run_cli("lenet", "--steps", "3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["training"]["steps"] == 3
    proc = run_cli("sick_diverging", "--check", "--steps")
    assert proc.returncode == 1, proc.stderr
    assert "diverging" in proc.stdout and "head.variance" in proc.stdout and "step 16" in proc.stdout
    assert "training: 16 of 20 steps" in proc.stdout


def test_cli_steps_names_nan_gradients() -> None:
    proc = run_cli("sick_nan_grad_training", "--check", "--steps")
    assert proc.returncode == 1, proc.stderr
    assert "nonfinite_grad" in proc.stdout and "compress" in proc.stdout and "Step 15" in proc.stdout
    proc = run_cli("sick_nan_grad_training", "--steps", "--format", "json")
    doc = strict_json(proc.stdout)
    assert (doc["training"]["nonfinite_grad_step"], doc["training"]["nonfinite_grad_module"]) == (15, "compress")
    assert doc["training"]["grad_norm"][-1] == "nan"


def test_cli_bad_steps_are_clean_errors() -> None:
    assert_clean_error(run_cli("lenet", "--report", "--steps", "0"), "--steps 0")
    assert_clean_error(run_cli("lenet", "--report", "--steps", "3", "--no-backward"), "--no-backward")
    assert_clean_error(run_cli("lenet", "--report", "--steps", "3", "--lr", "-1"), "--lr")
