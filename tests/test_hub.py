"""Tests Hugging Face model folders and timm models: specs, meta-first builds, local weights,
config-driven inputs, outputs shown field by field, the missing-extra errors and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_clean_error, run_cli, run_cli_peak_rss, strict_json
from test_layering import loaded_after

import inspectr
from inspectr.core.inspection import Report
from inspectr.core.sources import hub
from inspectr.core.sources.build_guard import available_memory
from inspectr.core.sources.loader import parse_spec
from inspectr.errors import InspectrError

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)
LLAMA_70B = dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                 intermediate_size=28672, vocab_size=128256, max_position_embeddings=131072,
                 rms_norm_eps=1e-5, tie_word_embeddings=False)
LLAMA_70B_PARAMS = 70_553_706_496


def save(folder: Path, model: torch.nn.Module, **kw: object) -> Path:
    """``save_pretrained`` with transformers' progress bars kept out of the test log."""
    with hub.quiet_transformers(transformers):
        model.save_pretrained(folder, **kw)
    return folder


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bad(report: Report) -> list[str]:
    return [f"{f.kind} at {f.module}: {f.message}" for f in report.findings if f.severity in ("warning", "error")]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A 2-layer Llama saved with save_pretrained (model.safetensors), and the model saved."""
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))
    return save(tmp_path_factory.mktemp("hf") / "llama", model), model


def llama_output_text(model: torch.nn.Module) -> str:
    """The root output as inspectr should show it at the probe's batch 2 × 32 tokens: every field
    the installed transformers' output carries, in its order and spelling (5.x calls the cache
    ``cache``, 4.x ``past_key_values``), the key/value cache summarised."""
    ones = torch.ones(2, 32, dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ones, attention_mask=ones)
    fields = []
    for name, value in out.items():
        if isinstance(value, torch.Tensor):
            fields.append(f"{name}: Tensor[{', '.join(map(str, value.shape))}]")
        else:  # the key/value cache: per-layer keys and values
            keys = value.layers[0].keys
            fields.append(f"{name}: {type(value).__name__}({len(value.layers)} layers × k/v [{', '.join(map(str, keys.shape))}])")
    assert len(fields) == 2 and fields[0] == "logits: Tensor[2, 32, 100]", fields  # logits and a cache
    return "{" + ", ".join(fields) + "}"


def in_order(words: list[str], text: str) -> bool:
    """Whether ``words`` appear in ``text``'s words in this order (other words may sit between)."""
    rest = iter(text.split())
    return all(word in rest for word in words)


def assert_same_weights(model: torch.nn.Module, saved: torch.nn.Module) -> None:
    theirs = saved.state_dict()
    ours = model.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("spec, kind, target", [
    ("hf:some/folder", "hf", "some/folder"),
    ("hf:acme/tiny-llama", "hf", "acme/tiny-llama"),
    ("timm:vit_small_patch16_224", "timm", "vit_small_patch16_224"),
    ("timm:vit_small_patch16_224.augreg_in21k", "timm", "vit_small_patch16_224.augreg_in21k"),
    ("missing/folder", "hf", "missing/folder"),
    ("Qwen/Qwen2.5-7B", "hf", "Qwen/Qwen2.5-7B"),  # a dot in a folder name is not a file suffix
    ("models/net.py", "file", "models/net.py"),
    ("models/net.py:Net", "file", "models/net.py"),
    ("ckpt/model.pt", "pickle", "ckpt/model.pt"),
    ("resnet18", "registry", "resnet18"),
    ("sample:lenet", "registry", "sample:lenet"),
    ("pkg.mod:make", "module", "pkg.mod"),
])
def test_parse_spec_hub_forms(spec: str, kind: str, target: str) -> None:
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_a_folder_with_config_json_is_a_hub_spec_even_without_a_slash(llama, monkeypatch) -> None:
    folder, _ = llama
    monkeypatch.chdir(folder.parent)
    assert parse_spec(folder.name).kind == "hf"
    assert parse_spec(f"{folder.name}/config.json").kind == "hf"
    assert parse_spec("lenet").kind == "registry"  # no such folder here


# ---------------------------------------------------------------- Hugging Face folders


