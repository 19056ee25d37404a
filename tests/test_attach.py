"""Tests ``inspectr watch -- COMMAND``: real training scripts written to tmp_path, run unchanged
through the real CLI as a subprocess, with the watch attached by the sitecustomize."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REPO

from inspectr.core.runs.report import load_run

PY = sys.executable

LOOP = """\
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for i in range(STEPS):
    x = torch.randn(4, 8)
    loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    opt.zero_grad()
    loss.backward()
    opt.step()
print("trained", STEPS)
"""

ARGS_MAIN = """\
import argparse

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2))
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.bn(self.body(x)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for _ in range(args.steps):
        x = torch.randn(8, 8)
        loss = nn.functional.mse_loss(model(x), x[:, :1])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}, args.out)


if __name__ == "__main__":
    main()
"""

GAN = """\
import torch
from torch import nn


class GAN(nn.Module):  # one container holding both: each optimizer must get its own part
    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
        self.discriminator = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


torch.manual_seed(0)
gan = GAN()
G, D = gan.generator, gan.discriminator
opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
bce = nn.BCEWithLogitsLoss()
for step in range(20):
    real = torch.randn(8, 8) + 2
    fake = G(torch.randn(8, 4))
    loss_d = bce(D(real), torch.ones(8, 1)) + bce(D(fake.detach()), torch.zeros(8, 1))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = bce(D(fake), torch.ones(8, 1)) + 10.0
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
"""

DDP = """\
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(rank)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(12):
    x = torch.randn(4, 8)
    loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"rank {rank} of {dist.get_world_size()} done")
