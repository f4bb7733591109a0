"""`pdm-orch demo`: the whole graph on the simulated plant, in accelerated time, in minutes.

It starts from a clean local state (the SQLite database, MLflow store and Dagster run history
under PDM_HOME), serves the example plant from the simulator at --speed (two days of plant life
per minute by default), and materializes every asset through Dagster, on the local Dagster instance,
so the runs are there to look at in the UI afterwards: the registry, one polling session of
--days simulated days, the feature windows of those days (one single-run backfill), the four
models with their champion gates, the predictions of those days, and the alerts. It ends with the
device health table (`v_device_health`) and the commands that open the UIs. An interrupted demo
leaves nothing running; run it again and it starts over.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import sqlalchemy as sa

from pdm_orchestration.cli.base import CliError, main, pass_settings
from pdm_orchestration.settings import Settings

log = logging.getLogger(__name__)
DAGSTER_YAML = """# The local Dagster instance of `make demo` and `make dev` (run history, SQLite).
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _step(number: int, text: str) -> None:
    click.echo(f"[{number}/7] {text}")


def _reset(settings: Settings, dagster_home: Path) -> None:
    """Remove the demo's own local state: nothing outside these paths is touched."""
    home = settings.pdm_home
    for name in ("pdm.db", "pdm.db-wal", "pdm.db-shm", "mlflow.db"):
        (home / name).unlink(missing_ok=True)
    for folder in (home / "mlartifacts", home / "spool", dagster_home):
        shutil.rmtree(folder, ignore_errors=True)
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)


def _require_local_state(settings: Settings) -> None:
    home = settings.pdm_home
    expected = {
        "DATABASE_URL": (settings.db_url, f"sqlite:///{home / 'pdm.db'}"),
        "MLFLOW_TRACKING_URI": (settings.mlflow_tracking_uri, f"sqlite:///{home / 'mlflow.db'}"),
    }
    for name, (value, default) in expected.items():
        if value != default:
            raise CliError(
                f"the demo runs on the local defaults and resets them; {name} points elsewhere "
                f"({sa.engine.make_url(value).render_as_string(hide_password=True)}): unset it"
            )


@main.command("demo")
@click.option(
    "--days",
    type=click.FloatRange(0.05, 30),
    default=5.0,
    show_default=True,
    help="Simulated days of plant life to ingest.",
)
@click.option(
    "--speed",
    type=click.FloatRange(1, 100_000),
    default=2880.0,
    show_default=True,
    help="Simulated seconds per real second (2880: two days per minute).",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.02, 60),
    default=0.1,
    show_default=True,
    help="Seconds between polls (real time).",
)
@click.option("--seed", type=int, default=3, show_default=True, help="Same seed, same plant life.")
@click.option(
    "--mean-life",
    type=click.FloatRange(1, 10_000),
    default=120.0,
    show_default=True,
    help="Mean hours from repair to failure of the simulated machines.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: PLC_PORT.")
@pass_settings
def demo(
    settings: Settings,
    days: float,
    speed: float,
    poll: float,
    seed: int,
    mean_life: float,
    port: int | None,
) -> None:
    """Run the whole graph on the simulated plant in accelerated time (resets local state)."""
    _require_local_state(settings)
    plan = Plan(days, speed, poll, seed, mean_life, port or settings.plc_port)
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or settings.pdm_home / "dagster").resolve()
    _reset(settings, dagster_home)
    began = time.monotonic()
    interrupted = threading.Event()

    def on_signal(signum: int, frame) -> None:  # Dagster turns Ctrl-C into a failed run: note it
        interrupted.set()
        signal.default_int_handler(signum, frame)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _run_demo(settings, dagster_home, plan, interrupted)
    except KeyboardInterrupt:
        interrupted.set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted.is_set():
        raise CliError("interrupted: nothing is left running; run it again to start over")
    _step(7, f"done in {time.monotonic() - began:.0f} s")
    click.echo(_health(settings))
    click.echo(LOOK_AT_IT.format(uri=settings.mlflow_tracking_uri))