def test_llama_folder_counts_weights_inputs_and_a_clean_probe(llama) -> None:
    folder, saved = llama
    before = sorted(p.name for p in folder.iterdir())
    report = inspectr.inspect(str(folder))
    assert report.model.total_params == n_params(saved) == 24_992
    assert report.model.class_name == "LlamaForCausalLM"
    assert report.model.source == "hf"
    ids, mask = report.inputs
    assert ids.startswith("input_ids=int64[2, 32] in [") and mask == "attention_mask=int64[2, 32] in [1, 1]"
    low, high = map(int, ids.split(" in [")[1].rstrip("]").split(", "))
    assert 0 <= low <= high < 100  # token ids below vocab_size
    assert report.probe.ok and report.probe.backward == "ran"
    assert bad(report) == []
    assert any(f"weights loaded from {folder / 'model.safetensors'}" in n for n in report.probe.notes)
    root = report.modules[0]
    assert root.output_structure == llama_output_text(saved)
    assert root.output_shapes == ((2, 32, 100),)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the user's folder


def test_folder_weights_are_really_loaded(llama) -> None:
    folder, saved = llama
    loaded = hub.load_hf(str(folder), {}, "cpu", seed=0)
    assert not loaded.on_meta
    assert_same_weights(loaded.model, saved)
    # and not by chance: a build from the config alone has other (seeded) weights
    torch.manual_seed(0)
    fresh = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))
    assert not torch.equal(fresh.model.embed_tokens.weight, saved.model.embed_tokens.weight)


def test_sharded_safetensors_folder(tmp_path: Path, llama) -> None:
    _, saved = llama
    folder = save(tmp_path / "sharded", saved, max_shard_size="20KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = len(set(index["weight_map"].values()))
    assert shards > 1
    loaded = hub.load_hf(str(folder), {}, "cpu", seed=0)
    assert_same_weights(loaded.model, saved)
    assert any(f"model.safetensors.index.json ({shards} shards)" in n for n in loaded.notes)


def test_pytorch_model_bin_folder(tmp_path: Path, llama) -> None:
    _, saved = llama
    folder = tmp_path / "bin"
    saved.config.save_pretrained(folder)
    torch.save(saved.state_dict(), folder / "pytorch_model.bin")
    loaded = hub.load_hf(str(folder), {}, "cpu", seed=0)
    assert_same_weights(loaded.model, saved)
    assert any("pytorch_model.bin" in n for n in loaded.notes)


def test_config_only_folder_builds_seeded_random_weights(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    transformers.LlamaConfig(**LLAMA, architectures=["LlamaForCausalLM"]).save_pretrained(folder)
    a = hub.load_hf(str(folder), {}, "cpu", seed=3)
    b = hub.load_hf(str(folder), {}, "cpu", seed=3)
    c = hub.load_hf(str(folder), {}, "cpu", seed=4)
    assert torch.equal(a.model.lm_head.weight, b.model.lm_head.weight)
    assert not torch.equal(a.model.lm_head.weight, c.model.lm_head.weight)
    assert any("holds no weights" in n for n in a.notes)
    report = inspectr.inspect(f"hf:{folder}")
    assert report.probe.mode == "train"  # from the config: transformers' own mode, training
    assert report.probe.ok and bad(report) == []


def test_gpt2_tied_head_counts_as_transformers_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64))
    folder = save(tmp_path / "gpt2", model)
    report = inspectr.inspect(str(folder))
    assert report.model.total_params == n_params(model) == model.num_parameters()
    assert report.probe.ok and bad(report) == []


def test_short_context_sets_the_sequence_length(tmp_path: Path) -> None:
    folder = tmp_path / "short"
    transformers.LlamaConfig(**{**LLAMA, "max_position_embeddings": 16}, architectures=["LlamaForCausalLM"]).save_pretrained(folder)
    report = inspectr.inspect(str(folder), batch_size=3)
    assert report.inputs[1] == "attention_mask=int64[3, 16] in [1, 1]"
    assert report.probe.ok


def vit() -> torch.nn.Module:
    return transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=5))


def bert() -> torch.nn.Module:
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
        max_position_embeddings=64))


def t5() -> torch.nn.Module:
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=100))


def whisper() -> torch.nn.Module:
    return transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, num_mel_bins=16, max_source_positions=32,
        max_target_positions=32, decoder_start_token_id=1, pad_token_id=0, bos_token_id=1, eos_token_id=2))


