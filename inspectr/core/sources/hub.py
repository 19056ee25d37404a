"""Provides models from the hubs: Hugging Face model folders (config.json and weights) and timm names.

transformers and timm are optional extras, imported only when a spec (or ``--list``) asks for
them. Nothing here downloads: configs and weights come from local files only
(``local_files_only=True``), and a config that needs the folder's own Python code is refused
(``trust_remote_code`` is never set). Inputs for the probe come from the model's config.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import inspect
import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from inspectr.core.sources.base import Inputs, LoadedModel, cast_floats, param_float_dtype
from inspectr.core.sources.build_guard import available_for, build_checked, needed_bytes
from inspectr.errors import InspectrError

HF_INSTALL = "pip install 'inspectr[hf]' (or pip install transformers safetensors)"
TIMM_INSTALL = "pip install 'inspectr[timm]' (or pip install timm)"
# what save_pretrained writes, in the order transformers prefers them
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors",
                "pytorch_model.bin.index.json", "pytorch_model.bin")
HUB_BATCH = 2
TEXT_LENGTH = 32
AUDIO_SAMPLES = 16_000  # one second at the 16 kHz that speech models are trained on
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


# ---------------------------------------------------------------- Hugging Face folders


def import_transformers(what: str) -> ModuleType:
    """``import transformers``, or the one-paragraph error that says how to get it."""
    try:
        import transformers
    except ImportError as exc:
        if getattr(exc, "name", None) in (None, "transformers"):
            raise InspectrError(
                f"{what} is a Hugging Face model, and building it needs the transformers package, "
                "which is not installed in this environment.",
                f"Install the extra: {HF_INSTALL}; then run inspectr again.",
            ) from None
        raise InspectrError(
            f"{what} needs transformers, which is installed but cannot be imported here: {exc}.",
            f"Reinstall it so that it matches this torch {torch.__version__}: {HF_INSTALL}.",
        ) from exc
    return transformers


def hf_folder(target: str) -> Path:
    """The model folder a spec names: a folder with config.json, its config.json, or a hub id
    already in the local Hugging Face cache (never fetched)."""
    if not target:
        raise InspectrError("hf: needs a model folder after the colon.",
                            "E.g. `inspectr hf:path/to/model`, the folder save_pretrained wrote.")
    path = Path(target).expanduser()
    if path.name == "config.json" and path.is_file():
        return path.parent
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        if (path / "adapter_config.json").is_file():
            raise InspectrError(
                f"{target} holds an adapter (adapter_config.json, as PEFT saves it), not a whole model.",
                "Point inspectr at the base model's folder (the one adapter_config.json names as "
                "base_model_name_or_path), or merge the adapter and save the result with save_pretrained.",
            )
        raise InspectrError(
            f"{target} is a folder without a config.json, so it is not a Hugging Face model folder.",
            "Point at the folder save_pretrained wrote (config.json plus the weights), or at a model "
            "file: `inspectr path/to/model.py:MyNet`.",
        )
    if path.exists():
        raise InspectrError(f"{target} is a file, not a Hugging Face model folder.",
                            "Point at the folder that holds config.json.")
    cached = _cached_snapshot(target) if _HUB_ID.fullmatch(target) else None
    if cached is not None:
        return cached
    in_cache = " and is not in the local Hugging Face cache" if _HUB_ID.fullmatch(target) else ""
    raise InspectrError(
        f"The model folder {target} does not exist{in_cache}.",
        "inspectr never downloads: save the model with `model.save_pretrained(FOLDER)` or fetch it "
        "with `hf download ID --local-dir FOLDER`, then run `inspectr FOLDER`.",
    )


def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache, or None (no network)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None
    return folder if (folder / "config.json").is_file() else None


def weight_files(folder: Path) -> tuple[str, int] | None:
    """The weights save_pretrained wrote in ``folder``: (file name, number of shards), or None."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                shards = len(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InspectrError(f"{path} is not a weight index ({type(exc).__name__}: {exc}).",
                                    "It should map tensor names to shard files under \"weight_map\".") from exc
            return name, shards
        return name, 1
    return None


