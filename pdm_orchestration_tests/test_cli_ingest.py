"""`pdm-orch ingest`, `collect` and `simulate` as a user runs them."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pdm_orchestration.cli import main
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.modbus.simulator import BackgroundSimulator, LiveSource, PlcSimulator
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.modbus.helpers import free_port

# The first engines of FD001, in the repository: the replay tests run wherever it is cloned.
CMAPSS_TRAIN = Path(__file__).resolve().parent / "data" / "cmapss-mini" / "train_FD001.txt"
PDM_ORCH = str(Path(sys.executable).with_name("pdm-orch"))


@pytest.fixture
def env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    port = free_port()
    values = {
        "PDM_PLANT_FILE": str(EXAMPLE_PLANT),
        "PLC_PORT": str(port),
        "PLC_POLL_INTERVAL_SECONDS": "0.3",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    return values


def count(clean_env: Path, sql: str) -> int:
    engine = make_engine(f"sqlite:///{clean_env / '.pdm' / 'pdm.db'}")
    with engine.connect() as conn:
        value = conn.scalar(sa.text(sql))
    engine.dispose()
    return int(value)


def test_ingest_needs_once(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["ingest"])
    assert result.exit_code == 1
    assert "pass --once" in result.output


def test_ingest_once_polls_the_plant(env: dict[str, str], clean_env: Path) -> None:
    plant = load_plant(EXAMPLE_PLANT, default_port=int(env["PLC_PORT"]))
    source = LiveSource(
        PlantSimulation(plant, seed=1, start=datetime(2026, 6, 1, tzinfo=UTC)), 3600
    )
    with BackgroundSimulator(PlcSimulator(plant, source)):
        result = CliRunner().invoke(main, ["ingest", "--once", "--duration", "1"])
    assert result.exit_code == 0, result.output
    assert "devices ok 12, failed 0" in result.output
    assert count(clean_env, "SELECT count(*) FROM sensor_readings WHERE quality = 'good'") >= 80


def test_ingest_with_no_plc_fails_but_records_why(env: dict[str, str], clean_env: Path) -> None:
    result = CliRunner().invoke(main, ["ingest", "--once", "--duration", "0.5"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: no device gave any data")
    assert (
        count(clean_env, "SELECT count(*) FROM sensor_readings WHERE quality = 'bad_timeout'") > 0
    )
    assert (
        count(clean_env, "SELECT count(*) FROM ingest_gaps WHERE reason = 'connect_failed'") == 12
    )


def test_ingest_with_the_database_away_and_no_cached_registry_says_so_in_one_line(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on this port: the database refuses, and no session ever cached the registry.
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/pdm")
    result = CliRunner().invoke(main, ["ingest", "--once", "--duration", "0.5"])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: database unreachable (")
    assert "Connection refused" in last
    assert last.endswith(
        "no cached registry matches "
        + str(EXAMPLE_PLANT)
        + ": nothing can be polled until the database is back"
    )


@pytest.mark.postgres
def test_ingest_with_the_database_away_polls_on_the_cached_registry(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pg_server
) -> None:
    url = pg_server.create_database()
    name = make_engine(url).url.database
    monkeypatch.setenv("DATABASE_URL", url)
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    plant = load_plant(EXAMPLE_PLANT, default_port=int(env["PLC_PORT"]))
    source = LiveSource(
        PlantSimulation(plant, seed=1, start=datetime(2026, 6, 1, tzinfo=UTC)), 3600
    )
    ingest = ["ingest", "--once", "--duration", "0.8"]

    def allow(allowed: bool) -> None:
        with pg_server.admin.connect() as conn:
            flag = "true" if allowed else "false"
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {flag}'))

    with BackgroundSimulator(PlcSimulator(plant, source)):
        assert CliRunner().invoke(main, ingest).exit_code == 0  # caches the registry's ids
        allow(False)
        try:
            away = CliRunner().invoke(main, ingest)
        finally:
            allow(True)
        back = CliRunner().invoke(main, ingest)
    assert away.exit_code == 0, away.output
    assert "the registry was not applied" in away.output
    assert "devices ok 12, failed 0" in away.output and "written 0, spooled " in away.output
    assert "wait in the spool for the database" in away.output
    assert back.exit_code == 0, back.output
    assert "forwarded 0;" not in back.output and "wait in the spool" not in back.output
    pg_server.drop_database(url)


def test_simulate_rejects_bad_options(env: dict[str, str], tmp_path: Path) -> None:
    bad_pair = CliRunner().invoke(main, ["simulate", "--slow-unit", "three"])
    assert bad_pair.exit_code == 2 and "'three' is not UNIT:VALUE" in bad_pair.output
    no_file = CliRunner().invoke(main, ["simulate", "--replay", "cmapss"])
    assert no_file.exit_code == 1 and "--replay needs the dataset file" in no_file.output
    junk = tmp_path / "junk.txt"
    junk.write_text("1 2 3\n4 5 6\n")
    bad_data = CliRunner().invoke(
        main,
        ["simulate", "--replay", "cmapss", str(junk), "--write-plant", str(tmp_path / "p.yaml")],
    )
    assert bad_data.exit_code == 1
    assert f"error: {junk}: expected 26 columns" in bad_data.output


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [PDM_ORCH, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("serving "):
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"simulator did not start: {process.stdout.read()}")


def test_simulate_serves_writes_events_and_stops_on_sigterm(
    env: dict[str, str], clean_env: Path
) -> None:
    CliRunner().invoke(main, ["plant", "apply"])
    process = _start(
        [
            "simulate",
            "--speed",
            "20000",
            "--seed",
            "3",
            "--write-events",
            "--start",
            "2026-01-01T00:00",
        ],
        env,
    )
    try:
        result = CliRunner().invoke(main, ["ingest", "--once", "--duration", "1"])
        time.sleep(5.5)  # the simulator records events every 5 s
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert result.exit_code == 0, result.output
    assert process.returncode == 0
    assert "function codes [1, 2, 3, 4]" in out
    assert count(clean_env, "SELECT count(*) FROM maintenance_events WHERE kind = 'failure'") >= 1


def test_simulate_replay_writes_its_plant_and_serves_it(
    env: dict[str, str], clean_env: Path
) -> None:
    plant_file = clean_env / "cmapss.yaml"
    process = _start(
        ["simulate", "--replay", "cmapss", str(CMAPSS_TRAIN), "--write-plant", str(plant_file)], env
    )
    try:
        result = CliRunner().invoke(
            main,
            [
                "ingest",
                "--once",
                "--plant",
                str(plant_file),
                "--duration",
                "1.5",
                "--interval",
                "0.2",
            ],
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert result.exit_code == 0, result.output
    assert "devices ok 8, failed 0" in result.output  # the 8 engines of the file
    # one cycle per poll tick, timestamped with the cycle's time
    cycles = count(
        clean_env, "SELECT count(DISTINCT ts) FROM sensor_readings WHERE sensor = 'sensor_2'"
    )
    assert cycles >= 3
    assert count(clean_env, "SELECT count(*) FROM sensor_readings WHERE quality <> 'good'") == 0
