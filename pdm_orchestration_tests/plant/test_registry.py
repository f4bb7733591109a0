from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant, registry_summary
from pdm_orchestration.storage.schema import (
    devices,
    plc_connections,
    plc_register_map,
    sensor_readings,
)
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
REGISTRY_TABLES = (plc_connections, devices, plc_register_map)


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as db:
        return {
            table.name: [
                tuple(row) for row in db.execute(sa.select(table).order_by(*table.primary_key))
            ]
            for table in REGISTRY_TABLES
        }


def edited_plant(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_PLANT.read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_apply_twice_changes_nothing_the_second_time(engine: Engine) -> None:
    plant = load_plant(EXAMPLE_PLANT)
    first = apply_plant(engine, plant, now=T0)
    assert first.changes == len(plant.connections) + len(plant.devices) + len(plant.points)
    before = snapshot(engine)
    second = apply_plant(engine, plant, now=T0 + timedelta(hours=1))
    assert second.changes == 0
    assert second.summary() == "0 changes"
    assert snapshot(engine) == before  # not one row touched, updated_at included
    assert registry_summary(engine)["points"] == len(plant.points)


def test_changed_decoding_opens_a_new_version_and_old_readings_keep_theirs(
    engine: Engine, tmp_path: Path
) -> None:
    apply_plant(engine, load_plant(EXAMPLE_PLANT), now=T0)
    with engine.connect() as db:
        device_id = db.scalar(sa.select(devices.c.id).where(devices.c.name == "pump_01"))
        old_id = db.scalar(
            sa.select(plc_register_map.c.id).where(
                plc_register_map.c.device_id == device_id,
                plc_register_map.c.sensor == "discharge_pressure",
            )
        )
    reading_ts = T0 + timedelta(minutes=30)
    with engine.begin() as db:
        db.execute(
            sensor_readings.insert().values(
                device_id=device_id, sensor="discharge_pressure", ts=reading_ts, value=4.2
            )
        )
    changed = edited_plant(
        tmp_path,
        "{device: pump_01, name: discharge_pressure, kind: input, address: 14, type: int16, scale: 0.01",
        "{device: pump_01, name: discharge_pressure, kind: input, address: 14, type: int16, scale: 0.001",
    )
    t1 = T0 + timedelta(hours=2)
    report = apply_plant(engine, load_plant(changed), now=t1)
    assert report.changes == 1
    assert report.counts["points versioned"] == 1
    assert "scale" in report.details[0]
    with engine.connect() as db:
        versions = db.execute(
            sa.select(plc_register_map)
            .where(
                plc_register_map.c.device_id == device_id,
                plc_register_map.c.sensor == "discharge_pressure",
            )
            .order_by(plc_register_map.c.valid_from)
        ).all()
        assert [(v.scale, v.valid_to is None) for v in versions] == [(0.01, False), (0.001, True)]
        assert versions[0].id == old_id
        # The reading joins to the version valid when it was read.
        decoded_with = db.execute(
            sa.select(plc_register_map.c.id, plc_register_map.c.scale)
            .select_from(sensor_readings)
            .join(
                plc_register_map,
                sa.and_(
                    plc_register_map.c.device_id == sensor_readings.c.device_id,
                    plc_register_map.c.sensor == sensor_readings.c.sensor,
                    plc_register_map.c.valid_from <= sensor_readings.c.ts,
                    sa.or_(
                        plc_register_map.c.valid_to.is_(None),
                        sensor_readings.c.ts < plc_register_map.c.valid_to,
                    ),
                ),
            )
        ).one()
        assert tuple(decoded_with) == (old_id, 0.01)
        # Nothing else moved: every other point still has exactly one version.
        total = db.scalar(sa.select(sa.func.count()).select_from(plc_register_map))
    assert total == len(load_plant(EXAMPLE_PLANT).points) + 1
    assert apply_plant(engine, load_plant(changed), now=t1 + timedelta(hours=1)).changes == 0


def test_removed_device_is_deactivated_and_its_readings_kept(
    engine: Engine, tmp_path: Path
) -> None:
    plant = load_plant(EXAMPLE_PLANT)
    apply_plant(engine, plant, now=T0)
    with engine.connect() as db:
        spindle_id = db.scalar(sa.select(devices.c.id).where(devices.c.name == "spindle_02"))
    with engine.begin() as db:
        db.execute(
            sensor_readings.insert(),
            [
                {
                    "device_id": spindle_id,
                    "sensor": "spindle_temp",
                    "ts": T0 + timedelta(minutes=m),
                    "value": 40.0,
                }
                for m in range(5)
            ],
        )
    lines = [
        line for line in EXAMPLE_PLANT.read_text().splitlines() if "device: spindle_02" not in line
    ]
    text = "\n".join(lines)
    start = text.index("  - id: spindle_02")
    end = text.index("\n\npoints:")
    reduced = tmp_path / "reduced.yaml"
    reduced.write_text(text[:start].rstrip("\n") + text[end:] + "\n")

    report = apply_plant(engine, load_plant(reduced), now=T0 + timedelta(days=1))
    assert report.counts["devices deactivated"] == 1
    assert report.counts["points closed"] == len(plant.points_of("spindle_02"))
    with engine.connect() as db:
        assert db.scalar(sa.select(devices.c.active).where(devices.c.id == spindle_id)) is False
        open_points = db.scalar(
            sa.select(sa.func.count()).where(
                plc_register_map.c.device_id == spindle_id, plc_register_map.c.valid_to.is_(None)
            )
        )
        kept = db.scalar(
            sa.select(sa.func.count()).where(sensor_readings.c.device_id == spindle_id)
        )
    assert open_points == 0
    assert kept == 5

    back = apply_plant(engine, plant, now=T0 + timedelta(days=2))
    assert back.counts["devices reactivated"] == 1
    assert back.counts["points added"] == len(plant.points_of("spindle_02"))
    with engine.connect() as db:
        assert db.scalar(sa.select(devices.c.active).where(devices.c.id == spindle_id)) is True


def test_connection_change_updates_in_place(engine: Engine, tmp_path: Path) -> None:
    apply_plant(engine, load_plant(EXAMPLE_PLANT), now=T0)
    changed = edited_plant(tmp_path, "    timeout_s: 1.0\n", "    timeout_s: 2.5\n")
    report = apply_plant(engine, load_plant(changed), now=T0 + timedelta(hours=1))
    assert dict(report.counts) == {"connections updated": 1}
    with engine.connect() as db:
        assert db.scalar(sa.select(plc_connections.c.timeout_s)) == 2.5


def test_dry_run_reports_but_changes_nothing(engine: Engine) -> None:
    report = apply_plant(engine, load_plant(EXAMPLE_PLANT), now=T0, dry_run=True)
    assert report.counts["devices added"] == 12
    assert snapshot(engine) == {table.name: [] for table in REGISTRY_TABLES}
