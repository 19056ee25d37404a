"""Provides checkpoint reading: torch files, safetensors and sharded indexes, header-only checks, and torchvision's pretrained weights from the local torch hub cache.

The safetensors reader is inspectr's own (no extra package): the format is an 8-byte
little-endian header length, a JSON header (name -> dtype, shape, data_offsets, plus an
optional ``__metadata__``), then the raw bytes, which are mapped from the file, not read.
Nothing here downloads anything.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from inspectr.errors import InspectrError

CHECKPOINT_KEYS = ("model_state_dict", "state_dict", "model", "net", "network", "module", "ema", "model_ema")
MAX_HEADER = 100 * 2**20  # the safetensors format's own limit
TRUNCATED = "The download or copy was cut short: fetch or copy the file again and compare its size with the original."
# a folder given as weights: the file names save_pretrained and torch.save users write, in order
FOLDER_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")


def _dtypes() -> dict[str, torch.dtype]:
    names = {
        "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
        "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
        "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2": "float8_e5m2",
        "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu", "C64": "complex64",
    }
    return {code: getattr(torch, name) for code, name in names.items() if hasattr(torch, name)}


SAFETENSORS_DTYPES = _dtypes()


@dataclass(frozen=True)
class TensorInfo:
    """What a checkpoint header says about one tensor."""

    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed safetensors header: tensors by name with their byte ranges in the file."""

    path: Path
    tensors: dict[str, tuple[TensorInfo, int, int]]  # name -> (info, first byte, end byte) in the file
    metadata: dict[str, str]
    size: int


# ---------------------------------------------------------------- safetensors


def _corrupt(path: Path, problem: str, hint: str = "") -> InspectrError:
    return InspectrError(
        f"{path} is not a readable safetensors file: {problem}.",
        hint or "Save or download it again; a safetensors file is an 8-byte header length, a JSON "
        "header and the tensors' bytes.",
    )


