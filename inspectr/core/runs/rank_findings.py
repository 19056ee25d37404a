"""Provides the findings that compare the ranks of a run under torch.distributed (pure rules).

Thresholds (documented in the README, "Watch a training run"):

- ``nonfinite`` across ranks: each rank records its own first non-finite step with whether its
  own loss or its own model output was non-finite (before any all-reduce). ``merge_nonfinite``
  keeps one finding at the earliest step, naming the rank(s) where it appeared first
  (``detail.rank``, ``detail.ranks``), and lists the ranks it reached (``detail.reached``).
- ``rank_desync`` (warning): a tensor that should be replicated (DDP's parameters and buffers;
  under HSDP, each shard across the replicas holding it) has a fingerprint (float64 sum and sum
  of squares) differing from the lowest rank holding it by more than DESYNC_RTOL (relative) at
  a sampled step; named at the module, its ranks and the first step seen.
- ``rank_straggler`` (warning): over the last STRAGGLER_WINDOW steps (at least
  STRAGGLER_MIN_STEPS), one rank's median own work time (the step's start to the end of its
  model's forward: data wait + forward, before any collective waits) is above STRAGGLER_FACTOR
  times the median of the other ranks' medians and at least STRAGGLER_MIN_SECONDS above it. The
  time lost is the sum over those steps of its excess, times the number of ranks waiting for it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from inspectr.core.result import Finding

DESYNC_RTOL = 1e-6
STRAGGLER_WINDOW = 200
STRAGGLER_MIN_STEPS = 10
STRAGGLER_FACTOR = 2.0
STRAGGLER_MIN_SECONDS = 0.002


def _label(path: str) -> str:
    return path if path else "(root)"


def _ranks_text(ranks: Sequence[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(str(r) for r in ranks)


def merge_nonfinite(findings: Sequence[Finding]) -> list[Finding]:
    """One ``nonfinite`` finding for the whole run: the earliest step, blamed on the rank(s)
    whose own loss or model output went non-finite there (all ranks seen at that step when
    none did: the gradients alone went bad, on every rank at once)."""
    per_rank = [f for f in findings if f.kind == "nonfinite" and "rank" in f.detail]
    if len({f.detail["rank"] for f in per_rank}) <= 1:
        return list(findings)
    first = min(f.detail.get("step", 0) for f in per_rank)
    at_first = sorted((f for f in per_rank if f.detail.get("step", 0) == first), key=lambda f: f.detail["rank"])
    own = [f for f in at_first if f.detail.get("loss_nonfinite") or f.detail.get("output_nonfinite")]
    origin = own or at_first
    ranks = [f.detail["rank"] for f in origin]
    reached = sorted({f.detail["rank"] for f in per_rank})
    base = origin[0]
    others = [r for r in reached if r not in ranks]
    spread = (f" It reached {_ranks_text(others)} through the gradient all-reduce." if others and own else "")
    where = (f"first on {_ranks_text(ranks)}, in its own model output or loss" if own
             else f"on {_ranks_text(ranks)} at once, in the gradients alone")
    message = base.message
    for r in range(max(reached) + 1):
        message = message.removeprefix(f"rank {r}: ")
    merged = Finding("nonfinite", base.severity, base.module, f"{_ranks_text(ranks)}: {message} ({where}.){spread}",
                     dict(base.detail, rank=ranks[0], ranks=ranks, reached=reached))
    kept = [f for f in findings if f not in per_rank]
    return [merged, *kept]


def merge_alike(findings: Sequence[Finding]) -> list[Finding]:
    """One finding where several ranks found the same thing at the same step and module (under
    DDP every rank sees the same all-reduced gradients, so a ``grad_spike`` is found on each):
    the first rank's, its message saying "ranks 0, 1:" and ``detail.ranks`` listing them."""
    groups: dict[tuple[str, str, Any], list[Finding]] = {}
    order: list[tuple[str, str, Any] | int] = []
    for i, f in enumerate(findings):
        if "rank" not in f.detail or "ranks" in f.detail:
            order.append(i)
            continue
        key = (f.kind, f.module, f.detail.get("step"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(f)
    out: list[Finding] = []
    for item in order:
        if isinstance(item, int):
            out.append(findings[item])
            continue
        same = sorted(groups[item], key=lambda f: f.detail["rank"])
        base = same[0]
        if len(same) == 1:
            out.append(base)
            continue
        ranks = [f.detail["rank"] for f in same]
        message = base.message.removeprefix(f"rank {ranks[0]}: ")
        out.append(Finding(base.kind, base.severity, base.module, f"{_ranks_text(ranks)}: {message}",
                           dict(base.detail, ranks=ranks)))
    return out


def _same(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):  # a NaN everywhere (after a non-finite step) is no desync
        return not math.isfinite(a) and not math.isfinite(b)
    return math.isclose(a, b, rel_tol=DESYNC_RTOL, abs_tol=1e-12)


def fingerprint_desync(step: int, prints: Mapping[int, Mapping[str, tuple[float, float]]],
                       seen: set[str]) -> list[Finding]:
    """``prints``: rank -> tensor name -> (sum, sum of squares); modules in ``seen`` were already
    reported (each module once, at its first step) and are added to it."""
    if len(prints) < 2:
        return []
    holders: dict[str, list[int]] = {}  # a tensor (an HSDP shard: "name@coords") -> the ranks holding it
    for r in sorted(prints):
        for name in prints[r]:
            holders.setdefault(name, []).append(r)
    odd: dict[str, set[int]] = {}
    refs: dict[str, int] = {}
    for name, ranks_of in holders.items():
        ref_rank, *others = ranks_of  # compared with the lowest rank holding the same tensor
        for r in others:
            if any(not _same(a, b) for a, b in zip(prints[r][name], prints[ref_rank][name])):
                tensor = name.split("@", 1)[0]
                module = tensor.rsplit(".", 1)[0] if "." in tensor else ""
                odd.setdefault(module, set()).add(r)
                refs.setdefault(module, ref_rank)
    out = []
    for module in sorted(odd):
        if module in seen:
            continue
        seen.add(module)
        ref_rank = refs[module]
        ranks = [ref_rank, *sorted(odd[module])]
        out.append(Finding(
            "rank_desync", "warning", module,
            f"step {step}: {_label(module)} differs across {_ranks_text(ranks)}: its replicated parameters or "
            f"buffers no longer match rank {ref_rank}'s. Something changed them on some ranks only (an `if rank == 0:` "
            "edit, a load on one rank, a per-rank RNG in init); neither DDP nor HSDP puts them back.",
            {"step": step, "rank": ranks[1], "ranks": ranks, "rtol": DESYNC_RTOL}))
    return out


def rank_straggler(rank_steps: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """``rank_steps``: rows with step, rank and work (seconds of the rank's own work, or None)."""
    work: dict[int, dict[int, float]] = {}
    for row in rank_steps:
        if row.get("work") is not None:
            work.setdefault(row["rank"], {})[row["step"]] = row["work"]
    if len(work) < 2:
        return []
    common = sorted(set.intersection(*(set(w) for w in work.values())))[-STRAGGLER_WINDOW:]
    if len(common) < STRAGGLER_MIN_STEPS:
        return []
    medians = {r: statistics.median(w[s] for s in common) for r, w in work.items()}
    worst = max(medians, key=lambda r: medians[r])
    others = statistics.median(m for r, m in medians.items() if r != worst)
    if medians[worst] <= STRAGGLER_FACTOR * others or medians[worst] - others < STRAGGLER_MIN_SECONDS:
        return []
    excess = []
    for s in common:
        rest = statistics.median(w[s] for r, w in work.items() if r != worst)
        excess.append((s, work[worst][s] - rest))
    waiting = len(work) - 1
    lost = sum(max(e, 0.0) for _, e in excess) * waiting
    step = next((s for s, e in excess if e > (STRAGGLER_FACTOR - 1) * max(others, 1e-9)), common[0])
    return [Finding(
        "rank_straggler", "warning", "",
        f"rank {worst}: its own work per step (data + forward) is {medians[worst] * 1e3:.3g} ms, "
        f"{medians[worst] / max(others, 1e-9):.1f}x the other ranks' {others * 1e3:.3g} ms (median of {len(common)} "
        f"steps, from step {step}); the {waiting} other rank(s) lost {lost:.3g} s waiting for it. A slow data loader, "
        "a busy or throttled device or host on that rank.",
        {"step": step, "rank": worst, "ranks": [worst], "work": medians[worst], "others": others,
         "lost_seconds": lost, "steps": len(common), "factor": STRAGGLER_FACTOR})]
