"""The loader builds a model that fits once, under an allocation guard; one that does not fit
stops early and is built on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspectr.core.sources import build_guard
from inspectr.core.sources.build_guard import AllocationGuard, BuildTooBig
from inspectr.core.sources.loader import load

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
'''


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
