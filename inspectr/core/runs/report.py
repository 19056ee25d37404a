"""Provides ``RunReport``, a run read back from its store (also while it is written), and its
JSON (schema ``inspectr-run/2``).

Under torch.distributed a run holds every rank: ``steps`` and ``samples`` are those of the lowest
rank stored (rank 0), ``rank_steps`` and ``rank_samples`` every rank's."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inspectr.core.result import Finding
from inspectr.core.runs.findings import (
    diverging,
    dying_units,
    frozen_batchnorm_updating,
    gradient_flow,
    not_learning,
    stuck_parameters,
    update_ratio,
)
from inspectr.core.runs.rank_findings import merge_alike, merge_nonfinite, rank_straggler
from inspectr.core.runs.store import SAMPLE_FIELDS, SCHEMA, db_path, read_tables
from inspectr.errors import InspectrError


@dataclass(frozen=True)
class RunReport:
    """A watched run: its facts, the loss and scalars per step, the per-module samples and the
    findings (stored ones, made live by the watch, and the rules over the whole run)."""

    path: str
    run: dict[str, Any]
    steps: tuple[dict[str, Any], ...]  # step, loss, grad_norm, seconds, nonfinite
    scalars: dict[str, tuple[tuple[int, float | None], ...]]
    modules: tuple[dict[str, Any], ...]  # path, type, params, trainable, in_optimizer
    samples: tuple[tuple[int, dict[str, dict[str, Any]]], ...]
    findings: tuple[Finding, ...]
    events: tuple[dict[str, Any], ...]  # the watch's own failures (a part switched off)
    ranks: tuple[dict[str, Any], ...] = ({"rank": 0},)  # rank, local_rank, host, pid, world, device
    rank_steps: tuple[dict[str, Any], ...] = ()  # every rank's steps, with rank, work, peak_memory
    rank_samples: tuple[tuple[int, int, dict[str, dict[str, Any]]], ...] = ()  # (step, rank, modules)

    @property
    def loss(self) -> list[tuple[int, float | None]]:
        return [(s["step"], s["loss"]) for s in self.steps if s["logged"]]

    def for_rank(self, rank: int) -> RunReport:
        """The run as rank ``rank`` saw it: its steps (loss, step time) and its sampled modules in
        place of the first rank's; the scalars, findings and the rest stay the run's."""
        if not self.rank_steps or rank == min(r["rank"] for r in self.ranks):
            return self
        return replace(self, steps=_steps_of(self.rank_steps, rank), samples=_samples_of(self.rank_samples, rank))

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run": jsonable(dict(self.run, path=self.path, steps=len(self.steps), sampled_steps=len(self.samples),
                                  events=list(self.events))),
            "ranks": [r["rank"] for r in self.ranks],
            "loss": [{"step": s["step"], "rank": s["rank"], "value": jsonable(s["loss"])}
                     for s in (self.rank_steps or self.steps) if s["logged"]],
            "steps": [jsonable({k: v for k, v in s.items() if k != "logged"}) for s in self.steps],
            "scalars": {name: [{"step": s, "value": jsonable(v)} for s, v in rows]
                        for name, rows in self.scalars.items()},
            "samples": [{"step": s, "rank": r, "modules": jsonable(mods)} for s, r, mods in self.rank_samples]
            if self.rank_samples else [{"step": s, "rank": 0, "modules": jsonable(mods)} for s, mods in self.samples],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def is_run(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a run store."""
    p = Path(path)
    return p.is_dir() and db_path(p).is_file()


