"""Provides the statistics of module outputs: tensors reduced to a few floats (gradients:
``grad_stats``).

Nothing is kept alive: a large output is reduced inside the forward hook that sees it, a small
one is copied and reduced with others of its shape when the pass ends.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from inspectr.core.result import ActivationStats, fast_new

SMOOTH_DEAD_TOL = 1e-6  # GELU/SiLU-like outputs in (-tol, 0] are the saturated negative region
HISTOGRAM_BINS = 24


@dataclass(slots=True)
class StatsAccumulator:
    """Running sums for one module's outputs over all calls (plain numbers, no tensors)."""

    numel: int = 0
    total: float = 0.0
    sq_total: float = 0.0
    nonzero: int = 0
    nan: int = 0
    inf: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    # (alive units, units, values per unit), one per call: a shared activation (torchvision's
    # BasicBlock calls one ReLU twice) is judged call by call, or a live call site would hide a dead one
    calls_units: list[tuple[int, int, int]] = field(default_factory=list)
    histogram: list[int] | None = None
    sampled: int = 0  # SAMPLED_* bits: the figures some output gave from a sample

    def add(self, n: int, total: float, sq: float, mn: float, mx: float, nonzero: int, nan: int, inf: int,
            sampled: int = 0) -> None:
        self.numel += n
        self.sampled |= sampled
        self.total += total
        self.sq_total += sq
        self.nonzero += nonzero
        self.nan += nan
        self.inf += inf
        if mn < self.lo:
            self.lo = mn
        if mx > self.hi:
            self.hi = mx


def unit_layout(shape: tuple[int, ...], channel_first_1d: bool) -> tuple[int, int] | None:
    """(units, values between two neighbours of one unit) of an output, for dead-unit counting.

    The unit dimension is 1 (channels, features), except for 3-D outputs of sequence layers
    (``[batch, seq, features]``), where it is the last. None when there are no units.
    """
    nd = len(shape)
    if nd < 2:
        return None
    unit = 2 if nd == 3 and not channel_first_1d else 1
    return int(shape[unit]), math.prod(int(d) for d in shape[unit + 1:])


STAT_SAMPLE = 1 << 14
SAMPLE_RUN = 16  # values per run of the sample: one 64-byte cache line of float32

# Which figures of an output came from its sample (bits of ``StatsAccumulator.sampled``), named
# as in ``ActivationStats``: descriptive figures no finding judges. NaN/Inf counts, dead units
# and the zero fraction of rectifiers are always exact.
SAMPLED_MEAN, SAMPLED_STD, SAMPLED_MIN, SAMPLED_MAX, SAMPLED_ZEROS = 1, 2, 4, 8, 16
SAMPLED_NAMES = ((SAMPLED_MEAN, "mean"), (SAMPLED_STD, "std"), (SAMPLED_MIN, "min"), (SAMPLED_MAX, "max"),
                 (SAMPLED_ZEROS, "zero_fraction"))


def sampled_names(bits: int) -> tuple[str, ...]:
    """The names of the figures that ``bits`` marks as sampled."""
    return tuple(name for bit, name in SAMPLED_NAMES if bits & bit)


