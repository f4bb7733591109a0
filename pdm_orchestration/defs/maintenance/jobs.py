"""Database upkeep: the monthly `sensor_readings` partitions are created ahead, every day."""

import dagster as dg

from pdm_orchestration.defs.resources import PostgresResource
from pdm_orchestration.storage.partitions import (
    DEFAULT_MONTHS_AHEAD,
    ensure_reading_partitions,
    reading_partitions,
)


class PartitionConfig(dg.Config):
    months_ahead: int = DEFAULT_MONTHS_AHEAD


@dg.op
def create_reading_partitions(
    context: dg.OpExecutionContext, config: PartitionConfig, database: PostgresResource
) -> int:
    """Create the monthly sensor_readings partitions ahead (a no-op on SQLite)."""
    engine = database.get_engine()
    created = ensure_reading_partitions(engine, config.months_ahead)
    context.log.info(
        "created %d partition(s); now: %s", created, ", ".join(reading_partitions(engine)) or "-"
    )
    return created


@dg.job(tags={"team": "pdm"})
def maintain_database() -> None:
    """Keep the database ready for the readings to come."""
    create_reading_partitions()


maintain_database_daily = dg.ScheduleDefinition(
    job=maintain_database,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
