"""Provides ``plan_memory``: the probe's saved-bytes count -> the model's memory estimate, with
extra byte-counting passes where the request needs them (another dtype, ``--fit``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from inspectr.core.memory.estimate import (
    AMP_DTYPES,
    LINEAR_TOLERANCE,
    Footprint,
    MemoryEstimate,
    ModelBytes,
    PeakLine,
    batch_size_of,
    bytes_of_rows,
    estimate,
    fit_batch,
    trainable_of,
    training_peak,
)
from inspectr.core.memory.passes import CountingPasses, device_is_cheaper
from inspectr.core.optim import OptimizerChoice
from inspectr.core.result import ModelInfo, ModuleRow
from inspectr.core.sources.base import Inputs
from inspectr.core.values import iter_tensors
from inspectr.core.walk import ModelWalk


@dataclass(frozen=True)
class MemoryRequest:
    """What the user asked to estimate. ``dtype``: None or ``fp32`` for the model's own dtypes,
    ``bf16``/``fp16`` for autocast mixed precision; ``fit``: a memory size in bytes."""

    optimizer: OptimizerChoice = OptimizerChoice()
    dtype: str | None = None
    fit: int | None = None


def plan_memory(model: nn.Module, tree: ModelWalk, rows: tuple[ModuleRow, ...], info: ModelInfo,
                inputs: Inputs, batch: int | None, training: bool, counted: bool,
                request: MemoryRequest, device: str,
                param_map: dict[str, torch.Tensor] | None) -> MemoryEstimate | None:
    """The memory block of a report.

    Args:
        rows: the probe's rows (saved and output bytes per module, run order, parameters).
        inputs: the probe inputs, on the probe device; ``batch``: their batch size.
        training: the probe ran in train mode; ``counted``: the probe recorded the graph (with or
            without its backward), so the rows hold saved bytes (else one byte-counting pass at
            the probe batch supplies them).
        device: the probe device (``meta`` for shape-only probes); ``param_map``: the probe's
            copies of the parameters when it did not run on the model's own.
    """
    batch = batch_size_of((inputs.args, inputs.kwargs)) or batch
    amp = AMP_DTYPES.get(request.dtype or "")
    grads, largest, dtypes = trainable_of(tree.params)
    mb, probed = bytes_of_rows(rows, batch, info.param_bytes, info.buffer_bytes, (grads, largest))
    notes: list[str] = []
    if amp is not None:
        dtype = f"{request.dtype} autocast (weights, gradients and optimizer state {_dtype_name(dtypes)})"
        if device == "meta":
            notes.append(f"autocast cannot run on meta tensors: activations counted with every float in "
                         f"{request.dtype}; autocast keeps some (norms, softmax) in float32, so expect more")
    else:
        dtype = _dtype_name(dtypes)
    input_bytes = sum(t.numel() * t.element_size() for t in iter_tensors((inputs.args, inputs.kwargs)))
    if counted and amp is None and request.fit is None:
        return estimate(mb, probed, request.optimizer, dtype, input_bytes)
    # the probe's count stands for a pass at its batch where the passes count as it did
    same = counted and amp is None and all(m.training == training for _, m in tree.modules)
    cheap = device != "meta" and device_is_cheaper(
        rows, probed, device, 0 if param_map is not None else info.param_bytes, same)
    with CountingPasses(model, tree, inputs, batch or 1, training, device, param_map, amp,
                        on_device=amp is not None or cheap, device_cheap=cheap,
                        probe=probed if same else None) as passes:
        try:
            fp = probed if counted and amp is None else passes(batch or 1)
        except Exception as exc:
            notes.append(f"activation memory could not be counted: {type(exc).__name__}: {exc}")
            fp = Footprint(batch, {}, probed.outputs)
        est = estimate(mb, fp, request.optimizer, dtype, input_bytes)
        if request.fit is not None:
            est = _fit(est, mb, fp, passes, request, notes)
    if passes.meta_error:
        notes.append(f"batch scaling counted on the probe device (meta failed: {passes.meta_error})")
    return replace(est, notes=tuple(notes))


def _fit(est: MemoryEstimate, mb: ModelBytes, fp: Footprint, passes: CountingPasses,
         request: MemoryRequest, notes: list[str]) -> MemoryEstimate:
    """``est`` with the largest batch whose training peak fits ``request.fit``: activations
    measured at two batch sizes and, when that is cheap, checked for linearity at a third."""
    fit = request.fit or 0
    if fp.batch is None:
        notes.append("--fit: the inputs have no batch dimension to grow")
        return replace(est, fit_bytes=fit)
    b1 = fp.batch
    try:
        two = passes(2 * b1)  # first: should meta fail, every size is counted on the device
        one = passes(b1) if passes.cheap else fp
        linear = None
        if passes.cheap:
            four = passes(4 * b1)
            want = one.at(two, 4 * b1).activation_bytes
            linear = abs(four.activation_bytes - want) <= LINEAR_TOLERANCE * max(want, 1)
    except Exception as exc:
        notes.append(f"--fit: the pass at batch {2 * b1} failed ({type(exc).__name__}: {exc})")
        return replace(est, fit_bytes=fit)
    if linear is False:
        notes.append(f"activation memory is not linear in the batch (batch {b1}: {one.activation_bytes:,} B, "
                     f"{2 * b1}: {two.activation_bytes:,} B, {4 * b1}: {passes(4 * b1).activation_bytes:,} B); "
                     "--fit counted each batch size it tried")
        def peak_at(b: int) -> int:
            return training_peak(mb, passes(b), request.optimizer)[0]
    else:
        if linear is None:
            notes.append(f"--fit assumes activation memory linear in the batch (measured at {b1} and {2 * b1})")
        line = PeakLine(mb, request.optimizer, one, two)

        def peak_at(b: int) -> int:
            counted = passes.cache.get(b)
            return line(b) if counted is None else training_peak(mb, counted, request.optimizer)[0]
    best = fit_batch(fit, peak_at)
    per_sample = round((two.activation_bytes - one.activation_bytes) / b1)
    if best == 0:
        notes.append("--fit: not even batch 1 fits")
    return replace(est, max_batch_size=best, fit_bytes=fit, activation_per_sample=per_sample, linear=linear)


def _dtype_name(kinds: set[torch.dtype]) -> str:
    return "/".join(sorted(str(k).replace("torch.", "") for k in kinds if k.is_floating_point)) or "float32"
