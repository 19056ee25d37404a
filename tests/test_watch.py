"""Tests inspectr.watch in real training loops: what a run records, the findings on planted faults
(each at its module and step), that watching never changes the training, and the run store read
back (also from the CLI, and after kill -9)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO
from torch import nn

import inspectr
from inspectr.core.runs.store import db_path

F = nn.functional


class Exp(nn.Module):
    """exp of its input: overflows to Inf on a batch of large values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 2))


def exp_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), Exp(), nn.Linear(16, 2))


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 4))


def batches(steps: int, shape: tuple[int, ...] = (8, 8), classes: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)


def train(model: nn.Module, opt: torch.optim.Optimizer, w=None, steps: int = 30, shape=(8, 8), classes=2,
          nan_at: int | None = None, scale_at: int | None = None, sched=None, clip: float | None = None) -> None:
    for i, (x, y) in enumerate(batches(steps, shape, classes)):
        if nan_at == i:
            x[3, 2] = float("nan")
        if scale_at == i:
            x = x * 1e4
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()
        if w is not None:
            w.log(loss=loss, lr=opt.param_groups[0]["lr"])


def kinds(report) -> list[tuple[str, str, int]]:
    return [(f.kind, f.module, f.detail.get("step")) for f in report.findings]


# ----------------------------------------------------------------------------- what is recorded
def test_a_run_records_every_step_and_the_sampled_modules(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=5) as w:
        train(model, opt, w, steps=23)
    report = inspectr.load_run(tmp_path / "r")
    d = report.to_dict()
    assert d["schema"] == "inspectr-run/2"
    assert d["run"]["status"] == "finished" and d["run"]["steps"] == 23 and d["run"]["optimizer"] == "AdamW"
    assert [e["step"] for e in d["loss"]] == list(range(23))
    assert all(isinstance(e["value"], float) for e in d["loss"])
    assert [s["step"] for s in d["samples"]] == [0, 5, 10, 15, 20]
    assert [e["step"] for e in d["scalars"]["lr"]] == list(range(23))
    mods = d["samples"][1]["modules"]
    for path in ("0", "3", "5"):  # the layers with parameters
        assert mods[path]["param_grad_norm"] > 0 and 0 < mods[path]["update_ratio"] < 1
        assert mods[path]["distance"] > 0
    assert mods["1"]["dead_fraction"] is not None and mods["1"]["grad_norm"] > 0  # the ReLU: probe statistics
    assert all(s["grad_norm"] > 0 and s["seconds"] > 0 for s in d["steps"])
    assert d["findings"] == []
    json.dumps(d)  # plain JSON


