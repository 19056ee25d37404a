"""The loader builds a model that fits once, under an allocation guard; one that does not fit
stops early, at a small fixed budget, and is built on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_cli_peak_rss, strict_json

from inspectr.core.sources import build_guard
from inspectr.core.sources.build_guard import AllocationGuard, BuildTooBig
from inspectr.core.sources.loader import load
from inspectr.errors import InspectrError

MODELS = '''
from pathlib import Path

import torch
from torch import nn

LOG = Path(__file__).with_suffix(".log")  # a line per constructor run to its end: its weights' device


def built(device):
    with LOG.open("a") as f:
        f.write(device.type + "\\n")


class Two(nn.Module):
    def __init__(self, width=256):
        super().__init__()
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, width)
        built(self.a.weight.device)

    def forward(self, x):
        return self.b(self.a(x))


class Swallows(nn.Module):  # its own except clause must not hide the guard
    def __init__(self, width=256):
        super().__init__()
        try:
            self.a = nn.Linear(width, width)
            self.b = nn.Linear(width, width)
        except Exception:
            self.a = self.b = nn.Identity()
        built(self.a.weight.device)

    def forward(self, x):
        return self.a(x)


class Scratch(nn.Module):  # a large temporary while building: the guard over-counts it
    def __init__(self):
        super().__init__()
        table = torch.zeros(1 << 20)
        self.register_buffer("first", table[:8].clone())
        del table
        self.fc = nn.Linear(8, 2)
        built(self.fc.weight.device)

    def forward(self, x):
        return self.fc(x + self.first)


class Stack(nn.Module):  # a line per layer made: how far each build went, and on which device
    def __init__(self, layers=8, width=256):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.Linear(width, width))
            built(self.layers[-1].weight.device)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Reads(Stack):  # reads a tensor value while it builds, which the meta device cannot
    def __init__(self):
        width = int(torch.full((1,), 256).item())
        super().__init__(width=width)
'''

LAYER = (256 * 256 + 256) * 4  # bytes of one Stack layer

# A LLaMA-shaped decoder in plain nn.Module code, as a user writes one
LMS = '''
import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
        self.down = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm1(x)
        q, k, v = (f(h).view(b, t, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        x = x + self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LM(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def lm7b():
    return LM(32000, 4096, 32, 32, 11008)


def lm60b():
    return LM(32000, 8192, 72, 64, 22016)


def example_input(batch_size=2):
    return torch.randint(0, 32000, (batch_size, 16))
'''


def lm_params(vocab: int, d: int, layers: int, ff: int) -> int:
    """Embedding and head, per block four d x d projections, three MLP matrices and two norms."""
    return 2 * vocab * d + layers * (4 * d * d + 3 * d * ff + 2 * d) + d


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "guarded_models.py"
    path.write_text(MODELS)
    return path


def _built(models: Path) -> list[str]:
    log = models.with_suffix(".log")
    return log.read_text().split() if log.exists() else []


def test_a_model_that_fits_is_built_once(models: Path) -> None:
    loaded = load(f"{models}:Two")
    assert not loaded.on_meta
    assert _built(models) == ["cpu"]  # the constructor ran once, for real


@pytest.mark.parametrize("name", ["Two", "Swallows"])
def test_a_model_that_does_not_fit_stops_early_and_goes_to_meta(models: Path, name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # room for one 256x256 layer's probe, not two: the real build stops before its end
    monkeypatch.setattr(build_guard, "available_memory", lambda: int(2.5 * 256 * 256 * 4 * 1.5))
    loaded = load(f"{models}:{name}")
    assert loaded.on_meta
    assert _built(models) == ["meta"]
    assert any("built on the meta device" in n for n in loaded.notes)


def test_an_over_count_from_temporaries_still_builds_for_real(models: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the 4 MiB scratch table trips the guard; the exact meta-device check finds 104 bytes
    monkeypatch.setattr(build_guard, "available_memory", lambda: 1 << 20)
    loaded = load(f"{models}:Scratch")
    assert not loaded.on_meta
    assert _built(models) == ["meta", "cpu"]


def test_the_guard_counts_what_torch_functions_make() -> None:
    with AllocationGuard(10_000) as guard:
        torch.empty(100)
        torch.zeros(10, 10, dtype=torch.float64)
        torch.randn(3).add_(1)  # in place: nothing new
    assert guard.made == 400 + 800 + 12
    with pytest.raises(BuildTooBig), AllocationGuard(1000):
        torch.nn.Linear(16, 16)


def test_a_build_past_the_budget_stops_there_and_a_model_that_fits_is_built_again(
        models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # memory for any size: only the budget stops the first build, after three layers of eight
    monkeypatch.setattr(build_guard, "available_memory", lambda: 1 << 40)
    monkeypatch.setattr(build_guard, "BUILD_BUDGET", int(3.5 * LAYER))
    loaded = load(f"{models}:Stack")
    assert not loaded.on_meta
    assert _built(models) == ["cpu"] * 3 + ["meta"] * 8 + ["cpu"] * 8
    assert not any("meta device" in n for n in loaded.notes)


def test_a_model_too_big_is_built_no_further_than_the_budget(models: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # a probe could use 4.8 layers' worth (available / 2.5), the model needs 20: three are built
    monkeypatch.setattr(build_guard, "available_memory", lambda: 12 * LAYER)
    monkeypatch.setattr(build_guard, "BUILD_BUDGET", int(3.5 * LAYER))
    loaded = load(f"{models}:Stack")
    assert loaded.on_meta
    assert _built(models) == ["cpu"] * 3 + ["meta"] * 8
    assert any("526,336 parameters" in n for n in loaded.notes)


def test_a_model_meta_cannot_size_is_built_for_real_while_a_probe_fits(models: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_guard, "available_memory", lambda: 1 << 40)
    monkeypatch.setattr(build_guard, "BUILD_BUDGET", int(3.5 * LAYER))
    loaded = load(f"{models}:Reads")
    assert not loaded.on_meta
    assert _built(models) == ["cpu"] * 3 + ["cpu"] * 8  # the partial build, then the whole one


def test_a_model_meta_cannot_size_that_does_not_fit_is_refused(models: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # without the guard on its real build it would be built whole, however big
    monkeypatch.setattr(build_guard, "available_memory", lambda: 12 * LAYER)
    monkeypatch.setattr(build_guard, "BUILD_BUDGET", int(3.5 * LAYER))
    with pytest.raises(InspectrError) as err:
        load(f"{models}:Reads")
    assert "cannot run on the meta device" in err.value.args[0]
    assert _built(models) == ["cpu"] * 3 + ["cpu"] * 4  # stopped at available / 2.5 both times


@pytest.mark.parametrize(("name", "params"), [
    ("lm7b", lm_params(32000, 4096, 32, 11008)),  # 6,738,415,616: LLaMA-7B's shape
    ("lm60b", lm_params(32000, 8192, 72, 22016)),  # 58,809,524,224
])
def test_a_language_model_too_big_for_memory_goes_to_meta_under_3_gb(tmp_path: Path, name: str,
                                                                       params: int) -> None:
    # 27 GB and 235 GB of float32 weights: past any machine's available / 2.5 that runs the
    # tests, so the build must stop at the budget (it ran to 9.7 GB on a 24 GB machine before)
    path = tmp_path / "lms.py"
    path.write_text(LMS)
    proc, peak_kib = run_cli_peak_rss(f"{path}:{name}", "--format", "json", out_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = strict_json(proc.stdout)
    assert doc["model"]["total_params"] == params
    assert doc["probe"]["device"] == "meta" and doc["probe"]["shape_only"]
    assert any("built on the meta device" in n for n in doc["probe"]["notes"])
    assert doc["modules"][0]["output_shapes"] == [[4, 16, 32000]]  # the default batch of 4
    assert peak_kib < 3 * 2**20  # KiB on Linux
