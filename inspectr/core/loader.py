"""Provides the loader: a model spec (registered name, user file, importable module) to a live model.

Every way a user's request can be wrong ends here as one ``InspectrError`` paragraph that
names the file, line, module or argument and says how to fix it.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from inspectr.core.build_guard import AllocationGuard, BuildTooBig

# moved to checkpoints; importable from here as before
from inspectr.core.checkpoints import CHECKPOINT_KEYS as CHECKPOINT_KEYS
from inspectr.core.checkpoints import (
    TorchvisionPretrained,
    apply_weights,
    check_pretrained_request,
    load_weights,
)
from inspectr.core.checkpoints import extract_state_dict as extract_state_dict
from inspectr.core.usercode import import_file, import_module
from inspectr.errors import InspectrError

# files a spec may name; any other path is taken for a folder ("Qwen/Qwen2.5-7B" has a dot too)
MODEL_FILE_SUFFIXES = (".py", ".pt", ".pth", ".ckpt", ".bin", ".pt2", ".safetensors", ".json", ".zip", ".jit", ".ts")


@dataclass(frozen=True)
class ParsedSpec:
    """A model spec, split into its kind and parts (pure: nothing imported yet)."""

    kind: str  # "registry" | "file" | "module" | "pickle" | "hf" | "timm"
    target: str  # registered name, file path, dotted module, model folder or timm name
    attr: str | None = None  # class / factory / instance name


def parse_spec(spec: str) -> ParsedSpec:
    """Split ``resnet18`` / ``sample:lenet`` / ``path/model.py:MyNet`` / ``pkg.mod:make``."""
    s = spec.strip()
    if not s:
        raise InspectrError("The model spec is empty.", "Give a model name (see `inspectr --list`) or path/to/model.py:MyNet.")
    head, sep, tail = s.rpartition(":")
    hub = hub_spec(s)
    if hub is not None:
        return hub
    if sep and (head.endswith(".py") or "/" in head or os.sep in head):
        return ParsedSpec("file", head, tail or None)
    if s.endswith(".py"):
        return ParsedSpec("file", s, None)
    if s.endswith((".safetensors", ".index.json")) and not sep:
        raise InspectrError(
            f"{s} holds weights only: a checkpoint has no code to build the model from.",
            f"Name the model and pass the file as weights: `inspectr path/to/model.py:MyNet --weights {s}`.",
        )
    if s.endswith((".pt", ".pth", ".ckpt", ".bin")) and not sep:
        return ParsedSpec("pickle", s, None)
    if sep and head not in ("sample", "torchvision") and "." in head:
        return ParsedSpec("module", head, tail or None)
    if sep and head not in ("sample", "torchvision") and head and tail:
        return ParsedSpec("module", head, tail)
    return ParsedSpec("registry", s, None)


def hub_spec(spec: str) -> ParsedSpec | None:
    """``hf:FOLDER``, ``timm:NAME``, a folder path, or a folder holding a ``config.json``."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("hf", "timm"):
        return ParsedSpec(prefix, rest.strip())
    if sep:
        return None
    path = Path(spec)
    if path.name == "config.json" or (path / "config.json").is_file():
        return ParsedSpec("hf", spec)
    if ("/" in spec or os.sep in spec) and (path.is_dir() or not (
            path.exists() or path.suffix.lower() in MODEL_FILE_SUFFIXES)):
        return ParsedSpec("hf", spec)  # a folder path: the hub loader says what is wrong with it
    return None


@dataclass
class LoadedModel:
    """A built model plus what the loader learned about it."""

    model: nn.Module
    name: str
    source: str
    description: str = ""
    file_module: ModuleType | None = None
    registry_family: str | None = None
    notes: list[str] = field(default_factory=list)
    on_meta: bool = False
    expected: tuple[str, str] | None = None
    example: Any = None  # batch size -> Inputs, for formats that know their input (archives)


# ---------------------------------------------------------------- importing user code


