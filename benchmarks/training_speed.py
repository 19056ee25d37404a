"""Training steps with everything recorded vs bare training steps (issue 9's speed target: <= 1.3x).

Run by hand: ``PYTHONPATH=. python benchmarks/training_speed.py [--steps 20] [--models resnet18 vit_b_16]``.
Bare: forward, cross-entropy, backward, AdamW step, zero_grad. Watched: ``train_steps`` (per-step
gradient, update and weight norms, the final forward under the probe's hooks, the model restored).
Interleaved rounds, medians; batch 2 at 224x224 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from inspectr.core.inspect import _pick
from inspectr.core.sources.loader import load
from inspectr.core.training.steps import TrainingOptions, train_steps


def bare(model: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    took = time.perf_counter() - start
    model.load_state_dict(state)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=["resnet18", "vit_b_16"])
    args = ap.parse_args()
    for name in args.models:
        loaded = load(name, {}, None, False, "cpu", 0)
        inp, _ = _pick(loaded, None, None, 2, "cpu", 0)
        model, x = loaded.model, inp.args[0]
        bare(model, x, 2)  # warm-up: the optimizer's first step imports torch._dynamo
        watched, plain = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            train_steps(model, (x,), {}, TrainingOptions(steps=args.steps))
            watched.append(time.perf_counter() - start)
            plain.append(bare(model, x, args.steps))
        w, b = statistics.median(watched), statistics.median(plain)
        print(f"{name}: {args.steps} steps watched {w:.2f} s, bare {b:.2f} s ({b / args.steps:.3f} s/step): {w / b:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
