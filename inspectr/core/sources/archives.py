"""Provides archives as models: TorchScript files and ``torch.export`` programs (``.pt2``), told apart by content.

Neither format runs pickled Python: TorchScript's unpickler only builds TorchScript values and
its code runs in the TorchScript interpreter; an exported program is JSON plus raw tensor bytes.
A ``.pt2`` may still hold pickled parts (tensor subclasses, opaque constants, example inputs that
are not plain tensors): those are named, and need ``--trust-pickle``.

What each format lets the probe see:

- TorchScript: the compiled code calls its submodules in C++, so no Python hook runs below the
  root. Rows keep the module tree and exact counts; the probe measures the root (inputs, output,
  statistics, output gradient) and every parameter's gradient (``.grad`` after backward).
- torch.export: ``torch.export.unflatten`` rebuilds the module hierarchy, one graph module per
  original module, so every row is hooked and measured as usual, under its original path.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from inspectr.core.sources.base import Inputs, LoadedModel
from inspectr.core.sources.checkpoints import load_weights
from inspectr.errors import InspectrError

TORCHSCRIPT = "TorchScript"
EXPORTED = "torch.export"

# what a TorchScript forward hides from Python hooks (said in the report)
SCRIPT_LIMITS = (
    "TorchScript: no forward hooks run on scripted submodules, so per-module shapes, statistics, "
    "output gradients, FLOPs and dead-unit checks are unavailable below the root; shown: the module "
    "tree with exact counts, the root's inputs, output and gradient, and each parameter's gradient norm"
)
EXPORT_MODE = ("torch.export: train/eval behaviour (dropout, BatchNorm statistics) is fixed in the graph "
               "at export time; --train/--eval do not change it")


def archive_kind(path: str) -> str | None:
    """``TORCHSCRIPT`` or ``EXPORTED`` when ``path`` is such an archive (read from its entries), else None.

    Raises:
        InspectrError: a ``.pt2`` file that is no exported program.
    """
    if not os.path.isfile(path):
        return None
    if not zipfile.is_zipfile(path):
        if path.endswith(".pt2"):
            raise InspectrError(f"{path} is not a torch.export program: it is not even a zip archive.",
                                "Check the file; torch.export.save writes .pt2 files.")
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            rest = {n.split("/", 1)[1] for n in names if "/" in n}
            fmt = next((n for n in names if n.split("/", 1)[-1] == "archive_format"), None)
            if fmt is not None and zf.read(fmt).strip() == b"pt2":
                return EXPORTED
            if "serialized_exported_program.json" in names:  # the format torch 2.6 and earlier wrote
                return EXPORTED
    except (OSError, zipfile.BadZipFile):
        return None
    if "constants.pkl" in rest and any(n.startswith("code/") for n in rest):
        return TORCHSCRIPT
    if path.endswith(".pt2"):
        raise InspectrError(
            f"{path} is a zip file but not a torch.export program (it has no archive_format entry); "
            "an AOTInductor package or another .pt2 holds compiled code inspectr cannot read.",
            "Save the program with torch.export.save(torch.export.export(model, args), 'model.pt2').",
        )
    return None


def load_archive(path: str, kind: str, kwargs: dict[str, Any], weights: str | None,
                 trust_pickle: bool, device: str) -> LoadedModel:
    """Load a TorchScript or exported-program file as a model inspectr can probe.

    Raises:
        InspectrError: --kwargs given, a file torch cannot read, or pickled parts without --trust-pickle.
    """
    if kwargs:
        raise InspectrError(f"{path} is a {kind} archive: it holds a built model, so --kwargs cannot be applied to it.",
                            "Drop --kwargs.")
    if kind == TORCHSCRIPT:
        if device == "meta":
            raise InspectrError(f"{path} is a TorchScript archive, and TorchScript cannot run on the meta device.",
                                "Drop --device meta.")
        try:
            with _quiet():
                model = torch.jit.load(path, map_location=device if device.startswith("cuda") else "cpu")
        except Exception as exc:
            raise InspectrError(
                f"{path} looks like a TorchScript archive, but torch.jit.load failed: {_first(exc)}.",
                "Check that the file is complete and was saved by a compatible torch version (torch.jit.save).",
            ) from exc
        loaded = script_loaded(model, path, "torchscript")
    else:
        if not trust_pickle:
            pickled = pt2_pickled_parts(path)
            if pickled:
                raise InspectrError(
                    f"{path} is a torch.export program, but it stores {', '.join(pickled[:4])}"
                    f"{' …' if len(pickled) > 4 else ''} as pickles, and loading those runs code from the file.",
                    "If you trust the file, add --trust-pickle.",
                )
        try:
            with _quiet():
                ep = torch.export.load(path)
        except Exception as exc:
            raise InspectrError(
                f"{path} is a torch.export archive, but torch.export.load failed: {_first(exc)}.",
                f"Exported programs load in the torch version that saved them or a close one (this is torch "
                f"{torch.__version__}); export the model again with torch.export.save.",
            ) from exc
        loaded = exported_loaded(ep, path, "torch.export")
    if weights:
        load_weights(loaded.model, weights)
        loaded.notes.append(f"weights loaded from {weights}")
    return loaded


def from_object(obj: Any) -> LoadedModel | None:
    """A LoadedModel for an ``ExportedProgram`` or a ``ScriptModule`` passed to ``inspect``; None otherwise."""
    if isinstance(obj, torch.export.ExportedProgram):
        return exported_loaded(obj, type(obj).__name__, "object")
    if isinstance(obj, torch.jit.ScriptModule):
        return script_loaded(obj, script_type(obj), "object")
    return None


# ---------------------------------------------------------------- TorchScript


def script_type(mod: nn.Module) -> str:
    """The class a ScriptModule was compiled from (``Conv2d``, not ``RecursiveScriptModule``)."""
    return getattr(mod, "original_name", None) or type(mod).__name__


def script_loaded(model: torch.jit.ScriptModule, name: str, source: str) -> LoadedModel:
    notes = [SCRIPT_LIMITS]
    return LoadedModel(model, name, source, f"TorchScript module {script_type(model)}", notes=notes,
                       example=lambda b: guess_script_input(model, b))


def _first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    for path, mod in model.named_modules():
        if script_type(mod) in _GUESSES:
            return path, mod
    return None


def _size(m: nn.Module, attr: str, weight: str, dim: int) -> int:
    """A layer's size: its attribute when scripted; a traced module keeps only tensors, so its weight's shape."""
    try:
        return int(getattr(m, attr))
    except (AttributeError, RuntimeError, TypeError):
        return int(getattr(m, weight).shape[dim])


def _conv(nd: int) -> Callable[[nn.Module, int], list[tuple[Any, ...]]]:
    def cands(m: nn.Module, b: int) -> list[tuple[Any, ...]]:
        c = _size(m, "in_channels", "weight", 1)  # traced: weight is [out, in/groups, k...]
        sizes = [28, 32, 64, 224] if nd == 2 and c == 1 else {1: [128, 64, 32, 256], 2: [224, 32, 28, 64, 96],
                                                            3: [16, 32, 8]}[nd]
        return [(torch.randn(b, c, *([s] * nd)),) for s in sizes]

    return cands


def _rnn(m: nn.Module, b: int) -> list[tuple[Any, ...]]:
    size = _size(m, "input_size", "weight_ih_l0", 1)
    return [(torch.randn(b, 16, size),), (torch.randn(16, b, size),)]


# first-layer class name -> candidate positional inputs, best first (as ``inputs.guess_candidates``)
_GUESSES: dict[str, Callable[[nn.Module, int], list[tuple[Any, ...]]]] = {
    "Conv1d": _conv(1), "Conv2d": _conv(2), "Conv3d": _conv(3),
    "Linear": lambda m, b: [(torch.randn(b, _size(m, "in_features", "weight", 1)),)],
    "Embedding": lambda m, b: [(torch.randint(0, _size(m, "num_embeddings", "weight", 0), (b, 16)),)],
    "LSTM": _rnn, "GRU": _rnn, "RNN": _rnn,
}


def guess_script_input(model: torch.jit.ScriptModule, batch_size: int) -> Inputs:
    """Inputs for a TorchScript module from its first layer; candidate sizes are tried with a quiet forward."""
    from inspectr.core.state import preserved

    first = _first_layer(model)
    if first is None:
        raise InspectrError(
            f"inspectr cannot tell what input the TorchScript module {script_type(model)} expects: "
            "it has no first layer inspectr can read a shape from.",
            "Pass one --input per positional argument, e.g. `--input 4,16` (inputs=... in Python).",
        )
    path, mod = first
    label = f"first layer {path or '(root)'}: {script_type(mod)}"
    cands = _GUESSES[script_type(mod)](mod, batch_size)
    with preserved(model), torch.no_grad():
        for args in cands:
            try:
                model(*args)
            except Exception:
                continue
            return Inputs(args, {}, f"{label} (guessed; pass --input to override)")
    return Inputs(cands[0], {}, f"{label} (guessed; no size ran; pass --input)")


# ---------------------------------------------------------------- torch.export


def exported_loaded(ep: torch.export.ExportedProgram, name: str, source: str) -> LoadedModel:
    """Unflatten an exported program to its module hierarchy, rows named after the original classes."""
    notes = [EXPORT_MODE]
    try:
        with _quiet():
            model: nn.Module = torch.export.unflatten(ep)
        notes.insert(0, "torch.export program: unflattened to its module hierarchy (torch.export.unflatten); "
                        "each module runs the ATen graph exported for it")
    except Exception as exc:
        with _quiet():
            model = ep.module()
        notes.insert(0, f"torch.export program: torch.export.unflatten failed ({_first(exc)}), so it runs as "
                        "one flat graph: the module tree and per-module measurements are unavailable")
    types = exported_types(ep)
    for path, mod in model.named_modules():
        if path in types:
            mod.__class__ = _renamed(type(mod), types[path])
    root = types.get("", "ExportedProgram")
    return LoadedModel(model, name if source != "object" else root, source,
                       f"exported program of {root}", notes=notes, example=lambda b: exported_inputs(ep))


def exported_types(ep: torch.export.ExportedProgram) -> dict[str, str]:
    """Module path -> original class name, from the graph's ``nn_module_stack`` metadata."""
    out: dict[str, str] = {}
    for node in ep.graph.nodes:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            path, cls = entry[0], entry[1]
            qual = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
            out.setdefault(path, qual.rsplit(".", 1)[-1])
    return out


