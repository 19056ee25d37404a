"""Tests models as they live in repositories (packages, repo-root imports) and checkpoints in
today's formats: safetensors (inspectr's own reader, checked against the real package), sharded
indexes, header-only checks on meta models, and torchvision's pretrained weights from the hub cache."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_clean_error, run_cli, strict_json, write_file
from torch import nn

import inspectr
from inspectr.core.sources import checkpoints
from inspectr.core.sources.checkpoints import (
    read_safetensors,
    read_safetensors_header,
    read_state_dict,
)
from inspectr.core.sources.loader import load
from inspectr.core.sources.usercode import package_of
from inspectr.errors import InspectrError

safetensors_torch = pytest.importorskip("safetensors.torch")

# ---------------------------------------------------------------- a repository on disk

UTILS = '''\
def width():
    return 8
'''

BLOCKS = '''\
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x):
        return torch.relu(self.fc(x))


def make_input(batch_size):
    return torch.randn(batch_size, 4)
'''

NET = '''\
from torch import nn

from utils import width

from .blocks import Block, make_input


class Net(nn.Module):
    """A net whose parts live in a sibling module and a repo-root helper."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, width())
        self.block = Block(width())
        self.head = nn.Linear(width(), 3)

    def forward(self, x):
        return self.head(self.block(self.inp(x)))


def example_input(batch_size=4):
    return make_input(batch_size)


def loss_fn(out, batch):
    return out.square().mean()
'''

DEEP = '''\
from torch import nn

from ..blocks import Block


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block(4)

    def forward(self, x):
        return self.block(x)