@contextlib.contextmanager
def quiet_transformers(tf: ModuleType) -> Iterator[None]:
    """transformers' log lines, progress bars and warnings silenced, and put back afterwards."""
    log = tf.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def read_config(tf: ModuleType, folder: Path, kwargs: dict[str, Any]) -> Any:
    """``AutoConfig`` from the folder, local files only, ``kwargs`` overriding its fields."""
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InspectrError(f"{path} is not valid JSON: {exc}.", "Fix the file, or save the config again with save_pretrained.") from None
    if not isinstance(raw, dict):
        raise InspectrError(f"{path} holds a JSON {type(raw).__name__}, not a config object.", "Save the config with save_pretrained.")
    model_type = raw.get("model_type")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    known = isinstance(model_type, str) and model_type in CONFIG_MAPPING
    if not known and raw.get("auto_map"):
        raise InspectrError(
            f"{path} needs the folder's own Python code (auto_map: "
            f"{', '.join(f'{k} -> {v}' for k, v in list(raw['auto_map'].items())[:3])}), and inspectr never "
            "runs remote code (trust_remote_code).",
            "Point inspectr at that code as a model file instead: `inspectr FOLDER/modeling_x.py:ClassName "
            "--kwargs '{...}'`, or build the model in a file of your own and give `path/to/file.py:make`.",
        )
    if not isinstance(model_type, str):
        raise InspectrError(f"{path} has no \"model_type\", so transformers cannot tell which architecture it describes.",
                            "Save the config with save_pretrained, which writes it.")
    if not known:
        raise InspectrError(
            f"{path} names model_type {model_type!r}, which transformers {tf.__version__} does not know.",
            "Upgrade transformers (pip install -U transformers), or build the model in a file: `inspectr path/to/file.py:make`.",
        )
    try:
        config, unused = tf.AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, return_unused_kwargs=True, **kwargs)
    except Exception as exc:
        raise InspectrError(f"transformers cannot read {path}: {type(exc).__name__}: {_first_line(exc)}.",
                            "Save the config again with save_pretrained, or fix the field it names.") from exc
    if unused:
        raise InspectrError(
            f"--kwargs {', '.join(map(repr, unused))}: not a field of {type(config).__name__}.",
            "--kwargs on a Hugging Face folder overrides config.json fields, e.g. "
            "--kwargs '{\"num_hidden_layers\": 2}'; use the names config.json uses.",
        )
    return config


def model_class(tf: ModuleType, config: Any) -> tuple[Any, str | None]:
    """The class ``config.architectures[0]`` names in transformers, or ``AutoModel`` and why."""
    archs = getattr(config, "architectures", None) or []
    if archs:
        cls = getattr(tf, str(archs[0]), None)
        if isinstance(cls, type) and issubclass(cls, tf.PreTrainedModel):
            return cls, None
        why = (f"config.json names the architecture {archs[0]}, which transformers {tf.__version__} does not "
               f"define: built AutoModel for {config.model_type!r} (the base model) instead")
    else:
        why = f"config.json names no architecture: built AutoModel for {config.model_type!r} (the base model)"
    return tf.AutoModel, why


