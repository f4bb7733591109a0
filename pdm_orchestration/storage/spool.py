"""Store-and-forward: a durable local spool for readings the database could not take.

While the project database is unreachable, batches go to a SQLite file under PDM_HOME (synchronous
writes: a batch in the spool survives a crash of the collector). When the database answers again
the spool is drained oldest first; a batch leaves the spool only after the database committed it,
and the database's unique key makes a batch written twice count once, so nothing is lost and
nothing duplicated.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from pdm_orchestration.storage.readings import ReadingRow

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL, sensor TEXT NOT NULL, ts TEXT NOT NULL, value REAL,
    quality TEXT NOT NULL, register_map_id INTEGER, value_text TEXT
);
CREATE TABLE IF NOT EXISTS gaps (seq INTEGER PRIMARY KEY AUTOINCREMENT, gap TEXT NOT NULL);
"""

Writer = Callable[[Sequence[ReadingRow], Sequence[dict[str, object]]], object]


class Spool:
    """An append-only queue of readings and gaps in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def append(self, rows: Sequence[ReadingRow], gaps: Sequence[dict[str, object]] = ()) -> None:
        """Keep a batch until the database can take it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO readings (device_id, sensor, ts, value, quality, register_map_id, "
                "value_text) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row[:2], row.ts.isoformat(), *row[3:]) for row in rows],
            )
            self._db.executemany(
                "INSERT INTO gaps (gap) VALUES (?)",
                [(json.dumps(gap, default=_iso),) for gap in gaps],
            )
            self._db.execute("COMMIT")

    def pending(self) -> int:
        """Readings and gaps waiting in the spool."""
        with self._lock:
            readings = self._db.execute("SELECT count(*) FROM readings").fetchone()[0]
            gaps = self._db.execute("SELECT count(*) FROM gaps").fetchone()[0]
        return int(readings + gaps)

    def drain(self, write: Writer, batch_size: int = 50_000) -> int:
        """Hand what was spooled when called to `write`, oldest first; return the readings
        handed over.

        A batch is deleted from the spool only after `write` returned, so an error (the database
        gone again) leaves it in place for the next drain. Batches spooled meanwhile wait for the
        next drain: a spool filled as fast as it drains cannot keep this from returning.
        """
        moved = 0
        with self._lock:
            last_row = self._db.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()[0]
            last_gap = self._db.execute("SELECT coalesce(max(seq), 0) FROM gaps").fetchone()[0]
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, device_id, sensor, ts, value, quality, register_map_id, "
                    "value_text FROM readings WHERE seq <= ? ORDER BY seq LIMIT ?",
                    (last_row, batch_size),
                ).fetchall()
                gaps = self._db.execute(
                    "SELECT seq, gap FROM gaps WHERE seq <= ? ORDER BY seq LIMIT ?",
                    (last_gap, batch_size),
                ).fetchall()
            if not rows and not gaps:
                return moved
            readings = [
                ReadingRow(r[1], r[2], datetime.fromisoformat(r[3]), r[4], r[5], r[6], r[7])
                for r in rows
            ]
            gap_rows = [_gap(json.loads(g[1])) for g in gaps]
            write(readings, gap_rows)
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                if rows:
                    self._db.execute("DELETE FROM readings WHERE seq <= ?", (rows[-1][0],))
                if gaps:
                    self._db.execute("DELETE FROM gaps WHERE seq <= ?", (gaps[-1][0],))
                self._db.execute("COMMIT")
            moved += len(rows)
            log.info("spool: forwarded %d readings and %d gaps", len(rows), len(gaps))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool {type(value).__name__}")


def _gap(data: dict[str, object]) -> dict[str, object]:
    for key in ("gap_start", "gap_end"):
        data[key] = datetime.fromisoformat(str(data[key]))
    return data