def clip() -> torch.nn.Module:
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(small, vocab_size=100, max_position_embeddings=16),
        vision_config=dict(small, image_size=32, patch_size=8), projection_dim=16))


def wav2vec2() -> torch.nn.Module:
    return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=20,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4))


@pytest.mark.parametrize("make, inputs", [
    (vit, ("pixel_values=float32[2, 3, 32, 32]",)),
    (bert, ("input_ids", "attention_mask=int64[2, 32] in [1, 1]")),
    (t5, ("input_ids", "attention_mask", "decoder_input_ids")),
    (whisper, ("input_features=float32[2, 16, 64]", "decoder_input_ids")),
    (clip, ("input_ids", "attention_mask=int64[2, 16] in [1, 1]", "pixel_values=float32[2, 3, 32, 32]")),
    (wav2vec2, ("input_values=float32[2, 16000]",)),
], ids=lambda x: getattr(x, "__name__", ""))
def test_architectures_get_inputs_from_their_config_and_no_false_findings(tmp_path: Path, make, inputs) -> None:
    torch.manual_seed(0)
    model = make()
    folder = save(tmp_path / make.__name__, model)
    report = inspectr.inspect(str(folder))
    assert report.model.total_params == n_params(model)
    assert len(report.inputs) == len(inputs)
    for got, want in zip(report.inputs, inputs):
        assert got.startswith(want), (got, want)
    assert report.probe.ok, report.probe.error
    assert report.probe.backward == "ran"
    assert bad(report) == []


def test_bfloat16_config_builds_in_its_dtype(tmp_path: Path, llama) -> None:
    _, saved = llama
    folder = save(tmp_path / "bf16", transformers.LlamaForCausalLM(saved.config).to(torch.bfloat16))
    report = inspectr.inspect(str(folder))
    assert report.model.param_bytes == 2 * report.model.total_params
    assert any("built in bfloat16" in n for n in report.probe.notes)
    assert report.probe.ok and bad(report) == []


def test_kwargs_override_config_fields(llama) -> None:
    folder, saved = llama
    report = inspectr.inspect(str(folder), kwargs='{"num_hidden_layers": 1}', probe=False)
    one = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**LLAMA, "num_hidden_layers": 1}))
    assert report.model.total_params == n_params(one) < n_params(saved)
    assert any("was not loaded: --kwargs changed the config" in n for n in report.probe.notes)
    with pytest.raises(InspectrError, match=r"'num_layerz'.*not a field of LlamaConfig"):
        inspectr.inspect(str(folder), kwargs='{"num_layerz": 1}', probe=False)


def test_unknown_architecture_name_falls_back_to_automodel(tmp_path: Path) -> None:
    folder = tmp_path / "variant"
    transformers.LlamaConfig(**LLAMA, architectures=["MyLlamaVariant"]).save_pretrained(folder)
    report = inspectr.inspect(str(folder))
    assert report.model.class_name == "LlamaModel"
    assert any("MyLlamaVariant, which transformers" in n and "AutoModel" in n for n in report.probe.notes)
    assert report.probe.ok


