"""Benchmark: what users run (``inspectr.inspect`` and the CLI) against bare PyTorch and torchinfo.

Run by hand (not a test):  PYTHONPATH=. python benchmarks/inspect_speed.py [--models resnet50 ...] [--device cuda]

Everything is timed side by side in one process, interleaved, median of N runs (issue 18):
- forward-only: ``inspectr.inspect(model, inputs=x, backward=False)`` against
  ``torchinfo.summary(model, input_data=x, verbose=0)`` and a bare ``model(x)``; target <= 1.0x
  torchinfo;
- full: ``inspectr.inspect(model, inputs=x)`` against a bare ``model(x).sum().backward()``;
  target <= 1.25x;
- the deep stack (``probe_speed.deep_stack``, 20,002 modules, batch 4): ``inspectr.inspect``
  against a bare forward+backward; target <= 2x;
- the CLI: ``inspectr resnet50 --report`` wall time in a fresh process (import, load, probe,
  report), against a fresh process that imports torch and torchvision, builds the model and runs
  one bare step.

The models are torchvision's with ``weights=None``, batch 2 at 224x224, in the mode they are
built in (train), as a user holds them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torchinfo

import inspectr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_speed import bare_step, blocked, deep_stack, interleaved  # noqa: E402

_BARE_CLI = """
import torch, torchvision
torch.set_num_threads({threads})
m = torchvision.models.get_model("resnet50", weights=None)
m(torch.randn(2, 3, 224, 224)).sum().backward()
"""


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "efficientnet_b0"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-deep", action="store_true", help="skip the 20,002-module stack")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI wall time")
    ap.add_argument("--device", default="cpu", help="cuda: models, inputs and inspectr on the GPU")
    ap.add_argument("--blocked", action="store_true",
                    help="time each in its own steady state (probe_speed.blocked), not run by run in turns")
    args = ap.parse_args()
    timer = blocked if args.blocked else interleaved
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"

    def synced(fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` and a wait for the device's work, so that the timings are the work's."""
        if not cuda:
            return fn

        def run() -> None:
            fn()
            torch.cuda.synchronize(dev)

        return run

    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    print(f"torch {torch.__version__}, {name}, {args.threads} threads, median of {args.repeat}, "
          f"{'blocked' if args.blocked else 'interleaved'}")
    print(f"{'model':16s} {'bare fwd':>9s} {'torchinfo':>9s} {'fwd-only':>9s} {'/tinfo':>7s} | "
          f"{'bare f+b':>9s} {'full':>9s} {'/bare':>7s}")
    import torchvision

    for name in args.models:
        model = torchvision.models.get_model(name, weights=None).to(dev)
        x = torch.randn(2, 3, 224, 224, device=dev)

        def bare_fwd() -> None:
            with torch.no_grad():
                model(x)

        bare = bare_step(model, x)

        def info() -> None:
            torchinfo.summary(model, input_data=x, verbose=0, device=dev)

        def forward_only() -> None:
            inspectr.inspect(model, inputs=x, backward=False, device=args.device)

        def full() -> None:
            inspectr.inspect(model, inputs=x, device=args.device)

        timed = [synced(f) for f in (bare_fwd, info, forward_only, bare, full)]
        tf, ti, to, tb, tp = timer(timed, args.repeat)
        print(f"{name:16s} {tf:9.3f} {ti:9.3f} {to:9.3f} {to / ti:6.2f}x | {tb:9.3f} {tp:9.3f} {tp / tb:6.2f}x",
              flush=True)
    if not args.no_deep:
        model = deep_stack().to(dev)
        x = torch.randn(4, 32, device=dev)

        bare_deep = bare_step(model, x)

        def inspect_deep() -> None:
            inspectr.inspect(model, inputs=x, device=args.device)

        tb, tinsp = timer([synced(bare_deep), synced(inspect_deep)], max(3, args.repeat // 2 + 1))
        print(f"{'deep stack':16s} bare f+b {tb:.3f} s, inspectr.inspect {tinsp:.3f} s: {tinsp / tb:.2f}x", flush=True)
    if not args.no_cli and not cuda:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        cli = [sys.executable, "-m", "inspectr", "resnet50", "--report"]
        bare_cli = [sys.executable, "-c", _BARE_CLI.format(threads=args.threads)]
        walls: list[list[float]] = [[], []]
        for _ in range(max(3, args.repeat // 2 + 1)):
            walls[0].append(_wall(bare_cli, env))
            walls[1].append(_wall(cli, env))
        tb, tc = (statistics.median(w) for w in walls)
        print(f"{'CLI resnet50':16s} bare process (import, build, f+b) {tb:.2f} s, "
              f"`inspectr resnet50 --report` {tc:.2f} s: {tc / tb:.2f}x")


if __name__ == "__main__":
    main()