dist.destroy_process_group()
"""


def watch(tmp_path: Path, command: list[str], *options: str, env: dict[str, str] | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m inspectr watch OPTIONS -- COMMAND`` in tmp_path."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([PY, "-m", "inspectr", "watch", *options, "--", *command], cwd=tmp_path, env=full,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_plain_loop_is_watched_and_another_sitecustomize_still_runs(tmp_path: Path) -> None:
    write(tmp_path / "train.py", LOOP.replace("STEPS", "25"))
    # the environment's own sitecustomize must still run: the attach one chains to it
    write(tmp_path / "site" / "sitecustomize.py", "import os\nos.environ['USER_SITE_RAN'] = '1'\n")
    write(tmp_path / "probe_site.py", "import os\nprint('USER_SITE_RAN=' + os.environ.get('USER_SITE_RAN', '0'))\n")
    run = tmp_path / "runs" / "loop"
    proc = watch(tmp_path, [PY, "train.py"], "--run", str(run), "--every", "10",
                 env={"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "site")])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "trained 25"  # the script's own output, untouched
    report = load_run(run)
    assert report.run["status"] == "finished" and report.run["attached"] == "inspectr watch"
    assert report.run["model"] == "Sequential" and report.run["optimizer"] == "SGD"
    assert report.run["params"] == 8 * 16 + 16 + 16 + 1
    assert len(report.steps) == 25 and [s for s, _ in report.loss] == list(range(25))
    assert all(v is not None and v > 0 for _, v in report.loss)
    assert [s for s, _ in report.samples] == [0, 10, 20]
    assert f"open it: inspectr {run}" in proc.stderr and "no findings" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no status line when stderr is not a terminal
    chained = watch(tmp_path, [PY, "probe_site.py"], "--run", str(tmp_path / "r2"),
                    env={"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "site")])})
    assert "USER_SITE_RAN=1" in chained.stdout
    assert "nothing was recorded" in chained.stderr and chained.returncode == 0


def test_arguments_and_main_guard_and_training_is_bit_for_bit(tmp_path: Path) -> None:
    write(tmp_path / "train.py", ARGS_MAIN)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    bare = subprocess.run([PY, "train.py", "--steps", "30", "--lr", "3e-3", "--out", "bare.pt"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    proc = watch(tmp_path, [PY, "train.py", "--steps", "30", "--lr", "3e-3", "--out", "watched.pt"],
                 "--run", "runs/args", "--every", "5")
    assert proc.returncode == 0, proc.stderr
    a, b = torch.load(tmp_path / "bare.pt"), torch.load(tmp_path / "watched.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:  # weights and BatchNorm running statistics
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["opt"]["state"], b["opt"]["state"]
    assert all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    assert torch.equal(a["rng"], b["rng"])  # no random number drawn by the watch (dropout would differ)
    report = load_run(tmp_path / "runs" / "args")
    assert report.run["model"] == "Net" and len(report.steps) == 30
    assert report.run["command"][1:] == ["train.py", "--steps", "30", "--lr", "3e-3", "--out", "watched.pt"]
    assert {m["path"] for m in report.modules} >= {"body.0", "bn", "head"}


def test_python_dash_m_a_package_module(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "model.py", "from torch import nn\n\ndef make():\n"
          "    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))\n")
    write(tmp_path / "pkg" / "train.py", LOOP.replace("STEPS", "12").replace(
        "model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))", "from .model import make\nmodel = make()"))
    proc = watch(tmp_path, [PY, "-m", "pkg.train"], "--run", "runs/m", "--every", "4")
    assert proc.returncode == 0, proc.stderr
    report = load_run(tmp_path / "runs" / "m")
    assert len(report.steps) == 12 and len(report.loss) == 12


def test_a_gan_gets_one_watched_model_per_optimizer(tmp_path: Path) -> None:
    write(tmp_path / "gan.py", GAN)
    proc = watch(tmp_path, [PY, "gan.py"], "--run", "runs/gan", "--every", "5")
    assert proc.returncode == 0, proc.stderr
    first, second = load_run(tmp_path / "runs" / "gan"), load_run(tmp_path / "runs" / "gan" / "opt1")
    d_params = 8 * 16 + 16 + 16 + 1
    g_params = 4 * 16 + 16 + 16 * 8 + 8
    # the discriminator steps first; neither run holds the other's parameters (no stuck_parameters)
    assert first.run["params"] == d_params and second.run["params"] == g_params
    assert len(first.steps) == len(second.steps) == 20
    assert not any(f.kind == "stuck_parameters" for f in (*first.findings, *second.findings))
    # each optimizer's loss is what backward was called on before its own step
    assert all(v < 5 for _, v in first.loss) and all(v > 10 for _, v in second.loss)
    assert "open it: inspectr runs/gan/opt1" in proc.stderr
    shown = subprocess.run([PY, "-m", "inspectr", "runs/gan", "--width", "100"], cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "runs/gan/opt1" in shown.stdout  # `inspectr RUN` shows the second optimizer's run too


def test_torchrun_two_ranks_on_gloo_are_each_watched(tmp_path: Path) -> None:
    write(tmp_path / "ddp.py", DDP)
    torchrun = Path(PY).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [PY, "-m", "torch.distributed.run"]
    proc = watch(tmp_path, [*launcher, "--standalone", "--nproc-per-node", "2", "ddp.py"],
                 "--run", "runs/ddp", "--every", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rank 0 of 2 done" in proc.stdout and "rank 1 of 2 done" in proc.stdout
    # one run holds both ranks (rank 0 writes it): each rank's loss at every step
    report = load_run(tmp_path / "runs" / "ddp")
    assert report.run["world_size"] == "2" and [r["rank"] for r in report.ranks] == [0, 1]
    assert report.run["model"] == "DistributedDataParallel" and report.run["status"] == "finished"
    assert len(report.steps) == 12 and len(report.loss) == 12
    doc = report.to_dict()
    assert sorted({e["rank"] for e in doc["loss"]}) == [0, 1] and len(doc["loss"]) == 24
    assert not (tmp_path / "runs" / "ddp" / "rank1").exists()


def test_a_script_that_fails_keeps_its_traceback_and_exit_code(tmp_path: Path) -> None:
    write(tmp_path / "boom.py", LOOP.replace("STEPS", "10").replace(
        "    opt.step()\n", "    opt.step()\n    if i == 6:\n        raise ValueError('boom at 6')\n"))
    write(tmp_path / "exits.py", "import sys\nprint('bye')\nsys.exit(3)\n")
    proc = watch(tmp_path, [PY, "boom.py"], "--run", "runs/boom")
    assert proc.returncode == 1
    assert "Traceback (most recent call last):" in proc.stderr
    assert 'boom.py", line 14' in proc.stderr and "ValueError: boom at 6" in proc.stderr
    report = load_run(tmp_path / "runs" / "boom")
    assert report.run["status"] == "crashed" and len(report.steps) == 7
    exits = watch(tmp_path, [PY, "exits.py"], "--run", "runs/exits")
    assert exits.returncode == 3 and exits.stdout == "bye\n"


def test_halt_on_error_stops_the_script_at_the_nan_step(tmp_path: Path) -> None:
    write(tmp_path / "nan.py", LOOP.replace("STEPS", "10").replace(
        "    x = torch.randn(4, 8)\n", "    x = torch.randn(4, 8)\n    if i == 4:\n        x[0, 0] = float('nan')\n"))
    proc = watch(tmp_path, [PY, "nan.py"], "--run", "runs/nan", "--halt-on", "error")
    assert proc.returncode == 1 and "TrainingProblem: nonfinite at step 4" in proc.stderr
    report = load_run(tmp_path / "runs" / "nan")
    assert report.run["status"] == "halted"
    assert [(f.kind, f.detail["step"], f.detail["source"]) for f in report.findings] == [("nonfinite", 4, "input")]
    assert "error   nonfinite at step 4" in proc.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_signals_reach_the_command_and_its_death_by_signal_is_128_plus_n(tmp_path: Path) -> None:
    write(tmp_path / "sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([PY, "-m", "inspectr", "watch", "--run", "runs/s", "--", PY, "sleepy.py"],
                              cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline() == "up\n"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    parent = subprocess.Popen([PY, "-m", "inspectr", "watch", "--run", "runs/s", "--", PY, "sleepy.py"],
                              cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline() == "up\n"
    parent.send_signal(signal.SIGINT)  # no terminal here: the parent passes it on
    assert parent.wait(timeout=60) == 130
    assert parent.stderr is not None and "KeyboardInterrupt" in parent.stderr.read()


def test_bad_requests_are_one_paragraph_and_help_explains(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args, needle in ((["watch", "python", "train.py"], "needs the command to run after `--`"),
                         (["watch", "--run", "r", "--"], "no command after `--`"),
                         (["watch", "--every", "0", "--", "python", "x.py"], "--every 0 must be 1 or more"),
                         (["watch", "--", "no-such-command-xyz"], "'no-such-command-xyz' was not found")):
        proc = subprocess.run([PY, "-m", "inspectr", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and needle in proc.stderr and "Traceback" not in proc.stderr
    helped = subprocess.run([PY, "-m", "inspectr", "watch", "--help"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "inspectr watch -- python train.py" in helped.stdout
    assert "torchrun" in helped.stdout


def test_the_sitecustomize_costs_nothing_without_the_variables_and_waits_for_torch(tmp_path: Path) -> None:
    from inspectr.launch import ATTACH_DIR

    probe = ("import sys, json; before = sorted(m for m in sys.modules if m.startswith(('torch', 'inspectr'))); "
             "import torch; after = 'inspectr.core.runs.attach' in sys.modules; "
             "print(json.dumps([before, after, type(sys.modules['sitecustomize']).__name__]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTR_WATCH")}
    env["PYTHONPATH"] = os.pathsep.join([str(ATTACH_DIR), str(REPO)])
    off = subprocess.run([PY, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(off.stdout) == [[], False, "module"]
    on = subprocess.run([PY, "-c", probe], env=dict(env, INSPECTR_WATCH_RUN=str(tmp_path / "r")),
                        capture_output=True, text=True, timeout=120)
    assert json.loads(on.stdout) == [[], True, "module"]  # nothing before torch; attached once it is imported


ACCELERATE = """\
import torch
from accelerate import Accelerator
from torch import nn