'''

NET_PARAMS = (4 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A research-style repository: ``utils.py`` at the root, a ``models`` package beside it."""
    root = tmp_path / "repo"
    write_file(root, "utils.py", UTILS)
    write_file(root, "models/__init__.py", "")
    write_file(root, "models/blocks.py", BLOCKS)
    write_file(root, "models/net.py", NET)
    write_file(root, "models/sub/__init__.py", "")
    write_file(root, "models/sub/deep.py", DEEP)
    return root


def snapshot() -> tuple[list[str], dict[str, Any]]:
    return list(sys.path), dict(sys.modules)


def assert_restored(before: tuple[list[str], dict[str, Any]], user: Path) -> None:
    """sys.path as it was; sys.modules as it was but for modules of libraries and of inspectr
    itself imported on first use (a meta build imports torch.utils._device), which stay loaded;
    nothing from the user's folder ``user`` is left."""
    path, modules = before
    assert sys.path == path
    assert all(sys.modules.get(k) is v for k, v in modules.items())
    added = {k: str(getattr(m, "__file__", None) or "") for k, m in sys.modules.items() if k not in modules}
    assert not [k for k, f in added.items() if f.startswith(str(user.parent)) or k.split(".")[0]
                in ("models", "utils", "loose")], added


def test_package_of_walks_up_to_the_package_root(repo: Path) -> None:
    assert package_of(repo / "models" / "net.py") == (repo.resolve(), "models.net")
    assert package_of(repo / "models" / "sub" / "deep.py") == (repo.resolve(), "models.sub.deep")
    assert package_of(repo / "utils.py") is None


@pytest.mark.parametrize("spec", ["models/net.py:Net", "models.net:Net"])
def test_package_model_loads_and_leaves_sys_path_and_modules(repo: Path, spec: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    before = snapshot()
    loaded = load(spec)
    assert_restored(before, repo)
    assert loaded.file_module is not None and loaded.file_module.__name__ == "models.net"
    assert sum(p.numel() for p in loaded.model.parameters()) == NET_PARAMS
    gc.collect()  # the dropped modules' code must keep working through the objects that use it
    x = loaded.file_module.example_input(2)  # calls a helper imported from .blocks
    out = loaded.model(x)
    assert out.shape == (2, 3)
    assert float(loaded.file_module.loss_fn(out.detach(), x)) >= 0
    report = inspectr.inspect(spec)
    assert_restored(before, repo)
    assert report.probe.ok and report.model.total_params == NET_PARAMS
    assert report.inputs == ("float32[4, 4]",)  # the module-level example_input() was found
    assert not list(repo.rglob("__pycache__"))  # nothing written into the user's repository


def test_nested_package_and_a_run_from_another_folder(repo: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = snapshot()
    deep = load(f"{repo}/models/sub/deep.py:Deep")  # `from ..blocks import Block`
    assert deep.file_module is not None and deep.file_module.__name__ == "models.sub.deep"
    # the package root's parent is importable, so the repo-root `from utils import width` works
    net = load(f"{repo}/models/net.py:Net")
    assert_restored(before, repo)
    assert sum(p.numel() for p in deep.model.parameters()) == 4 * 4 + 4
    assert sum(p.numel() for p in net.model.parameters()) == NET_PARAMS


def test_a_package_of_the_same_name_loaded_before_is_set_aside_and_put_back(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    other = types.ModuleType("models")
    other.__path__ = []  # another package called `models`, already imported
    monkeypatch.setitem(sys.modules, "models", other)
    before = snapshot()
    loaded = load("models/net.py:Net")
    assert_restored(before, repo)
    assert sys.modules["models"] is other
    assert sum(p.numel() for p in loaded.model.parameters()) == NET_PARAMS


def test_a_failing_import_names_the_line_and_restores_everything(repo: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(repo, "models/broken.py", "from .blocks import Block\nfrom .missing import Thing\n")
    write_file(repo, "models/raises.py", "from .blocks import Block\nraise ValueError('boom')\n")
    monkeypatch.chdir(repo)
    before = snapshot()
    with pytest.raises(InspectrError) as err:
        load("models/broken.py:Thing")
    assert_restored(before, repo)
    assert "models/broken.py:2" in str(err.value) and "missing" in str(err.value)
    with pytest.raises(InspectrError) as err:
        load("models.raises:Thing")
    assert_restored(before, repo)
    assert "models/raises.py:2" in str(err.value) and "ValueError: boom" in str(err.value)


def test_relative_import_outside_a_package_says_how_to_fix_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(tmp_path, "loose/net.py", "from .blocks import Block\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InspectrError) as err:
        load("loose/net.py:Net")
    msg = str(err.value)
    assert "loose/net.py:1" in msg and "__init__.py" in msg and "inspectr models.net:Net" in msg


def test_cli_both_spec_forms_from_the_repository_root(repo: Path) -> None:
    # PYTHONSAFEPATH: like the installed `inspectr` script, the current folder is not on sys.path
    for spec in ("models/net.py:Net", "models.net:Net"):
        proc = run_cli(spec, "--format", "json", cwd=repo, env={"PYTHONSAFEPATH": "1"})
        assert proc.returncode == 0, proc.stderr
        doc = strict_json(proc.stdout)
        assert doc["model"]["total_params"] == NET_PARAMS
        assert doc["probe"]["ok"]
        assert {m["path"] for m in doc["modules"]} >= {"inp", "block", "block.fc", "head"}


def test_cli_module_not_found_names_the_current_folder(repo: Path) -> None:
    proc = run_cli("nomodels.net:Net", "--report", cwd=repo, env={"PYTHONSAFEPATH": "1"})
    assert_clean_error(proc, "nomodels.net", "current directory", str(repo))


def test_app_loads_a_package_model(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectr.tui.app import InspectrApp

    monkeypatch.chdir(repo)
    sd = {k: torch.full_like(v, 0.25) for k, v in load("models/net.py:Net").model.state_dict().items()}
    safetensors_torch.save_file(sd, str(repo / "net.safetensors"))
    before = snapshot()
    app = InspectrApp("models/net.py:Net", {"weights": "net.safetensors"})

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            end = time.perf_counter() + 60
            while (app.report is None or app.report.probe.mode == "n/a") and time.perf_counter() < end:
                await pilot.pause(0.05)
            await app.workers.wait_for_complete()
            await pilot.pause()

    asyncio.run(main())
    assert app.error is None, app.error
    assert app.report is not None and app.report.model.total_params == NET_PARAMS
    assert any("weights loaded from net.safetensors" in n for n in app.report.probe.notes)
    assert app._loaded is not None and torch.equal(app._loaded.model.head.bias, torch.full((3,), 0.25))
    assert_restored(before, repo)


# ---------------------------------------------------------------- the safetensors reader


def every_dtype() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {
        "f64": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "f32": torch.randn(5, generator=g),
        "f16": torch.randn(3, 3, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),  # odd count: later tensors start unaligned
        "i64": torch.arange(-3, 3),
        "i32": torch.arange(4, dtype=torch.int32).reshape(2, 2),
        "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-1, 0, 1], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "c64": torch.randn(2, generator=g, dtype=torch.complex64),
    }
    if hasattr(torch, "float8_e4m3fn"):
        out["f8"] = torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn)
    return out


def test_reader_matches_the_safetensors_package_on_every_dtype(tmp_path: Path) -> None:
    tensors = every_dtype()
    path = tmp_path / "all.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt", "note": "x"})
    ours = read_safetensors(path)
    theirs = safetensors_torch.load_file(str(path))
    assert set(ours) == set(theirs) == set(tensors)
    for name, t in theirs.items():
        assert ours[name].dtype == t.dtype and ours[name].shape == t.shape, name
        assert torch.equal(ours[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), name
    header = read_safetensors_header(path)
    assert header.metadata == {"format": "pt", "note": "x"}
    assert header.tensors["bf16"][0].shape == (7,)


def raw_safetensors(path: Path, entries: list[tuple[str, str, list[int], bytes]], pad: int = 0) -> None:
    """Write a safetensors file by hand (tensors packed with no alignment)."""
    header: dict[str, Any] = {}
    data, offset = b"", pad
    data = b"\0" * pad
    for name, code, shape, raw in entries:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_reader_copes_with_unaligned_tensors(tmp_path: Path) -> None:
    a = torch.tensor([1.5, -2.25, 3.0])
    path = tmp_path / "odd.safetensors"
    raw_safetensors(path, [("b", "U8", [1], b"\x07"), ("a", "F32", [3], a.numpy().tobytes())])
    got = read_safetensors(path)
    assert torch.equal(got["a"], a) and got["b"].tolist() == [7]


@pytest.mark.parametrize("damage, needle", [
    (lambda raw: raw[:5], "shorter than the 8-byte header length"),
    (lambda raw: raw[:40], "truncated"),
    (lambda raw: raw[:-3], "truncated"),
    (lambda raw: b"\xff" * 8 + raw[8:], "100 MiB limit"),
    (lambda raw: raw[:8] + b"[" + raw[9:], "not valid JSON"),
])
def test_damaged_safetensors_get_one_paragraph(tmp_path: Path, damage: Any, needle: str) -> None:
    good = tmp_path / "good.safetensors"
    safetensors_torch.save_file({"w": torch.randn(4, 4), "b": torch.randn(4)}, str(good))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(InspectrError) as err:
        read_safetensors(bad)
    assert needle in str(err.value) and "bad.safetensors" in str(err.value)


def test_header_that_lies_about_sizes_or_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "lies.safetensors"
    raw_safetensors(path, [("w", "F32", [3], b"\0" * 8)])
    with pytest.raises(InspectrError, match="needs 12 bytes"):
        read_safetensors_header(path)
    raw_safetensors(path, [("w", "F4", [2], b"\0")])
    with pytest.raises(InspectrError, match="dtype 'F4'"):
        read_safetensors_header(path)


# ---------------------------------------------------------------- --weights in every format


@pytest.fixture
def user_net(tmp_path: Path) -> Path:
    write_file(tmp_path, "net.py", '''\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(12, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 5)

    def forward(self, x):
        return self.fc2(torch.relu(self.norm(self.fc1(x))))


