"""Benchmarks ``inspectr watch -- python train.py`` against ``python train.py``: the same script
(a CIFAR-size conv net, AdamW, ``--steps`` steps on random batches), run bare and watched at
``--every 50``, interleaved (the order is shuffled per round) so machine noise hits both alike.

Figures (medians over rounds):
- loop: the training loop's own time, measured inside the script (first step to last), watched
  over bare: the target is <= 1.03x at every=50. It includes attaching at the first step.
- loop after step 0: the same from the end of step 0 on: the steady per-step cost.
- process: the whole command's wall time, start-up and the exit summary included.
- start-up, apart: ``python -c "import torch"`` bare and with the attach (sitecustomize + torch
  import hook, no optimizer step), and ``python -c pass`` with and without the sitecustomize.

Run by hand: ``PYTHONPATH=. python benchmarks/watch_attach.py [--rounds 5] [--steps 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """\
import json, sys, time
import torch
from torch import nn

def block(i, o):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

torch.manual_seed(0)
model = nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                      nn.MaxPool2d(2), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
steps = int(sys.argv[1])
t0 = time.perf_counter()
for i in range(steps):
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i == 0:
        t1 = time.perf_counter()
t2 = time.perf_counter()
print(json.dumps({"loop": t2 - t0, "after0": t2 - t1}))
"""


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return wall, (json.loads(lines[-1]) if lines else {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    a = ap.parse_args()
    from inspectr.launch import ATTACH_DIR

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "train.py").write_text(SCRIPT)
        bare = [sys.executable, "train.py", str(a.steps)]
        watched = [sys.executable, "-m", "inspectr", "watch", "--run", "runs/bench", "--every", str(a.every),
                   "--", *bare]
        r: dict[str, list[float]] = {k: [] for k in ("loop", "after0", "process")}
        for _ in range(a.rounds):
            order = [("bare", bare), ("watched", watched)]
            random.shuffle(order)
            got = {name: timed(cmd, env, tmp) for name, cmd in order}
            (bw, bj), (ww, wj) = got["bare"], got["watched"]
            r["loop"].append(wj["loop"] / bj["loop"])
            r["after0"].append(wj["after0"] / bj["after0"])
            r["process"].append(ww / bw)
            print(f"  round: bare loop {bj['loop']:.2f} s, watched {wj['loop']:.2f} s; "
                  f"process {bw:.2f} s vs {ww:.2f} s", flush=True)
        print(f"{a.steps} steps, every={a.every}, {a.rounds} rounds (medians of watched / bare):")
        for k, label in (("loop", "loop (attach included)"), ("after0", "loop after step 0"),
                         ("process", "whole process")):
            print(f"  {label:<24} {statistics.median(r[k]):.3f}x  (min {min(r[k]):.3f}, max {max(r[k]):.3f})")
        attach_env = {**env, "PYTHONPATH": os.pathsep.join([str(ATTACH_DIR), str(REPO)]),
                      "INSPECTR_WATCH_RUN": str(Path(tmp, "runs", "startup"))}
        for code in ("import torch", "pass"):
            plain, hooked = [], []
            for _ in range(a.rounds):
                plain.append(timed([sys.executable, "-c", code], env, tmp)[0])
                hooked.append(timed([sys.executable, "-c", code], attach_env, tmp)[0])
            print(f"  start-up `python -c {code!r}`: {statistics.median(plain):.3f} s bare, "
                  f"{statistics.median(hooked):.3f} s with the attach")


if __name__ == "__main__":
    main()
