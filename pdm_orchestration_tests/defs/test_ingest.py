import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pdm_orchestration.definitions import defs
from pdm_orchestration.defs.ingest.assets import plc_readings
from pdm_orchestration.defs.ingest.schedules import plc_readings_every_minute
from pdm_orchestration.defs.ingest.sensors import plc_collector_sensor
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.modbus.simulator import BackgroundSimulator, LiveSource, PlcSimulator
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.readings import ReadingRow, ReadingWriter
from pdm_orchestration.storage.schema import sensor_readings
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.modbus.helpers import free_port


def test_plc_readings_materializes_a_bounded_session(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    plant = load_plant(EXAMPLE_PLANT, default_port=port)
    source = LiveSource(
        PlantSimulation(plant, seed=4, start=datetime(2026, 5, 1, tzinfo=UTC)), 3600
    )
    resources = {
        "database": PostgresResource(database_url=db_url),
        "plant": PlantResource(
            plant_file=str(EXAMPLE_PLANT),
            plc_port=port,
            poll_interval_seconds="0.5",
            pdm_home=str(tmp_path),
        ),
    }
    with BackgroundSimulator(PlcSimulator(plant, source)) as sim:
        result = dg.materialize(
            [plc_readings],
            resources=resources,
            run_config={"ops": {"plc_readings": {"config": {"duration_s": 1.2}}}},
        )
    assert result.success
    metadata = {
        k: v.value
        for k, v in result.asset_materializations_for_node("plc_readings")[0].metadata.items()
    }
    assert metadata["devices_ok"] == 12 and metadata["devices_failed"] == 0
    assert metadata["readings_written"] >= 2 * 80
    assert metadata["readings_not_good"] == 0
    assert 0 < metadata["latency_p50_ms"] <= metadata["latency_p99_ms"]
    assert metadata["gaps"] == 0
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert (
            conn.scalar(sa.select(sa.func.count()).select_from(sensor_readings))
            == metadata["readings_written"]
        )
    engine.dispose()
    assert sim.function_codes <= {1, 2, 3, 4}


def test_plc_readings_fails_in_one_line_when_the_database_is_away_and_nothing_is_cached(
    tmp_path: Path,
) -> None:
    resources = {
        "database": PostgresResource(database_url=f"postgresql://pdm@127.0.0.1:{free_port()}/x"),
        "plant": PlantResource(
            plant_file=str(EXAMPLE_PLANT),
            plc_port=free_port(),
            poll_interval_seconds="0.5",
            pdm_home=str(tmp_path),
        ),
    }
    result = dg.materialize([plc_readings], resources=resources, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("plc_readings")
    assert failure is not None and failure.user_failure_data is not None
    text = failure.user_failure_data.description or ""
    assert text.startswith("database unreachable (") and "no cached registry matches" in text


def test_schedule_polls_every_minute_one_session_at_a_time() -> None:
    assert plc_readings_every_minute.cron_schedule == "* * * * *"
    job = defs().resolve_job_def("ingest_plc_readings")
    assert job.tags["pdm/ingest"] == "session"
    assert plc_readings.op.pool == "plc"
    assert dg.AssetKey("device_registry") in plc_readings.asset_deps[dg.AssetKey("plc_readings")]


def test_schedule_skips_a_tick_while_a_session_is_queued_or_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Creating a run resolves the job's resource config, which comes from these.
    for name, value in {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'pdm.db'}",
        "PDM_PLANT_FILE": str(EXAMPLE_PLANT),
        "PLC_HOST": "127.0.0.1",
        "PLC_PORT": "5020",
        "PLC_POLL_INTERVAL_SECONDS": "10",
        "PDM_HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    job = defs().resolve_job_def("ingest_plc_readings")
    # A schedule context needs an instance it can reference (an ephemeral one has none).
    with dg.instance_for_test() as instance:

        def tick() -> dg.RunRequest | dg.SkipReason:
            with dg.build_schedule_context(instance=instance) as context:
                return plc_readings_every_minute(context)  # type: ignore[return-value]

        assert isinstance(tick(), dg.RunRequest)
        # (a QUEUED run needs a code location origin; NOT_STARTED and STARTED can be made here)
        for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED):
            run = instance.create_run_for_job(job_def=job, status=status)
            skipped = tick()
            assert isinstance(skipped, dg.SkipReason) and skipped.skip_message is not None
            word = status.value.lower().replace("_", " ")
            assert (
                f"run {run.run_id} of ingest_plc_readings is still {word}" in skipped.skip_message
            )
            instance.report_run_canceled(run)  # finished: it no longer holds the schedule up
        assert isinstance(tick(), dg.RunRequest)


def test_collector_sensor_reports_new_readings_once(db_url: str) -> None:
    database = PostgresResource(database_url=db_url)
    engine = make_engine(db_url)

    writer = ReadingWriter(engine)  # what the collector writes with

    def insert(second: int) -> None:
        ts = datetime(2026, 5, 1, 0, 0, second, tzinfo=UTC)
        assert writer.write([ReadingRow(1, "t", ts, 1.0, "good", None, None)]) == 1

    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None = None):  # type: ignore[no-untyped-def]
        with dg.build_sensor_context(
            instance=instance, resources={"database": database}, cursor=cursor
        ) as context:
            return plc_collector_sensor(context)

    assert isinstance(tick(), dg.SkipReason)
    insert(1)
    insert(2)
    first = tick()
    assert isinstance(first, dg.SensorResult)
    assert first.asset_events[0].asset_key == dg.AssetKey("plc_readings")
    assert first.asset_events[0].metadata["readings_written"].value == 2
    assert isinstance(tick(first.cursor), dg.SkipReason)
    insert(3)
    second = tick(first.cursor)
    assert second.asset_events[0].metadata["readings_written"].value == 1
    assert json.loads(second.cursor)["newest"] >= json.loads(first.cursor)["newest"]
    engine.dispose()


def test_readings_of_dagsters_own_sessions_are_not_reported_again(db_url: str) -> None:
    from pdm_orchestration.defs.ingest.sensors import new_readings

    engine = make_engine(db_url)
    writer = ReadingWriter(engine)

    def write(second: int) -> None:
        ts = datetime(2026, 5, 1, 0, 0, second, tzinfo=UTC)
        writer.write([ReadingRow(1, "t", ts, 1.0, "good", None, None)])

    write(0)
    time.sleep(1.1)  # SQLite stamps arrival to the second
    started = datetime.now(UTC)
    write(1)  # written by an ingestion run, which reports it itself
    ended = datetime.now(UTC)
    time.sleep(1.1)
    write(2)
    engine.dispose()
    database = PostgresResource(database_url=db_url)
    assert new_readings(database, None)[0] == 3
    margin = timedelta(milliseconds=500)
    count, newest = new_readings(database, None, [(started - margin, ended + margin)])
    assert count == 2 and newest is not None
