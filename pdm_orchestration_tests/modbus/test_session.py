"""Polling sessions against the real pymodbus simulator, into the real databases."""

import asyncio
import contextlib
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from pdm_orchestration.modbus.faults import FaultProxy
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.modbus.poller import Reading
from pdm_orchestration.modbus.session import (
    IngestStore,
    RegistryMismatch,
    RegistryUnavailable,
    open_store,
    run_session,
    spool_path,
)
from pdm_orchestration.modbus.simulator import (
    BackgroundSimulator,
    Faults,
    LiveSource,
    PlcSimulator,
    ValueSource,
)
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import CONNECT_TIMEOUT_S, make_engine
from pdm_orchestration.storage.readings import ReadingRow
from pdm_orchestration.storage.schema import devices, ingest_gaps, sensor_readings
from pdm_orchestration.storage.spool import Spool
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.modbus.helpers import free_port, plant_from, two_lines_text

START = datetime(2026, 3, 1, tzinfo=UTC)
SPEED = 3600.0  # an hour of plant life per second: every poll sees a new device clock


class Recorder(IngestStore):
    """The real store, keeping what it was handed, to count losses and duplicates."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.handed: list[Reading] = []

    def write(self, readings, gaps) -> None:  # type: ignore[no-untyped-def]
        self.handed.extend(readings)
        super().write(readings, gaps)

    def spool_batch(self, readings, gaps) -> None:  # type: ignore[no-untyped-def]
        self.handed.extend(readings)
        super().spool_batch(readings, gaps)


@contextlib.contextmanager
def running(proxy: FaultProxy) -> Iterator[asyncio.AbstractEventLoop]:
    """The proxy serving on an event loop of its own thread (call its methods on that loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result()
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def two_lines(tmp_path: Path, **ports: int):
    port_a, port_b = ports.get("port_a") or free_port(), ports.get("port_b") or free_port()
    return plant_from(tmp_path, two_lines_text(port_a, port_b)), port_a, port_b


def poll(engine: Engine, plant, tmp_path: Path, *, duration: float, interval: float) -> tuple:
    apply_plant(engine, plant)
    store = Recorder(engine, plant, Spool(tmp_path / "spool.sqlite3"))
    result = asyncio.run(run_session(plant, store, duration_s=duration, interval_s=interval))
    store.spool.close()
    return result, store


def stored(engine: Engine, where: str = "") -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT d.name AS device, r.sensor, r.ts, r.value, r.quality, r.register_map_id, "
                f"r.value_text FROM sensor_readings r JOIN devices d ON d.id = r.device_id {where}"
            )
        ).all()


def gap_rows(engine: Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(ingest_gaps.c.sensor, ingest_gaps.c.reason, ingest_gaps.c.device_id)
        ).all()


