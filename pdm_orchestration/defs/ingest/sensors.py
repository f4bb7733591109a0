"""Readings written by `pdm-orch collect` (outside Dagster) become events of `plc_readings`."""

import json
from datetime import datetime

import dagster as dg
import sqlalchemy as sa

from pdm_orchestration.defs.resources import PostgresResource
from pdm_orchestration.storage.schema import sensor_readings


def new_readings(database: PostgresResource, since: datetime | None) -> tuple[int, datetime | None]:
    """How many readings arrived after `since`, and when the newest arrived."""
    query = sa.select(sa.func.count(), sa.func.max(sensor_readings.c.ingested_at))
    if since is not None:
        query = query.where(sensor_readings.c.ingested_at > since)
    with database.get_engine().connect() as connection:
        count, newest = connection.execute(query).one()
    return int(count), newest


@dg.sensor(
    name="plc_collector_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports readings stored by the long-running collector as plc_readings events.",
)
def plc_collector_sensor(
    context: dg.SensorEvaluationContext, database: PostgresResource
) -> dg.SensorResult | dg.SkipReason:
    state = json.loads(context.cursor) if context.cursor else {}
    since = datetime.fromisoformat(state["newest"]) if state.get("newest") else None
    count, newest = new_readings(database, since)
    if not count or newest is None:
        return dg.SkipReason("no new readings")
    event = dg.AssetMaterialization(
        asset_key="plc_readings",
        description="readings stored by the collector",
        metadata={"readings_written": count, "newest_ingested_at": newest.isoformat()},
    )
    return dg.SensorResult(asset_events=[event], cursor=json.dumps({"newest": newest.isoformat()}))
