"""Checks inspectr.watch on a CUDA device (run by hand where a GPU is lent): steps that are not
sampled force no device sync beyond the bare loop's own (``torch.cuda.set_sync_debug_mode``
counts them), and a NaN batch is still recorded at its own step.

``PYTHONPATH=. python benchmarks/watch_cuda_check.py``
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

import inspectr

F = nn.functional


def main() -> None:
    dev = torch.device("cuda")
    syncs: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("bare", "watched"):
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).to(dev)
            opt = torch.optim.AdamW(model.parameters(), 1e-3)
            x = torch.randn(32, 64, device=dev)
            y = torch.randint(0, 10, (32,), device=dev)
            counts = []
            w = inspectr.watch(model, opt, run=Path(tmp) / "r", every=10) if mode == "watched" else None
            if w is not None:
                w.__enter__()
            for step in range(30):
                xb = x.clone()
                if step == 17:
                    xb[3, 5] = float("nan")
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    loss = F.cross_entropy(model(xb), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if w is not None:
                        w.log(loss=loss)
                    torch.cuda.set_sync_debug_mode("default")
                counts.append(sum("synchroniz" in str(c.message) for c in caught))
            if w is not None:
                w.__exit__(None, None, None)
            syncs[mode] = counts
        report = inspectr.load_run(Path(tmp) / "r")
    unsampled = [i for i in range(30) if i % 10 != 0]
    extra = [i for i in unsampled if syncs["watched"][i] > syncs["bare"][i]]
    print("syncs per step, bare:   ", syncs["bare"])
    print("syncs per step, watched:", syncs["watched"])
    print("unsampled steps with a sync the bare loop does not have:", extra or "none")
    print("findings:", [(f.kind, f.module, f.detail.get("step"), f.detail.get("source")) for f in report.findings])
    print("nonfinite steps:", [s["step"] for s in report.steps if s["nonfinite"]][:3])


if __name__ == "__main__":
    main()
