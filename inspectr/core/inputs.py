"""Provides probe inputs: the ``--input`` syntax, ``example_input`` hooks, known specs and guesses.

``--input`` syntax (repeat the flag for several positional inputs)::

    [NAME=][DTYPE:]D1,D2,...[:LOW..HIGH]

    2,3,224,224                 float32 noise of that shape
    int64:2,16:0..1000          integer ids in [0, 1000)
    bool:2,16                   random booleans
    tgt=int64:2,12:0..500       a keyword argument named tgt

Dimensions may also be written ``2x3x224x224``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inspectr.core.sources.base import Inputs
from inspectr.errors import InspectrError

DTYPES = {
    "float32": torch.float32, "float": torch.float32, "f32": torch.float32,
    "float64": torch.float64, "double": torch.float64, "f64": torch.float64,
    "float16": torch.float16, "half": torch.float16, "f16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
DEFAULT_BATCH = 4
INPUT_SYNTAX = "[NAME=][DTYPE:]D1,D2,...[:LOW..HIGH], e.g. 2,3,224,224 or int64:2,16:0..1000"


@dataclass(frozen=True)
class InputSpec:
    """One ``--input`` flag, parsed."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    low: float | None = None
    high: float | None = None
    name: str | None = None  # keyword argument name, None for positional

    def make(self, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.dtype == torch.bool:
            return torch.randint(0, 2, self.shape, generator=generator).bool()
        if not self.dtype.is_floating_point:
            low = int(self.low) if self.low is not None else 0
            high = int(self.high) if self.high is not None else 10
            return torch.randint(low, high, self.shape, generator=generator, dtype=self.dtype)
        x = torch.randn(self.shape, generator=generator)
        if self.low is not None and self.high is not None:
            x = torch.rand(self.shape, generator=generator) * (self.high - self.low) + self.low
        return x.to(self.dtype)


def parse_input_spec(text: str) -> InputSpec:
    """Parse one ``--input`` value; raises InspectrError with the syntax on bad input."""
    raw = text
    name = None
    m = re.match(r"^([A-Za-z_]\w*)=(.*)$", text.strip())
    if m:
        name, text = m.group(1), m.group(2)
    parts = text.strip().split(":")
    dtype = torch.float32
    if parts and parts[0].lower() in DTYPES:
        dtype = DTYPES[parts.pop(0).lower()]
    elif parts and re.fullmatch(r"[A-Za-z]\w*", parts[0]):
        raise _bad_input(raw, f"unknown dtype {parts[0]!r} (known: {', '.join(sorted(set(DTYPES)))})")
    if not parts or not parts[0].strip():
        raise _bad_input(raw, "no shape given")
    dims = re.split(r"[,x×]", parts[0].strip())
    if dims and not dims[-1].strip():
        dims = dims[:-1]  # a trailing comma is harmless
    if any(not d.strip() for d in dims):
        raise _bad_input(raw, f"the shape {parts[0]!r} has an empty dimension")
    try:
        shape = tuple(int(d) for d in dims)
    except ValueError:
        raise _bad_input(raw, f"the shape {parts[0]!r} must be integers separated by commas") from None
    if not shape or any(d < 0 for d in shape):
        raise _bad_input(raw, "dimensions must be non-negative integers")
    low = high = None
    if len(parts) > 1:
        rm = re.fullmatch(r"\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*", parts[1])
        if not rm or len(parts) > 2:
            raise _bad_input(raw, f"the value range {':'.join(parts[1:])!r} must look like LOW..HIGH")
        try:
            low, high = float(rm.group(1)), float(rm.group(2))
        except ValueError:
            raise _bad_input(raw, f"the value range {parts[1]!r} must be two numbers, LOW..HIGH") from None
        if high <= low:
            raise _bad_input(raw, f"the range {low:g}..{high:g} is empty")
        if not dtype.is_floating_point:
            if dtype == torch.bool:
                raise _bad_input(raw, "a bool input takes no value range")
            info = torch.iinfo(dtype)
            if low != int(low) or high != int(high):
                raise _bad_input(raw, f"an integer range needs integer bounds, got {low:g}..{high:g}")
            if low < info.min or high - 1 > info.max:
                raise _bad_input(raw, f"{low:g}..{high:g} does not fit {str(dtype).replace('torch.', '')} "
                                      f"({info.min}..{info.max + 1})")
    return InputSpec(shape, dtype, low, high, name)


def _bad_input(raw: str, why: str) -> InspectrError:
    return InspectrError(
        f"Cannot read --input {raw!r}: {why}.",
        f"The syntax is {INPUT_SYNTAX}; repeat --input for several inputs.",
    )


def normalize(value: Any, source: str) -> Inputs:
    """Tensor -> one positional argument; tuple/list -> positional; dict -> keyword arguments."""
    if isinstance(value, Inputs):
        return value
    if isinstance(value, dict):
        return Inputs((), dict(value), source)
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return Inputs(tuple(value), {}, source)
    return Inputs((value,), {}, source)


def from_specs(specs: list[InputSpec]) -> Inputs:
    args = tuple(s.make() for s in specs if s.name is None)
    kwargs = {s.name: s.make() for s in specs if s.name is not None}
    return Inputs(args, kwargs, "--input")


def call_example_input(fn: Callable[..., Any], batch_size: int) -> Any:
    """Call an ``example_input`` hook, passing ``batch_size`` when it takes one."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "batch_size" in params:
        return fn(batch_size=batch_size)
    return fn()


def from_model_hook(model: nn.Module, batch_size: int) -> Inputs | None:
    """Inputs from ``model.example_input`` (a method, a callable or a value), if defined."""
    hook = getattr(model, "example_input", None)
    if hook is None:
        return None
    value = call_example_input(hook, batch_size) if callable(hook) else hook
    return normalize(value, f"{type(model).__name__}.example_input")


# ---------------------------------------------------------------- torchvision families

_VIDEO_224 = ("mvit_v1_b", "mvit_v2_s", "s3d", "swin3d_t", "swin3d_s", "swin3d_b")


def torchvision_inputs(name: str, family: str, batch_size: int | None) -> tuple[Inputs, str | None]:
    """Inputs a torchvision model expects, and the mode it must run in (None: its own)."""
    b = batch_size or 2
    if family == "video":
        size = 224 if name in _VIDEO_224 else 112
        return Inputs((torch.randn(b if batch_size else 1, 3, 16, size, size),), {}, "torchvision video clip B,C,T,H,W"), None
    if family == "detection":
        # detection models take a list of images and need targets in train mode
        imgs = [torch.rand(3, 320, 320) for _ in range(batch_size or 1)]
        return Inputs((imgs,), {}, "torchvision detection: a list of images"), "eval"
    if family == "optical_flow":
        return (
            Inputs((torch.randn(b, 3, 128, 128), torch.randn(b, 3, 128, 128)), {},
                   "torchvision optical flow: two frames"),
            None,
        )
    size = 299 if name == "inception_v3" or name == "quantized_inception_v3" else 224
    return Inputs((torch.randn(b, 3, size, size),), {}, f"torchvision {family}: images"), None


# ---------------------------------------------------------------- guessing from the first layer


def required_positional(model: nn.Module) -> list[str]:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [
        n for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


def required_keyword_only(model: nn.Module) -> list[str]:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [n for n, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]


def guess_candidates(model: nn.Module, batch_size: int) -> tuple[list[Inputs], str]:
    """Candidate inputs guessed from the first layer, best first, and that layer's description."""
    b = batch_size
    for path, mod in model.named_modules():
        label = f"first layer {path or '(root)'}: {type(mod).__name__}"
        if isinstance(mod, nn.Transformer):
            d = mod.d_model
            shape_s = (b, 10, d) if mod.batch_first else (10, b, d)
            shape_t = (b, 9, d) if mod.batch_first else (9, b, d)
            return [Inputs((torch.randn(shape_s), torch.randn(shape_t)), {}, label)], label
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            c = mod.in_channels
            nd = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(mod)] if type(mod) in (
                nn.Conv1d, nn.Conv2d, nn.Conv3d) else len(mod.kernel_size)
            sizes = {1: [128, 64, 32, 256], 2: [224, 32, 28, 64, 96], 3: [16, 32, 8]}[nd]
            if c == 1 and nd == 2:
                sizes = [28, 32, 64, 224]
            return [Inputs((torch.randn(b, c, *([s] * nd)),), {}, label) for s in sizes], label
        if isinstance(mod, nn.Linear):
            return [Inputs((torch.randn(b, mod.in_features),), {}, label)], label
        if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
            ids = torch.randint(0, mod.num_embeddings, (b, 16))
            return [Inputs((ids,), {}, label)], label
        if isinstance(mod, nn.RNNBase):
            shape = (b, 16, mod.input_size) if mod.batch_first else (16, b, mod.input_size)
            return [Inputs((torch.randn(shape),), {}, label)], label
        if isinstance(mod, nn.MultiheadAttention):
            e = mod.embed_dim
            shape = (b, 16, e) if mod.batch_first else (16, b, e)
            x = torch.randn(shape)
            return [Inputs((x, x, x), {}, label)], label
        if isinstance(mod, (nn.LayerNorm,)) and isinstance(mod.normalized_shape, tuple):
            return [Inputs((torch.randn(b, 16, *mod.normalized_shape),), {}, label)], label
        if isinstance(mod, (nn.BatchNorm1d,)):
            return [Inputs((torch.randn(b, mod.num_features),), {}, label)], label
        if isinstance(mod, (nn.BatchNorm2d,)):
            return [Inputs((torch.randn(b, mod.num_features, 32, 32),), {}, label)], label
    return [], ""


def no_input_error(model: nn.Module, why: str = "") -> InspectrError:
    names = required_positional(model)
    kw = required_keyword_only(model)
    args = f" (its forward takes {', '.join(names + [k + '=' for k in kw])})" if names or kw else ""
    example = " ".join([f"--input 4,{16 * (i + 1)}" for i in range(max(len(names), 1))]
                       + [f"--input {k}=4,16" for k in kw])
    return InspectrError(
        f"inspectr cannot tell what input {type(model).__name__} expects{args}{': ' + why if why else ''}.",
        f"Pass one --input per positional argument, e.g. `{example}` ({INPUT_SYNTAX}), "
        "or give the model an `example_input(self, batch_size=4)` method, or define a module-level "
        "`example_input()` in its file.",
    )