accelerator = Accelerator(cpu=True)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
model, opt = accelerator.prepare(model, opt)
for _ in range(10):
    x = torch.randn(4, 8)
    loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    opt.zero_grad()
    accelerator.backward(loss)
    opt.step()
print("accelerate done")
"""


def test_accelerate_launch_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    launcher = Path(PY).parent / "accelerate"
    if not launcher.exists():
        pytest.skip("no accelerate command next to this Python")
    write(tmp_path / "acc.py", ACCELERATE)
    proc = watch(tmp_path, [str(launcher), "launch", "--cpu", "--num_processes", "1", "acc.py"],
                 "--run", "runs/acc", "--every", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "accelerate done" in proc.stdout
    report = load_run(tmp_path / "runs" / "acc")  # accelerate's AcceleratedOptimizer steps the inner one
    assert report.run["optimizer"] == "SGD" and len(report.steps) == 10 and len(report.loss) == 10


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_a_status_line_shows_on_a_terminal_only(tmp_path: Path) -> None:
    import pty

    write(tmp_path / "slow.py", LOOP.replace("STEPS", "160").replace("    opt.step()\n",
                                                                     "    opt.step()\n    time.sleep(0.025)\n")
          .replace("import torch\n", "import time\n\nimport torch\n", 1))
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PY, "-m", "inspectr", "watch", "--run", "runs/slow", "--every", "50", "--",
                             PY, "slow.py"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = seen.decode()
    assert "\r\x1b[2Kinspectr: " in text
    status = text.split("\r\x1b[2Kinspectr: ")[1].split("\r")[0]
    assert str(tmp_path / "runs" / "slow") in status and " · step " in status and "watch cost" in status


def test_a_command_killed_by_sigkill_gives_137_and_keeps_its_steps(tmp_path: Path) -> None:
    write(tmp_path / "killed.py", LOOP.replace("STEPS", "30").replace(
        "    opt.step()\n", "    opt.step()\n    if i == 12:\n        import os, signal, time\n"
        "        time.sleep(1.0)  # the writer thread commits step 10's sample (kill -9 keeps what is committed)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"))
    proc = watch(tmp_path, [PY, "killed.py"], "--run", "runs/killed", "--every", "5")
    assert proc.returncode == 128 + 9
    report = load_run(tmp_path / "runs" / "killed")  # every committed transaction survives kill -9
    assert report.run["status"] == "running" and [s["step"] for s in report.steps][:11] == list(range(11))
    assert "ended without closing the watch (killed?)" in proc.stderr