def load_run(path: str | Path) -> RunReport:
    """Read the run in folder ``path``; raises ``InspectrError`` when it holds none."""
    folder = Path(path)
    try:
        tables = read_tables(folder)
    except FileNotFoundError:
        raise InspectrError(
            f"{folder} holds no inspectr run (no {db_path(folder).name} in it).",
            "Give the folder passed as run= to inspectr.watch, e.g. inspectr.load_run(\"runs/exp1\").",
        ) from None
    except sqlite3.Error as exc:
        written = _schema_of(folder)
        if written is not None and written != SCHEMA:
            raise InspectrError(
                f"The run in {folder} was written by another version of inspectr (schema {written}; this one "
                f"reads {SCHEMA}).",
                "Open it with the inspectr that recorded it, or record the run again; the file itself is plain "
                "SQLite and stays readable with sqlite3 or pandas.") from None
        raise InspectrError(f"The run in {folder} cannot be read ({exc}).",
                            "Check that the file is an inspectr run store and that you can read it.") from None
    meta = {k: json.loads(v) for k, v in tables["meta"]}
    modules = tuple({"path": p, "type": t, "params": n, "trainable": tr, "in_optimizer": bool(io)}
                    for _, p, t, n, tr, io in tables["modules"])
    path_of = {row[0]: row[1] for row in tables["modules"]}
    ranks = tuple({"rank": r, "local_rank": lr, "host": host, "pid": pid, "world": world, "device": dev}
                  for r, lr, host, pid, world, dev in tables["ranks"]) or ({"rank": 0},)
    first = min(r["rank"] for r in ranks)
    logged = {(s, r) for s, name, _, r in tables["scalars"] if name == "loss"}
    rank_steps = tuple({"step": s, "rank": r, "loss": _loss(loss, bad, (s, r) in logged), "grad_norm": _float(g),
                        "seconds": sec, "nonfinite": bool(bad), "logged": (s, r) in logged, "work": work,
                        "peak_memory": mem}
                       for s, loss, g, sec, bad, r, work, mem in tables["steps"])
    steps = _steps_of(rank_steps, first)
    scalars: dict[str, list[tuple[int, float | None]]] = {}
    for s, name, value, r in tables["scalars"]:
        if name != "loss" and r == first:
            scalars.setdefault(name, []).append((s, _float(value)))
    by_step: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for row in tables["samples"]:
        values = dict(zip(SAMPLE_FIELDS, row[2:2 + len(SAMPLE_FIELDS)]))
        values["nonfinite"] = None if values["nonfinite"] is None else bool(values["nonfinite"])
        by_step.setdefault((row[0], row[-1]), {})[path_of.get(row[1], str(row[1]))] = values
    for step, module, drift in tables["running_stats"]:  # BatchNorm layers: how far the running stats moved
        by_step.setdefault((step, first), {}).setdefault(path_of.get(module, str(module)), {})["running_drift"] = \
            _float(drift)
    rank_samples = tuple((s, r, mods) for (s, r), mods in sorted(by_step.items()))
    samples = _samples_of(rank_samples, first)
    stored = merge_alike(merge_nonfinite([Finding(kind, sev, module, msg, json.loads(detail))
                                          for _, _, kind, sev, module, msg, detail in tables["findings"]]))
    losses = [(s["step"], s["loss"]) for s in steps if s["logged"]]
    optimizer = meta.get("optimizer") is not None
    forward = meta.get("forward_order") or []
    broken = any(f.kind == "nonfinite" for f in stored)
    diverged = [] if broken else diverging(losses, samples)
    rules = [*stuck_parameters(modules, samples, optimizer=optimizer), *diverged,
             *dying_units(modules, samples, forward), *update_ratio(modules, samples, meta.get("small_start") or ()),
             *gradient_flow(modules, samples, forward), *frozen_batchnorm_updating(modules, samples, optimizer),
             *([] if broken or diverged else not_learning(losses)),
             *(rank_straggler(rank_steps) if len(ranks) > 1 else [])]
    order = {"error": 0, "warning": 1, "info": 2}
    findings = tuple(sorted((*stored, *rules), key=lambda f: (order.get(f.severity, 3), f.detail.get("step", 0))))
    events = tuple({"step": s, "part": part, "message": msg} for _, s, part, msg in tables["events"])
    return RunReport(str(folder), meta, steps, {k: tuple(v) for k, v in scalars.items()}, modules, samples,
                     findings, events, ranks, rank_steps, rank_samples)


def jsonable(x: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become "nan"/"inf"/"-inf", as in ``inspectr/1``."""
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _loss(v: Any, bad: int, logged: bool) -> float | None:
    """SQLite stores NaN as NULL: a logged loss that is NULL on a non-finite step was NaN."""
    if not logged:
        return None
    if v is None:
        return math.nan if bad else None
    return float(v)


def _steps_of(rank_steps: tuple[dict[str, Any], ...], rank: int) -> tuple[dict[str, Any], ...]:
    """One rank's steps, in the shape of ``RunReport.steps`` (no rank, work or peak memory)."""
    return tuple({k: v for k, v in row.items() if k not in ("rank", "work", "peak_memory")}
                 for row in rank_steps if row["rank"] == rank)


def _samples_of(rank_samples: tuple[tuple[int, int, dict[str, dict[str, Any]]], ...],
                rank: int) -> tuple[tuple[int, dict[str, dict[str, Any]]], ...]:
    return tuple((s, mods) for s, r, mods in rank_samples if r == rank)


def _schema_of(folder: Path) -> str | None:
    """The schema a run store says it was written with (None: it says nothing readable)."""
    try:
        conn = sqlite3.connect(f"file:{db_path(folder)}?mode=ro", uri=True, timeout=5.0)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        finally:
            conn.close()
        return None if row is None else str(json.loads(row[0]))
    except (sqlite3.Error, ValueError):
        return None
