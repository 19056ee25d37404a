"""Benchmark: a 60-billion-parameter model file, inspected with no flag (auto meta, shape-only).

Run by hand:  python benchmarks/big_model.py
Target: under 60 s, peak memory under 3 GB. Prints wall time and peak RSS of a subprocess
running ``inspectr benchmarks/big_model.py:Big60B --report --format json``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, ff: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 64, batch_first=True)
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

    def __init__(self, d: int = 8192, ff: int = 4 * 8192, layers: int = 74, vocab: int = 32000) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*[Block(d, ff) for _ in range(layers)])
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        return self.head(self.blocks(self.embed(ids)))


def main() -> None:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "inspectr", f"{__file__}:Big60B", "--format", "json", "-o", "/tmp/inspectr-big.json"],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    import json

    doc = json.load(open("/tmp/inspectr-big.json"))
    print(f"exit {proc.returncode}, {wall:.1f} s, peak RSS {peak:.2f} GiB, "
          f"params {doc['model']['total_params']:,}, shape_only={doc['probe']['shape_only']}, "
          f"output {doc['modules'][0]['output_shapes']}, FLOPs fwd {doc['model']['flops_forward']:,}")
    if proc.returncode not in (0, 1):
        print(proc.stderr)


if __name__ == "__main__":
    main()