def named_gaps(engine: Engine) -> set[tuple[str, str | None, str]]:
    """(device, sensor, reason) of every gap row."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.name, g.sensor, g.reason FROM ingest_gaps g "
                "JOIN devices d ON d.id = g.device_id"
            )
        ).all()
    return {(r[0], r[1], r[2]) for r in rows}


def live(plant, **faults: object) -> PlcSimulator:
    source = LiveSource(PlantSimulation(plant, seed=2, start=START), speed=SPEED)
    return PlcSimulator(plant, source, faults=Faults(**faults))  # type: ignore[arg-type]


def test_session_stores_every_point_with_device_time_and_its_decoding(
    engine: Engine, tmp_path: Path
) -> None:
    plant, _, _ = two_lines(tmp_path)
    with BackgroundSimulator(live(plant)) as sim:
        result, store = poll(engine, plant, tmp_path, duration=1.6, interval=0.4)
    rows = stored(engine)
    values_per_cycle = sum(1 for p in plant.points if p.role != "timestamp")
    assert result.poll.cycles >= 6  # two endpoints, ~4 cycles each
    assert len(rows) == len(store.handed) == result.store.written
    assert len(rows) >= 3 * values_per_cycle
    assert Counter(r.quality for r in rows) == {"good": len(rows)}
    assert all(r.register_map_id is not None for r in rows)
    model = PlantSimulation(plant, seed=2, start=START).values("pump_b")["model"]
    assert {r.value_text for r in rows if r.sensor == "model"} == {str(model)[:6]}
    # Timestamps are the devices' (accelerated) clocks, not the poller's.
    newest = max(r.ts if isinstance(r.ts, datetime) else datetime.fromisoformat(r.ts) for r in rows)
    assert newest.replace(tzinfo=UTC) < START.replace(year=2027)
    assert result.devices_ok == ["motor_a", "pump_a", "pump_b"] and result.devices_failed == []
    assert gap_rows(engine) == []
    assert sim.function_codes == {1, 3, 4}  # read-only: nothing but reads reached the device
    p50, p99 = result.poll.latency_ms(0.5), result.poll.latency_ms(0.99)
    assert p50 is not None and p99 is not None and 0 < p50 <= p99


def test_bulk_writes_are_few_statements_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    plant, _, _ = two_lines(tmp_path)
    apply_plant(engine, plant)
    store = IngestStore(engine, plant, Spool(tmp_path / "spool.sqlite3"))
    readings = [
        Reading(
            "pump_a",
            "bearing_temp",
            datetime.fromtimestamp(1.7e9 + i, UTC),
            40.0 + i % 7,
            "good",
            None,
        )
        for i in range(5000)
    ]
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    store.write(readings, [])
    store.write(readings, [])  # re-delivery
    sa.event.remove(engine, "before_cursor_execute", count)
    inserts = [s for s in statements if "INSERT" in s.upper()]
    assert len(inserts) <= 4  # two batches, one bulk statement each (COPY is not even an INSERT)
    assert store.stats.written == 5000
    assert len(stored(engine)) == 5000


def test_refused_registers_nan_sentinel_and_range_end_in_quality_codes(
    engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    served = plant_from(
        tmp_path,
        f"""\
connections: [{{id: gw, port: {port}, timeout_s: 0.3, retries: 0}}]
devices: [{{id: d, connection: gw, unit_id: 1}}]
points:
  - {{device: d, name: temp, kind: input, address: 0, type: float32}}
  - {{device: d, name: flow, kind: input, address: 2, type: uint16, scale: 0.1}}
  - {{device: d, name: level, kind: input, address: 3, type: int16}}
""",
        name="served.yaml",
    )
    polled = plant_from(
        tmp_path,
        f"""\
connections: [{{id: gw, port: {port}, timeout_s: 0.3, retries: 0, max_gap_fill: 0}}]
devices: [{{id: d, connection: gw, unit_id: 1}}]
points:
  - {{device: d, name: temp, kind: input, address: 0, type: float32}}
  - {{device: d, name: flow, kind: input, address: 2, type: uint16, scale: 0.1, nan_value: 65535}}
  - {{device: d, name: level, kind: input, address: 3, type: int16, valid_range: [0, 100]}}
  - {{device: d, name: extra, kind: input, address: 300, type: int16}}
