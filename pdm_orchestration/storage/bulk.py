"""Bulk upserts of data frames: COPY on PostgreSQL, one executemany on SQLite.

SQLAlchemy's `on_conflict_do_update` with a list of rows runs row by row on psycopg2, so on
PostgreSQL the frame is copied into a transaction-scoped stage table and merged with one
`INSERT ... SELECT ... ON CONFLICT DO UPDATE`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite (naive UTC)


def upsert_frame(
    connection: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    key: Sequence[str],
) -> int:
    """Insert the rows of `frame` into `table`, replacing rows with the same `key`; row count."""
    if frame.empty:
        return 0
    columns = list(frame.columns)
    updates = [c for c in columns if c not in key]
    names = ", ".join(f'"{c}"' for c in columns)
    conflict = ", ".join(f'"{c}"' for c in key)
    assignments = ", ".join(f'"{c}" = excluded."{c}"' for c in updates)
    if connection.dialect.name == "postgresql":
        buffer = io.StringIO()
        _times_as_text(frame).to_csv(buffer, header=False, index=False, na_rep="")
        buffer.seek(0)
        stage = f"stage_{table.name}"
        # JSON arrives as text and is parsed (and compressed) once, on its way into the table.
        json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
        stage_columns = ", ".join(
            f'"{c}" text'
            if c in json_columns
            else f'"{c}" {table.c[c].type.compile(dialect=connection.dialect)}'
            for c in columns
        )
        selected = ", ".join(f'"{c}"::jsonb' if c in json_columns else f'"{c}"' for c in columns)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({stage_columns}) ON COMMIT DELETE ROWS"
            )
            for c in json_columns:
                cursor.execute(f'ALTER TABLE {stage} ALTER COLUMN "{c}" SET STORAGE EXTERNAL')
            cursor.copy_expert(
                f"COPY {stage} ({names}) FROM STDIN WITH (FORMAT csv, NULL '')", buffer
            )
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {stage} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
            )
            cursor.execute(f"TRUNCATE {stage}")
        finally:
            cursor.close()
        return len(frame)
    params = _sqlite_params(frame)
    statement = (
        f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
    )
    connection.exec_driver_sql(statement, params)
    return len(frame)


def insert_frame(connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Append the rows of `frame` to `table` (COPY straight into it on PostgreSQL)."""
    if frame.empty:
        return 0
    names = ", ".join(f'"{c}"' for c in frame.columns)
    if connection.dialect.name == "postgresql":
        buffer = io.StringIO()
        _times_as_text(frame).to_csv(buffer, header=False, index=False, na_rep="")
        buffer.seek(0)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(
                f"COPY {table.name} ({names}) FROM STDIN WITH (FORMAT csv, NULL '')", buffer
            )
        finally:
            cursor.close()
        return len(frame)
    marks = ", ".join("?" for _ in frame.columns)
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) VALUES ({marks})", _sqlite_params(frame)
    )
    return len(frame)


def _times_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Times formatted once per distinct value (pandas would format every cell)."""
    out = frame.copy(deep=False)
    for name, column in frame.items():
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            codes, uniques = pd.factorize(column)
            text = np.asarray(uniques.strftime("%Y-%m-%d %H:%M:%S.%f+00"), dtype=object)
            out[name] = np.where(codes >= 0, text[np.maximum(codes, 0)], None)
    return out


def _sqlite_params(frame: pd.DataFrame) -> list[tuple]:
    out = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = column.dt.tz_convert("UTC").dt.strftime(SQLITE_TIME).to_numpy(dtype=object)
        elif column.dtype == bool:
            out[name] = column.astype(int).to_numpy(dtype=object)
        else:
            values = column.to_numpy(dtype=object, copy=True)
            if column.dtype.kind == "f":
                values[~np.isfinite(column.to_numpy(dtype=float))] = None
            else:
                values[pd.isna(values)] = None  # pandas' NA of nullable columns
            out[name] = values
    return list(zip(*out.values(), strict=True))
