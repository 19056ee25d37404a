"""Provides ``inspectr watch [--run DIR] [--every N] [--halt-on error] -- COMMAND ...``: runs the
user's command unchanged with the watch attached inside every Python process it starts, then
prints a summary of the runs it recorded; the command's exit code is the exit code.

How: this package's ``_attach`` folder (one ``sitecustomize.py``) goes first on the command's
``PYTHONPATH`` and the settings go in ``INSPECTR_WATCH_*`` variables (``core.runs.attach_env``);
Python's ``site`` imports it in every process, torchrun's ranks included. Nothing is written
into the user's environment or files; torch is never imported in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from inspectr.core.runs.attach_env import ENV_COMMAND, ENV_EVERY, ENV_HALT_ON, ENV_RUN, ENV_STATUS
from inspectr.errors import InspectrError

ATTACH_DIR = Path(__file__).resolve().parent / "_attach"
FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

DESCRIPTION = """\
Run a training command unchanged and watch it: every Python process the command starts gets
inspectr.watch attached to the first optimizer that steps (and to a second one: a GAN), on the
model(s) holding its parameters. No change to your code.

  inspectr watch -- python train.py --lr 3e-4
  inspectr watch --run runs/exp1 --every 50 -- python -m mypkg.train
  inspectr watch --run runs/ddp -- torchrun --nproc-per-node 2 train.py
  inspectr watch -- accelerate launch train.py

The run: RUN holds the first optimizer's run, RUN/opt1 a second optimizer's; under
torch.distributed, one run holds every rank. The loss curve is what backward() was
called on (a one-element tensor) before each step. On a terminal a status line shows on stderr;
at the end a summary of the findings and the command to open the run (inspectr RUN).
The exit code is the command's own (128+N when a signal N ended it)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspectr watch", usage="inspectr watch [--run DIR] [--every N] "
                                "[--halt-on error] -- COMMAND [ARGS...]", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="DIR", help="the run folder (default runs/NAME-TIME, NAME from the script); "
                   "a run already there is kept as run.N.sqlite")
    p.add_argument("--every", type=int, default=50, metavar="N", help="sample per-module statistics every N "
                   "optimizer steps (default 50)")
    p.add_argument("--halt-on", choices=("error",), default=None, help="stop the command (inspectr.TrainingProblem "
                   "raised in optimizer.step()) at the first error finding, after the run is saved")
    return p


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """The options before ``--`` and the command after it."""
    if "--" not in argv:
        if any(a in ("-h", "--help") for a in argv):
            return argv, []
        raise InspectrError("inspectr watch needs the command to run after `--`"
                            + (f" (got {' '.join(argv)})." if argv else "."),
                            "E.g. inspectr watch --run runs/exp1 -- python train.py --lr 3e-4")
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def default_run(command: list[str]) -> str:
    """runs/NAME-YYYYmmdd-HHMMSS, NAME the script or module the command runs."""
    name = Path(command[0]).name
    for i, a in enumerate(command):
        if a.endswith(".py"):
            name = Path(a).stem
            break
        if a == "-m" and i + 1 < len(command):
            name = command[i + 1].rpartition(".")[2]
            break
    return f"runs/{name or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"


def child_env(run: Path, every: int, halt_on: str | None, command: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ATTACH_DIR) + (os.pathsep + path if path else "")
    env[ENV_RUN] = str(run.resolve())
    env[ENV_EVERY] = str(every)
    env[ENV_COMMAND] = json.dumps(command)
    env[ENV_STATUS] = "1" if sys.stderr.isatty() else "0"
    if halt_on:
        env[ENV_HALT_ON] = halt_on
    else:
        env.pop(ENV_HALT_ON, None)
    return env


def watch_main(argv: list[str]) -> int:
    """``inspectr watch ...``; returns the command's exit code (2 for a bad request of ours)."""
    options, command = split_command(argv)
    args = build_parser().parse_args(options)
    if not command:
        raise InspectrError("inspectr watch: no command after `--`.",
                            "E.g. inspectr watch -- python train.py")
    if args.every < 1:
        raise InspectrError(f"inspectr watch: --every {args.every} must be 1 or more.",
                            "E.g. --every 50 samples the per-module statistics every 50 optimizer steps.")
    run = Path(args.run or default_run(command))
    env = child_env(run, args.every, args.halt_on, command)
    started = time.time()
    code = run_command(command, env)
    print_summary(run, started, command)
    return code