""",
        name="polled.yaml",
    )

    class Odd(ValueSource):
        def values(self, device, kind, first, last):  # type: ignore[no-untyped-def]
            return {"temp": float("nan"), "flow": 6553.5, "level": 250.0}

    with BackgroundSimulator(PlcSimulator(served, Odd())):
        result, _ = poll(engine, polled, tmp_path, duration=0.5, interval=0.2)
    rows = {
        (r.sensor, r.quality, r.value if r.value is None or not math.isnan(r.value) else None)
        for r in stored(engine)
    }
    assert ("temp", "bad_decode", None) in rows  # NaN -> NULL
    assert ("flow", "bad_decode", None) in rows  # the sentinel 65535 -> NULL
    assert ("level", "bad_decode", 250.0) in rows  # outside valid_range: kept, flagged
    assert ("extra", "bad_exception_2", None) in rows  # the device refuses register 300
    gaps = {(g.sensor, g.reason) for g in gap_rows(engine)}
    assert gaps == {("extra", "exception_2")}
    assert result.devices_ok == ["d"]


def test_a_dead_plc_and_a_dead_unit_do_not_stall_the_others(engine: Engine, tmp_path: Path) -> None:
    plant, port_a, port_b = two_lines(tmp_path)
    # line_b has no server at all; on line_a unit 2 (motor_a) never answers.
    only_a = plant_from(tmp_path, two_lines_text(port_a, port_b, with_pump_b=False), name="a.yaml")
    with BackgroundSimulator(live(only_a, dead={2})) as sim:
        started = time.monotonic()
        result, _ = poll(engine, plant, tmp_path, duration=3.0, interval=0.25)
        elapsed = time.monotonic() - started
    assert elapsed < 4.5
    rows = stored(engine)
    by_device = Counter((r.device, r.quality) for r in rows)
    # pump_a shares its connection with the dead unit: 0.3 s lost per cycle until the dead unit
    # is put aside after 3 failed cycles; then it runs at the full rate.
    assert by_device[("pump_a", "good")] >= 8 * 2
    assert by_device[("motor_a", "bad_timeout")] == 3 * 2  # 3 cycles, then the cool-down
    assert by_device[("pump_b", "bad_timeout")] >= 2
    assert ("pump_b", "good") not in by_device
    reasons = {(g.sensor, g.reason) for g in gap_rows(engine)}
    assert (None, "connect_failed") in reasons
    assert (None, "unit_cooldown") in reasons
    assert ("current", "timeout") in reasons
    # One request a cycle: a unit that did not answer is not asked again in that cycle.
    assert sum(n for (unit, _), n in sim.audit.items() if unit == 2) == 3
    assert result.devices_failed == ["motor_a", "pump_b"]


def test_idle_closing_device_and_dropped_connections_are_read_anyway(
    engine: Engine, tmp_path: Path
) -> None:
    proxy_port, server_port = free_port(), free_port()
    served = plant_from(tmp_path, two_lines_text(server_port, free_port(), with_pump_b=False))
    polled = plant_from(
        tmp_path, two_lines_text(proxy_port, free_port(), with_pump_b=False), name="polled.yaml"
    )

    for proxy in (
        FaultProxy(proxy_port, server_port, idle_close_s=0.15),
        FaultProxy(proxy_port, server_port, drop_after=2),
    ):
        with BackgroundSimulator(live(served)) as sim, running(proxy):
            _result, store = poll(engine, polled, tmp_path, duration=1.3, interval=0.3)
        qualities = Counter(r.quality for r in store.handed if r.device in ("pump_a", "motor_a"))
        assert proxy.dropped >= 2
        assert proxy.connections >= 3  # the poller reconnected after each drop
        assert set(qualities) == {"good"}, qualities
        assert sim.function_codes <= {1, 2, 3, 4}


def test_gateway_that_needs_a_pause_between_requests(engine: Engine, tmp_path: Path) -> None:
    body = two_lines_text(free_port(), free_port(), with_pump_b=False)
    hasty = plant_from(tmp_path, body, name="hasty.yaml")
    patient = plant_from(
        tmp_path,
        body.replace("retries: 0,", "retries: 0, pause_between_requests_ms: 60,", 1),
        name="patient.yaml",
    )
    outcomes = {}
    for name, plant in (("hasty", hasty), ("patient", patient)):
        with BackgroundSimulator(live(plant, min_request_gap_s=0.04)):
            _, store = poll(
                make_engine(str(engine.url)), plant, tmp_path, duration=0.8, interval=0.4
            )
        outcomes[name] = Counter(r.quality for r in store.handed)
    assert outcomes["hasty"]["bad_exception_6"] > 0
    assert set(outcomes["patient"]) == {"good"}


def test_device_clock_going_backwards_is_flagged_not_lost(engine: Engine, tmp_path: Path) -> None:
    port = free_port()
    plant = plant_from(
        tmp_path,
        f"""\
connections: [{{id: gw, port: {port}, timeout_s: 0.3, retries: 0}}]
devices: [{{id: d, connection: gw, unit_id: 1}}]
points:
  - {{device: d, name: clock, kind: input, address: 0, type: uint32, role: timestamp}}
  - {{device: d, name: temp, kind: input, address: 2, type: float32}}
