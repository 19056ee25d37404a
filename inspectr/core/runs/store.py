"""Provides the run store: one SQLite database per run folder (WAL mode), written by one
background thread, one transaction per batch, and read by any process while it grows.

SQLite (standard library) because a run must be queryable with ``sqlite3``, pandas or DuckDB,
readable while it is written (WAL: readers never block the writer) and intact after ``kill -9``
(each committed transaction is in the WAL file; ``synchronous=NORMAL`` may lose the last
transactions on a power cut, never on a process crash). The schema is documented in the README
("The run store"); bump ``SCHEMA`` when it changes.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "inspectr-run/2"  # /2: a rank column (torch.distributed), the ranks table
DB_NAME = "run.sqlite"

TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    params INTEGER NOT NULL, trainable INTEGER NOT NULL, in_optimizer INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps(step INTEGER NOT NULL, loss REAL, grad_norm REAL, seconds REAL,
    nonfinite INTEGER NOT NULL DEFAULT 0, rank INTEGER NOT NULL DEFAULT 0, work REAL, peak_memory INTEGER,
    PRIMARY KEY(step, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scalars(step INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    rank INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(step, name, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples(step INTEGER NOT NULL, module INTEGER NOT NULL REFERENCES modules(id),
    param_grad_norm REAL, update_ratio REAL, distance REAL, grad_norm REAL, mean REAL, std REAL,
    zero_fraction REAL, dead_fraction REAL, nonfinite INTEGER, rank INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(step, module, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ranks(rank INTEGER PRIMARY KEY, local_rank INTEGER, host TEXT, pid INTEGER,
    world INTEGER, device TEXT);
CREATE TABLE IF NOT EXISTS findings(id INTEGER PRIMARY KEY, step INTEGER, kind TEXT NOT NULL,
    severity TEXT NOT NULL, module TEXT NOT NULL, message TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, step INTEGER, part TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS running_stats(step INTEGER NOT NULL, module INTEGER NOT NULL REFERENCES modules(id),
    drift REAL, PRIMARY KEY(step, module)) WITHOUT ROWID;
"""

# Growth is bounded: once more than MAX_SAMPLES sampled steps are stored, every second one of the
# older ones (all but the newest MAX_SAMPLES // 2; step 0 stays) is deleted from ``samples``. The
# recent past stays at full resolution and older history gets coarser by halves; ``steps`` and
# ``scalars`` (one row per step) are kept whole.
MAX_SAMPLES = 2048

SAMPLE_FIELDS = ("param_grad_norm", "update_ratio", "distance", "grad_norm", "mean", "std",
                 "zero_fraction", "dead_fraction", "nonfinite")