@dataclass(frozen=True)
class Plan:
    days: float
    speed: float
    poll: float
    seed: int
    mean_life: float
    port: int

    @property
    def duration_s(self) -> float:
        return self.days * 86400 / self.speed


def _resources(settings: Settings, plan: Plan) -> dict:
    from pdm_orchestration.defs.resources import (
        AlertWebhookResource,
        MlflowResource,
        PlantResource,
        PostgresResource,
    )

    return {
        "database": PostgresResource(database_url=settings.db_url),
        "plant": PlantResource(
            plant_file=str(settings.pdm_plant_file),
            plc_host="127.0.0.1",
            plc_port=plan.port,
            poll_interval_seconds=str(plan.poll),
            pdm_home=str(settings.pdm_home),
        ),
        "mlflow": MlflowResource(tracking_uri=str(settings.mlflow_tracking_uri)),
        "webhook": AlertWebhookResource(url=settings.alert_webhook_url or ""),
    }


LOOK_AT_IT = """
Look at it:
  make dev                      # simulator + Dagster UI + MLflow UI, Ctrl-C stops all
  Dagster UI  http://127.0.0.1:3000   (the runs above, the asset graph, checks)
  MLflow UI   http://127.0.0.1:5000   (runs, metrics, plots, champion/challenger)
  or alone:   DAGSTER_HOME=.pdm/dagster .venv/bin/dg dev
              .venv/bin/mlflow ui --backend-store-uri {uri}
  SQL:        SELECT * FROM v_device_health;   (sqlite3 .pdm/pdm.db)"""


def _run_demo(
    settings: Settings, dagster_home: Path, plan: Plan, interrupted: threading.Event
) -> None:
    import dagster as dg

    from pdm_orchestration.defs.alerts.assets import device_alerts
    from pdm_orchestration.defs.features.assets import feature_windows
    from pdm_orchestration.defs.ingest.assets import plc_readings
    from pdm_orchestration.defs.ingest.checks import plc_readings_quality
    from pdm_orchestration.defs.registry.assets import device_registry
    from pdm_orchestration.defs.scoring.assets import maintenance_predictions
    from pdm_orchestration.defs.training.assets import CHAMPION_ASSETS, GATES, MODEL_ASSETS
    from pdm_orchestration.storage import migrate
    from pdm_orchestration.storage.engine import make_engine

    resources = _resources(settings, plan)
    duration = plan.duration_s
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

        def run(assets: list, text: str, **kwargs) -> dg.ExecuteInProcessResult:
            if interrupted.is_set():
                raise KeyboardInterrupt
            config = kwargs.pop("run_config", {})
            result = dg.materialize(
                assets,
                resources=resources,
                instance=instance,
                run_config={**QUIET, **config},
                raise_on_error=False,
                **kwargs,
            )
            failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            if interrupted.is_set() or any(
                f.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
                for f in failures
            ):  # Ctrl-C inside a run: Dagster's own handler fails the run instead
                interrupted.set()
                raise KeyboardInterrupt
            for failure in failures:
                message = failure.step_failure_data.error.message.strip().splitlines()[-1]
                click.echo(f"      {failure.step_key}: {message}")
            if not result.success and not failures:
                click.echo(f"      {text}: a check failed (see the run in the Dagster UI)")
            return result

        _step(1, f"database migrated; registry: applying {settings.pdm_plant_file}")
        engine = make_engine(settings.db_url)
        migrate.upgrade(engine)
        engine.dispose()
        run([device_registry], "registry")
        simulation, stop = _serve(settings, plan)
        try:
            _step(
                2,
                f"polling the simulated plant for {plan.days:g} simulated days "
                f"({duration:.0f} s at {plan.speed:g}x, a poll every {plan.poll:g} s)",
            )
            run(
                [plc_readings, plc_readings_quality],
                "ingest",
                run_config={
                    "ops": {
                        "plc_readings": {
                            "config": {"duration_s": duration, "interval_s": plan.poll}
                        }
                    }
                },
            )
        finally:
            stop()
        recorded = _record_events(settings, simulation)
        failures = sum(1 for e in simulation.records if e.kind == "failure")
        others = len(simulation.records) - failures
        click.echo(
            f"      the plant lived through {failures} failures and {others} repairs and "
            f"preventive jobs ({recorded} recorded in maintenance_events)"
        )
        start = simulation.start_time
        end = datetime.now(UTC)
        partition_range = {
            "dagster/asset_partition_range_start": start.strftime("%Y-%m-%d-%H:00"),
            "dagster/asset_partition_range_end": end.strftime("%Y-%m-%d-%H:00"),
        }
        _step(3, "feature windows of those days, with the data-quality checks (one run)")
        run(
            [feature_windows],
            "features",
            tags=partition_range,
            run_config={"ops": {"feature_windows": {"config": {"time_scale": plan.speed}}}},
        )
        _step(4, "training the four model families; the champion gates decide")
        run([*MODEL_ASSETS, *GATES, *CHAMPION_ASSETS], "training")
        _step(5, "scoring those days with the champions (one run)")
        run([maintenance_predictions], "predictions", tags=partition_range)
        _step(6, "alerts")
        run([device_alerts], "alerts")