def test_sampled_values_are_the_real_ones(tmp_path: Path) -> None:
    """The gradient norm, update ratio and distance stored for step 10 are what an unwatched
    run of the same loop shows at step 10 (the watch changes nothing, so the runs agree)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=10) as w:
        train(model, opt, w, steps=11)
    sample = dict(inspectr.load_run(tmp_path / "r").samples)[10]["3"]

    plain = mlp()
    start = plain[3].weight.detach().clone(), plain[3].bias.detach().clone()
    opt2 = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    seen = {}

    def pre(o, a, k):
        if len(seen) == 0 and pre.n == 10:
            seen["grad"] = math.sqrt(plain[3].weight.grad.square().sum() + plain[3].bias.grad.square().sum())
            seen["w"] = plain[3].weight.detach().clone(), plain[3].bias.detach().clone()
        pre.n += 1
    pre.n = 0
    opt2.register_step_pre_hook(pre)
    train(plain, opt2, steps=11)
    w_now = plain[3].weight.detach(), plain[3].bias.detach()

    def norm(pair):
        return math.sqrt(sum(float(t.square().sum()) for t in pair))
    ratio = norm([a - b for a, b in zip(w_now, seen["w"])]) / norm(w_now)
    distance = norm([a - b for a, b in zip(w_now, start)]) / norm(start)
    assert sample["param_grad_norm"] == pytest.approx(seen["grad"], rel=1e-5)
    assert sample["update_ratio"] == pytest.approx(ratio, rel=1e-5)
    assert sample["distance"] == pytest.approx(distance, rel=1e-5)


def test_without_an_optimizer_log_marks_the_steps(tmp_path: Path) -> None:
    model = mlp()
    with inspectr.watch(model, run=tmp_path / "r", every=4) as w:
        for x, y in batches(9):
            loss = F.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.05 * p.grad
            w.log(loss=loss)
    report = inspectr.load_run(tmp_path / "r")
    assert [s for s, _ in report.loss] == list(range(9))
    assert [s for s, _ in report.samples] == [0, 4, 8]
    assert report.run["optimizer"] is None
    assert dict(report.samples)[4]["0"]["update_ratio"] > 0


# ----------------------------------------------------------------------------- findings
def test_a_nan_in_one_batch_is_named_the_input_at_its_step(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=10) as w:
        train(model, opt, w, nan_at=7)
    report = inspectr.load_run(tmp_path / "r")
    (f,) = [f for f in report.findings if f.kind == "nonfinite"]
    assert f.severity == "error" and f.detail["step"] == 7
    assert f.detail["source"] == "input" and f.detail["input_nonfinite"] is True
    assert "bad sample" in f.message
    assert report.steps[7]["nonfinite"] and not report.steps[6]["nonfinite"]


def test_a_layer_that_overflows_is_named_by_the_replay(tmp_path: Path) -> None:
    model = exp_net()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=10) as w:
        train(model, opt, w, scale_at=12)
    (f,) = [f for f in inspectr.load_run(tmp_path / "r").findings if f.kind == "nonfinite"]
    assert (f.module, f.detail["step"], f.detail["source"]) == ("1", 12, "module")
    assert f.detail["replayed"] is True and f.detail["input_nonfinite"] is False


def test_halt_on_error_raises_at_the_step_after_saving(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with pytest.raises(inspectr.TrainingProblem) as info:
        with inspectr.watch(model, opt, run=tmp_path / "r", every=10, halt_on="error") as w:
            train(model, opt, w, nan_at=7)
    assert info.value.finding.kind == "nonfinite" and info.value.finding.detail["step"] == 7
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())  # the NaN update never ran
    report = inspectr.load_run(tmp_path / "r")
    assert report.run["status"] == "halted" and len(report.steps) == 8
    assert kinds(report)[0] == ("nonfinite", "", 7)


def test_halt_on_error_without_an_optimizer_raises_from_log(tmp_path: Path) -> None:
    model = exp_net()
    with pytest.raises(inspectr.TrainingProblem) as info:
        with inspectr.watch(model, run=tmp_path / "r", every=4, halt_on="error") as w:
            for i, (x, y) in enumerate(batches(12)):
                loss = F.cross_entropy(model(x * 1e4 if i == 5 else x), y)
                model.zero_grad()
                loss.backward()
                w.log(loss=loss)
    f = info.value.finding
    assert (f.kind, f.module, f.detail["step"], f.detail["source"]) == ("nonfinite", "1", 5, "module")
    assert inspectr.load_run(tmp_path / "r").run["status"] == "halted"


@pytest.mark.parametrize("halt", [None, "error"])
def test_values_read_late_still_find_the_exact_step(tmp_path: Path, halt: str | None) -> None:
    """The path a GPU takes (per-step values stay on the device, read at sampled steps), run on
    CPU: the NaN of step 7 is recorded at step 7 when step 10 reads it, and halts there."""
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    w = inspectr.watch(model, opt, run=tmp_path / "r", every=10, halt_on=halt)
    stopped_at = None
    try:
        with w:
            w.eager = False  # what __enter__ sets for a model on an accelerator
            for i, (x, y) in enumerate(batches(30)):
                if i == 7:
                    x[3, 2] = float("nan")
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                stopped_at = i
                opt.step()
                w.log(loss=loss)
    except inspectr.TrainingProblem as problem:
        assert problem.finding.detail["step"] == 7
    report = inspectr.load_run(tmp_path / "r")
    (f,) = [f for f in report.findings if f.kind == "nonfinite"]
    assert (f.detail["step"], f.detail["source"]) == (7, "unreplayed")
    assert [s["step"] for s in report.steps if s["nonfinite"]][0] == 7
    assert [s for s, v in report.loss if v is not None and math.isnan(v)][0] == 7
    if halt:
        assert stopped_at == 10 and report.run["status"] == "halted"
    else:
        assert stopped_at == 29 and report.run["status"] == "finished"


def test_a_layer_left_out_of_the_optimizer_is_stuck(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.AdamW([*model[0].parameters(), *model[5].parameters()], 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=5) as w:
        train(model, opt, w, steps=16)
    report = inspectr.load_run(tmp_path / "r")
    assert kinds(report) == [("stuck_parameters", "3", 0)]
    assert report.findings[0].detail["left_out"] is True and "optimizer" in report.findings[0].message
    assert report.modules[4]["in_optimizer"] is False  # the store's modules table says so too


def test_a_learning_rate_spike_from_a_scheduler_is_named_at_its_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))  # nothing saturates
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 3000.0 if s == 40 else 1.0)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=10) as w:
        train(model, opt, w, steps=80, sched=sched)
    found = {f.kind: f for f in inspectr.load_run(tmp_path / "r").findings}
    # the update of step 40 used the spiked rate: the gradient of step 41 is the first to show it
    assert found["grad_spike"].detail["step"] == 41
    assert found["grad_spike"].module in {"0", "2"}
    assert found["diverging"].detail["step"] == 40


@pytest.mark.parametrize("case", ["adamw_cosine_clip", "sgd_step_bf16", "conv_adam_bn", "transformer_warmup"])
def test_healthy_runs_stay_quiet(tmp_path: Path, case: str) -> None:
    if case == "conv_adam_bn":
        model, shape, classes = conv_net(), (8, 3, 16, 16), 4
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        sched, clip = None, None
    elif case == "transformer_warmup":
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(8, 2, 32, dropout=0.1, batch_first=True)
        model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Flatten(), nn.Linear(40, 3))
        shape, classes = (8, 5, 8), 3
        opt = torch.optim.AdamW(model.parameters(), 3e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
        clip = 1.0
    else:
        model, shape, classes = mlp(), (8, 8), 2
        if case == "adamw_cosine_clip":
            opt = torch.optim.AdamW(model.parameters(), 1e-2)
            sched, clip = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 60), 0.5
        else:
            opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
            sched, clip = torch.optim.lr_scheduler.StepLR(opt, 20, 0.5), None
    with inspectr.watch(model, opt, run=tmp_path / "r", every=7) as w:
        if case == "sgd_step_bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                train(model, opt, w, steps=60, shape=shape, classes=classes, sched=sched, clip=clip)
        else:
            train(model, opt, w, steps=60, shape=shape, classes=classes, sched=sched, clip=clip)
    report = inspectr.load_run(tmp_path / "r")
    assert report.findings == ()
    assert report.events == () and len(report.samples) == 9


class Square(torch.autograd.Function):
    """A custom autograd Function: no module to hook inside it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * g


