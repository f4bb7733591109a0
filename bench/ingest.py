"""Ingestion throughput: Modbus -> decode -> database, beside two baselines from the same run.

A simulated plant of 200 devices x 20 float32 points (`--quick`: 20 devices) is served by
`pdm-orch simulate` in a process of its own. Measured, each for the same length of time:

- e2e_pg / e2e_sqlite: the real polling session (planner, async poller, numpy decoding, bulk
  writes) polling as fast as it can, readings committed per second;
- raw: pymodbus block reads of the same registers with no decoding and no writing, float32 values
  read per second (the ceiling the server and the client library allow);
- naive: one request per point, pymodbus's per-value decoding, one INSERT per reading.

Each figure is the median of the repetitions. Usage: python bench/ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sqlalchemy as sa
from pymodbus.client import AsyncModbusTcpClient

from pdm_orchestration.modbus.session import IngestStore, run_session
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.spool import Spool

PG_SERVER = os.environ.get("PDM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POINTS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_plant(path: Path, devices: int, port: int) -> None:
    lines = [
        "connections:",
        f"  - {{id: bench, port: {port}, timeout_s: 2.0, retries: 0}}",
        "devices:",
    ]
    lines += [
        f"  - {{id: m{d:03d}, connection: bench, unit_id: {d}}}" for d in range(1, devices + 1)
    ]
    lines.append("points:")
    for d in range(1, devices + 1):
        for p in range(POINTS):
            lines.append(
                f"  - {{device: m{d:03d}, name: temp_{p:02d}, kind: input, address: {2 * p}, "
                "type: float32, valid_range: [-100, 1000]}"
            )
    path.write_text("\n".join(lines) + "\n")


def start_simulator(plant: Path, port: int) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("pdm-orch")),
        "--log-level",
        "WARNING",
        "simulate",
        "--plant",
        str(plant),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("serving "):
            return process
    raise SystemExit(f"the simulator did not start: {process.communicate()[0]}")


async def raw_rate(plant, seconds: float) -> float:
    """float32 values read per second with bare pymodbus block reads."""
    connection = next(iter(plant.connections.values()))
    client = AsyncModbusTcpClient(connection.host, port=connection.port, timeout=2, retries=0)
    await client.connect()
    units = sorted({p.unit_id for p in plant.points})
    values, deadline = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        for unit in units:
            response = await client.read_input_registers(0, count=2 * POINTS, device_id=unit)
            assert not response.isError()
            values += POINTS
    elapsed = time.monotonic() - started
    client.close()
    return values / elapsed


async def naive_rate(plant, engine: sa.Engine, seconds: float) -> float:
    """Readings per second: one request per point, per-value decoding, one INSERT per reading."""
    connection = next(iter(plant.connections.values()))
    client = AsyncModbusTcpClient(connection.host, port=connection.port, timeout=2, retries=0)
    await client.connect()
    with engine.connect() as db:
        ids = {
            (r.name, r.sensor): (r.device_id, r.id)
            for r in db.execute(
                sa.text(
                    "SELECT d.name, m.sensor, m.device_id, m.id FROM plc_register_map m "
                    "JOIN devices d ON d.id = m.device_id WHERE m.valid_to IS NULL"
                )
            )
        }
    insert = sa.text(
        "INSERT INTO sensor_readings (device_id, sensor, ts, value, quality, register_map_id) "
        "VALUES (:d, :s, :ts, :v, 'good', :m)"
    )
    readings, deadline = 0, time.monotonic() + seconds
    started = time.monotonic()
    from datetime import UTC, datetime

    while time.monotonic() < deadline:
        for point in plant.points:
            response = await client.read_input_registers(
                point.address, count=2, device_id=point.unit_id
            )
            value = client.convert_from_registers(response.registers, client.DATATYPE.FLOAT32)
            device_id, map_id = ids[(point.device, point.sensor)]
            with engine.begin() as db:
                db.execute(
                    insert,
                    {
                        "d": device_id,
                        "s": point.sensor,
                        "ts": datetime.now(UTC),
                        "v": float(value),
                        "m": map_id,
                    },
                )
            readings += 1
            if time.monotonic() >= deadline:
                break
    elapsed = time.monotonic() - started
    client.close()
    return readings / elapsed


def e2e_rate(plant, engine: sa.Engine, seconds: float, spool_dir: Path) -> float:
    """Readings committed per second by the real polling session, polling flat out."""
    store = IngestStore(engine, plant, Spool(spool_dir / "spool.sqlite3"))
    started = time.monotonic()
    result = asyncio.run(run_session(plant, store, duration_s=seconds, interval_s=0.001))
    elapsed = time.monotonic() - started
    store.spool.close()
    assert result.poll.bad_readings == 0, result.summary()
    return store.stats.written / elapsed


def fresh_pg(admin: sa.Engine, name: str) -> str:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def prepared(url: str, plant) -> sa.Engine:
    engine = make_engine(url)
    migrate.upgrade(engine)
    apply_plant(engine, plant)
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 devices, short runs")
    args = parser.parse_args()
    devices, seconds, repeats = (20, 2.0, 1) if args.quick else (200, 8.0, 5)
    work = Path(tempfile.mkdtemp(prefix="pdm-bench-"))
    port = free_port()
    plant_file = work / "plant.yaml"
    write_plant(plant_file, devices, port)
    plant = load_plant(plant_file, default_port=port)
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    simulator = start_simulator(plant_file, port)
    figures: dict[str, list[float]] = {"raw": [], "e2e_pg": [], "e2e_sqlite": [], "naive": []}
    try:
        for run in range(repeats):
            figures["raw"].append(asyncio.run(raw_rate(plant, seconds)))
            pg = prepared(fresh_pg(admin, "pdm_bench_ingest"), plant)
            figures["e2e_pg"].append(e2e_rate(plant, pg, seconds, work))
            pg.dispose()
            lite = prepared(f"sqlite:///{work / f'bench{run}.db'}", plant)
            figures["e2e_sqlite"].append(e2e_rate(plant, lite, seconds, work))
            lite.dispose()
            naive = prepared(fresh_pg(admin, "pdm_bench_naive"), plant)
            figures["naive"].append(asyncio.run(naive_rate(plant, naive, seconds / 2)))
            naive.dispose()
            print(
                f"run {run + 1}/{repeats}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in figures.items()),
                flush=True,
            )
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        with admin.connect() as conn:
            for name in ("pdm_bench_ingest", "pdm_bench_naive"):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    median = {k: statistics.median(v) for k, v in figures.items()}
    # The ratio of each run (raw and end to end measured minutes apart on the same server).
    ratio = statistics.median(
        pg / raw for pg, raw in zip(figures["e2e_pg"], figures["raw"], strict=True)
    )
    print(
        f"plant: {devices} devices x {POINTS} float32 points, {seconds:g} s per measurement, "
        f"median of {repeats}"
    )
    print(f"raw pymodbus block reads (no decode, no write): {median['raw']:>10,.0f} values/s")
    print(
        f"end to end, PostgreSQL (COPY):                  {median['e2e_pg']:>10,.0f} readings/s "
        f"({ratio:.0%} of raw, median of the runs' ratios)"
    )
    print(
        f"end to end, SQLite:                             {median['e2e_sqlite']:>10,.0f} readings/s"
    )
    print(
        f"naive (a request and an INSERT per reading):    {median['naive']:>10,.0f} readings/s "
        f"(end to end is {median['e2e_pg'] / median['naive']:.0f}x faster)"
    )
    print(
        f"RESULT e2e_pg={median['e2e_pg']:.0f} raw={median['raw']:.0f} naive={median['naive']:.0f} "
        f"ratio_raw={ratio:.2f} e2e_sqlite={median['e2e_sqlite']:.0f}"
    )


if __name__ == "__main__":
    main()