""",
    )

    class Rewinding(ValueSource):
        def __init__(self) -> None:
            self.calls = 0

        def values(self, device, kind, first, last):  # type: ignore[no-untyped-def]
            self.calls += 1
            clock = [1_800_000_000, 1_800_000_060, 1_799_990_000, 1_799_990_060][
                min(self.calls, 4) - 1
            ]
            return {"clock": float(clock), "temp": 20.0 + self.calls}

    with BackgroundSimulator(PlcSimulator(plant, Rewinding())):
        result, store = poll(engine, plant, tmp_path, duration=0.9, interval=0.25)
    qualities = [r.quality for r in store.handed]
    assert qualities[:2] == ["good", "good"]
    assert qualities[2:] and set(qualities[2:]) == {"bad_clock"}
    assert len(stored(engine)) == len(store.handed)  # flagged, kept
    assert ("clock_backwards",) in {(g.reason,) for g in gap_rows(engine)}
    assert result.devices_ok == ["d"]


def test_registry_must_hold_the_plant(engine: Engine, tmp_path: Path) -> None:
    plant, _, _ = two_lines(tmp_path)
    with pytest.raises(RegistryMismatch, match="pdm-orch plant apply"):
        IngestStore(engine, plant, Spool(tmp_path / "spool.sqlite3"))


@pytest.mark.postgres
def test_database_outage_mid_session_loses_and_duplicates_nothing(
    pg_server, tmp_path: Path
) -> None:
    url = pg_server.create_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    name = engine.url.database
    plant, _, _ = two_lines(tmp_path)

    def cut_then_restore() -> None:
        time.sleep(0.6)
        with pg_server.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": name},
            )
        time.sleep(1.2)
        with pg_server.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))

    with BackgroundSimulator(live(plant)):
        outage = threading.Thread(target=cut_then_restore)
        outage.start()
        result, store = poll(engine, plant, tmp_path, duration=3.0, interval=0.2)
        outage.join()
    assert result.store.spooled > 0, "the outage should have sent readings to the spool"
    assert result.store.forwarded == result.store.spooled
    assert result.spool_pending == 0
    handed = {(r.device, r.sensor, r.ts) for r in store.handed}
    rows = stored(engine)
    keys = [(r.device, r.sensor, r.ts) for r in rows]
    assert len(keys) == len(set(keys))  # 0 duplicated
    assert set(keys) == handed  # 0 lost
    engine.dispose()
    pg_server.drop_database(url)


class PerDevice(ValueSource):
    """Values that say which device they came from: unit n serves 100 n + 1, 100 n + 2, n odd."""

    def __init__(self, plant) -> None:  # type: ignore[no-untyped-def]
        self.units = {name: device.unit_id for name, device in plant.devices.items()}

    def values(self, device, kind, first, last):  # type: ignore[no-untyped-def]
        unit = self.units[device]
        return {"a": 100.0 * unit + 1, "b": 100.0 * unit + 2, "flag": float(unit % 2)}


def shared_gateway(tmp_path: Path, port: int, units: int, **connection: object):
    """`units` devices d1..dN of one layout (two float32 inputs, a discrete input) on one port."""
    options = ", ".join(f"{k}: {v}" for k, v in connection.items())
    devices = "\n".join(
        f"  - {{id: d{n}, connection: gw, unit_id: {n}}}" for n in range(1, units + 1)
    )
    points = "\n".join(
        f"  - {{device: d{n}, name: a, kind: input, address: 0, type: float32}}\n"
        f"  - {{device: d{n}, name: b, kind: input, address: 2, type: float32}}\n"
        f"  - {{device: d{n}, name: flag, kind: discrete, address: 0, type: bit}}"
        for n in range(1, units + 1)
    )
    return plant_from(
        tmp_path,
        f"connections: [{{id: gw, port: {port}, {options}}}]\ndevices:\n{devices}\npoints:\n{points}\n",
    )


def test_a_slow_unit_never_crashes_the_session_nor_lends_its_late_replies(
    engine: Engine, tmp_path: Path
) -> None:
    # Unit 4 answers after 0.5 s, long after the 0.2 s timeout, while the others keep the
    # connection busy: its late replies come back labelled as answers to their requests (pymodbus's
    # server does that, and so do some gateways). They must never be decoded as anyone's data.
    plant = shared_gateway(
        tmp_path, free_port(), 4, timeout_s=0.2, retries=0, unit_fail_cycles=1000
    )
    faults = Faults(slow={1: 0.02, 2: 0.02, 3: 0.02, 4: 0.5})
    with BackgroundSimulator(PlcSimulator(plant, PerDevice(plant), faults=faults)):
        result, store = poll(engine, plant, tmp_path, duration=3.0, interval=0.1)
    expected = {"a": 1.0, "b": 2.0}
    rows = stored(engine)
    assert len(rows) == len(store.handed)  # every reading handed over is stored
    others = [r for r in rows if r.device != "d4"]
    assert {r.quality for r in others} == {"good"}
    for r in others:
        unit = int(r.device[1:])
        wanted = float(unit % 2) if r.sensor == "flag" else 100.0 * unit + expected[r.sensor]
        assert r.value == wanted, (r.device, r.sensor, r.value)
    # Every cycle (about 0.35 s: the 0.2 s timeout, six 0.02 s answers) read all three fully.
    assert result.poll.cycles >= 5 and len(others) == 3 * 3 * result.poll.cycles
    slow = [r for r in rows if r.device == "d4"]
    assert slow and {r.quality for r in slow} <= {"bad_timeout", "good"}
    assert all(r.value in (None, 401.0, 402.0, 1.0) for r in slow)
    gaps = named_gaps(engine)
    assert {device for device, _, _ in gaps} == {"d4"}
    assert {("d4", sensor, "timeout") for sensor in ("a", "b", "flag")} <= gaps
    assert result.devices_ok == ["d1", "d2", "d3"]


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def test_every_point_a_silent_unit_was_not_read_at_is_in_a_gap(
    engine: Engine, tmp_path: Path
) -> None:
    # spindle_02 (unit 12) has input registers (with its clock), a holding register and a discrete
    # input: after its first block times out the others are not asked, and are gaps too.
    text = EXAMPLE_PLANT.read_text().replace("timeout_s: 1.0", "timeout_s: 0.2")
    plant = plant_from(tmp_path, text.replace("retries: 1", "retries: 0"))
    spindle = {p.sensor for p in plant.points_of("spindle_02") if p.role != "timestamp"}
    assert {p.register_kind for p in plant.points_of("spindle_02")} == {
        "input",
        "holding",
        "discrete",
    }
    with BackgroundSimulator(live(plant, dead={12})):
        poll(engine, plant, tmp_path, duration=1.5, interval=0.3)
    with engine.connect() as conn:
        readings = conn.execute(
            sa.select(sensor_readings.c.sensor, sensor_readings.c.ts, sensor_readings.c.quality)
            .join(devices, devices.c.id == sensor_readings.c.device_id)
            .where(devices.c.name == "spindle_02")
        ).all()
        gaps = conn.execute(
            sa.select(ingest_gaps).join(devices).where(devices.c.name == "spindle_02")
        ).all()
    assert readings and {r.quality for r in readings} == {"bad_timeout"}
    assert {r.sensor for r in readings} == spindle  # the slow group too: all due at the start
    assert {g.sensor for g in gaps if g.reason == "timeout"} == spindle
    for r in readings:
        covering = [
            g
            for g in gaps
            if g.sensor in (None, r.sensor) and _utc(g.gap_start) <= _utc(r.ts) <= _utc(g.gap_end)
        ]
        assert covering, f"{r.sensor} at {r.ts} could not be read but is in no gap"


def test_a_device_clock_reset_becomes_the_clock_after_three_polls(
    engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    plant = plant_from(
        tmp_path,
        f"""\
