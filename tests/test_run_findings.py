"""Tests the rules over a watched run's samples: healthy runs of many models, optimizers,
schedulers, clipping and AMP stay quiet, and each planted fault is named at its module and step."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torch import nn

import inspectr

F = nn.functional


def teacher_batches(steps: int, features: int = 8, classes: int = 3, batch: int = 32, seed: int = 1,
                    shape: tuple[int, ...] | None = None):
    """Learnable data: the labels are a fixed random linear teacher's argmax of the input's
    features (of the channel means of an image, of the mean over a sequence's positions)."""
    g = torch.Generator().manual_seed(seed)
    shape = shape or (features,)
    teacher = torch.randn(shape[0] if len(shape) == 3 else shape[-1], classes, generator=g)
    for _ in range(steps):
        x = torch.randn(batch, *shape, generator=g)
        z = x.mean((2, 3)) if len(shape) == 3 else x.mean(1) if len(shape) == 2 else x
        yield x, (z @ teacher).argmax(1)


def run_loop(model: nn.Module, opt: torch.optim.Optimizer, folder: Path, steps: int, every: int = 5,
             sched=None, clip: float | None = None, amp: bool = False, shape: tuple[int, ...] = (8,),
             classes: int = 3, batch: int = 32, poison=None):
    """A plain loop under the watch; ``poison(i, x) -> x`` plants a bad batch."""
    with inspectr.watch(model, opt, run=folder, every=every) as w:
        for i, (x, y) in enumerate(teacher_batches(steps, classes=classes, batch=batch, shape=shape)):
            if poison is not None:
                x = poison(i, x)
            with torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if sched is not None:
                sched.step()
            w.log(loss=loss, lr=opt.param_groups[0]["lr"])
    return inspectr.load_run(folder)


def found(report) -> list[tuple[str, str, int]]:
    return [(f.kind, f.module, f.detail.get("step")) for f in report.findings]


# ----------------------------------------------------------------------------- models
def mlp(act: type[nn.Module] = nn.ReLU, width: int = 32, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, width), act(), nn.Dropout(dropout), nn.Linear(width, width), act(),
                         nn.Linear(width, 3))


def bn_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32), nn.BatchNorm1d(32),
                         nn.ReLU(), nn.Linear(32, 3))


def ln_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 32),
                         nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 3))


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.proj(x)).mean(1))


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int):
    import math

    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / total)))


HEALTHY = {
    "sgd_momentum_steplr": lambda m: (torch.optim.SGD(m.parameters(), 0.05, momentum=0.9), "step"),
    "adam_onecycle": lambda m: (torch.optim.Adam(m.parameters(), 3e-3), "onecycle"),
    "adamw_warmup_cosine_clip": lambda m: (torch.optim.AdamW(m.parameters(), 3e-3, weight_decay=0.01), "cosine"),
    "rmsprop": lambda m: (torch.optim.RMSprop(m.parameters(), 1e-3), None),
}


@pytest.mark.parametrize("model_name", ["mlp_dropout", "bn_mlp", "ln_mlp", "conv_bn", "transformer"])
@pytest.mark.parametrize("optim_name", list(HEALTHY))
def test_healthy_runs_raise_no_alarm(tmp_path: Path, model_name: str, optim_name: str) -> None:
    steps, batch = 150, 32
    shape: tuple[int, ...] = (8,)
    if model_name == "mlp_dropout":
        model: nn.Module = mlp(dropout=0.1)
    elif model_name == "bn_mlp":
        model = bn_mlp()
    elif model_name == "ln_mlp":
        model = ln_mlp()
    elif model_name == "conv_bn":
        model, shape, steps, batch = conv_net(), (2, 6, 6), 100, 16
    else:
        model, shape, steps, batch = TinyTransformer(), (5, 4), 100, 16
    opt, kind = HEALTHY[optim_name](model)
    sched = {"step": lambda: torch.optim.lr_scheduler.StepLR(opt, 50, 0.5),
             "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps),
             "cosine": lambda: warmup_cosine(opt, 20, steps),
             None: lambda: None}[kind]()
    clip = 1.0 if kind == "cosine" else None
    amp = model_name in ("ln_mlp", "transformer") and optim_name in ("adamw_warmup_cosine_clip", "rmsprop")
    report = run_loop(model, opt, tmp_path / "r", steps, every=8, sched=sched, clip=clip, amp=amp, shape=shape,
                      batch=batch)
    assert report.findings == (), found(report)
    assert report.events == () and report.run["forward_order"]  # the rules had what they judge
    if model_name in ("bn_mlp", "conv_bn"):
        assert any((v.get("running_drift") or 0) > 0 for _, mods in report.samples for v in mods.values())
    losses = [v for _, v in report.loss]
    assert sum(losses[-20:]) < sum(losses[:20])  # it did learn: quiet because healthy, not blind