class _Served:
    """The simulated plant of the demo, on a clock that ends its days now."""

    def __init__(self, simulation, start_time: datetime) -> None:
        self.simulation = simulation
        self.start_time = start_time

    @property
    def records(self):
        return self.simulation.records


def _serve(settings: Settings, plan: Plan):
    from pdm_orchestration.cli.base import load_plant_or_fail
    from pdm_orchestration.modbus.machines import PlantSimulation
    from pdm_orchestration.modbus.simulator import BackgroundSimulator, LiveSource, PlcSimulator

    plant = load_plant_or_fail(settings, default_port=plan.port)
    start = (datetime.now(UTC) - timedelta(seconds=plan.days * 86400)).replace(microsecond=0)
    simulation = PlantSimulation(plant, seed=plan.seed, start=start, mean_life_hours=plan.mean_life)
    background = BackgroundSimulator(PlcSimulator(plant, LiveSource(simulation, plan.speed)))
    try:
        background.__enter__()
    except OSError as exc:
        raise CliError(f"the simulator cannot listen on port {plan.port}: {exc}") from None
    done = threading.Event()

    def report() -> None:
        while not done.wait(15):
            failures = sum(1 for r in simulation.records if r.kind == "failure")
            click.echo(
                f"      simulated time {simulation.time:%Y-%m-%d %H:%M}, {failures} failures so far"
            )

    threading.Thread(target=report, daemon=True).start()

    def stop() -> None:
        done.set()
        background.__exit__(None, None, None)

    return _Served(simulation, start), stop


def _record_events(settings: Settings, served: _Served) -> int:
    from pdm_orchestration.modbus.simulator import maintenance_events
    from pdm_orchestration.storage.engine import make_engine
    from pdm_orchestration.storage.events import record_events

    engine = make_engine(settings.db_url)
    try:
        return record_events(engine, maintenance_events(served.simulation))
    finally:
        engine.dispose()


def _health(settings: Settings) -> str:
    from pdm_orchestration.status import format_table
    from pdm_orchestration.storage.engine import make_engine

    engine = make_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM v_device_health ORDER BY device")).all()
    finally:
        engine.dispose()

    def when(value) -> str:
        return str(value)[:16] if value else "-"

    def number(value, unit="") -> str:
        return "-" if value is None else f"{value:.2f}{unit}"

    table = format_table(
        [
            "device",
            "kind",
            "last reading",
            "risk",
            "from",
            "P(failure)",
            "RUL",
            "top sensor",
            "open alerts",
        ],
        [
            [
                r.device,
                r.kind,
                when(r.last_reading_at),
                r.risk_level or ("bad data" if r.status == "suppressed_bad_data" else "-"),
                (r.risk_from or "-").removeprefix("pdm_"),
                number(r.failure_probability),
                number(r.rul_estimate, f" {r.rul_unit}" if r.rul_unit else ""),
                r.top_sensor or "-",
                r.open_alerts,
            ]
            for r in rows
        ],
    )
    return "\nDevice health (v_device_health):\n" + table
