"""Cost of inspectr.watch under torch.distributed: a DDP job of 2 processes (torchrun, gloo, CPU),
bare loop vs watched at every=50, rounds interleaved, best round of each. Prints the ratio.

    python benchmarks/ranks_speed.py [--steps 300] [--rounds 3] [--nproc 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(steps: int, rounds: int, folder: str) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    import inspectr

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(
        nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(rank)
    data = [(torch.randn(64, 256, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(16)]

    def loop(w: object | None) -> float:
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(steps):
            x, y = data[i % len(data)]
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if w is not None:
                w.log(loss=loss)  # type: ignore[attr-defined]
        dist.barrier()
        return time.perf_counter() - t0

    best = {"bare": float("inf"), "watched": float("inf")}
    own: list[float] = []  # the watch's own time, as it accounts it (hooks, reads, the gather): less noisy
    loop(None)  # warm-up
    for r in range(rounds):
        best["bare"] = min(best["bare"], loop(None))
        with inspectr.watch(model, opt, run=f"{folder}/run{r}", every=50) as w:
            t = loop(w)
            best["watched"] = min(best["watched"], t)
        own.append(w.overhead / t)
    if rank == 0:
        print(f"{dist.get_world_size()} rank(s) (DDP, gloo, CPU), {steps} steps, every=50: bare {best['bare']:.3f} s, "
              f"watched {best['watched']:.3f} s, ratio {best['watched'] / best['bare']:.3f}x; "
              f"the watch's own time on rank 0: {min(own):.1%} of the loop (best round)")
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", default=None)
    ap.add_argument("--nproc", type=int, default=2, help="1: the same job in one process, for comparison")
    args = ap.parse_args()
    if args.worker:
        worker(args.steps, args.rounds, args.worker)
        return
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
                        __file__, "--steps", str(args.steps), "--rounds", str(args.rounds), "--worker", tmp],
                       env=env, check=True)


if __name__ == "__main__":
    main()