_RENAMED: dict[tuple[type, str], type] = {}


def _renamed(base: type, name: str) -> type:
    """A subclass of ``base`` called ``name``: rows and errors then name the original class."""
    cls = _RENAMED.get((base, name))
    if cls is None:
        cls = type(name, (base,), {"__doc__": f"{name}, as an exported graph ({base.__name__})",
                                   "__module__": base.__module__})
        _RENAMED[(base, name)] = cls
    return cls


def exported_inputs(ep: torch.export.ExportedProgram) -> Inputs:
    """The program's stored example inputs, else random tensors shaped like its input placeholders."""
    from torch.utils import _pytree as pytree

    stored = ep.example_inputs
    if stored is not None:
        args, kwargs = pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, stored)
        return Inputs(tuple(args), dict(kwargs), "the example inputs stored in the exported program")
    user = set(ep.graph_signature.user_inputs)
    flat = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if isinstance(val, torch.Tensor):
                shape = [_dim(d, ep) for d in val.shape]
                flat.append(torch.randn(shape, dtype=val.dtype) if val.dtype.is_floating_point
                            else torch.zeros(shape, dtype=val.dtype))
            else:
                flat.append(val)
    args, kwargs = pytree.tree_unflatten(flat, ep.call_spec.in_spec)
    return Inputs(tuple(args), dict(kwargs), "random values shaped like the exported program's inputs")


