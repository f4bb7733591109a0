"""Polling every minute, one session at a time.

A session of 60 s takes a little longer than a minute (start-up, the last writes), so a tick that
finds a run of the job still queued or in progress is skipped rather than queue up behind it; the
`plc` pool and the run tag keep sessions from overlapping anyway.
"""

import dagster as dg

from pdm_orchestration.defs.ingest.assets import plc_readings

INGEST_TAGS = {"pdm/ingest": "session"}  # dagster.yaml limits runs with this tag to one
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

ingest_job = dg.define_asset_job("ingest_plc_readings", selection=[plc_readings], tags=INGEST_TAGS)


@dg.schedule(
    name="plc_readings_every_minute",
    job=ingest_job,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def plc_readings_every_minute(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    """A polling session every minute, unless the previous one has not finished."""
    unfinished = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=ingest_job.name, statuses=UNFINISHED), limit=1
    )
    if unfinished:
        run = unfinished[0]
        state = run.status.value.lower().replace("_", " ")
        return dg.SkipReason(
            f"run {run.run_id} of {ingest_job.name} is still {state}: one polling session at a time"
        )
    return dg.RunRequest()