def model_candidates(module: ModuleType) -> list[str]:
    """Names in a module that could be a model: nn.Module subclasses, instances and functions."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
            out.append(name)
        elif isinstance(obj, nn.Module):
            out.append(name)
        elif inspect.isfunction(obj) and obj.__module__ == module.__name__ and name != "example_input":
            out.append(name + "()")
    return out


def build_from_object(obj: Any, where: str, kwargs: dict[str, Any]) -> nn.Module:
    """Turn a class, factory or instance into a model, with clear errors for each way it fails."""
    if isinstance(obj, nn.Module):
        if kwargs:
            raise InspectrError(
                f"{where} is already a model instance, so --kwargs cannot be applied to it.",
                "Drop --kwargs, or point the spec at the class or a factory function.",
            )
        return obj
    if inspect.isclass(obj) and not issubclass(obj, nn.Module):
        raise InspectrError(f"{where} is a class but not an nn.Module subclass.", "Point the spec at your nn.Module subclass or a function that returns one.")
    if not callable(obj):
        raise InspectrError(f"{where} is a {type(obj).__name__}, not a model.", "Point the spec at an nn.Module subclass, a factory function or a model instance.")
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
        bound_ok = True
        try:
            sig.bind(*(() if not inspect.isclass(obj) else (None,)), **kwargs)
        except TypeError:
            bound_ok = False
    except (TypeError, ValueError):
        sig, bound_ok = None, True
    if sig is not None and not bound_ok:
        params = [p for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        required = [p.name for p in params if p.default is p.empty and p.name not in kwargs]
        unknown = [k for k in kwargs if k not in {p.name for p in params}]
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            raise InspectrError(
                f"{where} takes no argument named {', '.join(map(repr, unknown))} (it takes: {', '.join(p.name for p in params) or 'nothing'}).",
                "Fix the names in --kwargs.",
            )
        if required:
            example = ", ".join(f'"{n}": {_example_value(sig.parameters[n])}' for n in required)
            raise InspectrError(
                f"{where} needs constructor arguments: {', '.join(required)}.",
                f"Pass them as JSON: --kwargs '{{{example}}}'.",
            )
    try:
        model = obj(**kwargs)
    except InspectrError:
        raise
    except Exception as exc:
        raise InspectrError(
            f"Building the model with {where}({_kwargs_text(kwargs)}) raised {type(exc).__name__}: {exc}.",
            "Check the constructor arguments (--kwargs) and the constructor's code; --debug shows the traceback.",
        ) from exc
    if not isinstance(model, nn.Module):
        raise InspectrError(
            f"{where}() returned a {type(model).__name__}, not an nn.Module.",
            "Make the factory return the model, or point the spec at the nn.Module class itself.",
        )
    return model


def _example_value(p: inspect.Parameter) -> str:
    ann = p.annotation
    if ann in (int, "int"):
        return "10"
    if ann in (float, "float"):
        return "0.1"
    if ann in (bool, "bool"):
        return "true"
    if ann in (str, "str"):
        return '"..."'
    return "..."


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# ---------------------------------------------------------------- building


def _meta_build(build: Any) -> nn.Module | None:
    """Build on the meta device (no memory, no init cost) to learn the size; None if it can't."""
    try:
        with torch.device("meta"):
            m = build()
        return m if isinstance(m, nn.Module) else None
    except Exception:
        return None


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable), or a large number if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def available_for(device: str) -> int:
    """Bytes free where a probe on ``device`` runs: the GPU's free memory for cuda, else RAM."""
    if device.startswith("cuda") and torch.cuda.is_available():
        try:
            return torch.cuda.mem_get_info(torch.device(device))[0]
        except Exception:
            pass
    return available_memory()


NEED_FACTOR = 2.5  # a probe needs about this many times its parameters' bytes (``needed_bytes``)

# Bytes of tensors a real build may make before the loader stops it and sizes the model on the
# meta device. Small and fixed, not what a probe could use (available / NEED_FACTOR, 9.6 GB of
# 24 GB): a model too big for memory then costs at most this much before it goes to meta (a
# 6.7B model file peaked at 9.7 GB, now at 1.7 GB), and a model that fits but passes it pays a
# partial build no bigger than its own, a meta build, and its real build.
BUILD_BUDGET = 1 << 30


def needed_bytes(model: nn.Module) -> int:
    """A rough peak for a probe: parameters + gradients + buffers, plus activation headroom."""
    lazy = nn.parameter.UninitializedTensorMixin  # sizes unknown until a first forward: counted 0
    p = sum(t.numel() * t.element_size() for t in model.parameters() if not isinstance(t, lazy))
    b = sum(t.numel() * t.element_size() for t in model.buffers() if not isinstance(t, lazy))
    return int(NEED_FACTOR * p) + b