class OddNet(nn.Module):
    """A dict output holding a non-tensor, an in-place ReLU, a custom Function, an unused layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.act = nn.ReLU(inplace=True)
        self.unused = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> dict:
        h = self.act(self.fc(x))
        return {"logits": self.head(Square.apply(h) * 0.1), "note": "not a tensor", "n": 3}


def test_odd_models_are_watched(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = OddNet()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=3) as w:
        for x, y in batches(9):
            loss = F.cross_entropy(model(x)["logits"], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    report = inspectr.load_run(tmp_path / "r")
    assert report.events == () and report.findings == ()
    last = report.samples[-1][1]
    assert last["act"]["dead_fraction"] is not None and last["head"]["update_ratio"] > 0
    # no gradient (param_grad_norm None), so it never moved: measured, not judged stuck
    assert (last["unused"]["param_grad_norm"], last["unused"]["update_ratio"]) == (None, 0.0)


# ----------------------------------------------------------------------------- never harm training
def _state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: {n: (t.clone() if isinstance(t, torch.Tensor) else t) for n, t in s.items()}
             for k, s in opt.state_dict()["state"].items()},
            torch.get_rng_state())


def _equal(a: tuple, b: tuple) -> bool:
    sa, oa, ra = a
    sb, ob, rb = b
    return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
            and oa.keys() == ob.keys() and all(
                all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
                    for x, y in zip(oa[k].values(), ob[k].values())) for k in oa)
            and torch.equal(ra, rb))


@pytest.mark.parametrize("every", [1, 5])
def test_a_watched_run_ends_bit_for_bit_as_an_unwatched_one(tmp_path: Path, every: int) -> None:
    """Dropout draws from the global RNG, BatchNorm moves its buffers: the watch must change
    neither, nor the weights nor AdamW's moments."""
    runs = []
    for watched in (False, True):
        model = conv_net()
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        torch.manual_seed(123)
        if watched:
            with inspectr.watch(model, opt, run=tmp_path / "r", every=every) as w:
                train(model, opt, w, steps=12, shape=(4, 3, 16, 16), classes=4)
        else:
            train(model, opt, None, steps=12, shape=(4, 3, 16, 16), classes=4)
        runs.append(_state(model, opt))
    assert _equal(runs[0], runs[1])
    assert len(inspectr.load_run(tmp_path / "r").samples) == len(range(0, 12, every))