# ----------------------------------------------------------------------------- planted faults
def test_one_parameter_group_with_a_learning_rate_far_too_high(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.Adam([{"params": [*model[0].parameters(), *model[3].parameters()]},
                            {"params": model[5].parameters(), "lr": 1.0}], lr=1e-3)
    report = run_loop(model, opt, tmp_path / "r", 60, every=5)
    hits = [f for f in report.findings if f.kind == "update_ratio"]
    assert [(f.module, f.detail["step"]) for f in hits] == [("5", 0)]
    assert hits[0].detail["update_ratio"] > 0.1 and "far too fast" in hits[0].message


def test_units_dying_after_one_bad_batch(tmp_path: Path) -> None:
    model = mlp(width=64)
    opt = torch.optim.SGD(model.parameters(), 0.3)

    def poison(i: int, x: torch.Tensor) -> torch.Tensor:
        return x * -1000 if i == 22 else x  # one batch of wild values: a huge update

    report = run_loop(model, opt, tmp_path / "r", 60, every=5, poison=poison)
    (dying,) = [f for f in report.findings if f.kind == "dying_units"]
    assert (dying.module, dying.detail["step"], dying.detail["after_step"]) == ("4", 25, 20)
    assert dying.detail["start_dead_fraction"] < 0.7 <= dying.detail["dead_fraction"]
    assert ("grad_spike", "3", 22) in found(report)  # the bad batch itself


def test_the_frozen_backbone_recipe_moves_batchnorm_statistics(tmp_path: Path) -> None:
    """The seeds' fine-tuning tutorial: a ResNet-18 with every parameter frozen, a new head, SGD
    on the head only, model.train() left on: the backbone's BatchNorm running statistics move."""
    from torchvision.models import resnet18

    runs = {}
    for fixed in (False, True):
        torch.manual_seed(0)
        model = resnet18(weights=None)  # the tutorial loads pretrained weights; nothing is downloaded here
        for param in model.parameters():
            param.requires_grad = False
        model.fc = nn.Linear(model.fc.in_features, 2)
        opt = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
        model.train()
        if fixed:  # the fix the finding gives: the frozen part in eval mode
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        runs[fixed] = run_loop(model, opt, tmp_path / f"r{fixed}", 12, every=4, shape=(3, 32, 32), classes=2,
                               batch=4)
    (f,) = [f for f in runs[False].findings if f.kind == "frozen_batchnorm_updating"]
    assert (f.module, f.detail["step"]) == ("", 0)
    assert len(f.detail["layers"]) == 20 and f.detail["layers"][0] == "bn1"
    assert f.detail["max_drift"] > 1e-3 and "Call .eval()" in f.message
    assert "frozen_batchnorm_updating" not in {k for k, *_ in found(runs[True])}
    assert dict(runs[True].samples)[8]["bn1"]["running_drift"] == 0.0  # recorded, and still


def test_vanishing_gradients_through_a_deep_sigmoid_stack(tmp_path: Path) -> None:
    torch.manual_seed(0)
    body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())])
    model = nn.Sequential(nn.Linear(8, 16), body, nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    report = run_loop(model, opt, tmp_path / "r", 30, every=5)
    (f,) = [f for f in report.findings if f.kind == "vanishing_gradient"]
    assert f.detail["step"] == 0 and f.detail["ratio"] < 1e-5
    assert f.module == "1"  # the sigmoid stack between the input end and the head
    assert "exploding_gradient" not in {k for k, *_ in found(report)}


def test_exploding_gradients_through_a_badly_scaled_stack(tmp_path: Path) -> None:
    torch.manual_seed(0)
    body = nn.Sequential(*[nn.Linear(16, 16) for _ in range(10)])
    with torch.no_grad():
        for layer in body:
            nn.init.normal_(layer.weight, std=4 / 16 ** 0.5)  # a gain of about 4 per layer
    model = nn.Sequential(nn.Linear(8, 16), body, nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), 1e-9)
    report = run_loop(model, opt, tmp_path / "r", 30, every=5)
    (f,) = [f for f in report.findings if f.kind == "exploding_gradient"]
    assert f.detail["step"] == 0 and f.detail["ratio"] > 1e4
    assert f.module == "1"
    assert "vanishing_gradient" not in {k for k, *_ in found(report)}


