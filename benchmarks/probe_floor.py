"""Benchmark: the floors under issue 18's speed targets, measured on the paths users run.

Run by hand (not a test):  PYTHONPATH=. python benchmarks/probe_floor.py [--models ...] [--repeat 7]

Two questions, each timed side by side in one process, interleaved, median of N runs:

- **Forward-only against torchinfo.** ``torchinfo.summary`` runs the model in eval mode without
  autograd. ``inspectr.inspect(..., backward=False)`` runs it in the model's own mode (train, for
  a freshly built torchvision model) and records the autograd graph, because the memory block
  counts exactly the bytes backward would keep, without a second forward (issue 18's product
  decision). The bare forward that does the same (own mode, autograd on) is the floor of any
  forward-only probe that keeps those promises; its ratio to torchinfo is printed next to ours,
  and torchinfo in train mode is shown as the like-for-like peer.
- **The exact passes of a full probe** (torchvision models): the least any probe does whose
  non-finite counts, dead units and gradient norms are exact (issue 18's decision): a forward
  hook that sums every large output once (NaN/Inf reach a sum) and takes per-unit maxima of
  activation outputs, small outputs copied and reduced in batches at the end, a tensor hook
  that takes each large output gradient's sum of squares, small gradients retained, and a
  saved-tensor hook that counts storages. No statistics beyond those, no rows, findings or
  memory, the model not restored. Against the bare forward+backward and ``inspectr.inspect``.
- **The deep stack** (20,002 modules, batch 4): the least any probe built on module hooks does
  for exact per-module statistics and gradient norms, stripped of everything else inspectr
  reports (rows, findings, memory, restoring the model): a pre/post hook per module, a stack
  for naming culprits, each output copied (later in-place ops) and reduced in batches at the
  end, its gradient retained, and a Python saved-tensor hook to count saved bytes. Each part is
  also shown alone, against the bare forward+backward and the whole ``inspectr.inspect``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterable

import torch
import torchinfo
from torch import nn

import inspectr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_speed import bare_step, deep_stack, interleaved  # noqa: E402


def forward_only_floors(models: list[str], repeat: int) -> None:
    import torchvision

    print(f"{'model':16s} {'tinfo':>7s} {'tinfo-tr':>8s} {'eval ng':>8s} {'train ng':>8s} {'train+ag':>8s} "
          f"{'inspectr':>8s} | {'floor/ti':>8s} {'ours/ti':>7s} {'ours/ti-tr':>10s} {'ours/floor':>10s}")
    for name in models:
        model = torchvision.models.get_model(name, weights=None)
        x = torch.randn(2, 3, 224, 224)

        def bare(train: bool, grad: bool) -> Callable[[], None]:
            def run() -> None:
                was = model.training
                model.train(train)
                with torch.set_grad_enabled(grad):
                    model(x)
                model.train(was)

            return run

        fns = [
            lambda: torchinfo.summary(model, input_data=x, verbose=0),
            lambda: torchinfo.summary(model, input_data=x, verbose=0, mode="train"),
            bare(False, False),
            bare(True, False),
            bare(True, True),
            lambda: inspectr.inspect(model, inputs=x, backward=False),
        ]
        ti, ti_train, eval_ng, train_ng, floor, ours = interleaved(fns, repeat)
        print(f"{name:16s} {ti:7.3f} {ti_train:8.3f} {eval_ng:8.3f} {train_ng:8.3f} {floor:8.3f} {ours:8.3f} | "
              f"{floor / ti:7.2f}x {ours / ti:6.2f}x {ours / ti_train:9.2f}x {ours / floor:9.2f}x", flush=True)


def stacked_by_shape(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors grouped by shape, each group stacked into rows: reduced a group at a time."""
    groups: dict[torch.Size, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.shape, []).append(t)
    return [torch.stack(group).flatten(1) for group in groups.values()]


def minimal_probe(model: nn.Module, x: torch.Tensor, saved: bool, retain: bool, copy: bool) -> None:
    """The least a module-hook probe does for exact per-module output statistics and gradient
    norms; nothing else (no rows, findings or memory, the model is not restored)."""
    mods = list(model.modules())
    stack: list[nn.Module] = []
    outs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def pre(mod: nn.Module, args: tuple) -> None:
        stack.append(mod)

    def post(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        stack.pop()
        outs.append((out.detach().clone() if copy else out.detach(), out))
        if retain and out.requires_grad:
            out.retain_grad()

    for m in mods:
        m._forward_pre_hooks[-1] = pre
        m._forward_hooks[-2] = post
    try:
        counting = (torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t) if saved
                    else contextlib.nullcontext())
        with counting:
            y = model(x)
        y.sum().backward()
        for rows in stacked_by_shape(c for c, _ in outs):
            torch.stack([rows.sum(1), rows.amin(1), rows.amax(1), torch.linalg.vector_norm(rows, dim=1)], 1).tolist()
        grads = [o.grad for _, o in outs if retain and o.requires_grad and o.grad is not None]
        for rows in stacked_by_shape(grads):
            torch.linalg.vector_norm(rows, dim=1).tolist()
    finally:
        for m in mods:
            m._forward_pre_hooks.pop(-1, None)
            m._forward_hooks.pop(-2, None)
        model.zero_grad(set_to_none=True)


