"""Provides what the findings of the probe, of training steps and of a watched run share, free of
torch (a run is read and judged without it): the thresholds they reuse, the deepest module path
holding a set of paths, a path's owner, the highest paths of a set, and the frozen-BatchNorm
finding. The thresholds are documented where they are applied (``findings.rules``,
``findings.training``, ``runs.findings``)."""

from __future__ import annotations

from inspectr.core.result import Finding

# dead units (findings.rules)
DEAD_WARN = 0.7
DEAD_MIN_UNITS = 8
DEAD_ERROR = 0.99
DEAD_MIN_SAMPLES = 16
# gradient flow (findings.rules)
VANISH_RATIO = 1e-5
EXPLODE_RATIO = 1e4
EXPLODE_RMS = 1e8
# update ratio (findings.training)
UPDATE_LOW = 1e-5
UPDATE_HIGH = 1e-1
UPDATE_SPREAD = 100.0
UPDATE_MIN_RMS = 1e-3
SPARSE_TYPES = ("Embedding", "EmbeddingBag")


def common_ancestor(paths: list[str]) -> str:
    """The deepest module path that contains every one of ``paths``."""
    if not paths:
        return ""
    split = [p.split(".") if p else [] for p in paths]
    prefix: list[str] = []
    for parts in zip(*split):
        if all(x == parts[0] for x in parts):
            prefix.append(parts[0])
        else:
            break
    return ".".join(prefix)


def owner_path(name: str) -> str:
    """The module a dotted name lives in: a parameter's module, a module's parent ("" at the top)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def highest_paths(paths: set[str]) -> list[str]:
    """The paths of ``paths`` with no module above them in it, sorted: where a finding about a
    whole set of modules (all their parameters unused, or stuck) is reported once. One walk up
    from each path, not a comparison of every pair (20,000-module models)."""
    out = []
    for path in paths:
        above = path
        while above:
            above = owner_path(above)
            if above in paths:
                break
        else:
            out.append(path)
    return sorted(out)


def _label(path: str) -> str:
    return path if path else "(root)"


def frozen_batchnorm_finding(hit: list[str], drift: dict[str, float] | None, when: str) -> Finding:
    """The finding for frozen BatchNorm layers ``hit`` whose running statistics move; ``drift``:
    how far each moved, ``when``: the span it moved in (e.g. "In 20 steps")."""
    where = common_ancestor(hit)
    names = ", ".join(_label(p) for p in hit[:4]) + (", …" if len(hit) > 4 else "")
    moved = ""
    if drift:
        top = max(drift.values())
        moved = f" {when} their running statistics moved by up to {top:.1%}."
    n = len(hit)
    return Finding(
        "frozen_batchnorm_updating", "warning", where,
        f"{n} BatchNorm layer{'s' if n != 1 else ''} ({names}) {'have' if n != 1 else 'has'} frozen parameters "
        f"but run{'' if n != 1 else 's'} in train mode, so the running statistics still update on every batch "
        f"and the 'frozen' backbone drifts.{moved} Call .eval() on the frozen part after model.train() "
        "(or unfreeze it).",
        {"layers": hit, "max_drift": max(drift.values()) if drift else None},
    )
