"""Benchmark: what the op/line tracing of issue 22 costs a healthy model's probe (target: at most 3%).

Run by hand (not a test):  PYTHONPATH=. python benchmarks/op_trace_cost.py [--baseline-ref main] [--rounds 5]

``inspectr.inspect(model, inputs=x)`` (forward, backward, findings) on a torchvision ResNet-18
(``weights=None``, batch 2 at 224x224) and a small Transformer encoder (2 layers, d=128, batch 8 x
64 tokens), timed with this checkout and with ``--baseline-ref`` (extracted by ``git archive`` to
a temporary folder, the worktree untouched). Two versions of one package cannot share a process,
so each round runs one child process per version (order alternating between rounds); a child
warms up, then takes the median of ``--repeat`` inspections. The figure is the median over rounds
of the per-round ratio branch / baseline. The failure path (a forward that makes a NaN) is timed
too, for information: there the replay runs, once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, statistics, sys, time
import torch, torchvision
from torch import nn
import inspectr

torch.set_num_threads(int(sys.argv[1]))
repeat = int(sys.argv[2])


class Sick(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torchvision.models.resnet18(weights=None)

    def forward(self, x):
        return torch.log(self.body(x))


def transformer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(128, 4, 256, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


torch.manual_seed(0)
cases = {
    "resnet18": (torchvision.models.resnet18(weights=None), torch.randn(2, 3, 224, 224)),
    "transformer": (transformer(), torch.randn(8, 64, 128)),
    "resnet18+log (NaN: the replay runs)": (Sick(), torch.randn(2, 3, 224, 224)),
}
out = {}
for name, (model, x) in cases.items():
    inspectr.inspect(model, inputs=x)  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        inspectr.inspect(model, inputs=x)
        times.append(time.perf_counter() - t)
    out[name] = statistics.median(times)
print("RESULT=" + json.dumps(out))
"""


def _child(root: Path, threads: int, repeat: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(repeat)], cwd=root, env=env,
                          capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    return json.loads(line[len("RESULT="):])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-ref", default="main", help="git ref to compare with (default main)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline_ref], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        ratios: dict[str, list[float]] = {}
        secs: dict[str, dict[str, list[float]]] = {}
        start = time.perf_counter()
        for r in range(args.rounds):
            order = [("branch", REPO), ("baseline", base)]
            if r % 2:
                order.reverse()
            got = {label: _child(root, args.threads, args.repeat) for label, root in order}
            for name in got["branch"]:
                ratios.setdefault(name, []).append(got["branch"][name] / got["baseline"][name])
                for label in ("branch", "baseline"):
                    secs.setdefault(name, {}).setdefault(label, []).append(got[label][name])
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    print(f"inspectr.inspect, this checkout vs {args.baseline_ref}: median of {args.rounds} rounds "
          f"(each a median of {args.repeat}), {args.threads} thread(s)")
    for name, rs in ratios.items():
        b, a = statistics.median(secs[name]["branch"]), statistics.median(secs[name]["baseline"])
        print(f"  {name:38s} baseline {a * 1e3:8.1f} ms   branch {b * 1e3:8.1f} ms   "
              f"ratio {statistics.median(rs):.3f} (rounds {min(rs):.3f} … {max(rs):.3f})")


if __name__ == "__main__":
    main()