def build_checked(build: Any, device: str, notes: list[str], seed: int = 0) -> tuple[nn.Module, bool]:
    """Build a model, going to the meta device when it would not fit in memory (or was asked for).

    The build runs under an ``AllocationGuard``: a model whose tensors stay within
    ``BUILD_BUDGET`` (nearly every one) is built once. A bigger one stops there and is sized
    exactly on the meta device, then built for real only if a probe fits. Each build runs with
    the RNG seeded (``seed``) and put back afterwards, so random initialisation, and therefore
    the report, is the same on every run.

    Returns:
        (model, on_meta)
    """

    def seeded(fn: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return fn()

    if device == "meta":
        m = seeded(lambda: _meta_build(build))
        if m is None:
            raise InspectrError(
                "This model cannot be built on the meta device (its constructor reads tensor values).",
                "Drop --device meta to build it for real.",
            )
        return m, True
    avail = available_for(device)
    try:
        with AllocationGuard(min(BUILD_BUDGET, int(avail / NEED_FACTOR))):
            model = seeded(build)
        if needed_bytes(model) <= avail:
            return model, False
        del model  # tensors made outside torch's functions: the exact check says it does not fit
    except BuildTooBig:
        pass
    meta = seeded(lambda: _meta_build(build))
    if meta is None:  # its constructor cannot run on meta: build it for real, as far as a probe fits
        return _build_unsized(seeded, build, avail), False
    need = needed_bytes(meta)
    if need > avail:
        total = sum(t.numel() for t in meta.parameters())
        notes.append(
            f"The model has {total:,} parameters and needs about {need / 2**30:.1f} GiB to probe, "
            f"more than the {avail / 2**30:.1f} GiB available: built on the meta device, so this "
            "report has exact parameter counts, shapes and FLOPs but no statistics."
        )
        return meta, True
    del meta
    return seeded(build), False  # it fits: past the budget, or the guard counted temporaries


def _build_unsized(seeded: Any, build: Any, avail: int) -> nn.Module:
    """A real build of a model the meta device cannot size, stopped where a probe cannot fit."""
    try:
        with AllocationGuard(int(avail / NEED_FACTOR)):
            return seeded(build)
    except BuildTooBig as exc:
        made = exc.made
    raise InspectrError(
        f"Building the model made over {made / 2**30:.1f} GiB of tensors, more than a probe can have of the "
        f"{avail / 2**30:.1f} GiB available, and its constructor cannot run on the meta device (it reads "
        "tensor values), so it cannot be sized without building it.",
        "Inspect a smaller configuration (--kwargs), or run where more memory is free.",
    )


def load(
    spec: str,
    kwargs: dict[str, Any] | None = None,
    weights: str | None = None,
    trust_pickle: bool = False,
    device: str = "cpu",
    seed: int = 0,
    pretrained: bool = False,
) -> LoadedModel:
    """Build the model a spec names.

    Args:
        spec: see ``parse_spec``.
        kwargs: constructor arguments.
        weights: a checkpoint: a torch file (``weights_only=True``), a ``.safetensors`` file, a
            sharded checkpoint's ``.index.json``, or a folder holding one.
        trust_pickle: allow a whole pickled model file (runs code from that file).
        device: "meta" builds on the meta device; anything else builds on CPU (the probe moves it).
        seed: seeds random initialisation (the global RNG is left as it was).
        pretrained: a registered torchvision model's DEFAULT weights, from the local torch hub cache.

    Raises:
        InspectrError: every way the request can be wrong, one paragraph each.
    """
    kwargs = dict(kwargs or {})
    from inspectr.core.archives import archive_kind, load_archive

    archive = archive_kind(spec.strip())
    if archive is not None:  # TorchScript or torch.export, told by content: no pickled Python to trust
        return load_archive(spec.strip(), archive, kwargs, weights, trust_pickle, device)
    parsed = parse_spec(spec)
    if pretrained:
        check_pretrained_request(parsed.kind, spec, weights)
    notes: list[str] = []
    file_module: ModuleType | None = None
    family = None
    expected = None
    if parsed.kind == "registry":
        from inspectr.core.registry import lookup

        entry = lookup(parsed.target)
        hub = TorchvisionPretrained(entry, kwargs) if pretrained else None
        model, on_meta = build_checked(hub or (lambda: _registry_build(entry, kwargs)), device, notes, seed)
        if hub is not None:
            notes.append(hub.note(on_meta))
        name, source, desc, family, expected = entry.name, entry.source, entry.description, entry.family, entry.expected
        desc = hub.description if hub is not None else desc
    elif parsed.kind == "pickle":
        return _load_pickled(parsed.target, trust_pickle, kwargs, weights)
    elif parsed.kind in ("hf", "timm"):
        from inspectr.core import hub

        built = (hub.load_hf if parsed.kind == "hf" else hub.load_timm)(parsed.target, kwargs, device, seed)
        model, on_meta, notes = built.model, built.on_meta, built.notes
        name, source, desc = built.name, built.source, built.description
    else:
        if parsed.kind == "file":
            file_module = import_file(parsed.target)
            where_file = parsed.target
        else:
            file_module = import_module(parsed.target)
            where_file = parsed.target
        attr = parsed.attr
        if attr is None:
            classes = [n for n in model_candidates(file_module) if not n.endswith("()")
                       and inspect.isclass(getattr(file_module, n))]
            if len(classes) == 1:
                attr = classes[0]
                notes.append(f"{where_file} defines one model class, {attr}: using it.")
            else:
                raise _name_error(where_file, None, file_module)
        if not hasattr(file_module, attr):
            raise _name_error(where_file, attr, file_module)
        obj = getattr(file_module, attr)
        where = f"{where_file}:{attr}"
        if isinstance(obj, nn.Module):
            model, on_meta = build_from_object(obj, where, kwargs), False
            if device == "meta":
                notes.append("The model is a module-level instance: it was probed on meta copies of its tensors.")
        else:
            model, on_meta = build_checked(lambda: build_from_object(obj, where, kwargs), device, notes, seed)
        own_doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
        desc = (inspect.cleandoc(own_doc).split("\n")[0] if own_doc and not isinstance(obj, nn.Module) else "")
        name, source = spec, parsed.kind
    if weights:
        notes.append(apply_weights(model, weights, on_meta))
    return LoadedModel(model, name, source, desc, file_module, family, notes, on_meta, expected)


def _registry_build(entry: Any, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return entry.build(kwargs)
    except TypeError as exc:
        raise InspectrError(
            f"Building {entry.qualified} with --kwargs {_kwargs_text(kwargs)} failed: {exc}.",
            "Check the argument names in --kwargs.",
        ) from exc


def _name_error(where: str, attr: str | None, module: ModuleType) -> InspectrError:
    cands = model_candidates(module)
    listing = ", ".join(cands) if cands else "nothing that looks like a model"
    if attr is None:
        return InspectrError(
            f"{where} has no model name after the colon, and the file defines {listing}.",
            f"Name one: `inspectr {where}:{(cands[0].rstrip('()') if cands else 'MyNet')}`.",
        )
    return InspectrError(
        f"{where} defines no {attr!r}. It defines: {listing}.",
        f"Use one of those after the colon, e.g. `{where}:{cands[0].rstrip('()') if cands else 'MyNet'}`.",
    )


def _load_pickled(path: str, trust: bool, kwargs: dict[str, Any], weights: str | None) -> LoadedModel:
    if not Path(path).exists():
        raise InspectrError(f"The model file {path} does not exist.", "Check the path.")
    if not trust:
        raise InspectrError(
            f"{path} is a saved file, and loading a whole pickled model runs code from it.",
            f"If you trust the file, add --trust-pickle. For a state dict, give the model and the weights: "
            f"`inspectr path/model.py:MyNet --weights {path}`.",
        )
    if kwargs:
        raise InspectrError(f"{path} holds a built model, so --kwargs cannot be applied to it.", "Drop --kwargs.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise InspectrError(
            f"{path} cannot be unpickled here: {exc}. A pickled model stores only the name of its class, "
            "and that class must be importable (a class defined in a script's __main__ is not).",
            "Save `model.state_dict()` instead and load it with `inspectr model.py:MyNet --weights FILE`, "
            "or run inspectr where the class's module is importable.",
        ) from exc
    except Exception as exc:
        raise InspectrError(f"{path} cannot be loaded: {type(exc).__name__}: {exc}.", "Check the file.") from exc
    if not isinstance(obj, nn.Module):
        raise InspectrError(
            f"{path} holds a {type(obj).__name__}, not a pickled nn.Module.",
            f"For a state dict or checkpoint, name the model and pass the file as weights: `inspectr model.py:MyNet --weights {path}`.",
        )
    notes = [f"loaded the pickled model in {path} (--trust-pickle)"]
    if weights:
        notes.append(load_weights(obj, weights))
    return LoadedModel(obj, path, "pickle", f"pickled model from {path}", notes=notes)