@dataclass
class Batch:
    """Rows for one transaction: what the watch gathered since its last write."""

    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[int, float | None, float | None, float | None, int]] = field(default_factory=list)
    scalars: list[tuple[int, str, float | None]] = field(default_factory=list)
    samples: list[tuple[Any, ...]] = field(default_factory=list)  # (step, module id, *SAMPLE_FIELDS)
    findings: list[tuple[int | None, str, str, str, str, str]] = field(default_factory=list)
    events: list[tuple[int | None, str, str]] = field(default_factory=list)
    rank: int = 0  # whose steps, scalars and samples these are (torch.distributed; 0 in one process)
    work: list[tuple[int, float | None, int | None]] = field(default_factory=list)  # step, work s, peak bytes
    ranks: list[tuple[int, int, str, int, int, str]] = field(default_factory=list)  # the ranks table's rows
    # (step, module id, drift): how far a BatchNorm layer's running statistics moved since the last
    # sample (rank 0's: under DDP the buffers are broadcast from rank 0 at every forward)
    running: list[tuple[int, int, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.meta or self.steps or self.scalars or self.samples or self.findings or self.events
                    or self.work or self.ranks or self.running)


def db_path(folder: str | Path) -> Path:
    return Path(folder) / DB_NAME


def keep_previous(path: Path) -> Path | None:
    """Move a run already at ``path`` (with its WAL, which may hold its last transactions) to
    the first free ``run.N.sqlite`` beside it: a new run in the same folder loses nothing.
    Returns where it went, or None when there was none."""
    if not path.exists():
        return None
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    for suffix in ("-wal", "-shm"):  # SQLite finds a database's WAL by its name: they move together
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(kept.with_name(kept.name + suffix))
    path.rename(kept)
    return kept


def connect(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class RunWriter:
    """Writes ``Batch``es to a run's database on a background thread.

    ``put`` never blocks the caller. A folder that cannot be created or written, or a full disk,
    gives one warning and the writer drops everything after it: the training goes on.
    """

    def __init__(self, folder: str | Path, modules: Iterable[tuple[int, str, str, int, int, int]],
                 meta: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.failed: str | None = None
        self.queue: queue.SimpleQueue[Batch | threading.Event | None] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = db_path(self.folder)
            kept = keep_previous(path)
            if kept is not None:
                warnings.warn(f"inspectr.watch: {self.folder} held a run; it is kept as {kept}.",
                              RuntimeWarning, stacklevel=3)
            self.conn = connect(path)
            self.conn.executescript(TABLES)
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT INTO modules VALUES (?, ?, ?, ?, ?, ?)", list(modules))
            self._write_meta(dict(meta, schema=SCHEMA))
            self.conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)
        self.sampled: list[int] = []  # the sampled steps stored, in order
        self.thread = threading.Thread(target=self._loop, name="inspectr-run-writer", daemon=True)
        self.thread.start()

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"inspectr.watch: the run folder {self.folder} cannot be written ({exc}); the run is not "
                "recorded from here on, and training goes on. Give run= a folder you can write to.",
                RuntimeWarning, stacklevel=3)
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None

    def _write_meta(self, meta: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                              [(k, json.dumps(v)) for k, v in meta.items()])

    def put(self, batch: Batch) -> None:
        if batch and self.failed is None:
            self.queue.put(batch)

    def wait(self, timeout: float = 60.0) -> None:
        """Block until everything put so far is written (used before halting, and at the end)."""
        done = threading.Event()
        self.queue.put(done)
        done.wait(timeout)

    def close(self, timeout: float = 60.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                break
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self.conn is None:
                continue
            try:
                self._write(item)
            except (OSError, sqlite3.Error) as exc:
                self._fail(exc)
        if self.conn is not None:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None

    def _write(self, b: Batch) -> None:
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN")
        try:
            if b.meta:
                self._write_meta(b.meta)
            # a step's row may come in two writes (its loss is logged after the sample that wrote it)
            r = b.rank
            conn.executemany("INSERT INTO steps(step, loss, grad_norm, seconds, nonfinite, rank) VALUES (?, ?, ?, ?, ?, ?) "
                             "ON CONFLICT(step, rank) DO UPDATE SET "
                             "loss = coalesce(excluded.loss, loss), grad_norm = coalesce(excluded.grad_norm, grad_norm), "
                             "seconds = coalesce(excluded.seconds, seconds), "
                             "nonfinite = max(nonfinite, excluded.nonfinite)", [(*row, r) for row in b.steps])
            conn.executemany("UPDATE steps SET work = ?, peak_memory = ? WHERE step = ? AND rank = ?",
                             [(w, m, s, r) for s, w, m in b.work])
            conn.executemany("INSERT OR REPLACE INTO scalars VALUES (?, ?, ?, ?)", [(*row, r) for row in b.scalars])
            conn.executemany(f"INSERT OR REPLACE INTO samples VALUES ({', '.join('?' * (3 + len(SAMPLE_FIELDS)))})",
                             [(*row, r) for row in b.samples])
            conn.executemany("INSERT OR REPLACE INTO ranks VALUES (?, ?, ?, ?, ?, ?)", b.ranks)
            conn.executemany("INSERT INTO findings(step, kind, severity, module, message, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", b.findings)
            conn.executemany("INSERT INTO events(step, part, message) VALUES (?, ?, ?)", b.events)
            if r == 0:  # rank 0's (see Batch.running)
                conn.executemany("INSERT OR REPLACE INTO running_stats VALUES (?, ?, ?)", b.running)
            if b.samples:
                self._thin(sorted({row[0] for row in b.samples}))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


    def _thin(self, new_steps: list[int]) -> None:
        """Keep at most MAX_SAMPLES sampled steps (the policy above), inside the open transaction."""
        assert self.conn is not None
        last = self.sampled[-1] if self.sampled else -1
        self.sampled.extend(s for s in new_steps if s > last)  # every rank's rows of a step come in turn
        if len(self.sampled) <= MAX_SAMPLES:
            return
        keep_recent = MAX_SAMPLES // 2
        older, recent = self.sampled[:-keep_recent], self.sampled[-keep_recent:]
        drop = older[1::2]
        self.conn.executemany("DELETE FROM samples WHERE step = ?", [(s,) for s in drop])
        self.conn.executemany("DELETE FROM running_stats WHERE step = ?", [(s,) for s in drop])
        self.sampled = older[0::2] + recent


def read_tables(folder: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a run's database as rows, read in one transaction (a consistent view while
    the writer goes on). Raises ``FileNotFoundError`` when the folder holds no run."""
    path = db_path(folder)
    if not path.is_file():
        raise FileNotFoundError(path)
    # read-only URI: a reader never creates or changes the run (the WAL's -shm is shared, not written)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN")
        out = {name: conn.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()
               for name, order in (("meta", "key"), ("modules", "id"), ("steps", "step, rank"),
                                   ("scalars", "step, name, rank"), ("samples", "step, module, rank"),
                                   ("findings", "id"), ("events", "id"), ("ranks", "rank"))}
        # added to inspectr-run/1 later: a run written before it has no such table
        has_running = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'running_stats'").fetchone()
        out["running_stats"] = (conn.execute("SELECT * FROM running_stats ORDER BY step, module").fetchall()
                                if has_running else [])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return out
