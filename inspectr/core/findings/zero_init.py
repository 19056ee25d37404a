"""Provides the finding of a zero-initialised parameter with no path around it
(``zero_init_blocks``), and which dead-looking outputs a zero parameter explains.

- ``zero_init_blocks`` (warning): an output is all zero because a multiplier (a norm weight, a
  gate, a scale) starts at exactly zero, and the model's first layers get no gradient through
  it: nothing reaches the layers after it, and nothing before it learns, until that parameter
  moves. Inside a residual branch (a skip path carries the signal) the same zero is the
  intended zero-init and nothing is reported; nor is it ``dead_units``.
"""

from __future__ import annotations

from inspectr.core.probe.run import ProbeResult
from inspectr.core.probe.zero_init import ZeroInit
from inspectr.core.result import Finding, ModuleRow


def explained_by_zero_init(rows: tuple[ModuleRow, ...], result: ProbeResult) -> set[str]:
    """Module paths whose zero outputs a zero-initialised parameter explains: not dead units.
    Behind a zero with no path around it, every later output is too (its input is constant)."""
    explained = {z.output for z in result.zero_init}
    blocking = [z.output for z in result.zero_init if z.blocked]
    if blocking:
        order = {r.path: r.order for r in rows if r.order is not None}
        first = min((order[p] for p in blocking if p in order), default=None)
        if first is not None:
            explained |= {p for p, o in order.items() if o > first}
    return explained


def behind_zero_init(rows: tuple[ModuleRow, ...], result: ProbeResult) -> dict[str, str]:
    """Module path -> the zero-initialised parameter an earlier output is zero by, for the rows
    after it when the probe ran no backward (it cannot tell whether a skip goes around it)."""
    unknown = [z for z in result.zero_init if z.blocked is None]
    if not unknown:
        return {}
    order = {r.path: r.order for r in rows if r.order is not None}
    first = min(unknown, key=lambda z: order.get(z.output, 10**9))
    start = order.get(first.output)
    if start is None:
        return {}
    return {p: first.parameter for p, o in order.items() if o > start}


def zero_init_blocks(result: ProbeResult) -> list[Finding]:
    """A warning on the first zero-initialised parameter (run order) that blocks the only path
    through it; any later ones are named in it (the culprit only: one finding)."""
    blocking: list[ZeroInit] = []
    for z in result.zero_init:
        if z.blocked and all(z.parameter != b.parameter for b in blocking):
            blocking.append(z)
    if not blocking:
        return []
    z, later = blocking[0], [b.parameter for b in blocking[1:]]
    blocked = z.blocked or ()  # not empty: only blocking ones were kept
    first, last = blocked[0], blocked[-1]
    span = first if first == last else f"{first} … {last}"
    more = (f" ({len(later)} more zero-initialised parameter(s) after it block the same way: "
            f"{', '.join(later[:3])}{', …' if len(later) > 3 else ''})" if later else "")
    return [Finding(
        "zero_init_blocks", "warning", z.owner,
        f"{z.parameter} is initialised to exactly 0 and no skip path goes around it: "
        f"{z.output or '(root)'} outputs only zeros, so nothing reaches the layers after it, and the "
        f"{len(blocked):,} module(s) before it ({span}) get no gradient until that parameter moves{more}; "
        "initialise it to a non-zero value (ones for a norm weight), or add the residual "
        "connection around it if it is meant to start as the identity.",
        {"parameter": z.parameter, "output": z.output, "blocked": len(blocked), "first_blocked": first,
         "later": later},
    )]
