"""Provides the gradients the probe's backward starts from: a fixed random weighting of the outputs.

Seeding every output with ones (the gradient of ``sum()``) fails on a common case: an output
whose values sum to a constant (LayerNorm without a head, softmax, train-mode BatchNorm summed
over the batch) has d(sum)/d(input) exactly 0, so every gradient upstream is zero or rounding
noise and a healthy model looks like vanishing gradients. A random direction has no such
blind spot. Standard normal weights keep the magnitudes users know from ``sum()``: one value
per output element with mean square 1, so the seed's RMS is 1 and its norm sqrt(numel) in
expectation, as the ones were. Complex outputs get complex normal weights (E|w|^2 = 1), the
gradient of the real part of their weighted sum.
"""

from __future__ import annotations

import torch

# Mixed into the probe seed: inputs drawn from torch.randn with the same seed would otherwise
# equal the weights of a same-shaped output.
_SALT = 0x5EED_0F_BAC

# Dtypes torch draws normals in on every device; others are drawn in float32 and cast.
_DRAWN = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128}


def seed_gradients(outputs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """One fixed random gradient per output (the backward of ``sum(t * w)``), ``w`` drawn from
    a generator seeded with ``seed``: the same numbers every run, the global RNG untouched.

    Each ``w`` has its output's shape, dtype and device and is drawn there (no host copy of a
    large output); on the meta device it is an empty tensor (shapes only); a nested tensor
    gets ones.
    """
    generators: dict[torch.device, torch.Generator] = {}
    seeds: list[torch.Tensor] = []
    for t in outputs:
        if t.is_meta:
            seeds.append(torch.empty_like(t, memory_format=torch.contiguous_format))
            continue
        if t.is_nested:  # no single shape to draw for: these keep sum()'s ones
            seeds.append(torch.ones_like(t))
            continue
        gen = generators.get(t.device)
        if gen is None:
            gen = generators[t.device] = _generator(t.device, seed)
        dtype = t.dtype if t.dtype in _DRAWN else (torch.complex64 if t.is_complex() else torch.float32)
        w = torch.randn(t.shape, generator=gen, dtype=dtype, device=gen.device)
        seeds.append(w.to(t.device, t.dtype))
    return seeds


def _generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device``, else on the CPU for devices without their own."""
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = torch.Generator()
    return gen.manual_seed((seed + _SALT) % 2**64)
