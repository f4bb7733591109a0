"""`pdm-orch ingest --once` and `pdm-orch collect`: polling the plant into the database."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import click

from pdm_orchestration.cli.base import CliError, engine_for, load_plant_or_fail, main, pass_settings
from pdm_orchestration.modbus.poller import PollStats
from pdm_orchestration.modbus.session import (
    RegistryUnavailable,
    SessionResult,
    StoreStats,
    open_store,
    run_session,
    spool_path,
)
from pdm_orchestration.settings import Settings
from pdm_orchestration.storage.spool import Spool

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 10.0

plant_option = click.option(
    "--plant",
    "plant_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Plant file (default: PDM_PLANT_FILE).",
)
interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Seconds between polls of points in no poll group (default: PLC_POLL_INTERVAL_SECONDS).",
)


def _progress() -> object:
    last = {"at": time.monotonic(), "readings": 0}

    def report(poll: PollStats, store: StoreStats) -> None:
        now = time.monotonic()
        if now - last["at"] < PROGRESS_EVERY_S:
            return
        rate = (poll.readings - last["readings"]) / (now - last["at"])
        log.info(
            "%d readings (%.0f/s), %d written, %d spooled, %d gaps",
            poll.readings,
            rate,
            store.written,
            store.spooled,
            store.gaps,
        )
        last.update(at=now, readings=poll.readings)

    return report


def run_polling(
    settings: Settings, plant_file: Path | None, duration: float | None, interval: float | None
) -> SessionResult:
    """Apply the plant, then poll it (for `duration` seconds, or until SIGINT/SIGTERM).

    With the database unreachable, the registry ids cached at the last start are used and every
    reading is spooled (see `open_store`).
    """
    plant = load_plant_or_fail(settings, plant_file)
    engine = engine_for(settings)
    spool = Spool(spool_path(settings.pdm_home))
    try:
        store = open_store(engine, plant, spool)
    except RegistryUnavailable as exc:
        spool.close()
        engine.dispose()
        raise CliError(str(exc)) from None
    except BaseException:
        spool.close()
        engine.dispose()
        raise

    async def go() -> SessionResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await run_session(
                plant,
                store,
                duration_s=duration,
                interval_s=interval or settings.plc_poll_interval_seconds,
                stop=stop,
                progress=_progress(),  # type: ignore[arg-type]
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(go())
    finally:
        store.spool.close()
        engine.dispose()


def _report(result: SessionResult) -> None:
    click.echo(result.summary())
    if result.devices_failed:
        click.echo(f"no data from: {', '.join(result.devices_failed)}")
    if result.spool_pending:
        click.echo(f"{result.spool_pending} readings and gaps wait in the spool for the database")
    if not result.devices_ok:
        raise CliError("no device gave any data (is the PLC or `pdm-orch simulate` running?)")


@main.command("ingest")
@click.option("--once", is_flag=True, help="Run one bounded polling session (required).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Length of the session in seconds.",
)
@interval_option
@plant_option
@pass_settings
def ingest(
    settings: Settings,
    once: bool,
    duration: float,
    interval: float | None,
    plant_file: Path | None,
) -> None:
    """Poll every PLC of the plant for one bounded session and store the readings.

    The same session the `plc_readings` asset runs. Use `pdm-orch collect` to poll without end.
    """
    if not once:
        raise CliError("ingest runs one bounded session: pass --once (or use `pdm-orch collect`)")
    _report(run_polling(settings, plant_file, duration, interval))


@main.command("collect")
@interval_option
@plant_option
@pass_settings
def collect(settings: Settings, interval: float | None, plant_file: Path | None) -> None:
    """Poll the plant continuously (sub-minute sampling) until Ctrl-C or SIGTERM.

    Progress is logged every 10 seconds. Dagster's `plc_collector_sensor` notices the new readings.
    """
    _report(run_polling(settings, plant_file, None, interval))
