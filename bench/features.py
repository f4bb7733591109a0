"""Feature windows: readings in PostgreSQL -> stored features, beside a naive baseline.

500 devices x 10 sensors x 2,000 samples (10 million readings, 10 s apart: 5.6 hours) are generated
inside PostgreSQL. Then, each in a process of its own so that peak memory is its own:

- fast: `build_features` over the whole range (1 h windows every 10 min, the data-quality checks,
  and the writes to feature_windows and sensor_quality), readings per second of wall time;
- naive: a per-device pandas loop (read the device's readings, then for every window a
  groupby-apply over its sensors, one INSERT per window) over a subset of the devices, readings
  per second of wall time.

`--quick`: 50 devices x 400 samples. Figures are medians of the repetitions.
Usage: python bench/features.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pdm_orchestration.features.build import build_features
from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.schema import feature_windows

PG_SERVER = os.environ.get("PDM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "pdm_bench_features"
SENSORS = 10
EVERY_S = 10
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = WindowSpec.parse("60min", "10min")


def write_plant(path: Path, devices: int) -> None:
    # One connection per 250 devices: unit ids are unique per connection.
    lines = ["connections:"]
    lines += [f"  - {{id: gw{c}, port: {5020 + c}}}" for c in range((devices - 1) // 250 + 1)]
    lines.append("devices:")
    for d in range(devices):
        lines.append(f"  - {{id: m{d + 1:03d}, connection: gw{d // 250}, unit_id: {d % 250 + 1}}}")
    lines.append("points:")
    for d in range(1, devices + 1):
        for p in range(SENSORS):
            lines.append(
                f"  - {{device: m{d:03d}, name: s{p:02d}, kind: input, address: {2 * p}, "
                "type: float32, valid_range: [-1000, 1000]}"
            )
    path.write_text("\n".join(lines) + "\n")


def prepare(url: str, devices: int, samples: int) -> None:
    """A migrated database with the plant applied and devices x sensors x samples readings."""
    work = Path(tempfile.mkdtemp(prefix="pdm-bench-"))
    write_plant(work / "plant.yaml", devices)
    engine = make_engine(url)
    migrate.upgrade(engine)
    plant = load_plant(work / "plant.yaml")
    apply_plant(engine, plant)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sensor_readings (device_id, sensor, ts, value, quality, "
                "register_map_id) "
                "SELECT m.device_id, m.sensor, :t0 + make_interval(secs => i * :every), "
                "  50 + m.device_id % 7 + 0.001 * i + random() * 2, 'good', m.id "
                "FROM plc_register_map m CROSS JOIN generate_series(0, :n - 1) AS i"
            ),
            {"t0": T0, "every": EVERY_S, "n": samples},
        )
        conn.execute(sa.text("ANALYZE sensor_readings"))
    engine.dispose()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_fast(url: str, end: datetime) -> dict[str, float]:
    engine = make_engine(url)
    started = time.perf_counter()
    summary = build_features(engine, SPEC, T0, end, default_interval_s=EVERY_S)
    seconds = time.perf_counter() - started
    return {
        "readings": summary.readings,
        "seconds": seconds,
        "windows": summary.windows,
        "peak_rss_mb": peak_rss_mb(),
    }


def naive_stats(group: pd.DataFrame) -> pd.Series:
    v = group["value"].to_numpy()
    hours = (group["ts"] - T0).dt.total_seconds().to_numpy() / 3600
    return pd.Series(
        {
            "count": len(v),
            "mean": v.mean(),
            "std": v.std(),
            "min": v.min(),
            "max": v.max(),
            "last": v[-1],
            "ptp": v.max() - v.min(),
            "rms": float(np.sqrt(np.mean(v**2))),
            "slope": np.polyfit(hours, v, 1)[0] if len(v) > 1 else np.nan,
            "good_fraction": float((group["quality"] == "good").mean()),
        }
    )


def run_naive(url: str, end: datetime, devices: int) -> dict[str, float]:
    """Per device: read its readings, then per window a groupby-apply and one INSERT."""
    engine = make_engine(url)
    ends = SPEC.window_ends(T0, end)
    started = time.perf_counter()
    readings = 0
    with engine.begin() as conn:
        conn.execute(feature_windows.delete().where(feature_windows.c.window_spec == "naive"))
        for device_id in range(1, devices + 1):
            frame = pd.read_sql(
                sa.text(
                    "SELECT sensor, ts, value, quality FROM sensor_readings "
                    "WHERE device_id = :d AND ts >= :lo AND ts <= :hi"
                ),
                conn,
                params={"d": device_id, "lo": T0, "hi": end},
            )
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
            readings += len(frame)
            for window_end in ends:
                window = frame[(frame.ts > window_end - SPEC.length) & (frame.ts <= window_end)]
                stats = window.groupby("sensor")[["ts", "value", "quality"]].apply(naive_stats)
                features = {
                    f"{sensor}__{name}": value
                    for sensor, row in stats.iterrows()
                    for name, value in row.items()
                }
                conn.execute(
                    feature_windows.insert().values(
                        device_id=device_id,
                        window_spec="naive",
                        window_start=window_end - SPEC.length,
                        window_end=window_end,
                        features=json.loads(json.dumps(features)),
                        reading_count=len(window),
                        quality_flags={},
                        register_map_ids=[],
                        computed_at=datetime.now(UTC),
                    )
                )
    seconds = time.perf_counter() - started
    return {"readings": readings, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def phase(args: list[str]) -> dict[str, float]:
    """Runs one measurement in a child process; returns what it printed."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"{args[0]} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 devices x 400 samples")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, url, end, extra = args.phase[0], args.phase[1], args.phase[2], args.phase[3:]
        end_time = datetime.fromisoformat(end)
        if kind == "fast":
            result = run_fast(url, end_time)
        else:
            result = run_naive(url, end_time, int(extra[0]))
        print(json.dumps(result))
        return
    devices, samples, naive_devices, repeats = (50, 400, 5, 1) if args.quick else (500, 2000, 25, 3)
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    url = sa.engine.make_url(PG_SERVER).set(database=DATABASE).render_as_string(hide_password=False)
    end = T0 + timedelta(seconds=EVERY_S * samples)
    try:
        started = time.perf_counter()
        prepare(url, devices, samples)
        total = devices * SENSORS * samples
        print(f"{total:,} readings generated in {time.perf_counter() - started:.0f} s", flush=True)
        fast, naive = [], []
        for run in range(repeats):
            fast.append(phase(["fast", url, end.isoformat()]))
            naive.append(phase(["naive", url, end.isoformat(), str(naive_devices)]))
            print(
                f"run {run + 1}/{repeats}: fast {fast[-1]['readings'] / fast[-1]['seconds']:,.0f} "
                f"readings/s ({fast[-1]['seconds']:.1f} s, {fast[-1]['peak_rss_mb']:.0f} MB), "
                f"naive {naive[-1]['readings'] / naive[-1]['seconds']:,.0f} readings/s",
                flush=True,
            )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    fast_rate = statistics.median(f["readings"] / f["seconds"] for f in fast)
    naive_rate = statistics.median(n["readings"] / n["seconds"] for n in naive)
    rss = statistics.median(f["peak_rss_mb"] for f in fast)
    print(
        f"{devices} devices x {SENSORS} sensors x {samples} samples = {total:,} readings; "
        f"{fast[0]['windows']:,} device windows of {SPEC.name}; median of {repeats}"
    )
    print(f"fast (build_features):       {fast_rate:>12,.0f} readings/s, peak RSS {rss:,.0f} MB")
    print(f"naive (per-device pandas):   {naive_rate:>12,.0f} readings/s ({naive_devices} devices)")
    print(
        f"RESULT readings_per_s={fast_rate:.0f} naive_per_s={naive_rate:.0f} "
        f"speedup={fast_rate / naive_rate:.1f} peak_rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
