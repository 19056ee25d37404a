"""Provides the culprits the probe names: the first module that made a non-finite value itself."""

from __future__ import annotations

from inspectr.core.probe.hooks import ModuleMeasure


def nonfinite_culprit(measures: dict[str, ModuleMeasure]) -> str | None:
    """The first module (completion order) whose output is non-finite while its inputs were
    finite; None when no module made a NaN/Inf itself."""
    cands = [(m.nonfinite_done, p) for p, m in measures.items()
             if m.nonfinite_done is not None and m.nonfinite_input is False]
    return min(cands)[1] if cands else None