def test_a_plateaued_loss_is_not_learning(tmp_path: Path) -> None:
    """It learns for 60 steps, then a scheduler bug sets the learning rate to 0."""
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 60 else 0.0)
    report = run_loop(model, opt, tmp_path / "r", 200, every=10, sched=sched, batch=256)
    (f,) = [f for f in report.findings if f.kind == "not_learning"]
    assert f.module == "" and 50 <= f.detail["step"] <= 100
    assert f.detail["steps"] >= 100


def test_not_learning_stays_quiet_on_short_runs_and_converged_ones() -> None:
    from inspectr.core.runs.findings import not_learning

    flat = [(i, 0.7) for i in range(300)]
    assert not_learning(flat[:60]) == []  # too short to judge
    assert [f.detail["step"] for f in not_learning(flat)] == [0]
    converged = [(i, 2.0 * 0.9 ** i) for i in range(300)]  # to about 0
    assert not_learning(converged) == []
    slow = [(i, 2.0 / (1 + i / 10)) for i in range(300)]  # still learning, slowly
    assert not_learning(slow) == []
    late = [(i, 2.0 / (1 + i / 10) if i < 200 else 0.2) for i in range(300)]  # flat for the last third only
    assert not_learning(late) == []
    floor = [(i, 2.0 if i < 50 else 0.3) for i in range(300)]  # flat for 5/6 of the run at 15% of its start
    assert [f.detail["step"] for f in not_learning(floor)] == [60]


def test_a_run_is_read_and_judged_without_importing_torch(tmp_path: Path) -> None:
    """The app and the CLI read runs while they grow: the store and every rule stay torch-free."""
    import os
    import subprocess
    import sys
    import textwrap

    from conftest import REPO

    model = bn_mlp()
    run_loop(model, torch.optim.Adam(model.parameters(), 1e-3), tmp_path / "r", 12, every=4)
    script = textwrap.dedent(f"""
        import sys
        from inspectr.core.runs.report import load_run
        report = load_run({str(tmp_path / "r")!r})
        assert len(report.samples) == 3 and report.samples[0][1]["1"]["running_drift"] > 0
        print("TORCH" if "torch" in sys.modules else "NO-TORCH")
    """)
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "NO-TORCH"


def test_diverging_needs_two_windows_above_the_band() -> None:
    """A bump the run recovers from in the next window is noise; a loss that stays up diverges."""
    from inspectr.core.runs.findings import diverging

    base = [1.0 - 0.01 * i for i in range(40)]
    bump = [(i, v) for i, v in enumerate(base + [2.0] * 10 + [0.55] * 30)]
    assert diverging(bump, []) == []
    stays = [(i, v) for i, v in enumerate(base + [2.0] * 20 + [1.9] * 20)]
    assert [f.detail["step"] for f in diverging(stays, [])] == [40]