def load_hf(target: str, kwargs: dict[str, Any], device: str, seed: int) -> LoadedModel:
    """Build the model a Hugging Face folder describes; load its weights when it fits in memory.

    The model is first built on the meta device (no memory, exact counts at any size). When the
    probe fits, it is built for real: with ``from_pretrained`` when the folder has weights (and
    ``kwargs`` did not change the config), else from the config with seeded random weights.
    """
    folder = hf_folder(target)
    tf = import_transformers(target)
    notes: list[str] = []
    with quiet_transformers(tf):
        config = read_config(tf, folder, kwargs)
        cls, why = model_class(tf, config)
        if why:
            notes.append(why)
        build = _from_config(tf, cls, config)
        meta = _built(build, "meta", folder, cls)
        files = weight_files(folder)
        need, avail = needed_bytes(meta), available_for(device)
        desc = (f"Hugging Face {config.model_type} model from {folder / 'config.json'} "
                f"(transformers {tf.__version__})")
        name = target
        if device == "meta" or need > avail:
            if device != "meta":
                total = sum(p.numel() for p in meta.parameters())
                notes.append(
                    f"The model has {total:,} parameters and needs about {need / 2**30:.1f} GiB to probe, "
                    f"more than the {avail / 2**30:.1f} GiB available: built on the meta device, so this "
                    "report has exact parameter counts, shapes and FLOPs but no statistics.")
            if files:
                notes.append(f"{files[0]} in {folder} was not loaded: the model is on the meta device")
            return LoadedModel(meta, name, "hf", desc, notes=notes + _dtype_note(meta), on_meta=True)
        del meta
        if files and kwargs:
            notes.append(f"{files[0]} in {folder} was not loaded: --kwargs changed the config, so the "
                         "weights were saved for another architecture; the weights are random (seeded)")
        if files and not kwargs:
            model = _from_pretrained(tf, cls, config, folder, files, seed, notes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = _built(build, "cpu", folder, cls)
            if not files:
                notes.append(f"{folder} holds no weights (model.safetensors, pytorch_model.bin): "
                             "built from config.json with random weights (seeded)")
    return LoadedModel(model, name, "hf", desc, notes=notes + _dtype_note(model))


def _dtype_note(model: nn.Module) -> list[str]:
    dtype = param_float_dtype(model)
    if dtype == torch.float32:
        return []
    return [f"built in {str(dtype).replace('torch.', '')}, the dtype config.json names (as from_pretrained "
            "does); float inputs follow it"]


def _from_config(tf: ModuleType, cls: Any, config: Any) -> Callable[[], nn.Module]:
    if cls is tf.AutoModel:
        return lambda: tf.AutoModel.from_config(config, trust_remote_code=False)
    return lambda: cls._from_config(config)


def _built(build: Callable[[], nn.Module], device: str, folder: Path, cls: Any) -> nn.Module:
    try:
        with torch.device(device):
            return build()
    except InspectrError:
        raise
    except Exception as exc:
        raise InspectrError(
            f"transformers could not build {cls.__name__} from {folder / 'config.json'}"
            f"{' on the meta device' if device == 'meta' else ''}: {type(exc).__name__}: {_first_line(exc)}.",
            "Check the config's fields (--kwargs overrides them); --debug shows the traceback.",
        ) from exc


def _from_pretrained(tf: ModuleType, cls: Any, config: Any, folder: Path, files: tuple[str, int],
                     seed: int, notes: list[str]) -> nn.Module:
    name, shards = files
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # anything the checkpoint lacks is initialised the same every run
            model, info = cls.from_pretrained(str(folder), config=config, local_files_only=True,
                                              trust_remote_code=False, output_loading_info=True)
    except Exception as exc:
        raise InspectrError(
            f"The weights in {folder} ({name}) could not be loaded into {cls.__name__}: "
            f"{type(exc).__name__}: {_first_line(exc)}.",
            "Check that config.json and the weights were saved together (save_pretrained writes both), "
            "or inspect the architecture alone by moving the weight files away.",
        ) from exc
    loaded = f"weights loaded from {folder / name}" + (f" ({shards} shards)" if shards > 1 else "")
    notes.append(loaded + "; transformers' from_pretrained leaves the model in eval mode (--train probes it in train mode)")
    for key, what in (("missing_keys", "not in the checkpoint, initialised randomly (seeded)"),
                      ("unexpected_keys", "in the checkpoint but not in the model, skipped"),
                      ("mismatched_keys", "of another shape in the checkpoint, initialised randomly (seeded)")):
        items = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or ())
        if items:
            shown = ", ".join(items[:4]) + (f", … ({len(items) - 4} more)" if len(items) > 4 else "")
            notes.append(f"{len(items)} weight(s) {what}: {shown}")
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]


# ---------------------------------------------------------------- timm


def import_timm(what: str) -> ModuleType:
    """``import timm`` (slow: only when asked), or the one-paragraph error that says how to get it."""
    try:
        import timm
    except ImportError as exc:
        if getattr(exc, "name", None) in (None, "timm"):
            raise InspectrError(f"{what} is a timm model, and timm is not installed in this environment.",
                                f"Install the extra: {TIMM_INSTALL}; then run inspectr again.") from None
        raise InspectrError(f"{what} needs timm, which is installed but cannot be imported here: {exc}.",
                            f"Reinstall it so that it matches this torch: {TIMM_INSTALL}.") from exc
    return timm


def load_timm(name: str, kwargs: dict[str, Any], device: str, seed: int) -> LoadedModel:
    """``timm.create_model(name, pretrained=False, **kwargs)``, on meta when it would not fit."""
    if not name:
        raise InspectrError("timm: needs a model name after the colon.",
                            "E.g. `inspectr timm:resnet50`; `inspectr --list` shows timm's models.")
    timm = import_timm(f"timm:{name}")
    if not timm.is_model(name):
        pool = timm.list_models()
        arch = name.split(".", 1)[0]
        close = difflib.get_close_matches(arch, pool, n=5, cutoff=0.6) or [n for n in pool if arch.lower() in n.lower()][:5]
        hint = f"Did you mean: {', '.join(close)}? " if close else ""
        raise InspectrError(f"timm {timm.__version__} has no model called {name!r}.",
                            hint + "`inspectr --list` shows timm's models.")
    if kwargs.get("pretrained"):
        raise InspectrError("--kwargs pretrained=true would download weights, and inspectr never downloads.",
                            "Drop it; load a local checkpoint with --weights FILE instead.")
    kw = {k: v for k, v in kwargs.items() if k != "pretrained"}

    def build() -> nn.Module:
        try:
            return timm.create_model(name, pretrained=False, **kw)
        except Exception as exc:
            args = "".join(f", {k}={v!r}" for k, v in kw.items())
            raise InspectrError(
                f"timm.create_model({name!r}, pretrained=False{args}) raised {type(exc).__name__}: {_first_line(exc)}.",
                "Check the argument names and values in --kwargs.",
            ) from exc

    notes: list[str] = []
    model, on_meta = build_checked(build, device, notes, seed)
    notes.insert(0, "timm.create_model(pretrained=False): random weights (seeded), nothing downloaded")
    return LoadedModel(model, name, "timm", f"timm {timm.__version__} model (pretrained=False)",
                       notes=notes, on_meta=on_meta)


