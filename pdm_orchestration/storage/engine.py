"""Creating SQLAlchemy engines for the project database (PostgreSQL, or SQLite by default)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

CONNECT_TIMEOUT_S = 10  # PostgreSQL (psycopg2): seconds to wait for a connection


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url` (see below); `echo` logs every statement through the logging setup
    (SQLAlchemy's own echo would add a second handler and print each line twice)."""
    if echo:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    return _engine(url)


def _engine(url: str) -> Engine:
    """An engine for `url`. SQLite files get their folder created, WAL and foreign keys on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        # Say the driver: psycopg2 is what COPY and dagster-postgres use here.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    connect_args = {}
    if parsed.drivername == "postgresql+psycopg2" and "connect_timeout" not in parsed.query:
        # A server that does not answer (black-holed, half-down) fails a connect instead of
        # hanging it; `?connect_timeout=N` in the URL says otherwise.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_postgres(engine: Engine | sa.Connection) -> bool:
    """True when the engine or connection talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"
