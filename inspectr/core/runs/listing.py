"""Provides the runs under a folder (``inspectr runs/``): where they are and one summary line
each, read straight from each store without loading its samples (and without torch)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from inspectr.core.runs.store import DB_NAME, db_path

STALE_SECONDS = 120.0  # a "running" run unwritten this long, whose writer is gone: probably killed
MAX_DEPTH = 2  # runs/exp1 and runs/sweep/exp1: run folders one or two levels below the folder given


@dataclass(frozen=True)
class RunSummary:
    """One run of a listing. ``errors``/``warnings`` count the findings the watch recorded while
    it ran; the rules over the whole run (``inspectr RUN --report``) may add some."""

    path: str
    model: str
    status: str
    steps: int
    last_loss: float | None
    errors: int
    warnings: int
    started: float | None  # seconds since the epoch
    problem: str | None = None  # the store could not be read
    note: str | None = None  # see ``writer_gone``


def find_runs(folder: str | Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Run folders (holding ``run.sqlite``) 1..depth levels below ``folder``, sorted by path."""
    root = Path(folder)
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        below: list[Path] = []
        for d in level:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                (found if (child / DB_NAME).is_file() else below).append(child)
        level = below
    return sorted(found)


def summarize(folder: str | Path) -> RunSummary:
    """The listing's line for the run in ``folder``; a store that cannot be read gives a line with
    ``problem`` set instead of raising."""
    path = db_path(folder)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
        try:
            conn.execute("BEGIN")
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            # a run of several ranks holds a row per step and rank: the steps, and the lowest rank's last loss
            (steps,) = conn.execute("SELECT count(DISTINCT step) FROM steps").fetchone()
            row = conn.execute("SELECT s.value, t.nonfinite FROM scalars s LEFT JOIN steps t "
                               "ON t.step = s.step AND t.rank = s.rank WHERE s.name = 'loss' "
                               "ORDER BY s.step DESC, s.rank LIMIT 1").fetchone()
            # the same finding on several ranks (kind, module, step) counts once, as load_run shows it
            counts = dict(conn.execute("SELECT severity, count(*) FROM (SELECT DISTINCT severity, kind, module, step "
                                       "FROM findings) GROUP BY severity").fetchall())
            conn.execute("COMMIT")
        finally:
            conn.close()
    except (sqlite3.Error, ValueError) as exc:
        return RunSummary(str(folder), "?", "unreadable", 0, None, 0, 0, None, problem=str(exc))
    # SQLite stores NaN as NULL: a NULL loss on a non-finite step was NaN (as load_run reads it)
    last = None if row is None else float(row[0]) if row[0] is not None else math.nan if row[1] else None
    return RunSummary(str(folder), str(meta.get("model", "?")), str(meta.get("status", "?")), int(steps), last,
                      int(counts.get("error", 0)), int(counts.get("warning", 0)), meta.get("started"),
                      note=writer_gone(folder, meta))


def list_runs(folder: str | Path) -> list[RunSummary]:
    """Every run below ``folder`` (see ``find_runs``), summarized."""
    return [summarize(p) for p in find_runs(folder)]


def writer_gone(folder: str | Path, meta: dict[str, object], now: float | None = None) -> str | None:
    """A note when a run says "running" but its writer looks gone: nothing written to the store
    for ``STALE_SECONDS`` and its pid is no process on this machine (a ``kill -9``, a lost node).
    A run written from another machine (a shared file system) can be quiet that long between
    samples, so this is a note beside the status, never a new status. None otherwise."""
    if meta.get("status") != "running":
        return None
    db = db_path(folder)
    try:
        written = max(p.stat().st_mtime for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    except (OSError, ValueError):
        return None
    quiet = (time.time() if now is None else now) - written
    pid = meta.get("pid")
    if quiet < STALE_SECONDS or not isinstance(pid, int) or _alive(pid):
        return None
    return f"no write for {quiet / 60:.0f} min and pid {pid} is not running here: killed?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
