"""`pdm-orch simulate`: the PLC simulator (live plant or dataset replay)."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from pathlib import Path

import click

from pdm_orchestration.cli.base import CliError, engine_for, load_plant_or_fail, main, pass_settings
from pdm_orchestration.modbus.faults import FaultProxy
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.modbus.replay import DEFAULT_START as REPLAY_START
from pdm_orchestration.modbus.replay import (
    DatasetError,
    ReplaySource,
    cmapss_plant,
    read_cmapss,
)
from pdm_orchestration.modbus.replay import write_plant as write_replay_plant
from pdm_orchestration.modbus.simulator import (
    Faults,
    LiveSource,
    PlcSimulator,
    maintenance_events,
    serve,
)
from pdm_orchestration.settings import Settings
from pdm_orchestration.storage.events import UnknownDevice, record_events

log = logging.getLogger(__name__)
PROXY_PORT_OFFSET = 10_000


def _pairs(values: tuple[str, ...], option: str, kind: type) -> dict[int, float]:
    out = {}
    for value in values:
        unit, sep, number = value.partition(":")
        try:
            if not sep:
                raise ValueError
            out[int(unit)] = kind(number)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not UNIT:VALUE", param_hint=option) from None
    return out


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO time", param_hint="--start") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.command("simulate")
@click.option(
    "--plant",
    "plant_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Plant file to serve (default: PDM_PLANT_FILE).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of connections that name none (default: PLC_PORT).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (1440: a day per minute).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the plant life: the same --seed and --start give the same plant life.",
)
@click.option(
    "--start",
    default=None,
    help="Simulated start time, ISO (default: now, so runs without it differ whatever the seed).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--write-events",
    is_flag=True,
    help="Record simulated failures and maintenance in maintenance_events.",
)
@click.option("--dead-unit", multiple=True, type=int, help="Unit id that never answers.")
@click.option("--slow-unit", multiple=True, help="UNIT:SECONDS, answers after a delay.")
@click.option("--exception-unit", multiple=True, help="UNIT:CODE, answers every read so.")
@click.option(
    "--min-request-gap-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Answer 'busy' (exception 6) to requests closer together than this.",
)
@click.option(
    "--drop-after",
    type=click.IntRange(min=1),
    default=None,
    help="Close each client connection after this many requests.",
)
@click.option(
    "--idle-close",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Close a client connection idle for this many seconds.",
)
@click.option(
    "--replay",
    type=click.Choice(["cmapss"]),
    default=None,
    help="Replay a dataset instead of simulating machines.",
)
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@click.option(
    "--write-plant",
    type=click.Path(path_type=Path),
    default=None,
    help="With --replay: write the plant file describing the replayed devices.",
)
@click.option(
    "--cycle-seconds",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="With --replay: simulated time between two cycles.",
)
@pass_settings
def simulate(
    settings: Settings,
    plant_file: Path | None,
    port: int | None,
    speed: float,
    seed: int,
    start: str | None,
    duration: float | None,
    write_events: bool,
    dead_unit: tuple[int, ...],
    slow_unit: tuple[str, ...],
    exception_unit: tuple[str, ...],
    min_request_gap_ms: float,
    drop_after: int | None,
    idle_close: float | None,
    replay: str | None,
    dataset: Path | None,
    write_plant: Path | None,
    cycle_seconds: float,
) -> None:
    """Serve a simulated plant over Modbus TCP on 127.0.0.1 (read-only).

    Live mode serves every device and point of the plant file from machines that wear, fail and
    get repaired. Replay mode (`--replay cmapss FILE --write-plant PLANT`) serves each engine of a
    C-MAPSS file as a device, one cycle per poll tick, and writes the plant file describing it.
    """
    port = port or settings.plc_port
    faults = Faults(
        dead=set(dead_unit),
        slow=_pairs(slow_unit, "--slow-unit", float),
        exception={u: int(c) for u, c in _pairs(exception_unit, "--exception-unit", int).items()},
        min_request_gap_s=min_request_gap_ms / 1000,
    )
    started_at = _parse_start(start)
    simulation: PlantSimulation | None = None
    if replay:
        if dataset is None or write_plant is None:
            raise CliError("--replay needs the dataset file and --write-plant FILE")
        try:
            frame = read_cmapss(dataset)
        except DatasetError as exc:
            raise CliError(str(exc)) from None
        write_replay_plant(cmapss_plant(frame, port=port), write_plant, dataset)
        plant = load_plant_or_fail(settings, write_plant)
        source = ReplaySource(frame, cycle_seconds=cycle_seconds, start=started_at or REPLAY_START)
        click.echo(f"replaying {len(source.engines)} engines of {dataset}; plant: {write_plant}")
    else:
        if dataset is not None:
            raise CliError(f"unexpected argument {dataset}: a dataset goes with --replay")
        plant = load_plant_or_fail(settings, plant_file, default_port=port)
        now = datetime.now(UTC).replace(microsecond=0)  # at --speed 1 device time is wall time
        simulation = PlantSimulation(plant, seed=seed, start=started_at or now)
        source = LiveSource(simulation, speed)
    asyncio.run(
        _run(
            settings,
            plant,
            source,
            simulation,
            faults,
            duration,
            write_events,
            drop_after,
            idle_close,
        )
    )


async def _run(
    settings,
    plant,
    source,
    simulation,
    faults,
    duration,
    write_events,
    drop_after,
    idle_close,
) -> None:
    use_proxy = drop_after is not None or idle_close is not None
    simulator = PlcSimulator(
        plant, source, faults=faults, port_offset=PROXY_PORT_OFFSET if use_proxy else 0
    )
    proxies = (
        [
            FaultProxy(
                port, port + PROXY_PORT_OFFSET, drop_after=drop_after, idle_close_s=idle_close
            )
            for port in simulator.endpoints
        ]
        if use_proxy
        else []
    )
    engine = engine_for(settings) if write_events else None
    recorded = 0

    def tick() -> None:
        nonlocal recorded
        if simulation is None:
            if getattr(source, "finished", False):
                log.info("replay: every engine has served its last cycle")
            return
        simulation.advance_to(source.sim_epoch())  # the plant lives on between polls too
        failures = sum(1 for r in simulation.records if r.kind == "failure")
        log.info(
            "simulated time %s; failures so far %d; requests %d",
            simulation.time.isoformat(timespec="minutes"),
            failures,
            sum(simulator.audit.values()),
        )
        if engine is not None:
            events = maintenance_events(simulation)[recorded:]
            try:
                record_events(engine, events)
                recorded += len(events)
            except UnknownDevice as exc:
                log.warning("maintenance events not recorded: %s (run `pdm-orch plant apply`)", exc)
            except Exception as exc:  # the database may be away; try again next tick
                log.warning("maintenance events not recorded yet: %s", str(exc).splitlines()[0])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    for proxy in proxies:
        await proxy.start()
    ports = ", ".join(str(p) for p in simulator.endpoints)

    def started() -> None:  # printed once the ports listen: scripts wait for this line
        click.echo(
            f"serving {len(plant.devices)} devices on 127.0.0.1 port(s) {ports}; Ctrl-C stops"
        )

    try:
        await serve(simulator, stop, on_tick=tick, on_started=started)
    finally:
        tick()
        for proxy in proxies:
            await proxy.stop()
        if engine is not None:
            engine.dispose()
    codes = sorted(simulator.function_codes)
    click.echo(f"stopped; {sum(simulator.audit.values())} requests, function codes {codes}")
