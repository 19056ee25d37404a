"""Benchmark: 7-billion and 60-billion-parameter model files, inspected with no flag (auto meta,
shape-only).

Run by hand:  python benchmarks/big_model.py
Target: under 60 s and a peak resident memory under 3 GB each. Prints the wall time and peak
RSS (the child's own VmHWM) of a subprocess running
``inspectr benchmarks/big_model.py:big7b --format json`` (and ``:Big60B``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, ff: int, heads: int = 64) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, ff)
        self.act = nn.GELU()
        self.down = nn.Linear(ff, d)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.down(self.act(self.up(self.norm2(x))))


class Big60B(nn.Module):
    """A decoder-style stack: 74 blocks of width 8192 (about 60B parameters, 240 GB in float32)."""

    def __init__(self, d: int = 8192, ff: int = 4 * 8192, layers: int = 74, vocab: int = 32000,
                 heads: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*[Block(d, ff, heads) for _ in range(layers)])
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        return self.head(self.blocks(self.embed(ids)))


def big7b() -> nn.Module:
    """The same stack at LLaMA-7B's width and depth (about 6.7B parameters, 27 GB in float32)."""
    return Big60B(d=4096, ff=4 * 4096, layers=32, heads=32)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import run_cli_peak_rss  # the CLI's own peak (VmHWM), as the tests read it

    for name in ("big7b", "Big60B"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            t = time.perf_counter()
            proc, kib = run_cli_peak_rss(f"{__file__}:{name}", "--format", "json", "-o", str(out), out_dir=Path(tmp))
            wall = time.perf_counter() - t
            if proc.returncode not in (0, 1):
                print(proc.stderr)
                continue
            peak = kib / 2**20
            doc = json.loads(out.read_text())
        print(f"{name}: exit {proc.returncode}, {wall:.1f} s, peak RSS {peak:.2f} GiB, "
              f"params {doc['model']['total_params']:,}, shape_only={doc['probe']['shape_only']}, "
              f"output {doc['modules'][0]['output_shapes']}, FLOPs fwd {doc['model']['flops_forward']:,}")


if __name__ == "__main__":
    main()