def _dim(d: Any, ep: torch.export.ExportedProgram) -> int:
    """A concrete size for a (possibly dynamic) placeholder dimension."""
    if isinstance(d, int):
        return d
    hint = getattr(getattr(d, "node", None), "hint", None)
    if hint is not None:
        return int(hint)
    bounds = ep.range_constraints.get(getattr(d.node, "expr", None)) if hasattr(d, "node") else None
    low = getattr(bounds, "lower", 2) if bounds is not None else 2
    return max(int(low), 2)


def pt2_pickled_parts(path: str) -> list[str]:
    """What a ``.pt2`` would unpickle when loaded: weights, constants or example inputs, by name."""
    out: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in names:
            tail = name.split("/", 1)[-1]
            if tail.startswith("data/weights/") and tail.endswith("_weights_config.json"):
                for fqn, meta in json.loads(zf.read(name)).get("config", {}).items():
                    if meta.get("use_pickle"):
                        out.append(f"weight {fqn}")
            elif tail.startswith("data/constants/") and tail.endswith("_constants_config.json"):
                for fqn, meta in json.loads(zf.read(name)).get("config", {}).items():
                    if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith("tensor_"):
                        out.append(f"constant {fqn}")
            elif (tail.startswith("data/sample_inputs/") and tail.endswith(".pt")) or tail in (
                    "serialized_state_dict.json", "serialized_constants.json", "serialized_example_inputs.json"):
                data = zf.read(name)
                if data and not _weights_only(data):
                    out.append("example inputs" if "sample_inputs" in tail or "example" in tail else tail)
            elif tail.startswith("data/weights/") and tail.endswith(".pt"):  # older archives: one pickle
                if not _weights_only(zf.read(name)):
                    out.append(tail)
    return out


def _weights_only(data: bytes) -> bool:
    try:
        torch.load(io.BytesIO(data), weights_only=True)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- helpers


@contextmanager
def _quiet() -> Iterator[None]:
    """torch's FutureWarnings about TorchScript's deprecation say nothing about the user's model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
