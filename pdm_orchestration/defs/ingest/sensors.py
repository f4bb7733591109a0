"""Readings written by `pdm-orch collect` (outside Dagster) become events of `plc_readings`.

Those events are what the downstream automation reacts to: the newest feature hour is rebuilt,
rescored, and the alerts judged (see defs/automation.py).
"""

import json
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from pdm_orchestration.defs.resources import PostgresResource
from pdm_orchestration.storage.schema import sensor_readings

INGEST_JOB = "ingest_plc_readings"


def new_readings(
    database: PostgresResource,
    since: datetime | None,
    busy: list[tuple[datetime, datetime]] = (),
) -> tuple[int, datetime | None]:
    """How many readings arrived after `since` outside the `busy` spans (when Dagster's own
    ingestion runs wrote theirs), and when the newest of them arrived."""
    at = sensor_readings.c.ingested_at
    query = sa.select(sa.func.count(), sa.func.max(at))
    if since is not None:
        query = query.where(at > since)
    for start, end in busy:
        query = query.where(sa.not_(at.between(start, end)))
    with database.get_engine().connect() as connection:
        count, newest = connection.execute(query).one()
    return int(count), newest


@dg.sensor(
    name="plc_collector_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports readings stored by the long-running collector (pdm-orch collect), not "
    "by Dagster's own ingestion runs, as plc_readings events.",
)
def plc_collector_sensor(
    context: dg.SensorEvaluationContext, database: PostgresResource
) -> dg.SensorResult | dg.SkipReason:
    state = json.loads(context.cursor) if context.cursor else {}
    since = datetime.fromisoformat(state["newest"]) if state.get("newest") else None
    count, newest = new_readings(database, since, _ingest_runs(context, since))
    if not count or newest is None:
        return dg.SkipReason("no new readings")
    event = dg.AssetMaterialization(
        asset_key="plc_readings",
        description="readings stored by the collector",
        metadata={"readings_written": count, "newest_ingested_at": newest.isoformat()},
    )
    return dg.SensorResult(asset_events=[event], cursor=json.dumps({"newest": newest.isoformat()}))


def _ingest_runs(
    context: dg.SensorEvaluationContext, since: datetime | None
) -> list[tuple[datetime, datetime]]:
    """When runs of the ingestion job were writing (in progress: until now)."""
    filters = dg.RunsFilter(job_name=INGEST_JOB, updated_after=since)
    now = datetime.now(UTC)
    spans = []
    for record in context.instance.get_run_records(filters=filters, limit=500):
        if record.start_time is None:
            continue
        end = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else now
        spans.append((datetime.fromtimestamp(record.start_time, UTC), end))
    return spans
