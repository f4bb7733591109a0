"""Polling every minute; the `plc` pool and the run tag keep sessions from overlapping."""

import dagster as dg

from pdm_orchestration.defs.ingest.assets import plc_readings

INGEST_TAGS = {"pdm/ingest": "session"}  # dagster.yaml limits runs with this tag to one

ingest_job = dg.define_asset_job("ingest_plc_readings", selection=[plc_readings], tags=INGEST_TAGS)

plc_readings_every_minute = dg.ScheduleDefinition(
    name="plc_readings_every_minute",
    job=ingest_job,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
