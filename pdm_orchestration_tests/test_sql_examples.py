"""The queries in sql/ run on PostgreSQL and SQLite and return what they promise."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.schema import devices, sensor_readings
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT, PROJECT_ROOT

SQL = PROJECT_ROOT / "sql"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def run_sql(engine: Engine, name: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text((SQL / name).read_text())).all()


def test_every_sql_file_is_exercised() -> None:
    exercised = {
        "current_register_map.sql",
        "readings_with_decoding.sql",
        "register_map_history.sql",
        "prediction_lineage.sql",  # in models/test_scoring.py, which makes predictions
    }
    assert {p.name for p in SQL.glob("*.sql")} == exercised


def test_queries_follow_the_register_map_versions(engine: Engine, tmp_path: Path) -> None:
    plant = load_plant(EXAMPLE_PLANT)
    apply_plant(engine, plant, now=T0)
    current = run_sql(engine, "current_register_map.sql")
    assert len(current) == len(plant.points)
    compressor = next(r for r in current if r.device == "compressor_01" and r.sensor == "oil_temp")
    assert (compressor.address, compressor.address_in_manual) == (14, 15)  # address_base 1

    with engine.connect() as conn:
        pump = conn.scalar(sa.select(devices.c.id).where(devices.c.name == "pump_01"))
    readings = [
        {
            "device_id": pump,
            "sensor": "discharge_pressure",
            "ts": T0 + timedelta(hours=h),
            "value": 4.0,
        }
        for h in (1, 2, 30, 31)
    ]
    with engine.begin() as conn:
        conn.execute(sensor_readings.insert(), readings)
    text = EXAMPLE_PLANT.read_text()
    old = "{device: pump_01, name: discharge_pressure, kind: input, address: 14, type: int16, scale: 0.01"
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace(old, old.replace("scale: 0.01", "scale: 0.001"), 1))
    apply_plant(engine, load_plant(changed), now=T0 + timedelta(days=1))

    decoded = run_sql(engine, "readings_with_decoding.sql")
    # Ordered by time: the two readings before the change keep the old scale.
    assert [r.scale for r in decoded] == [0.01, 0.01, 0.001, 0.001]
    assert len({r.register_map_id for r in decoded}) == 2
    history = run_sql(engine, "register_map_history.sql")
    assert [(r.device, r.sensor, r.scale) for r in history] == [
        ("pump_01", "discharge_pressure", 0.01),
        ("pump_01", "discharge_pressure", 0.001),
    ]