def exact_pass_probe(model: nn.Module, x: torch.Tensor) -> None:
    """One forward+backward that does only the exact work of a full probe (see the docstring)."""
    from inspectr.core.probe.hooks import type_facts

    small: list[torch.Tensor] = []
    retained: list[torch.Tensor] = []
    sums: list[torch.Tensor] = []
    storages: dict[int, int] = {}

    def grad_sq(g: torch.Tensor) -> None:
        flat = g.reshape(-1)
        sums.append(torch.dot(flat, flat))

    def post(mod: nn.Module, args: tuple, out: object) -> None:
        if type(out) is not torch.Tensor or not out.is_floating_point():
            return
        with torch.no_grad():
            if out.numel() <= 1 << 14:
                small.append(out.detach().clone())
            else:
                total = out.sum()
                if type_facts(type(mod))[0] is not None and out.dim() >= 2:
                    rows = out.detach().reshape(out.shape[0], out.shape[1], -1)  # no copy
                    unit_max = rows.amax(2).amax(0)
                    torch.stack([total, unit_max.min()]).tolist()
                else:
                    float(total)
        if out.requires_grad:
            if out.numel() <= 1 << 16:
                out.retain_grad()
                retained.append(out)
            else:
                out.register_hook(grad_sq)

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[torch._C._storage_id(t)] = t.untyped_storage().nbytes()
        return t

    mods = list(model.modules())
    for m in mods:
        m._forward_hooks[-2] = post
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = model(x)
        y.sum().backward()
        with torch.no_grad():
            for rows in stacked_by_shape(small):
                rows.sum(1).tolist()
            for rows in stacked_by_shape(o.grad for o in retained if o.grad is not None):
                torch.linalg.vector_norm(rows, dim=1).tolist()
            if sums:
                torch.stack(sums).tolist()
    finally:
        for m in mods:
            m._forward_hooks.pop(-2, None)
        model.zero_grad(set_to_none=True)


def exact_floors(models: list[str], repeat: int) -> None:
    import torchvision

    print(f"{'model':16s} {'bare f+b':>8s} {'exact passes':>12s} {'inspectr':>8s} | {'floor/bare':>10s} {'ours/bare':>9s}")
    for name in models:
        model = torchvision.models.get_model(name, weights=None)
        x = torch.randn(2, 3, 224, 224)

        fns = [bare_step(model, x), lambda: exact_pass_probe(model, x), lambda: inspectr.inspect(model, inputs=x)]
        b, floor, ours = interleaved(fns, repeat)
        print(f"{name:16s} {b:8.3f} {floor:12.3f} {ours:8.3f} | {floor / b:9.2f}x {ours / b:8.2f}x", flush=True)


def deep_floor(repeat: int) -> None:
    model = deep_stack()
    x = torch.randn(4, 32)

    variants = {
        "hooks + batched stats": (False, False, False),
        "+ saved-bytes hook": (True, False, False),
        "+ retained gradients": (False, True, False),
        "+ output copies": (False, False, True),
        "all of the above": (True, True, True),
    }
    fns = [bare_step(model, x), *[(lambda v=v: minimal_probe(model, x, *v)) for v in variants.values()],
           lambda: inspectr.inspect(model, inputs=x)]
    times = interleaved(fns, repeat)
    print(f"deep stack (20,002 modules), bare forward+backward {times[0]:.3f} s")
    for label, t in zip([*variants, "inspectr.inspect"], times[1:]):
        print(f"  {label:24s} {t:6.3f} s  {t / times[0]:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["resnet50", "vit_b_16", "efficientnet_b0"],
                    help="torchvision models for the forward-only floors (none: the deep stack only)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-deep", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {args.threads} threads, median of {args.repeat}, interleaved")
    if args.models:
        forward_only_floors(args.models, args.repeat)
        exact_floors(args.models, args.repeat)
    if not args.no_deep:
        deep_floor(max(3, args.repeat // 2))


if __name__ == "__main__":
    main()