def test_llama_70b_config_exact_count_on_meta_in_seconds(tmp_path: Path) -> None:
    folder = tmp_path / "llama70b"
    transformers.LlamaConfig(**LLAMA_70B, architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(folder)
    start = time.perf_counter()
    report = inspectr.inspect(str(folder), device="meta", probe=False)
    assert report.model.total_params == LLAMA_70B_PARAMS
    assert report.model.param_bytes == 2 * LLAMA_70B_PARAMS  # bfloat16, as config.json says
    assert time.perf_counter() - start < 30


def test_too_big_folder_goes_to_meta_without_loading_its_weights(tmp_path: Path) -> None:
    folder = tmp_path / "llama70b"
    transformers.LlamaConfig(**LLAMA_70B, architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"not read")  # a model on meta never reads its weights
    if available_memory() > 400 * 2**30:
        pytest.skip("this machine could build a 70B model for real")
    loaded = hub.load_hf(str(folder), {}, "cpu", seed=0)
    assert loaded.on_meta
    assert n_params(loaded.model) == LLAMA_70B_PARAMS
    assert any("built on the meta device" in n for n in loaded.notes)
    assert any("model.safetensors" in n and "not loaded" in n for n in loaded.notes)


def test_meta_probe_of_a_big_config_has_no_false_forward_error(tmp_path: Path) -> None:
    folder = tmp_path / "wide"
    transformers.LlamaConfig(**{**LLAMA_70B, "num_hidden_layers": 2}, architectures=["LlamaForCausalLM"]).save_pretrained(folder)
    report = inspectr.inspect(str(folder), device="meta")
    assert report.probe.ok and report.probe.shape_only, report.probe.error
    (ids,) = report.inputs  # no mask: transformers cannot read one on meta (all ones is the same as none)
    assert ids.startswith("input_ids=int64[2, 32]")
    assert report.modules[0].output_shapes == ((2, 32, 128256),)


def test_hf_model_object_gets_config_inputs_and_is_left_untouched() -> None:
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = inspectr.inspect(model)
    assert report.inputs[1] == "attention_mask=int64[2, 32] in [1, 1]"
    assert report.probe.ok and bad(report) == []
    assert not model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- Hugging Face errors


def test_folder_errors_name_the_problem_and_the_fix(tmp_path: Path) -> None:
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "acme/base"}')
    cases = {
        str(tmp_path / "nowhere"): "does not exist",
        "hf:": "needs a model folder",
        "hf:acme/not-cached-anywhere": "is not in the local Hugging Face cache",
        str(tmp_path): "without a config.json",
        str(adapter): "holds an adapter (adapter_config.json",
    }
    for spec, needle in cases.items():
        with pytest.raises(InspectrError) as err:
            inspectr.inspect(spec)
        assert needle in str(err.value), (spec, str(err.value))
        assert err.value.hint, spec  # and says what to do