class Hostile:
    """A forward output whose field raises when read: the watch's hook fails on it."""

    __dataclass_fields__ = {"value": None}

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    @property
    def value(self) -> torch.Tensor:
        raise RuntimeError("this field cannot be read")


def _hostile(self_module: nn.Module, x: torch.Tensor) -> Hostile:
    return Hostile(nn.functional.linear(x, self_module.weight, self_module.bias))


def test_an_exception_in_a_hook_is_recorded_and_that_part_switches_off(tmp_path: Path) -> None:
    class Wrap(nn.Linear):
        def forward(self, x: torch.Tensor) -> Hostile:  # type: ignore[override]
            return _hostile(self, x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Wrap(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.inner(x).t))

    states = []
    for watched in (False, True):
        torch.manual_seed(0)
        model = Net()
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        if watched:
            with pytest.warns(RuntimeWarning, match="activations part failed"):
                with inspectr.watch(model, opt, run=tmp_path / "r", every=2) as w:
                    train(model, opt, w, steps=6)
        else:
            train(model, opt, None, steps=6)
        states.append(_state(model, opt))
    assert _equal(states[0], states[1])
    report = inspectr.load_run(tmp_path / "r")
    assert [(e["step"], e["part"]) for e in report.events] == [(0, "activations")]
    assert "this field cannot be read" in report.events[0]["message"]
    assert report.run["parts_off"] == ["activations"]
    assert [s for s, _ in report.samples] == [0, 2, 4]  # the rest of the sampling went on
    assert len(report.loss) == 6


def test_an_unwritable_run_folder_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with inspectr.watch(model, opt, run=blocker / "run", every=2) as w:
            train(model, opt, w, steps=6)
    mine = [c for c in caught if "inspectr.watch" in str(c.message)]
    assert len(mine) == 1 and "cannot be written" in str(mine[0].message)
    with pytest.raises(inspectr.InspectrError, match="holds no inspectr run"):
        inspectr.load_run(blocker / "run")


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"every": 0}, "every=0"),
    ({"halt_on": "warning"}, "halt_on='warning'"),
    ({"optimizer": "adam"}, "must be a torch.optim.Optimizer"),
])
def test_bad_arguments_say_what_to_do(tmp_path: Path, kwargs: dict, text: str) -> None:
    with pytest.raises(inspectr.InspectrError, match=text) as info:
        inspectr.watch(mlp(), **{"run": tmp_path / "r", **kwargs})
    assert info.value.hint
    with pytest.raises(inspectr.InspectrError, match="nn.Module"):
        inspectr.watch("resnet18")


def test_log_outside_the_block_and_non_scalars_are_refused(tmp_path: Path) -> None:
    model = mlp()
    w = inspectr.watch(model, run=tmp_path / "r")
    with pytest.raises(inspectr.InspectrError, match="outside"):
        w.log(loss=1.0)
    with w:
        with pytest.raises(inspectr.InspectrError, match="shape"):
            w.log(loss=torch.ones(3))
        with pytest.raises(inspectr.InspectrError, match="not a number"):
            w.log(loss="low")


# ----------------------------------------------------------------------------- the store
LOOP = """
import sys, torch, inspectr
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.AdamW(model.parameters(), 1e-3)
with inspectr.watch(model, opt, run=sys.argv[1], every=1) as w:
    step = 0
    while True:
        x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        w.log(loss=loss)
        step += 1
"""