def run_command(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end with signals passed on; its exit code (128+N for signal N)."""
    proc: subprocess.Popen[bytes] | None = None
    terminal_group = _terminal_sends_sigint()

    def forward(signum: int, frame: Any) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    def on_sigint(signum: int, frame: Any) -> None:
        if not terminal_group:  # Ctrl-C on a terminal reaches the command's process group itself
            forward(signum, frame)

    previous = {}
    for name in ("SIGINT", *FORWARDED):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, on_sigint if name == "SIGINT" else forward)
    try:
        try:
            proc = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            raise InspectrError(f"inspectr watch: the command {command[0]!r} was not found.",
                                "Check its spelling and PATH, e.g. inspectr watch -- python train.py") from None
        except PermissionError:
            raise InspectrError(f"inspectr watch: the command {command[0]!r} cannot be run (permission denied).",
                                "Run a script through its interpreter: inspectr watch -- python train.py") from None
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _terminal_sends_sigint() -> bool:
    """True when a terminal's Ctrl-C reaches this process group (and so the command) directly."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


def recorded_runs(run: Path, since: float = 0.0) -> list[Path]:
    """The run folders under ``run`` (RUN, then RUN/optN for further optimizers) started after ``since``."""
    candidates = [run, *sorted(run.glob("opt*"), key=_opt_key)]
    return [f for f in candidates if (f / "run.sqlite").is_file() and _started(f) >= since - 1.0]


def _opt_key(p: Path) -> tuple[int, str]:
    digits = p.name[3:]
    return (int(digits) if digits.isdigit() else 1 << 30, p.name)


def _started(folder: Path) -> float:
    from inspectr.core.runs.store import read_tables

    try:
        meta = {k: v for k, v in read_tables(folder)["meta"]}
        return float(json.loads(meta.get("started", "0")))
    except Exception:
        return 0.0


def print_summary(run: Path, started: float, command: list[str]) -> None:
    """After the command: per recorded run, its facts, findings and the command to open it (stderr)."""
    from inspectr.core.runs.report import load_run

    out = sys.stderr
    runs = recorded_runs(run, started)
    if not runs:
        out.write(f"inspectr watch: nothing was recorded: no optimizer stepped in `{' '.join(command)}` "
                  f"(or its Python processes could not import torch); {run} holds no new run.\n")
        return
    for folder in runs:
        try:
            report = load_run(folder)
        except InspectrError as err:
            out.write(f"inspectr watch: {err}\n")
            continue
        meta = report.run
        wall = (meta.get("ended") or time.time()) - (meta.get("started") or started)
        cost = meta.get("watch_seconds")
        status = meta.get("status", "?")
        if status == "running":
            status = "ended without closing the watch (killed?); the steps before are in the run"
        facts = [meta.get("model", "?"), meta.get("optimizer") or "no optimizer", f"{len(report.steps):,} steps",
                 status]
        if meta.get("rank") is not None:
            facts.insert(0, f"rank {meta['rank']}")
        if cost is not None and wall > 0:
            facts.append(f"watch cost {cost:.2f} s of {wall:.1f} s watched (attaching {meta.get('attach_seconds', 0):.2f} s)")
        out.write(f"inspectr watch: {folder} · {' · '.join(facts)}\n")
        if meta.get("loss_note"):
            out.write(f"  {meta['loss_note']}\n")
        for f in report.findings:
            step = f.detail.get("step")
            where = f" at step {step}" if step is not None else ""
            out.write(f"  {f.severity:<7} {f.kind}{where}{' · ' + f.module if f.module else ''}: {f.message}\n")
        if not report.findings:
            out.write("  no findings\n")
        out.write(f"  open it: inspectr {shlex.quote(str(folder))}\n")
    out.flush()