def test_remote_code_config_is_refused_and_never_run(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "ran.txt"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "my_custom_net", "architectures": ["MyNet"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig", "AutoModel": "modeling_my.MyNet"}}))
    for name in ("configuration_my.py", "modeling_my.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(InspectrError, match="never runs remote code") as err:
        inspectr.inspect(str(folder))
    assert "AutoModel -> modeling_my.MyNet" in str(err.value)
    assert not marker.exists()


def test_bad_configs(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text('{"model_type": "no_such_model_type_xyz"}')
    with pytest.raises(InspectrError, match="'no_such_model_type_xyz', which transformers .* does not know"):
        inspectr.inspect(str(unknown))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(InspectrError, match="is not valid JSON"):
        inspectr.inspect(str(broken))


def test_weights_that_do_not_fit_the_config(tmp_path: Path, llama) -> None:
    folder, saved = llama
    other = tmp_path / "mismatch"
    shutil.copytree(folder, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InspectrError, match="could not be loaded into LlamaForCausalLM"):
        hub.load_hf(str(other), {}, "cpu", seed=0)


# ---------------------------------------------------------------- timm


def test_timm_model_counts_inputs_and_probe() -> None:
    report = inspectr.inspect("timm:test_vit")
    assert report.model.total_params == n_params(timm.create_model("test_vit", pretrained=False)) == 371_240
    assert report.model.source == "timm"
    assert report.inputs == ("float32[2, 3, 160, 160]",)  # pretrained_cfg input_size
    assert report.probe.ok and bad(report) == []
    assert any("pretrained=False" in n for n in report.probe.notes)


def test_timm_convnext_channels_last_outputs_probe() -> None:
    report = inspectr.inspect("timm:test_convnext")
    assert report.probe.ok and bad(report) == []


def test_channels_last_model_probes() -> None:
    from torch import nn

    model = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(3)]).to(
        memory_format=torch.channels_last)
    report = inspectr.inspect(model, torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last))
    assert report.probe.ok


def test_timm_kwargs_shape_the_inputs() -> None:
    report = inspectr.inspect("timm:test_resnet", kwargs={"in_chans": 1, "num_classes": 7}, backward=False)
    assert report.inputs == ("float32[2, 1, 160, 160]",)
    assert report.modules[0].output_shapes == ((2, 7),)
    with pytest.raises(InspectrError, match="never downloads"):
        inspectr.inspect("timm:test_resnet", kwargs={"pretrained": True})
    with pytest.raises(InspectrError, match=r"timm.create_model\('test_resnet', pretrained=False, bogus=1\) raised TypeError"):
        inspectr.inspect("timm:test_resnet", kwargs={"bogus": 1})


def test_timm_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(InspectrError) as err:
        inspectr.inspect("timm:vit_smal_patch16_224")
    text = str(err.value)
    assert "has no model called 'vit_smal_patch16_224'" in text
    assert "Did you mean: vit_small_patch16_224" in text


def test_bare_timm_name_points_at_the_timm_prefix() -> None:
    with pytest.raises(InspectrError, match="`inspectr timm:vit_small_patch16_224`"):
        inspectr.inspect("vit_small_patch16_224")


def test_hub_imports_neither_library_until_asked() -> None:
    mods = loaded_after("""
        import inspectr, inspectr.core.sources.hub, inspectr.core.sources.loader
        report = inspectr.inspect("sample:lenet")
        assert report.probe.ok
    """)
    assert "transformers" not in mods and "timm" not in mods


# ---------------------------------------------------------------- command line


def test_cli_folder_check_and_report(llama) -> None:
    folder, saved = llama
    proc = run_cli(str(folder), "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{folder}: 24,992 params (24,992 trainable) · probe ok · 0 finding(s)")
    assert proc.stderr == ""  # transformers' logs and progress bars stay quiet
    proc = run_cli(f"hf:{folder}", "--report", "--depth", "1", "--width", "200")
    assert proc.returncode == 0, proc.stderr
    assert "LlamaForCausalLM · hf" in proc.stdout
    root = proc.stdout.split("(root)", 1)[1].split("├─", 1)[0]
    # the Output column wraps its cell, and the row's other columns sit between its lines
    assert in_order(llama_output_text(saved).split(), root), root
    assert f"weights loaded from {folder / 'model.safetensors'}" in proc.stdout


def test_cli_folder_json(llama) -> None:
    folder, saved = llama
    proc = run_cli(str(folder), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = strict_json(proc.stdout)
    assert doc["model"]["total_params"] == 24_992
    root = doc["modules"][0]
    assert root["output_shapes"] == [[2, 32, 100]]
    assert root["output_structure"] == llama_output_text(saved)
    assert doc["inputs"][1] == "attention_mask=int64[2, 32] in [1, 1]"


def test_cli_hub_id_found_in_the_local_cache(tmp_path: Path, llama) -> None:
    folder, _ = llama
    repo = tmp_path / "cache" / "models--acme--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(folder, repo / "snapshots" / "abc123")
    proc = run_cli("hf:acme/tiny-llama", "--check", env={"HF_HUB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "24,992 params" in proc.stdout


@pytest.mark.slow
def test_cli_llama_70b_config_under_a_minute_and_3_gb(tmp_path: Path) -> None:
    folder = tmp_path / "llama70b"
    transformers.LlamaConfig(**LLAMA_70B, architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(folder)
    start = time.perf_counter()
    proc, peak_kib = run_cli_peak_rss(str(folder), "--check", "--device", "meta", out_dir=tmp_path)
    assert time.perf_counter() - start < 60
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{folder}: 70,553,706,496 params")
    assert peak_kib < 3 * 2**20  # KiB on Linux


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where ``import MODULE`` fails, as when it is not installed."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None
        from inspectr.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


def test_cli_without_transformers(llama) -> None:
    folder, _ = llama
    assert_clean_error(run_without("transformers", str(folder), "--report"),
                       "needs the transformers package, which is not installed", "pip install 'inspectr[hf]'")


def test_cli_without_timm() -> None:
    assert_clean_error(run_without("timm", "timm:resnet18", "--report"),
                       "timm is not installed", "pip install 'inspectr[timm]'")
    proc = run_without("timm", "--list")
    assert proc.returncode == 0, proc.stderr
    assert "timm: not installed; pip install 'inspectr[timm]'" in proc.stdout


def test_cli_timm_check_and_list() -> None:
    proc = run_cli("timm:test_vit", "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("test_vit: 371,240 params")
    proc = run_cli("--list")
    assert proc.returncode == 0, proc.stderr
    assert f"timm (timm:NAME, pretrained=False): {len(timm.list_models())} models" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("vision_transformer:"))
    assert "vit_small_patch16_224," in line