connections: [{{id: gw, port: {port}, timeout_s: 0.3, retries: 0}}]
devices: [{{id: d, connection: gw, unit_id: 1}}]
points:
  - {{device: d, name: clock, kind: input, address: 0, type: uint32, role: timestamp}}
  - {{device: d, name: temp, kind: input, address: 2, type: float32}}
""",
    )
    later, reset = 1_800_000_000, 1_000_000_000

    class Resetting(ValueSource):
        """Polls 1-2 normal, 3 a one-off step back, 4 normal, from 5 on reset and running."""

        def __init__(self) -> None:
            self.calls = 0

        def values(self, device, kind, first, last):  # type: ignore[no-untyped-def]
            self.calls += 1
            steps = {1: later, 2: later + 60, 3: later - 10_000, 4: later + 120}
            clock = steps.get(self.calls, reset + 60 * (self.calls - 5))
            return {"clock": float(clock), "temp": float(self.calls)}

    with BackgroundSimulator(PlcSimulator(plant, Resetting())):
        result, store = poll(engine, plant, tmp_path, duration=2.0, interval=0.2)
    qualities = [r.quality for r in sorted(store.handed, key=lambda r: r.value)]
    assert len(qualities) >= 8
    good, bad = "good", "bad_clock"
    # The one-off step back is flagged and forgotten; the reset is accepted on its third poll.
    assert qualities[:7] == [good, good, bad, good, bad, bad, good]
    assert set(qualities[7:]) == {good}
    stamps = {int(r.value): r.ts.timestamp() for r in store.handed if r.quality == good}
    assert stamps[7] == reset + 120 and stamps[8] == reset + 180  # stamped by the new clock
    with engine.connect() as conn:
        gaps = conn.execute(
            sa.select(ingest_gaps).where(ingest_gaps.c.reason == "clock_backwards")
        ).all()
    assert len(gaps) == 2  # the step back; the reset, from its first poll to its acceptance
    step, reset_gap = sorted(gaps, key=lambda g: _utc(g.gap_start))
    assert _utc(step.gap_start) == _utc(step.gap_end)
    assert _utc(reset_gap.gap_end) > _utc(reset_gap.gap_start)
    assert "taken as reset" in reset_gap.detail and "taken" not in step.detail
    assert len(stored(engine)) == len(store.handed)
    assert result.devices_ok == ["d"]


@pytest.mark.postgres
def test_a_hung_database_never_stalls_polling_and_loses_nothing(pg_server, tmp_path: Path) -> None:
    url = make_url(pg_server.create_database())
    direct = make_engine(url.render_as_string(hide_password=False))
    migrate.upgrade(direct)
    # PostgreSQL behind a proxy that, for 4 s, forwards nothing while keeping the connection open.
    proxy_port = free_port()
    proxy = FaultProxy(proxy_port, url.port or 5432, target_host=url.host or "127.0.0.1")
    engine = make_engine(url.set(port=proxy_port).render_as_string(hide_password=False))
    plant = shared_gateway(tmp_path, free_port(), 4, timeout_s=0.5, retries=0)
    interval = 0.02  # 50 batches a second: the writer's queue of 64 is full 1.3 s into the hang
    with BackgroundSimulator(PlcSimulator(plant, PerDevice(plant))), running(proxy) as loop:
        apply_plant(engine, plant)

        def hang() -> None:
            time.sleep(1.5)
            loop.call_soon_threadsafe(proxy.hold)
            time.sleep(4.0)
            loop.call_soon_threadsafe(proxy.release)

        hung = threading.Thread(target=hang)
        hung.start()
        result, store = poll(engine, plant, tmp_path, duration=7.0, interval=interval)
        hung.join()
    # Polling kept its pace: these devices have no clock, readings carry the time of the response.
    for device in plant.devices:
        times = sorted({r.ts for r in store.handed if r.device == device and r.sensor == "a"})
        pauses = [(b - a).total_seconds() for a, b in pairwise(times)]
        assert max(pauses) < 0.5, f"{device} was not polled for {max(pauses):.1f} s"
    assert result.poll.cycles >= 0.5 * 7.0 / interval
    assert {r.quality for r in store.handed} == {"good"}
    assert result.store.spooled > 0, "the hang should have sent batches to the spool"
    assert result.store.forwarded == result.store.spooled and result.spool_pending == 0
    keys = [(r.device, r.sensor, r.ts) for r in stored(direct)]
    assert len(keys) == len(set(keys))  # 0 duplicated
    assert set(keys) == {(r.device, r.sensor, r.ts) for r in store.handed}  # 0 lost
    engine.dispose()
    direct.dispose()
    pg_server.drop_database(url.render_as_string(hide_password=False))


@pytest.mark.postgres
def test_a_black_holed_database_fails_a_connect_instead_of_hanging() -> None:
    outcome: list[BaseException] = []
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()  # the kernel accepts; nothing ever answers
        engine = make_engine(f"postgresql://postgres@127.0.0.1:{hole.getsockname()[1]}/pdm")
        asked: dict[str, object] = {}
        sa.event.listen(engine, "do_connect", lambda _d, _r, _a, params: asked.update(params))

        def connect() -> None:
            try:
                engine.connect()
            except sa.exc.OperationalError as exc:
                outcome.append(exc)

        trying = threading.Thread(target=connect, daemon=True)
        trying.start()
        trying.join(timeout=CONNECT_TIMEOUT_S + 5)
        hanging = trying.is_alive()
    assert not hanging, "the connect hung on a server that does not answer"
    assert asked["connect_timeout"] == CONNECT_TIMEOUT_S
    assert outcome and "timeout expired" in str(outcome[0])
    engine.dispose()


def test_a_drain_forwards_what_was_spooled_when_it_began(tmp_path: Path) -> None:
    # Batches spooled while the writer is behind keep coming during a drain; it must still return.
    spool = Spool(tmp_path / "spool.sqlite3")
    row = ReadingRow(1, "a", datetime(2026, 1, 1, tzinfo=UTC), 1.0, "good", 1, None)
    spool.append([row] * 3, [])
    handed: list[int] = []

    def write(rows, gaps) -> None:  # type: ignore[no-untyped-def]
        handed.append(len(rows))
        if len(handed) < 50:  # (a drain that took these too would take 50 turns, not 2)
            spool.append([row] * 2, [])  # what the poller spooled meanwhile

    assert spool.drain(write, batch_size=2) == 3
    assert handed == [2, 1]
    assert spool.pending() == 4  # for the next drain
    spool.close()


def _allow_connections(pg_server, name: str, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    with pg_server.admin.connect() as conn:
        conn.execute(
            sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        )
        if not allowed:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": name},
            )


@pytest.mark.postgres
def test_database_down_at_the_start_polls_on_the_cached_registry_and_spools(
    pg_server, tmp_path: Path
) -> None:
    url = pg_server.create_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    name = engine.url.database
    plant, _, _ = two_lines(tmp_path)
    changed = plant_from(
        tmp_path,
        (tmp_path / "plant.yaml").read_text().replace("scale: 0.1", "scale: 0.2", 1),
        port=plant.connections["line_a"].port,
        name="changed.yaml",
    )

    def session(duration: float):  # type: ignore[no-untyped-def]
        spool = Spool(spool_path(tmp_path))
        try:
            store = open_store(engine, plant, spool)
            result = asyncio.run(run_session(plant, store, duration_s=duration, interval_s=0.2))
        finally:
            spool.close()
        return result, store

    with BackgroundSimulator(live(plant)):
        first, _ = session(0.6)  # the database is there: the registry's ids are cached
        assert (tmp_path / "spool" / "registry.json").exists()
        _allow_connections(pg_server, name, False)
        engine.dispose()
        try:
            down, store = session(1.0)
            with pytest.raises(RegistryUnavailable) as refused:
                open_store(engine, changed, Spool(tmp_path / "other" / "spool.sqlite3"))
        finally:
            _allow_connections(pg_server, name, True)
        back, _ = session(0.6)
    assert store.registry_cached_at is not None
    assert down.poll.readings > 0 and down.store.written == 0
    assert down.store.spooled == down.poll.readings and down.spool_pending > 0
    assert back.store.forwarded == down.store.spooled and back.spool_pending == 0
    message = str(refused.value)
    assert "database unreachable" in message and "no cached registry matches" in message
    assert "\n" not in message
    keys = [(r.device, r.sensor, r.ts) for r in stored(engine)]
    assert len(keys) == len(set(keys))  # 0 duplicated
    assert len(keys) == first.poll.readings + down.poll.readings + back.poll.readings  # 0 lost
    engine.dispose()
    pg_server.drop_database(url)