class Tied(nn.Module):
    """An embedding shared with the output layer, as language models do."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.out = nn.Linear(6, 20, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))

    def example_input(self, batch_size=4):
        return torch.randint(0, 20, (batch_size, 5))
''')
    return tmp_path / "net.py"


def random_state(spec: str, seed: int = 7, **kwargs: Any) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = load(spec, kwargs=kwargs).model.state_dict()
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 3) for k, v in sd.items()}


def assert_loaded(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k].to(v.dtype)), k


def test_safetensors_weights_load_bf16_cast_and_noted(user_net: Path, tmp_path: Path) -> None:
    spec = f"{user_net}:Net"
    sd = random_state(spec)
    stored = {k: v.bfloat16() if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(stored, str(path), metadata={"format": "pt"})
    loaded = load(spec, weights=str(path))
    assert_loaded(loaded.model, stored)
    assert loaded.notes == [f"weights loaded from {path} (8 tensors cast from bfloat16 to float32)"]
    assert read_state_dict(tmp_path)["fc1.weight"].dtype == torch.bfloat16  # the folder finds it


def test_sharded_checkpoint_written_like_save_pretrained(user_net: Path, tmp_path: Path) -> None:
    from huggingface_hub import save_torch_state_dict  # what transformers' save_pretrained calls

    spec = f"{user_net}:Net"
    sd = random_state(spec)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_torch_state_dict(sd, folder, max_shard_size=700)
    index = folder / "model.safetensors.index.json"
    shards = set(json.loads(index.read_text())["weight_map"].values())
    assert len(shards) >= 2
    for weights in (index, folder):
        loaded = load(spec, weights=str(weights))
        assert_loaded(loaded.model, sd)
        assert loaded.notes == [f"weights loaded from {weights}"]


def test_sharded_checkpoint_cli_and_a_missing_shard(user_net: Path, tmp_path: Path) -> None:
    from huggingface_hub import save_torch_state_dict

    (tmp_path / "ckpt").mkdir()
    save_torch_state_dict(random_state(f"{user_net}:Net"), tmp_path / "ckpt", max_shard_size=700)
    proc = run_cli("net.py:Net", "--format", "json", "--weights", "ckpt/model.safetensors.index.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "weights loaded from ckpt/model.safetensors.index.json" in strict_json(proc.stdout)["probe"]["notes"]
    first = sorted((tmp_path / "ckpt").glob("model-*.safetensors"))[0]
    first.unlink()
    proc = run_cli("net.py:Net", "--report", "--weights", "ckpt", cwd=tmp_path)
    assert_clean_error(proc, first.name, "Copy every shard next to the index")


def test_torch_shards_and_damaged_torch_files(user_net: Path, tmp_path: Path) -> None:
    spec = f"{user_net}:Net"
    sd = random_state(spec)
    names = sorted(sd)
    weight_map = {}
    for i, part in enumerate((names[:4], names[4:])):
        torch.save({k: sd[k] for k in part}, tmp_path / f"pytorch_model-0000{i + 1}-of-00002.bin")
        weight_map.update({k: f"pytorch_model-0000{i + 1}-of-00002.bin" for k in part})
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_loaded(load(spec, weights=str(tmp_path)).model, sd)  # the folder finds the index
    whole = tmp_path / "whole.pt"
    torch.save(sd, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(InspectrError, match="truncated or damaged"):
        load(spec, weights=str(cut))


def test_index_that_names_a_tensor_its_shard_lacks(user_net: Path, tmp_path: Path) -> None:
    from huggingface_hub import save_torch_state_dict

    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_torch_state_dict(random_state(f"{user_net}:Net"), folder, max_shard_size=700)
    index = folder / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    doc["weight_map"]["fc9.weight"] = next(iter(doc["weight_map"].values()))
    index.write_text(json.dumps(doc))
    with pytest.raises(InspectrError, match="fc9.weight"):
        read_state_dict(index)


def test_tied_weights_saved_once_still_fit(user_net: Path, tmp_path: Path) -> None:
    spec = f"{user_net}:Tied"
    model = load(spec).model
    path = tmp_path / "tied.safetensors"
    safetensors_torch.save_model(model, str(path))  # stores the shared tensor under one name
    assert len(safetensors_torch.load_file(str(path))) == 1
    loaded = load(spec, weights=str(path))
    assert torch.equal(loaded.model.out.weight, model.embed.weight)
    assert loaded.model.out.weight is loaded.model.embed.weight


def test_safetensors_mismatch_reports_as_torch_files_do(user_net: Path, tmp_path: Path) -> None:
    spec = f"{user_net}:Net"
    sd = random_state(spec, hidden=32)  # every fc shape differs
    del sd["fc2.bias"]
    sd["extra.weight"] = torch.zeros(2)
    sd["norm.num_batches_tracked"] = torch.zeros(())  # a float where the model keeps an integer count
    safetensors_torch.save_file(sd, str(tmp_path / "bad.safetensors"))
    proc = run_cli("net.py:Net", "--report", "--weights", "bad.safetensors", cwd=tmp_path)
    err = assert_clean_error(proc, "do not fit Net", "1 missing (fc2.bias)", "1 unexpected (extra.weight)",
                             "fc1.weight (32, 12) vs model (16, 12)")
    assert "dtype mismatch (norm.num_batches_tracked float32 vs model int64)" in err


# ---------------------------------------------------------------- models on meta: headers only


@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "torch"])
def test_meta_model_checked_from_headers_without_reading_values(user_net: Path, tmp_path: Path, fmt: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import save_torch_state_dict

    spec = f"{user_net}:Net"
    sd = {k: v.bfloat16() if v.is_floating_point() else v for k, v in random_state(spec).items()}
    if fmt == "safetensors":
        weights = tmp_path / "w.safetensors"
        safetensors_torch.save_file(sd, str(weights))
    elif fmt == "sharded":
        (tmp_path / "ckpt").mkdir()
        save_torch_state_dict(sd, tmp_path / "ckpt", max_shard_size=400)
        weights = tmp_path / "ckpt" / "model.safetensors.index.json"
    else:
        weights = tmp_path / "w.pt"
        torch.save({"model_state_dict": sd, "epoch": 3}, weights)

    def no_values(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("tensor values were read")

    monkeypatch.setattr(checkpoints, "read_safetensors", no_values)
    monkeypatch.setattr(checkpoints, "load_weights", no_values)
    report = inspectr.inspect(spec, weights=str(weights), device="meta")
    note = next(n for n in report.probe.notes if n.startswith("--weights"))
    assert note == (f"--weights {weights}: 9 tensors checked against the model without reading their values "
                    "(keys, shapes, dtypes bfloat16, int64): all match; a real load would have 8 tensors cast "
                    "from bfloat16 to float32; values not loaded, the model is on the meta device")
    assert report.probe.shape_only


def test_model_too_big_for_memory_gets_the_header_check(user_net: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = f"{user_net}:Net"
    sd = random_state(spec, hidden=24)
    safetensors_torch.save_file(sd, str(tmp_path / "w.safetensors"))
    from inspectr.core.sources import build_guard

    monkeypatch.setattr(build_guard, "available_memory", lambda: 1024)  # as if the model did not fit
    loaded = load(spec, weights=str(tmp_path / "w.safetensors"), kwargs={"hidden": 24})
    assert loaded.on_meta and "all match" in loaded.notes[-1]
    with pytest.raises(InspectrError) as err:
        load(spec, weights=str(tmp_path / "w.safetensors"), kwargs={"hidden": 16})
    msg = str(err.value)
    assert "checked without reading the values; the model is on the meta device" in msg
    assert "fc1.weight (24, 12) vs model (16, 12)" in msg and "shape mismatch" in msg


def test_weights_file_given_as_the_model_spec(tmp_path: Path) -> None:
    safetensors_torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    proc = run_cli("model.safetensors", "--report", cwd=tmp_path)
    assert_clean_error(proc, "holds weights only", "--weights model.safetensors")


# ---------------------------------------------------------------- torchvision --pretrained


def hub_weights(hub: Path, name: str, seed: int = 11) -> tuple[dict[str, torch.Tensor], Path]:
    """Save a randomly initialised ``name``'s state dict where torch.hub keeps its DEFAULT weights."""
    from torchvision.models import get_model, get_model_weights

    torch.manual_seed(seed)
    sd = get_model(name, weights=None).state_dict()
    url = get_model_weights(name).DEFAULT.url
    path = hub / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd, path


