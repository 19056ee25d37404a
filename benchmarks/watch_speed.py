"""Benchmarks inspectr.watch against the bare loop: a CIFAR-size conv net and a small transformer
LM, AdamW, in one process, interleaved (bare, every=50 and every=1 take turns, a round of
``--steps`` steps each, in a shuffled order per round) so machine noise hits all of them alike.

Targets (issue 20): every=50 at most 1.03x the bare loop, every=1 at most 1.5x. Three figures
per mode: the median over rounds of the wall-time ratio, the same for the process's CPU time
(steadier on a shared machine: time spent waiting for a core does not count), and the watch's
own time measured inside its hooks, as a share of the bare loop's time.

Run by hand: ``PYTHONPATH=. python benchmarks/watch_speed.py [--rounds 6] [--steps 50] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import inspectr

F = nn.functional


def conv_net() -> nn.Module:
    """A CIFAR-10-size conv net (VGG-like, 6 conv layers with BatchNorm, 0.29M parameters)."""
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), *block(64, 128), *block(128, 128), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.1), nn.Linear(128, 10))


class TinyLM(nn.Module):
    """A small decoder-only transformer LM: 4 layers, width 128, 4 heads, vocabulary 2,000."""

    def __init__(self, vocab: int = 2000, width: int = 128, layers: int = 4, ctx: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(ctx, width))
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.1, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        h = self.embed(ids) + self.pos[:n]
        return self.head(self.norm(self.blocks(h, mask=self.mask[:n, :n], is_causal=True)))


def workloads(device: torch.device) -> dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Generator], tuple]]]:
    def images(g: torch.Generator) -> tuple:
        return (torch.randn(32, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (32,), generator=g).to(device))

    def tokens(g: torch.Generator) -> tuple:
        ids = torch.randint(0, 2000, (8, 65), generator=g).to(device)
        return ids[:, :-1], ids[:, 1:]

    return {"conv net (CIFAR, batch 32)": (conv_net, images), "transformer LM (8 x 64 tokens)": (TinyLM, tokens)}


def step_fn(model: nn.Module, opt: torch.optim.Optimizer) -> Callable[[tuple], torch.Tensor]:
    def step(batch: tuple) -> torch.Tensor:
        x, y = batch
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss
    return step


def bench(name: str, make: Callable[[], nn.Module], data: Callable[[torch.Generator], tuple], rounds: int,
          steps: int, device: torch.device, folder: Path) -> dict[str, float]:
    modes = ("bare", "every=50", "every=1")
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    own: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        runners = {}
        for mode in modes:
            torch.manual_seed(0)
            model = make().to(device)
            opt = torch.optim.AdamW(model.parameters(), 1e-3)
            w = None
            if mode != "bare":
                every = int(mode.split("=")[1])
                w = stack.enter_context(inspectr.watch(model, opt, run=folder / f"{name[:4]}-{every}", every=every))
            runners[mode] = (step_fn(model, opt), w)
        g = torch.Generator().manual_seed(0)
        batches = [data(g) for _ in range(8)]
        for mode in modes:  # warm up each loop (allocator, kernels) before timing
            fn, w = runners[mode]
            for b in batches[:3]:
                loss = fn(b)
                if w is not None:
                    w.log(loss=loss)
        order = list(modes)
        rng = random.Random(0)
        for _ in range(rounds):
            rng.shuffle(order)
            for mode in order:
                fn, w = runners[mode]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                for i in range(steps):
                    loss = fn(batches[i % len(batches)])
                    if w is not None:
                        w.log(loss=loss)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[mode].append((time.perf_counter() - t0) / steps)
                cpu[mode].append((time.process_time() - c0) / steps)
        for mode in modes[1:]:
            own[mode] = runners[mode][1].overhead
    bare = statistics.median(times["bare"])
    out = {"bare_ms": bare * 1e3}
    total_steps = rounds * steps + 3
    for mode in modes[1:]:
        out[f"{mode}_ratio"] = statistics.median(t / b for t, b in zip(times[mode], times["bare"]))
        out[f"{mode}_cpu_ratio"] = statistics.median(t / b for t, b in zip(cpu[mode], cpu["bare"]))
        out[f"{mode}_own_share"] = own[mode] / total_steps / bare
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=50, help="steps per round and mode (one sample per round at every=50)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, data) in workloads(device).items():
            r = bench(name, make, data, args.rounds, args.steps, device, Path(tmp))
            results[name] = r
            print(f"{name:32s} bare {r['bare_ms']:7.1f} ms/step", flush=True)
            for mode in ("every=50", "every=1"):
                print(f"    {mode:9s} wall {r[f'{mode}_ratio']:.3f}x · cpu {r[f'{mode}_cpu_ratio']:.3f}x · "
                      f"the watch's own time {r[f'{mode}_own_share']:+.1%} of a bare step", flush=True)
    print(f"device {device} · torch {torch.__version__} · {torch.get_num_threads()} threads · "
          f"{args.rounds} rounds x {args.steps} steps per mode · targets: every=50 <= 1.03x, every=1 <= 1.5x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
