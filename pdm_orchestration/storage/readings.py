"""Bulk writes of readings and ingest gaps.

PostgreSQL: COPY into a transaction-scoped stage table, then one `INSERT ... SELECT ... ON CONFLICT
DO NOTHING` into `sensor_readings` (SQLAlchemy's `on_conflict_*` with a list of rows would run row
by row on psycopg2). SQLite: one `executemany` of `INSERT OR IGNORE`. Either way a reading delivered
twice is stored once (the key is device_id, sensor, ts), and never one INSERT per reading.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.storage.partitions import ensure_reading_partitions
from pdm_orchestration.storage.schema import ingest_gaps

log = logging.getLogger(__name__)

READING_COLUMNS = ("device_id", "sensor", "ts", "value", "quality", "register_map_id", "value_text")


class ReadingRow(NamedTuple):
    """One row of `sensor_readings` as the writers take it."""

    device_id: int
    sensor: str
    ts: datetime
    value: float | None
    quality: str
    register_map_id: int | None
    value_text: str | None


class ReadingWriter:
    """Writes batches of readings and gaps to one database, idempotently."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._months: set[tuple[int, int]] = set()

    def write(self, rows: Sequence[ReadingRow], gaps: Sequence[dict[str, object]] = ()) -> int:
        """Store `rows` and `gaps` in one transaction; return how many readings were new."""
        rows = [_clean(row) for row in rows]
        with self.engine.begin() as connection:
            inserted = (
                self._copy_postgres(connection, rows)
                if self.postgres
                else _insert_sqlite(connection, rows)
            )
            if gaps:
                connection.execute(ingest_gaps.insert(), list(gaps))
        if self.postgres:
            self._partitions_for(rows)
        return inserted

    def _copy_postgres(self, connection: sa.Connection, rows: list[ReadingRow]) -> int:
        if not rows:
            return 0
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        text = _TimeText(str)
        writer.writerows((*row[:2], text(row.ts), *row[3:]) for row in rows)
        buffer.seek(0)
        columns = ", ".join(READING_COLUMNS)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS stage_readings "
                "(LIKE sensor_readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.copy_expert(
                f"COPY stage_readings ({columns}) FROM STDIN WITH (FORMAT csv, NULL '')", buffer
            )
            cursor.execute(
                f"INSERT INTO sensor_readings ({columns}) SELECT {columns} FROM stage_readings "
                "ON CONFLICT DO NOTHING"
            )
            return cursor.rowcount
        finally:
            cursor.close()

    def _partitions_for(self, rows: Iterable[ReadingRow]) -> None:
        """Give readings of a month never seen before their own partition (PostgreSQL)."""
        months = {(row.ts.year, row.ts.month) for row in rows}
        if months - self._months:
            ensure_reading_partitions(self.engine)
            self._months |= months


def _clean(row: ReadingRow) -> ReadingRow:
    if row.value is not None and not math.isfinite(row.value):
        return row._replace(value=None)
    return row


def _sqlite_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _TimeText(dict[datetime, str]):
    """Formats each distinct time once (the readings of a block share their time)."""

    def __init__(self, form: Callable[[datetime], str]) -> None:
        super().__init__()
        self.form = form

    def __call__(self, ts: datetime) -> str:
        text = self.get(ts)
        if text is None:
            text = self[ts] = self.form(ts)
        return text


def _insert_sqlite(connection: sa.Connection, rows: list[ReadingRow]) -> int:
    if not rows:
        return 0
    columns = (*READING_COLUMNS, "ingested_at")
    statement = (
        f"INSERT OR IGNORE INTO sensor_readings ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    # Arrival time to the microsecond, in the same text form (the column default has seconds).
    arrived = _sqlite_time(datetime.now(UTC))
    before = connection.exec_driver_sql("SELECT total_changes()").scalar_one()
    # The text form SQLAlchemy uses for DateTime on SQLite (naive UTC), so times compare as text.
    text = _TimeText(_sqlite_time)
    params = [(*row[:2], text(row.ts), *row[3:], arrived) for row in rows]
    connection.exec_driver_sql(statement, params)
    after = connection.exec_driver_sql("SELECT total_changes()").scalar_one()
    return int(after - before)
