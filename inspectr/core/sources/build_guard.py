"""Provides the allocation guard of a model build: the build stops as soon as the tensors it
made would not leave room for a probe, so that the loader builds a model once when it fits
(nearly always) instead of first on the meta device to learn its size.

A meta build is no free look: ``torch.device("meta")`` is itself a function mode that sees
every torch call of the constructor, so it cost twice a real build (2.3 s against 1.1 s for a
20,000-module stack) before the real build ran too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from inspectr.errors import InspectrError

# torch functions that make a new tensor of their own: what a constructor allocates goes through
# them (``nn.Linear``'s ``torch.empty``, ``nn.Parameter(torch.zeros(...))``, buffers, tables)
_FACTORIES = frozenset({
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn,
    torch.randint, torch.randperm, torch.arange, torch.linspace, torch.logspace, torch.eye, torch.tensor,
    torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like, torch.rand_like, torch.randn_like,
    torch.randint_like, torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones,
    torch.Tensor.new_full, torch.Tensor.new_tensor, torch.Tensor.clone, torch.Tensor.repeat,
})


class BuildTooBig(BaseException):
    """The build made more than the guard's limit allows (internal: the loader catches it; a
    ``BaseException`` so that a constructor's own ``except Exception`` lets it through)."""

    def __init__(self, made: int) -> None:
        super().__init__(f"{made} bytes made")
        self.made = made


class AllocationGuard(TorchFunctionMode):
    """Counts the bytes of the tensors a build makes; raises ``BuildTooBig`` past ``limit``.

    Temporaries count too (an over-count only sends the loader to its exact meta-device check);
    tensors made outside torch's functions (``torch.load`` inside a constructor) do not, which
    the loader's exact check after the build covers.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.made = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _FACTORIES and type(out) is torch.Tensor and not out.is_meta:
            self.made += out.numel() * out.element_size()
            if self.made > self.limit:
                raise BuildTooBig(self.made)
        return out


# --- building under the guard ----------------------------------------------------------

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
