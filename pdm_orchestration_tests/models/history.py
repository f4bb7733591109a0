"""A small plant with a known life: machines that wear, fail, get repaired, and their readings.

Six pumps, three sensors each, read every 10 minutes for three days. Bearing temperature and
vibration rise with wear (quadratically, toward their alarm limits), flow sags; each pump fails
at known times and is repaired four hours later. Feature windows are built from the readings by
the real code, so models train on what the pipeline would store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.features.build import build_features
from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.events import MaintenanceEvent, record_events
from pdm_orchestration.storage.readings import ReadingRow, ReadingWriter

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 3
EVERY = timedelta(minutes=10)
SPEC = WindowSpec.parse("60min", "10min")
DEVICES = [f"pump_{i}" for i in range(1, 7)]
REPAIR = timedelta(hours=4)

PLANT = (
    """
connections:
  - {id: gw, host: 127.0.0.1, port: 5999}
devices:
"""
    + "".join(
        f"  - {{id: {name}, connection: gw, unit_id: {i + 1}, kind: pump, site: test}}\n"
        for i, name in enumerate(DEVICES)
    )
    + "points:\n"
    + "".join(
        f"  - {{device: {name}, name: bearing_temp, kind: input, address: 0, type: float32, "
        "valid_range: [-40, 200], warn_high: 80, alarm_high: 95}\n"
        f"  - {{device: {name}, name: vibration, kind: input, address: 2, type: float32, "
        "valid_range: [0, 50], warn_high: 7, alarm_high: 11}\n"
        f"  - {{device: {name}, name: flow, kind: input, address: 4, type: float32, "
        "valid_range: [0, 500], warn_low: 60, alarm_low: 40}\n"
        for name in DEVICES
    )
)


def failures_of(index: int) -> list[datetime]:
    """Each pump fails twice, at staggered times."""
    first = T0 + timedelta(hours=20 + 5 * index)
    return [first, first + timedelta(hours=30 + 2 * index)]


def write_plant(folder: Path) -> Path:
    path = folder / "plant.yaml"
    path.write_text(PLANT)
    return path


def seed_history(engine: Engine, folder: Path, *, devices: int = len(DEVICES)) -> dict:
    """Apply the plant, write readings and maintenance events, build the feature windows."""
    plant = load_plant(write_plant(folder))
    apply_plant(engine, plant)
    with engine.connect() as conn:
        ids = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                sa.text(
                    "SELECT d.name, m.sensor, d.id, m.id FROM plc_register_map m "
                    "JOIN devices d ON d.id = m.device_id WHERE m.valid_to IS NULL"
                )
            )
        }
    rng = np.random.default_rng(7)
    steps = int(timedelta(days=DAYS) / EVERY)
    times = [T0 + EVERY * (k + 1) for k in range(steps)]
    rows, events = [], []
    for index, name in enumerate(DEVICES[:devices]):
        fails = failures_of(index)
        for when in fails:
            events.append(MaintenanceEvent(name, when, "failure", "bearing", "test failure"))
            events.append(MaintenanceEvent(name, when + REPAIR, "repair", "bearing", "replaced"))
        life_start = T0 - timedelta(hours=10 + 3 * index)
        for ts in times:
            passed = [f for f in fails if f <= ts]
            if passed and ts < passed[-1] + REPAIR:
                continue  # down: no readings while under repair
            if passed:
                life_start = passed[-1] + REPAIR
            upcoming = [f for f in fails if f > ts]
            end = upcoming[0] if upcoming else ts + timedelta(hours=40)
            wear = (ts - life_start) / (end - life_start)
            values = {
                "bearing_temp": 60 + 32 * wear**2 + rng.normal(0, 0.8),
                "vibration": 3 + 7 * wear**2 + rng.normal(0, 0.2),
                "flow": 120 - 50 * wear**2 + rng.normal(0, 1.5),
            }
            for sensor, value in values.items():
                device_id, map_id = ids[(name, sensor)]
                rows.append(ReadingRow(device_id, sensor, ts, float(value), "good", map_id, None))
    ReadingWriter(engine).write(rows)
    record_events(engine, events)
    summary = build_features(
        engine, SPEC, T0, T0 + timedelta(days=DAYS), default_interval_s=EVERY.total_seconds()
    )
    return {"readings": len(rows), "windows": summary.windows, "events": len(events)}