@functools.lru_cache(maxsize=4096)
def sample_runs(n: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """(runs, stride) of the sample of a tensor of ``n`` values: STAT_SAMPLE / SAMPLE_RUN runs
    of SAMPLE_RUN neighbouring values, their starts a prime stride apart that divides no
    dimension's extent, so the runs walk across channels, rows and columns instead of down one
    column (the padded edge, say). Runs, not single values: a gather of 16,384 values one cache
    line each costs 3-4x the same count in whole lines."""
    step = max(SAMPLE_RUN + 1, n // (STAT_SAMPLE // SAMPLE_RUN))
    extents = set()
    size = 1
    for d in reversed(shape):
        size *= int(d)
        extents.add(size)

    def is_prime(k: int) -> bool:
        return k > 1 and all(k % q for q in range(2, int(k ** 0.5) + 1))

    while not is_prime(step) or any(e % step == 0 for e in extents if e < n):
        step += 1
    return min(STAT_SAMPLE // SAMPLE_RUN, (n - SAMPLE_RUN) // step + 1), step


def count_nonzero(x: torch.Tensor, out: torch.Tensor | None = None, nonneg: bool = False) -> float:
    """Exact nonzero count (NaN counts as zero, as ``sign`` has it): ``sign`` then a sum, as bool
    reductions are 5x slower on CPU; a float32 sum of ones is exact below 2**24 and 3x faster than
    float64. ``out``: a buffer shaped like ``x`` to write the signs into; ``nonneg``: ``x`` >= 0."""
    ones = torch.sign(x, out=out) if out is not None else x.sign()
    if not nonneg:
        ones.abs_()
    return float(ones.sum() if x.numel() < 1 << 24 else ones.sum(dtype=torch.float64))


def sample_of(x: torch.Tensor) -> torch.Tensor:
    """About STAT_SAMPLE values of ``x`` in evenly spaced runs (``sample_runs``), copied together
    into one flat tensor; all of ``x``, flat, when it is small. Gathered once: three reductions
    over a strided view cost 3x the copy. The runs are taken in memory order, which is the same
    sample for sums and counts: a channels_last output is sampled as cheaply as a contiguous
    one. A tensor with gaps in its memory (a strided slice) gives all its values."""
    n = x.numel()
    if n <= STAT_SAMPLE:
        return x.reshape(-1)
    order = x.shape if x.is_contiguous() else _memory_order(x)
    if order is None:
        return x.reshape(-1)
    runs, step = sample_runs(n, order)
    return x.as_strided((runs, SAMPLE_RUN), (step, 1)).reshape(-1)


def _memory_order(x: torch.Tensor) -> tuple[int, ...] | None:
    """The sizes of ``x`` outermost first in memory, when its values fill one block of memory
    without gaps or overlaps (channels_last, a transpose); None otherwise."""
    dims = sorted((st, size) for st, size in zip(x.stride(), x.shape) if size != 1)
    expect = 1
    for st, size in dims:
        if st != expect:
            return None
        expect *= size
    return tuple(size for _, size in reversed(dims))


def sum_sq(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares of ``x`` as a 0-dim tensor: a dot product when ``x`` is flat and contiguous
    (a fifth of the cost of ``vector_norm`` then squaring, on CPU)."""
    if x.dim() == 1 and x.is_contiguous() and x.dtype in WIDE_FLOATS:
        return torch.dot(x, x)
    return torch.linalg.vector_norm(x).square()


def _nonzero_of(sample: torch.Tensor) -> torch.Tensor:
    """The nonzero count of a sample as a 0-dim tensor of its dtype, to go in the same sync as
    its sums: signs squared and summed (6 us on 16,384 values, ``count_nonzero`` 14 us). NaN
    gives NaN: the callers take the exact path for non-finite outputs."""
    return sum_sq(sample.sign())


def _unit_max(v: torch.Tensor, largest: bool) -> torch.Tensor:
    """Per-unit maximum (or minimum) of ``v`` laid out [rows, units, inner]: along the inner
    dimension first when there is one (reducing two dimensions at once is 1.6x slower on CPU)."""
    op = torch.amax if largest else torch.amin
    if v.shape[2] == 1:
        return op(v, dim=(0, 2))
    return op(op(v, dim=2), dim=0)


def reduce_tensor(x: torch.Tensor, exact_zeros: bool) -> tuple[float, float, float, float, float, int]:
    """(sum, sum of squares, min, max, nonzero count, SAMPLED_* bits) of a float tensor, cheaply.

    Up to STAT_SAMPLE values every figure is exact. Above that, one full pass (``sum``: a third
    of ``aminmax``'s cost on CPU) gives the exact sum, so the exact mean, and finds any NaN or
    Inf (they make it non-finite); the sum of squares, min, max and, unless ``exact_zeros``
    (rectifier outputs: the zero fraction is judged there), the zero count come from a sample of
    STAT_SAMPLE values in evenly spaced runs (``sample_of``), scaled up.
    """
    n = x.numel()
    sample = sample_of(x)
    # few op launches and one sync: on small tensors the launches, not the arithmetic, dominate
    if sample.numel() == n:
        lo, hi = torch.aminmax(sample)
        total, sq, mn, mx = torch.stack([sample.sum(), sum_sq(sample), lo, hi]).tolist()
        nonzero = float(n) if mn > 0 or mx < 0 else count_nonzero(x)
        return total, sq, mn, mx, nonzero, 0
    lo, hi = torch.aminmax(sample)
    parts = [x.sum(), sum_sq(sample), lo, hi]
    if not exact_zeros:
        parts.append(_nonzero_of(sample))
    values = torch.stack(parts).tolist()
    total, sq, mn, mx = values[:4]
    scale = n / sample.numel()
    sampled = SAMPLED_STD | SAMPLED_MIN | SAMPLED_MAX
    if exact_zeros:
        nonzero = count_nonzero(x)
    else:
        nonzero = values[4] * scale
        sampled |= SAMPLED_ZEROS
    return total, sq * scale, mn, mx, nonzero, sampled


def _reduce_now(x: torch.Tensor, exact_zeros: bool) -> Reduced:
    """``reduce_tensor`` plus NaN/Inf counts; sums, min and max then cover the finite values."""
    total, sq, mn, mx, nz, sampled = reduce_tensor(x, exact_zeros)
    nan = inf = 0
    if not (math.isfinite(total) and math.isfinite(mn) and math.isfinite(mx)):
        nan = int(torch.isnan(x).sum())
        inf = int(torch.isinf(x).sum())
        if nan + inf:  # else a sum that overflowed: its figures stand
            nz = int((x != 0).sum())  # NaN and Inf are not zeros
            sampled &= ~SAMPLED_ZEROS
            finite = x[torch.isfinite(x)]
            if finite.numel():
                total, sq, mn, mx, _, more = reduce_tensor(finite, True)
                sampled |= more
            else:
                total = sq = 0.0
                mn, mx = math.inf, -math.inf
    return total, sq, mn, mx, int(nz), nan, inf, sampled


Reduced = tuple[float, float, float, float, int, int, int, int]  # sum, sum sq, min, max, nonzero, NaN, Inf, SAMPLED_*


@dataclass(slots=True)
class _Pending:
    """A small output waiting, copied, for the batched reduction."""

    copy: torch.Tensor
    cache_id: int
    accs: list[StatsAccumulator]
    units: StatsAccumulator | None  # the activation whose dead units this output counts
    layout: tuple[int, int] | None  # its (units, inner) layout: the same for its whole group
    tol: float
    tags: list[Any]  # one per observer that gave one


class OutputStats:
    """Reduces module outputs into ``StatsAccumulator``s; each tensor once however many modules return it.

    Outputs of at most STAT_SAMPLE values (most outputs of a deep narrow network) are copied,
    grouped by shape, and reduced a group at a time when the pass ends (or when BATCH_BYTES of
    them wait): a dozen op launches per shape instead of eight per output. Everything about
    them is exact. Larger outputs are reduced at once (see ``reduce_tensor``) and dropped.
    """

    BATCH_BYTES = 32 << 20

    def __init__(self, histograms: bool = False) -> None:
        self.histograms = histograms
        # (shape, dtype, device, unit layout) -> outputs waiting
        self.pending: dict[tuple[Any, ...], list[_Pending]] = {}
        self.pending_bytes = 0
        # a container's output is usually its last child's output: same tensor, same numbers.
        # The weak reference tells a live tensor from a new one that took a freed one's id.
        self.cache: dict[int, tuple[weakref.ref[torch.Tensor], int, Reduced | _Pending]] = {}
        self.scratch: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def observe(self, acc: StatsAccumulator, t: torch.Tensor, dead_kind: str | None,
                channel_first_1d: bool, nonneg: bool = False,
                tag: Any = None, held_bytes: int = 0) -> bool | None:
        """Add one output to ``acc`` (called with autograd off: copies stay out of the graph).

        Returns True/False when the output was reduced now and held NaN/Inf or not; None when
        it waits for ``flush``, which returns the ``tag`` of every waiting output that held NaN/Inf
        (``held_bytes``: what the tag keeps alive meanwhile, counted against the batch budget).
        """
        n = t.numel()
        if n == 0:
            return False
        shape = tuple(t.shape)
        layout = unit_layout(shape, channel_first_1d) if dead_kind is not None else None
        tol = 0.0 if dead_kind == "rectifier" else SMOOTH_DEAD_TOL
        hit = self.cache.get(id(t))
        if hit is not None and hit[0]() is t and hit[1] == t._version:
            done = hit[2]
            if isinstance(done, _Pending):
                done.accs.append(acc)
                if tag is not None:
                    done.tags.append(tag)
                if layout is not None:
                    if done.units is None and done.layout == layout and done.tol == tol:
                        done.units = acc
                    else:  # a second activation on the very same tensor: count its units now
                        _add_units(acc, done.copy, layout, tol)
                return None
            acc.add(n, *done)
            if layout is not None:
                _add_units(acc, t.detach(), layout, tol)
            return done[5] + done[6] > 0
        dtype = t.dtype
        if (n <= STAT_SAMPLE and dtype in _BATCHED and not (self.histograms and acc.histogram is None)):
            copy = t.clone() if dtype in WIDE_FLOATS else t.float()
            entry = _Pending(copy, id(t), [acc], acc if layout else None, layout, tol, [tag] if tag is not None else [])
            group = (shape, copy.dtype, t.device, layout)
            waiting = self.pending.get(group)
            if waiting is None:
                self.pending[group] = [entry]
            else:
                waiting.append(entry)
            self.cache[id(t)] = (weakref.ref(t), t._version, entry)
            self.pending_bytes += n * copy.element_size() + held_bytes
            return None
        x = t.detach()
        if x.dtype not in WIDE_FLOATS:
            x = x.float()
        # the zero fraction is judged (exact) for rectifiers only; elsewhere a sample gives it
        exact_zeros = dead_kind == "rectifier"
        stats: Reduced | None = None
        if layout is not None:
            found = self._reduce_units(x, layout, tol, exact_zeros, nonneg)
            if found is not None:
                stats, alive = found
                acc.calls_units.append((alive, layout[0], n // max(layout[0], 1)))
        if stats is None:  # no units, or NaN/Inf among the values: the general path
            stats = _reduce_now(x, exact_zeros)
            if layout is not None:
                _add_units(acc, x, layout, tol)
        nan, inf = stats[5], stats[6]
        if self.histograms and acc.histogram is None and nan + inf == 0:
            if stats[7] & (SAMPLED_MIN | SAMPLED_MAX):  # the bins need the exact range
                lo, hi = torch.aminmax(x)
                stats = (*stats[:2], float(lo), float(hi), *stats[4:7], stats[7] & ~(SAMPLED_MIN | SAMPLED_MAX))
            mn, mx = stats[2], stats[3]
            hist = torch.histc(x, bins=HISTOGRAM_BINS, min=mn, max=mx if mx > mn else mn + 1.0)
            acc.histogram = [int(c) for c in hist.tolist()]
        self.cache[id(t)] = (weakref.ref(t), t._version, stats)
        acc.add(n, *stats)
        return nan + inf > 0

    def _reduce_units(self, x: torch.Tensor, layout: tuple[int, int], tol: float, count_zeros: bool,
                      nonneg: bool) -> tuple[Reduced, int] | None:
        """Statistics and live units of a large activation output.

        Per-unit maxima along the unit layout (``amax`` along dims: ``aminmax`` along a dim is
        10-20x slower on CPU) give the exact maximum and, where every unit has a positive value
        (a healthy layer), every unit alive: a positive output is a live unit, however small
        (GELU/SiLU of a tiny input). Only when some unit's maximum is not positive do per-unit
        minima tell whether it dips below -tol (alive) or stays in (-tol, 0] (dead); they then
        give the exact minimum too, which is otherwise the sample's. Zeros are counted exactly
        for rectifiers (``count_nonzero`` into a reused scratch buffer); the sum is exact, but
        for a nonnegative output, whose sum and sum of squares come from the sample. None when
        a value is NaN or Inf (the general path counts them).
        """
        units, inner = layout
        n = x.numel()
        v = x.reshape(-1, units, inner)
        hi_u = _unit_max(v, True)
        sample = sample_of(x)
        # NaN and +Inf reach the maxima; a full sum finds -Inf too (a nonnegative output has
        # none: its mean comes from the sample, its minimum is settled below)
        parts = [hi_u.min(), hi_u.max(), sample.sum() if nonneg else x.sum(), sum_sq(sample)]
        if not nonneg:
            parts.append(sample.min())
        if not count_zeros:
            parts.append(_nonzero_of(sample))
        values = torch.stack(parts).tolist()
        least_max, mx, total, sq = values[:4]
        mn = 0.0 if nonneg else values[4]
        if not (math.isfinite(mx) and math.isfinite(total) and math.isfinite(mn)):
            return None
        scale = n / sample.numel()
        if nonneg:
            total *= scale
        sampled = (SAMPLED_MEAN if nonneg else 0) | SAMPLED_STD
        n_alive = units
        if least_max <= 0:  # some unit never positive: alive only where it dips below -tol
            alive = hi_u > 0
            if not nonneg:
                lo_u = _unit_max(v, False)
                alive |= lo_u < -tol
                mn = float(lo_u.min())
            n_alive = int(alive.sum())
        elif not nonneg:
            sampled |= SAMPLED_MIN
        if count_zeros:
            nz = count_nonzero(x, self._scratch(x), nonneg)
        else:
            nz = values[-1] * scale
            sampled |= SAMPLED_ZEROS
        if nonneg:  # the minimum of a nonnegative output is 0 wherever a value is
            mn = 0.0 if count_zeros and nz < n else float(x.min())
        return (total, sq * scale, mn, mx, int(nz), 0, 0, sampled), n_alive

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A reused buffer shaped like ``like``: a fresh one per output costs page faults."""
        key = (like.device, like.dtype)
        buf = self.scratch.get(key)
        if buf is None or buf.numel() < like.numel():
            buf = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
            self.scratch[key] = buf
        return buf[: like.numel()].view(like.shape)

    def flush(self) -> list[Any]:
        """Reduce every waiting output; returns the tags of those that held NaN or Inf."""
        pending, self.pending, self.pending_bytes = self.pending, {}, 0
        bad: list[Any] = []
        cache = self.cache
        for (_, _, _, layout), entries in pending.items():
            for e, stats in zip(entries, _reduce_group(entries, layout)):
                hit = cache.get(e.cache_id)
                if hit is not None and hit[2] is e:
                    cache[e.cache_id] = (hit[0], hit[1], stats)
                if stats[5] + stats[6]:
                    bad += e.tags
        return bad


WIDE_FLOATS = (torch.float32, torch.float64)
_BATCHED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _add_units(acc: StatsAccumulator, x: torch.Tensor, layout: tuple[int, int], tol: float) -> None:
    """Count the units of one call that are alive somewhere (y > 0 or y < -tol) in ``acc.calls_units``."""
    units, inner = layout
    v = x.reshape(-1, units, inner)
    lo, hi = v.amin(dim=(0, 2)), v.amax(dim=(0, 2))
    alive = int((~((hi <= 0) & (lo >= -tol))).sum())  # a unit of NaN is not dead: the NaN finding says what it is
    acc.calls_units.append((alive, units, x.numel() // max(units, 1)))


def _reduce_group(entries: list[_Pending], layout: tuple[int, int] | None) -> list[Reduced]:
    """Exact statistics of same-shape small tensors, a row each; also adds them (and their
    dead-unit counts) to the entries' accumulators."""
    k = len(entries)
    # reshape: channels_last outputs (timm's ConvNeXt) are cloned with their strides and cannot view
    rows = torch.stack([e.copy for e in entries]).reshape(k, -1)
    n = rows.shape[1]
    # amin and amax along a dimension are 10x faster than aminmax on CPU, and signs summed 3x
    # faster than a bool count (a row with NaN gives NaN: it is redone below)
    summary = torch.stack([rows.sum(1), torch.linalg.vector_norm(rows, dim=1), rows.amin(1), rows.amax(1),
                           rows.sign().abs_().sum(1)], 1).tolist()
    out: list[Reduced] = []
    for i, (total, norm, mn, mx, nz) in enumerate(summary):
        if math.isfinite(mn) and math.isfinite(mx):
            out.append((total, norm * norm, mn, mx, int(nz), 0, 0, 0))
        else:  # rare: NaN/Inf in this output; sums, min and max cover its finite values
            out.append(_reduce_now(rows[i], True))
    for e, stats in zip(entries, out):
        for acc in e.accs:
            acc.add(n, *stats)
    with_units = [i for i, e in enumerate(entries) if e.units is not None]
    if layout is not None and with_units:
        units, inner = layout
        sel = rows if len(with_units) == k else rows[with_units]
        per_unit = sel.view(len(with_units), -1, units, inner)
        umax, umin = per_unit.amax(dim=(1, 3)), per_unit.amin(dim=(1, 3))
        tols = torch.tensor([entries[i].tol for i in with_units], dtype=rows.dtype, device=rows.device)
        dead = (umax <= 0) & (umin >= -tols[:, None])
        for i, alive in zip(with_units, (~dead).sum(1).tolist()):
            entries[i].units.calls_units.append((alive, units, n // max(units, 1)))  # type: ignore[union-attr]
    return out


def finish_stats(acc: StatsAccumulator | None) -> ActivationStats | None:
    if acc is None or acc.numel == 0:
        return None
    finite_n = acc.numel - acc.nan - acc.inf
    mean = acc.total / finite_n if finite_n else math.nan
    var = acc.sq_total / finite_n - mean * mean if finite_n else math.nan
    dead = units = spu = None
    if acc.calls_units:
        # the call with the largest dead fraction (ties: the most values per unit)
        alive, units, spu = max(acc.calls_units, key=lambda c: (1.0 - c[0] / max(c[1], 1), c[2]))
        dead = 1.0 - alive / max(units, 1)
    return fast_new(
        ActivationStats,
        numel=acc.numel,
        mean=mean,
        std=math.sqrt(max(var, 0.0)) if finite_n else math.nan,
        min=acc.lo if finite_n else math.nan,
        max=acc.hi if finite_n else math.nan,
        zero_fraction=1.0 - acc.nonzero / acc.numel,
        nan=acc.nan,
        inf=acc.inf,
        dead_fraction=dead,
        units=units,
        samples_per_unit=spu,
        histogram=tuple(acc.histogram or ()),
        sampled=sampled_names(acc.sampled),
    )
