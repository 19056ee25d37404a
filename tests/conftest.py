"""Shared helpers: running the CLI as a subprocess and writing small user model files."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist runs one worker per core: with torch's default of one thread per core in each,
# the workers fight over the cores and the suite runs twice as slow. One thread per worker
# (and per CLI subprocess it starts, through the environment) keeps every core busy once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if str(REPO) not in sys.path:  # so `import sample_models` works whatever the rootdir
    sys.path.insert(0, str(REPO))

# A small user model: an input layer, a nested block and a head. 389 parameters with the
# default hidden=16 (21 * hidden + 53 in general): fc_in 12*16 + 16 = 208,
# body.deep_fc 16*8 + 8 = 136, head 8*5 + 5 = 45.
USER_MODEL = '''\
"""A small user model for inspectr's tests."""

from collections import OrderedDict

import torch
from torch import nn


class Net(nn.Module):
    """A tiny MLP with a nested block."""

    def __init__(self, hidden: int = 16, num_classes: int = 5):
        super().__init__()
        self.fc_in = nn.Linear(12, hidden)
        self.body = nn.Sequential(OrderedDict(deep_fc=nn.Linear(hidden, 8), deep_act=nn.ReLU()))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.body(torch.tanh(self.fc_in(x))))
'''
USER_MODEL_PARAMS = 389


def user_model_params(hidden: int = 16, num_classes: int = 5) -> int:
    return 12 * hidden + hidden + hidden * 8 + 8 + 8 * num_classes + num_classes

# The same model, telling inspectr its input.
USER_MODEL_WITH_EXAMPLE = USER_MODEL + '''
    def example_input(self, batch_size: int = 4):
        return torch.randn(batch_size, 3, 12)
'''


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a CLI run: ``env`` added, the repo first on ``PYTHONPATH``."""
    full = dict(os.environ)
    extra = dict(env or {})
    paths = [str(REPO)]
    if extra.get("PYTHONPATH"):
        paths.append(extra.pop("PYTHONPATH"))
    full.update(extra)
    full["PYTHONPATH"] = os.pathsep.join(paths)
    full.pop("FORCE_COLOR", None)
    full.setdefault("COLUMNS", "120")
    return full


def run_cli(*args: str, cwd: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m inspectr ARGS`` with stdin closed (not a TTY) and the repo on PYTHONPATH.

    ``env`` entries are added to the environment; a ``PYTHONPATH`` in it goes after the repo root.
    """
    return subprocess.run(
        [sys.executable, "-m", "inspectr", *map(str, args)],
        cwd=cwd,
        env=_cli_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Runs ``python -m inspectr`` and, at its exit, writes its own peak resident memory (VmHWM, KiB)
# to the file named first: the process's own address space only. ``ru_maxrss`` of a child would
# also hold the pytest worker's size at the fork (exec folds it in), gigabytes after the sweep.
_PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(kib)
atexit.register(peak)
sys.argv[0] = "inspectr"
runpy.run_module("inspectr", run_name="__main__", alter_sys=True)
"""


def run_cli_peak_rss(*args: str, out_dir: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """``run_cli`` plus the peak resident memory of that one run, in KiB (Linux)."""
    peak = out_dir / "peak-kib.txt"
    proc = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, str(peak), *map(str, args)],
                          env=_cli_env(None), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    return proc, int(peak.read_text())


def live_tensors() -> int:
    """How many tensors are alive after a full collection (for leak checks: compare two counts)."""
    import torch

    gc.collect()
    # type(), not isinstance: isinstance reads lazy module attributes, which warn
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def strict_json(text: str) -> Any:
    """json.loads that rejects NaN / Infinity literals (which are not JSON)."""

    def reject(const: str) -> Any:
        raise ValueError(f"invalid JSON literal {const}")

    return json.loads(text, parse_constant=reject)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, stderr one paragraph starting with ``error:``, no traceback; returns the message."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    err = proc.stderr.strip()
    assert err.startswith("error:"), err
    assert "Traceback" not in err, err
    assert err.count("error:") == 1, err
    assert "\n\n" not in err, err  # one paragraph
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def write_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text) if text.startswith("\n") else text, encoding="utf-8")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The every-torchvision-model sweep first (it sorts its slowest models first): the two
    workers then share out the 40-second models at the start and finish together on the small
    tests, instead of one running a giant model while the other has nothing left (a minute and
    more of one idle core)."""
    items.sort(key=lambda item: item.path.name != "test_torchvision_all.py")


@pytest.fixture
def user_model(tmp_path: Path) -> Path:
    """``tmp_path/model.py`` defining one nn.Module class ``Net`` (no example_input)."""
    return write_file(tmp_path, "model.py", USER_MODEL)


@pytest.fixture
def user_model_with_example(tmp_path: Path) -> Path:
    """``tmp_path/model_ex.py`` defining ``Net`` with an ``example_input`` method (B, 3, 12)."""
    return write_file(tmp_path, "model_ex.py", USER_MODEL_WITH_EXAMPLE)
