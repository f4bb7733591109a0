"""Monthly partitions of `sensor_readings` on PostgreSQL (SQLite has one plain table)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

DEFAULT_MONTHS_AHEAD = 3


def ensure_reading_partitions(engine: Engine, months_ahead: int = DEFAULT_MONTHS_AHEAD) -> int:
    """Create the monthly partitions from this month to `months_ahead` months ahead.

    Also creates a partition for every month whose readings the default partition caught, and
    moves those readings into it. Returns the number of partitions created (0 on SQLite).
    """
    if engine.dialect.name != "postgresql":
        return 0
    with engine.begin() as connection:
        created = connection.execute(
            sa.text("SELECT pdm_ensure_reading_partitions(:ahead)"), {"ahead": months_ahead}
        ).scalar_one()
    if created:
        log.info("created %d sensor_readings partition(s)", created)
    return int(created)


def reading_partitions(engine: Engine) -> list[str]:
    """Names of the partitions of `sensor_readings`, default partition included (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'sensor_readings'::regclass ORDER BY c.relname"
            )
        ).scalars()
        return list(rows)