def test_pretrained_loads_the_hub_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    sd, path = hub_weights(tmp_path, "mobilenet_v3_small")
    loaded = load("mobilenet_v3_small", pretrained=True)
    assert_loaded(loaded.model, sd)
    assert loaded.notes == [f"pretrained weights MobileNet_V3_Small_Weights.IMAGENET1K_V1 loaded from the "
                            f"torch hub cache ({path})"]
    assert "weights=None" not in loaded.description
    on_meta = load("mobilenet_v3_small", pretrained=True, device="meta")
    assert on_meta.on_meta and "not loaded, the model is on the meta device" in on_meta.notes[0]
    report = inspectr.inspect("mobilenet_v3_small", pretrained=True, probe=False)
    assert report.model.total_params == sum(v.numel() for k, v in sd.items() if "running" not in k
                                            and "num_batches" not in k)


def test_pretrained_cli_found_and_not_found(tmp_path: Path) -> None:
    proc = run_cli("squeezenet1_0", "--pretrained", "--report", env={"TORCH_HOME": str(tmp_path)})
    expected = tmp_path / "hub" / "checkpoints" / "squeezenet1_0-b66bff10.pth"
    assert_clean_error(proc, str(expected), "never downloads",
                       "https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth", "TORCH_HOME")
    assert not expected.exists()
    hub_weights(tmp_path, "squeezenet1_0")
    proc = run_cli("squeezenet1_0", "--pretrained", "--format", "json", "--no-probe",
                   env={"TORCH_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    notes = strict_json(proc.stdout)["probe"]["notes"]
    assert any(n.startswith("pretrained weights SqueezeNet1_0_Weights.IMAGENET1K_V1 loaded") for n in notes)


def test_pretrained_file_that_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    sd, path = hub_weights(tmp_path, "squeezenet1_0")
    del sd["classifier.1.bias"]
    torch.save(sd, path)
    with pytest.raises(InspectrError) as err:
        load("squeezenet1_0", pretrained=True)
    assert str(path) in str(err.value) and "classifier.1.bias" in str(err.value)


def test_pretrained_refused_where_it_means_nothing(user_net: Path, tmp_path: Path) -> None:
    assert_clean_error(run_cli("lenet", "--pretrained", "--report"), "sample:lenet", "--weights FILE")
    assert_clean_error(run_cli("net.py:Net", "--pretrained", "--report", cwd=tmp_path),
                       "not a registered torchvision model")
    assert_clean_error(run_cli("resnet18", "--pretrained", "--weights", "x.pt", "--report"), "Use one")
    with pytest.raises(InspectrError, match="pretrained"):
        inspectr.inspect(nn.Linear(2, 2), pretrained=True)


def test_pretrained_build_puts_torchvision_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import WeightsEnum

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    original = WeightsEnum.__dict__["get_state_dict"]
    hub_weights(tmp_path, "squeezenet1_0")
    load("squeezenet1_0", pretrained=True)
    assert WeightsEnum.__dict__["get_state_dict"] is original  # the build-time reader is put back
    assert os.environ["TORCH_HOME"] == str(tmp_path)