def read_safetensors_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parse and check a safetensors header without reading any tensor bytes.

    Raises:
        InspectrError: a file too short, a header that is not JSON, an unknown dtype, or tensors
            whose byte ranges do not fit their shapes or lie past the end of the file (truncated).
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _corrupt(p, f"it is {size} bytes long, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise _corrupt(p, f"its first 8 bytes give a header length of {n:,} bytes, past the format's "
                              "100 MiB limit, so it is not a safetensors file (or its start is damaged)")
        if n > size - 8:
            raise _corrupt(p, f"it declares a {n:,}-byte header but only {size - 8:,} bytes follow: it is "
                              "truncated", TRUNCATED)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(p, f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _corrupt(p, f"its header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _corrupt(p, "its __metadata__ is not an object")
    start, data = 8 + n, size - 8 - n
    tensors: dict[str, tuple[TensorInfo, int, int]] = {}
    for name, entry in header.items():
        tensors[name] = _entry(p, name, entry, start, data)
    return SafetensorsHeader(p, tensors, {str(k): str(v) for k, v in metadata.items()}, size)


def _entry(p: Path, name: str, entry: Any, start: int, data: int) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise _corrupt(p, f"the header entry for {name!r} is not an object")
    code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if code not in SAFETENSORS_DTYPES:
        raise InspectrError(
            f"{p}: tensor {name!r} has dtype {code!r}, which inspectr's safetensors reader does not know "
            f"(it reads {', '.join(SAFETENSORS_DTYPES)}).",
            "Convert that tensor to a standard dtype when saving, or load the model in your own code and "
            "pass the object to inspectr.inspect.",
        )
    if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise _corrupt(p, f"the header entry for {name!r} has no valid shape and data_offsets ({entry})")
    dtype = SAFETENSORS_DTYPES[code]
    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * dtype.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise _corrupt(p, f"tensor {name!r} ({code} {shape}) needs {nbytes:,} bytes but its data_offsets "
                          f"span {offsets[1] - offsets[0]:,}")
    if offsets[1] > data:
        raise _corrupt(p, f"tensor {name!r} ends at byte {offsets[1]:,} of the data, but the file holds "
                          f"only {data:,} bytes of data: it is truncated",
                       TRUNCATED)
    return TensorInfo(dtype, tuple(shape)), start + offsets[0], start + offsets[1]


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, mapped from the file (copy-on-write, never written back).

    A tensor whose bytes are not aligned to its element size (possible in files written by other
    tools) is copied instead of mapped.
    """
    header = read_safetensors_header(path)
    if not header.tensors:
        return {}
    storage = torch.UntypedStorage.from_file(str(header.path), shared=False, nbytes=header.size)
    raw = torch.empty(0, dtype=torch.uint8).set_(storage)
    out = {}
    for name, (info, begin, end) in header.tensors.items():
        chunk = raw[begin:end]
        if begin % info.dtype.itemsize:
            chunk = chunk.clone()
        out[name] = chunk.view(info.dtype).reshape(info.shape)
    return out


# ---------------------------------------------------------------- any checkpoint


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file a ``--weights`` path names (a folder: the file ``save_pretrained`` writes)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InspectrError(f"The weights file {path} does not exist.", "Check the --weights path.")
    if not p.is_dir():
        return p
    for name in FOLDER_FILES:
        if (p / name).is_file():
            return p / name
    found = sorted(q.name for q in p.iterdir() if q.name.endswith((".safetensors", ".index.json", ".pt", ".pth", ".bin")))
    if len(found) == 1:
        return p / found[0]
    listing = f"it holds {', '.join(found[:6])}" if found else "it holds no checkpoint file"
    raise InspectrError(
        f"--weights {path} is a folder and {listing}, none of them named {' or '.join(FOLDER_FILES)}.",
        "Point --weights at the checkpoint file itself (or at the .index.json of a sharded checkpoint).",
    )


def checkpoint_format(path: Path) -> str:
    """``safetensors``, ``index`` (a sharded checkpoint's index) or ``torch``, from the name and first bytes."""
    if path.name.endswith(".index.json"):
        return "index"
    if path.suffix == ".safetensors":
        return "safetensors"
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < MAX_HEADER:
        return "safetensors"
    return "torch"


def read_index(path: Path) -> dict[str, Path]:
    """A sharded checkpoint's ``weight_map``: tensor name -> shard file (each checked to exist)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectrError(f"{path} is not valid JSON ({exc}).", "Save or download the index again.") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InspectrError(
            f"{path} has no weight_map (tensor name -> shard file), so it is not a sharded checkpoint index.",
            "Give the index that save_pretrained writes (model.safetensors.index.json) or a single checkpoint file.",
        )
    shards = {name: path.parent / file for name, file in weight_map.items()}
    absent = sorted({q.name for q in shards.values() if not q.is_file()})
    if absent:
        listed = len(set(shards.values()))
        raise InspectrError(
            f"{path} lists {listed} shard files and {len(absent)} of them {'is' if len(absent) == 1 else 'are'} "
            f"not in {path.parent}: "
            f"{', '.join(absent[:5])}{', …' if len(absent) > 5 else ''}.",
            "Copy every shard next to the index.",
        )
    return shards


def _torch_load(path: Path, mmap: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        if mmap and "mmap" in str(exc):  # a legacy (pre-zip) torch file cannot be mapped
            return _torch_load(path)
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped and not zipfile.is_zipfile(path):
            raise InspectrError(
                f"{path} is a damaged torch file: it starts as a zip archive (what torch.save writes) "
                "but its directory at the end is missing, so it is truncated or damaged.",
                TRUNCATED,
            ) from exc
        raise InspectrError(
            f"{path} cannot be loaded as weights only ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
            "It may hold a whole pickled model: load that with `inspectr FILE --trust-pickle` (runs code from the file), "
            "or save `model.state_dict()` instead. A damaged or truncated file also ends here: save or copy it again.",
        ) from exc


def _is_state_dict(obj: Any) -> bool:
    """Tensors by name; modules with ``get_extra_state`` add non-tensor ``_extra_state`` entries."""
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, torch.Tensor) or str(k).endswith("_extra_state") for k, v in obj.items())


def extract_state_dict(obj: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state dict inside a checkpoint: the dict itself or under a usual key."""
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return inner
        keys = ", ".join(map(str, list(obj)[:8]))
        raise InspectrError(
            f"{path} is a checkpoint dict with keys {keys}, none of which holds a state dict.",
            f"Save the model's state_dict() under one of: {', '.join(CHECKPOINT_KEYS)}.",
        )
    raise InspectrError(f"{path} holds a {type(obj).__name__}, not a state dict.", "Save `model.state_dict()` with torch.save.")


def _one_file(path: Path, mmap: bool) -> dict[str, Any]:
    if checkpoint_format(path) == "safetensors":
        return read_safetensors(path)
    return extract_state_dict(_torch_load(path, mmap), path)


def _sharded(path: Path, read: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    shards = read_index(path)
    out: dict[str, Any] = {}
    for shard in dict.fromkeys(shards.values()):
        held = read(shard)
        lacking = [n for n, q in shards.items() if q == shard and n not in held]
        if lacking:
            raise InspectrError(
                f"{path} says {shard.name} holds {', '.join(lacking[:3])}{', …' if len(lacking) > 3 else ''}, "
                "but that shard does not.",
                "The index and the shards come from different saves: copy them again together.",
            )
        out.update(held)
    return out


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's tensors by name: a torch file (``weights_only``), a safetensors file, a
    sharded checkpoint's ``.index.json``, or a folder holding one of them."""
    p = resolve_checkpoint(path)
    if checkpoint_format(p) == "index":
        return _sharded(p, lambda q: _one_file(q, mmap=False))
    return _one_file(p, mmap=False)


def read_tensor_infos(path: str | os.PathLike[str]) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes of a checkpoint's tensors, without reading their values
    (safetensors headers; torch files mapped, not read)."""
    p = resolve_checkpoint(path)

    def infos(q: Path) -> dict[str, Any]:
        if checkpoint_format(q) == "safetensors":
            return {n: info for n, (info, _, _) in read_safetensors_header(q).tensors.items()}
        return {n: TensorInfo(t.dtype, tuple(t.shape)) if isinstance(t, torch.Tensor) else t
                for n, t in _one_file(q, mmap=True).items()}

    return _sharded(p, infos) if checkpoint_format(p) == "index" else infos(p)


# ---------------------------------------------------------------- fitting a model


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


@dataclass
class Fit:
    """How a checkpoint's tensors fit a model's state dict."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)
    wrong_kind: list[str] = field(default_factory=list)
    casts: dict[tuple[str, str], int] = field(default_factory=dict)  # (stored, model) dtype -> tensors
    checked: int = 0
    prefix_stripped: bool = False

    def problems(self) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", self.wrong_shape), ("dtype mismatch", self.wrong_kind)):
            if items:
                shown = ", ".join(items[:5]) + (f", … ({len(items) - 5} more)" if len(items) > 5 else "")
                parts.append(f"{len(items)} {label} ({shown})")
        return "; ".join(parts)

    def cast_text(self) -> str:
        if not self.casts:
            return ""
        return ", ".join(f"{n} tensor{'s' if n != 1 else ''} cast from {a} to {b}"
                         for (a, b), n in sorted(self.casts.items()))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def fit(model: nn.Module, stored: dict[str, Any]) -> tuple[Fit, dict[str, Any]]:
    """Compare a checkpoint (tensors or ``TensorInfo`` by name) with ``model``'s state dict.

    A DataParallel ``module.`` prefix is stripped; a key the checkpoint leaves out because it is
    tied to another (``save_pretrained`` and safetensors store shared tensors once) is not missing.

    Returns:
        (the fit, the checkpoint with its keys as the model names them)
    """
    own = model.state_dict(keep_vars=True)
    result = Fit()
    if stored and all(k.startswith("module.") for k in stored) and not any(k.startswith("module.") for k in own):
        stored = {k[len("module."):]: v for k, v in stored.items()}  # saved from DataParallel/DDP
        result.prefix_stripped = True
    tied: dict[int, list[str]] = {}
    for k, v in own.items():
        if isinstance(v, torch.Tensor):
            tied.setdefault(id(v), []).append(k)
    for k, v in own.items():
        if k in stored:
            continue
        if isinstance(v, torch.Tensor) and any(alias in stored for alias in tied[id(v)]):
            continue
        result.missing.append(k)
    result.unexpected = [k for k in stored if k not in own]
    for k, mine in own.items():
        theirs = stored.get(k)
        if not isinstance(mine, torch.Tensor) or not isinstance(theirs, (torch.Tensor, TensorInfo)):
            continue
        result.checked += 1
        if tuple(theirs.shape) != tuple(mine.shape):
            result.wrong_shape.append(f"{k} {tuple(theirs.shape)} vs model {tuple(mine.shape)}")
        elif _kind(theirs.dtype) != _kind(mine.dtype):
            result.wrong_kind.append(f"{k} {_name(theirs.dtype)} vs model {_name(mine.dtype)}")
        elif theirs.dtype != mine.dtype:
            pair = (_name(theirs.dtype), _name(mine.dtype))
            result.casts[pair] = result.casts.get(pair, 0) + 1
    return result, stored


def _misfit(model: nn.Module, path: str | os.PathLike[str], result: Fit, how: str = "") -> InspectrError:
    return InspectrError(
        f"The weights in {path} do not fit {type(model).__name__}{how}: {result.problems()}.",
        "Check that the file was saved from this model and these --kwargs.",
    )


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load a checkpoint into ``model`` strictly, naming every mismatch.

    Returns:
        A note for the report: where the weights came from, and any dtype casts.
    """
    sd = read_state_dict(path)
    result, sd = fit(model, sd)
    if result.missing or result.unexpected or result.wrong_shape or result.wrong_kind:
        raise _misfit(model, path, result)
    with torch.no_grad():
        report = model.load_state_dict(sd, strict=False)
    left = [k for k in report.missing_keys if k in result.missing] + list(report.unexpected_keys)
    if left:  # fit() said they match; load_state_dict disagrees
        raise InspectrError(f"Loading {path} left {', '.join(left[:5])} unset.", "Check the file against the model.")
    casts = result.cast_text()
    return f"weights loaded from {path}" + (f" ({casts})" if casts else "")


def check_weights(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Check a checkpoint's keys, shapes and dtypes against a model on the meta device, from the
    headers alone (no values are read).

    Returns:
        A note saying what was checked.
    """
    infos = read_tensor_infos(path)
    result, _ = fit(model, infos)
    if result.missing or result.unexpected or result.wrong_shape or result.wrong_kind:
        raise _misfit(model, path, result, " (checked without reading the values; the model is on the meta device)")
    dtypes = sorted({_name(i.dtype) for i in infos.values() if isinstance(i, TensorInfo)})
    casts = result.cast_text()
    return (f"--weights {path}: {result.checked:,} tensors checked against the model without reading "
            f"their values (keys, shapes, dtypes {', '.join(dtypes)}): all match"
            + (f"; a real load would have {casts}" if casts else "")
            + "; values not loaded, the model is on the meta device")


def apply_weights(model: nn.Module, path: str, on_meta: bool) -> str:
    """``--weights``: load into a real model, or check against a meta one; returns the note."""
    return check_weights(model, path) if on_meta else load_weights(model, path)


# ---------------------------------------------------------------- torchvision's pretrained weights


def hub_file(url: str) -> Path:
    """Where ``torch.hub`` keeps the file a weights URL names: ``<hub dir>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


_HUB_LOCK = threading.Lock()


def _building_on_meta() -> bool:
    return torch.empty(0).device.type == "meta"


@contextmanager
def _read_from_hub_cache() -> Iterator[None]:
    """torchvision's builders fetch weights with ``WeightsEnum.get_state_dict``, which downloads
    when the file is missing and unpickles without ``weights_only``. For the build, it reads the
    hub cache's file with inspectr's weights-only reader instead (headers only on meta)."""
    from torchvision.models import WeightsEnum

    def from_cache(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        path = hub_file(self.url)
        if _building_on_meta():
            return {n: torch.empty(i.shape, dtype=i.dtype, device="meta")
                    for n, i in read_tensor_infos(path).items() if isinstance(i, TensorInfo)}
        return read_state_dict(path)

    with _HUB_LOCK:
        original = WeightsEnum.__dict__["get_state_dict"]
        WeightsEnum.get_state_dict = from_cache  # type: ignore[method-assign]
        try:
            yield
        finally:
            WeightsEnum.get_state_dict = original  # type: ignore[method-assign]


class TorchvisionPretrained:
    """Builds a registered torchvision model with its DEFAULT weights from the local hub cache.

    Args:
        entry: the registry entry (``registry.Entry``).
        kwargs: constructor arguments.
    """

    def __init__(self, entry: Any, kwargs: dict[str, Any]) -> None:
        if entry.source != "torchvision":
            raise InspectrError(
                f"--pretrained loads torchvision's published weights, and {entry.qualified} is a "
                f"{entry.source} model, which has none.",
                "Drop --pretrained, or pass your own checkpoint with --weights FILE.",
            )
        from torchvision.models import get_model_weights

        self.entry, self.kwargs = entry, kwargs
        self.weights = get_model_weights(entry.name).DEFAULT
        self.path = hub_file(self.weights.url)
        if not self.path.is_file():
            raise InspectrError(
                f"--pretrained: the default weights of {entry.name} ({self.weights}) are not in the local "
                f"torch hub cache; inspectr looked for {self.path} and never downloads.",
                f"On a machine with network, download {self.weights.url} and copy it to {self.path} "
                f"(or point TORCH_HOME at a folder whose hub/checkpoints/ holds it).",
            )

    def __call__(self) -> nn.Module:
        from torchvision.models import get_model

        from inspectr.core.sources.registry import torchvision_kwargs

        kw = torchvision_kwargs(self.entry.family, self.kwargs, self.weights)
        with _read_from_hub_cache():
            try:
                return get_model(self.entry.name, **kw)
            except InspectrError:
                raise
            except TypeError as exc:
                raise InspectrError(
                    f"Building {self.entry.qualified} with --kwargs {kw} failed: {exc}.",
                    "Check the argument names in --kwargs.",
                ) from exc
            except (RuntimeError, ValueError) as exc:
                text = " ".join(str(exc).split()) or type(exc).__name__
                first = text if len(text) <= 400 else text[:400] + " …"
                raise InspectrError(
                    f"--pretrained: the cached weights {self.path} do not fit torchvision's "
                    f"{self.entry.name} with these --kwargs ({first}).",
                    f"Drop --kwargs that change the architecture; if the file is damaged or from another "
                    f"torchvision version, delete it and download {self.weights.url} again.",
                ) from exc

    @property
    def description(self) -> str:
        return f"torchvision {self.entry.family} model, pretrained ({self.weights})"

    def note(self, on_meta: bool) -> str:
        if on_meta:
            return (f"pretrained weights {self.weights}: keys and shapes in {self.path} checked against the "
                    "model without reading the values; not loaded, the model is on the meta device")
        return f"pretrained weights {self.weights} loaded from the torch hub cache ({self.path})"


def check_pretrained_request(kind: str, spec: str, weights: str | None) -> None:
    """``--pretrained`` applies to registered torchvision models only, and not with ``--weights``."""
    if weights:
        raise InspectrError(
            "--pretrained and --weights both name the weights to load.",
            "Use one: --pretrained for torchvision's published weights, --weights FILE for a checkpoint.",
        )
    if kind != "registry":
        raise InspectrError(
            f"--pretrained loads torchvision's published weights, and {spec} is not a registered "
            "torchvision model.",
            "Drop --pretrained and pass your checkpoint with --weights FILE, or name a torchvision "
            "model (e.g. `inspectr resnet18 --pretrained`; see `inspectr --list`).",
        )