def timm_families() -> dict[str, list[str]] | None:
    """timm's model names grouped by the module that defines them; None when timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        return None
    try:
        import timm
    except ImportError:
        return None
    out = {m: sorted(timm.list_models(module=m)) for m in sorted(timm.list_modules())}
    return {m: names for m, names in out.items() if names}


# ---------------------------------------------------------------- inputs from configs


def config_inputs(model: nn.Module, batch_size: int | None, meta: bool = False) -> Inputs | None:
    """Inputs a Hugging Face model's config or a timm model's ``pretrained_cfg`` describes.

    ``meta``: the probe runs on meta tensors, where transformers cannot read a mask's values,
    so the all-ones attention mask (the same as none) is left out. Returns None for any other
    model (read by attribute: neither library is imported).
    """
    b = batch_size or HUB_BATCH
    config, main = getattr(model, "config", None), getattr(model, "main_input_name", None)
    if config is not None and hasattr(config, "to_dict") and isinstance(main, str):
        inp = _hf_inputs(model, config, main, b, meta)
    else:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
        inp = _timm_inputs(model, cfg, b) if isinstance(cfg, dict) else None
    return cast_floats(inp, param_float_dtype(model)) if inp is not None else None


def _hf_inputs(model: nn.Module, config: Any, main: str, b: int, meta: bool) -> Inputs | None:
    try:
        params = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        params = set()
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vision = getattr(config, "vision_config", None) or config
    kwargs: dict[str, Any] = {}
    what: list[str] = []
    if main == "input_ids":
        vocab = getattr(text, "vocab_size", None)
        if not isinstance(vocab, int) or vocab < 1:
            return None
        n = _length(text)
        kwargs["input_ids"] = torch.randint(0, vocab, (b, n))
        what.append(f"token ids below vocab_size {vocab}, length {n}")
        if "attention_mask" in params and not meta:
            kwargs["attention_mask"] = torch.ones(b, n, dtype=torch.long)
            what.append("attention mask")
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
            kwargs["decoder_input_ids"] = torch.randint(0, vocab, (b, n))
            what.append("decoder ids")
        if ("pixel_values" in params and getattr(config, "vision_config", None) is not None
                and not any(hasattr(config, a) for a in ("image_token_id", "image_token_index"))):
            kwargs["pixel_values"] = _pixels(vision, b)  # a dual encoder (CLIP-like) takes both
            what.append("pixel values")
    elif main == "pixel_values":
        kwargs["pixel_values"] = _pixels(vision, b)
        what.append(f"pixel values {list(kwargs['pixel_values'].shape[1:])}")
    elif main == "input_values":
        kwargs["input_values"] = torch.randn(b, AUDIO_SAMPLES)
        what.append(f"{AUDIO_SAMPLES} audio samples")
    elif main == "input_features" and isinstance(getattr(config, "num_mel_bins", None), int) and \
            isinstance(getattr(config, "max_source_positions", None), int):
        frames = 2 * config.max_source_positions  # whisper's encoder takes exactly this many
        kwargs["input_features"] = torch.randn(b, config.num_mel_bins, frames)
        what.append(f"{config.num_mel_bins} mel bins × {frames} frames")
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
            vocab = getattr(text, "vocab_size", 2)
            kwargs["decoder_input_ids"] = torch.randint(0, vocab, (b, min(TEXT_LENGTH, _length(text))))
            what.append("decoder ids")
    else:
        return None
    return Inputs((), kwargs, f"{type(config).__name__}: {', '.join(what)}")


def _length(config: Any) -> int:
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        limit = getattr(config, "max_target_positions", None)
    return min(TEXT_LENGTH, limit) if isinstance(limit, int) and limit > 0 else TEXT_LENGTH


def _pixels(config: Any, b: int) -> torch.Tensor:
    size = getattr(config, "image_size", None) or 224
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return torch.randn(b, getattr(config, "num_channels", None) or 3, h, w)


def _timm_inputs(model: nn.Module, cfg: dict[str, Any], b: int) -> Inputs | None:
    size = cfg.get("input_size")
    if not (isinstance(size, (tuple, list)) and len(size) == 3 and all(isinstance(d, int) for d in size)):
        return None
    c, h, w = size
    # --kwargs in_chans= / img_size= build another stem than pretrained_cfg describes
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None:
        c = first.in_channels
    img = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(img, (tuple, list)) and len(img) == 2 and all(isinstance(d, int) for d in img):
        h, w = img
    return Inputs((torch.randn(b, c, h, w),), {}, f"timm pretrained_cfg input_size {(c, h, w)}")