def test_kill_9_leaves_a_readable_run_read_while_it_grew(tmp_path: Path) -> None:
    run = tmp_path / "r"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(LOOP), str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not seen or seen[-1] < 30):
            if db_path(run).is_file():
                try:
                    seen.append(len(inspectr.load_run(run).steps))  # another process, mid-run
                except inspectr.InspectrError:
                    pass  # the schema is being created
            time.sleep(0.05)
        assert seen and seen[-1] >= 30, proc.stderr.read().decode() if proc.poll() is not None else seen
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    report = inspectr.load_run(run)
    assert report.run["status"] == "running"  # it never finished
    assert len(report.steps) >= seen[-1]
    assert [s for s, _ in report.samples][: seen[-1]] == list(range(seen[-1]))
    assert len(set(seen)) > 1  # it was read several times while it grew


def test_the_store_is_plain_sqlite(tmp_path: Path) -> None:
    import sqlite3

    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=5) as w:
        train(model, opt, w, steps=10)
    conn = sqlite3.connect(db_path(tmp_path / "r"))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = conn.execute("SELECT m.path, s.update_ratio FROM samples s JOIN modules m ON m.id = s.module "
                        "WHERE s.step = 5 AND s.update_ratio IS NOT NULL ORDER BY m.path").fetchall()
    assert [p for p, _ in rows] == ["0", "3", "5"]
    assert conn.execute("SELECT count(*) FROM steps WHERE loss IS NOT NULL").fetchone() == (10,)


def test_a_second_run_in_the_same_folder_keeps_the_first(tmp_path: Path) -> None:
    """Nothing the user owns is lost: the earlier run (WAL included) moves to run.1.sqlite."""
    import sqlite3

    for steps in (10, 6):
        model = mlp()
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        with pytest.warns(RuntimeWarning, match="kept as") if steps == 6 else contextlib.nullcontext():
            with inspectr.watch(model, opt, run=tmp_path / "r", every=5) as w:
                train(model, opt, w, steps=steps)
    assert inspectr.load_run(tmp_path / "r").to_dict()["run"]["steps"] == 6
    kept = sqlite3.connect(tmp_path / "r" / "run.1.sqlite")
    assert kept.execute("SELECT count(*) FROM steps WHERE loss IS NOT NULL").fetchone() == (10,)


def test_growth_is_bounded_by_thinning_older_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectr.core.runs import store

    monkeypatch.setattr(store, "MAX_SAMPLES", 8)
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=1) as w:
        train(model, opt, w, steps=30)
    report = inspectr.load_run(tmp_path / "r")
    steps = [s for s, _ in report.samples]
    assert len(steps) <= 8 and steps[0] == 0
    assert steps[-4:] == [26, 27, 28, 29]  # the recent past at full resolution
    assert len(report.steps) == 30 and len(report.loss) == 30  # per-step rows are all kept


# ----------------------------------------------------------------------------- the CLI on a run
def test_cli_on_a_run_folder(tmp_path: Path) -> None:
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "ok", every=5) as w:
        train(model, opt, w, steps=10)
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "bad", every=5) as w:
        train(model, opt, w, steps=10, nan_at=4)
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "inspectr", *args], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)

    out = cli(str(tmp_path / "ok"), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(inspectr.load_run(tmp_path / "ok").to_json())
    out = cli(str(tmp_path / "bad"), "--check")
    assert out.returncode == 1 and "nonfinite  step 4" in out.stdout
    out = cli(str(tmp_path / "ok"), "--check")
    assert out.returncode == 0 and "0 error(s)" in out.stdout
    out = cli(str(tmp_path / "bad"), "--report", "--width", "120")
    assert out.returncode == 1 and "modules at step 10" not in out.stdout and "nonfinite" in out.stdout
    assert "watch cost" in out.stdout and "update ratio" in out.stdout
    out = cli(str(tmp_path / "ok"), "--format", "html")
    assert out.returncode == 2 and "--format json" in out.stderr and "Traceback" not in out.stderr


def test_a_run_of_the_older_schema_says_so(tmp_path: Path) -> None:
    import sqlite3

    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / "run.sqlite")  # inspectr-run/1: no rank column
    conn.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "INSERT INTO meta VALUES ('schema', '\"inspectr-run/1\"');"
                       "CREATE TABLE steps(step INTEGER PRIMARY KEY, loss REAL);")
    conn.commit()
    conn.close()
    with pytest.raises(inspectr.InspectrError, match="schema inspectr-run/1; this one reads inspectr-run/2"):
        inspectr.load_run(folder)
