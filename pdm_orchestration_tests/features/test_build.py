"""Building and storing windows on PostgreSQL and SQLite: idempotent, complete, traceable."""

import json
from datetime import timedelta

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.defs.features.assets import feature_windows as feature_windows_asset
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.features.build import build_features
from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.readings import ReadingRow, ReadingWriter
from pdm_orchestration.storage.schema import (
    feature_windows,
    ingest_gaps,
    plc_register_map,
    sensor_quality,
    sensor_readings,
)
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.features.test_windows import HOUR, T0

SPEC = WindowSpec.parse("60min", "10min")


def seed(
    engine: Engine, hours: float = 3, devices: int = 3
) -> dict[tuple[str, str], tuple[int, int]]:
    """The example plant applied, and `hours` of 10-second readings of its first devices."""
    plant = load_plant(EXAMPLE_PLANT)
    apply_plant(engine, plant)
    query = sa.text(
        "SELECT d.name, m.sensor, d.id, m.id, m.physical_min, m.physical_max "
        "FROM plc_register_map m JOIN devices d "
        "ON d.id = m.device_id WHERE m.valid_to IS NULL AND m.role = 'value' "
        "AND m.data_type <> 'string' ORDER BY d.id"
    )
    with engine.connect() as conn:
        found = conn.execute(query).all()
    ids = {(r[0], r[1]): (r[2], r[3]) for r in found}
    # Values inside each point's valid range, so that clean data passes every check.
    span = {(r[0], r[1]): (r[4] or 0.0, 100.0 if r[5] is None else r[5]) for r in found}
    chosen = sorted({name for name, _ in ids})[:devices]
    ids = {k: v for k, v in ids.items() if k[0] in chosen}
    rng = np.random.default_rng(0)
    steps = int(hours * 360)
    rows = [
        ReadingRow(
            device_id,
            sensor,
            T0 + timedelta(seconds=10 * i),
            float(span[(name, sensor)][0] + np.ptp(span[(name, sensor)]) * rng.uniform(0.4, 0.6)),
            "good",
            map_id,
            None,
        )
        for (name, sensor), (device_id, map_id) in ids.items()
        for i in range(steps)
    ]
    ReadingWriter(engine).write(rows)
    return ids


def table_rows(engine: Engine, table: sa.Table) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(table).order_by(table.c.id)).all()


def test_build_stores_windows_and_quality_and_a_rerun_replaces_them(engine: Engine) -> None:
    ids = seed(engine)
    devices = {device_id for device_id, _ in ids.values()}
    summary = build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    assert summary.windows == 6 * len(devices)
    assert summary.readings == 360 * len(ids)
    first = table_rows(engine, feature_windows)
    assert len(first) == summary.windows
    row = first[0]
    features = row.features if isinstance(row.features, dict) else json.loads(row.features)
    sensors = {sensor for (_, sensor), (device_id, _) in ids.items() if device_id == row.device_id}
    assert set(features) == {
        f"{s}__{f}"
        for s in sensors
        for f in (
            "count",
            "mean",
            "std",
            "min",
            "max",
            "last",
            "ptp",
            "rms",
            "slope",
            "good_fraction",
        )
    }
    assert row.window_spec == "60min/10min" and row.reading_count == 360 * len(sensors)
    map_ids = (
        row.register_map_ids
        if isinstance(row.register_map_ids, list)
        else json.loads(row.register_map_ids)
    )
    assert sorted(map_ids) == sorted(m for (_, s), (d, m) in ids.items() if d == row.device_id)
    assert table_rows(engine, sensor_quality) == []  # clean data: no sensor window failed

    again = build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    assert again.windows == summary.windows
    second = table_rows(engine, feature_windows)
    assert [r.id for r in second] == [r.id for r in first]  # replaced in place, nothing added
    assert [r.features for r in second] == [r.features for r in first]


def test_readings_that_are_gone_take_their_windows_with_them(engine: Engine) -> None:
    ids = seed(engine)
    build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    device_id = next(iter(ids.values()))[0]
    with engine.begin() as conn:
        conn.execute(sensor_readings.delete().where(sensor_readings.c.device_id == device_id))
    build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    left = {r.device_id for r in table_rows(engine, feature_windows)}
    assert device_id not in left and left


def test_bad_data_is_flagged_per_sensor_and_window(engine: Engine) -> None:
    ids = seed(engine, devices=2)
    (device, sensor), (device_id, _) = next(iter(ids.items()))
    with engine.begin() as conn:
        conn.execute(
            sensor_readings.update()
            .where(sensor_readings.c.device_id == device_id, sensor_readings.c.sensor == sensor)
            .values(value=7.0)
        )
        conn.execute(
            ingest_gaps.insert(),
            [
                {
                    "device_id": device_id,
                    "sensor": None,
                    "gap_start": T0 + timedelta(minutes=95),
                    "gap_end": T0 + timedelta(minutes=96),
                    "reason": "timeout",
                }
            ],
        )
    summary = build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    assert summary.failures["flatline"] == 6
    assert summary.examples["flatline"][0][:2] == (device, sensor)
    assert summary.failures["gaps"] > 0
    with engine.connect() as conn:
        flagged = conn.execute(
            sa.select(sensor_quality.c.failed, sensor_quality.c.blocking).where(
                sensor_quality.c.device_id == device_id, sensor_quality.c.sensor == sensor
            )
        ).all()
        windows = (
            conn.execute(
                sa.select(feature_windows.c.quality_flags).where(
                    feature_windows.c.device_id == device_id
                )
            )
            .scalars()
            .all()
        )
    assert all(blocking for _, blocking in flagged)
    assert all("flatline" in (f if isinstance(f, list) else json.loads(f)) for f, _ in flagged)
    assert all(sensor in (w if isinstance(w, dict) else json.loads(w)) for w in windows)


def test_register_map_change_mid_window_keeps_both_versions(engine: Engine) -> None:
    ids = seed(engine, devices=1)
    (_, sensor), (device_id, map_id) = next(iter(ids.items()))
    change = T0 + timedelta(minutes=95)
    with engine.begin() as conn:
        closed = plc_register_map.update().where(plc_register_map.c.id == map_id)
        conn.execute(closed.values(valid_from=T0 - HOUR, valid_to=change))
        new_id = conn.execute(
            sa.insert(plc_register_map)
            .from_select(
                [c.name for c in plc_register_map.c if c.name != "id"],
                sa.select(*[c for c in plc_register_map.c if c.name != "id"]).where(
                    plc_register_map.c.id == map_id
                ),
            )
            .returning(plc_register_map.c.id)
        ).scalar_one()
        conn.execute(
            sensor_readings.update()
            .where(
                sensor_readings.c.device_id == device_id,
                sensor_readings.c.sensor == sensor,
                sensor_readings.c.ts > change,
            )
            .values(register_map_id=new_id)
        )
        opened = plc_register_map.update().where(plc_register_map.c.id == new_id)
        conn.execute(opened.values(valid_from=change, valid_to=None))
    build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(feature_windows.c.window_end, feature_windows.c.register_map_ids).order_by(
                feature_windows.c.window_end
            )
        ).all()
    by_end = {
        r.window_end.replace(tzinfo=None) if r.window_end.tzinfo is None else r.window_end: (
            r.register_map_ids
            if isinstance(r.register_map_ids, list)
            else json.loads(r.register_map_ids)
        )
        for r in rows
    }
    last = by_end[max(by_end)]
    first = by_end[min(by_end)]
    assert map_id in last and new_id in last
    assert new_id not in first


def test_an_empty_range_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="empty range"):
        build_features(engine, SPEC, T0 + HOUR, T0 + HOUR, default_interval_s=10)


def test_feature_windows_asset_backfills_a_range_in_one_run(db_url: str, engine: Engine) -> None:
    seed(engine, devices=2)
    resources = {
        "database": PostgresResource(database_url=db_url),
        "plant": PlantResource(plant_file=str(EXAMPLE_PLANT), poll_interval_seconds="10"),
    }
    start = T0 + HOUR
    result = dg.materialize(
        [feature_windows_asset],
        resources=resources,
        tags={  # a single-run backfill of two hourly partitions
            "dagster/asset_partition_range_start": start.strftime("%Y-%m-%d-%H:%M"),
            "dagster/asset_partition_range_end": (start + HOUR).strftime("%Y-%m-%d-%H:%M"),
        },
        raise_on_error=False,
    )
    assert result.success
    materialization = result.asset_materializations_for_node("feature_windows")[0]
    assert materialization.metadata["windows"].value == 2 * 12
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {
        "stale_sensor",
        "flatline",
        "out_of_range",
        "read_error_rate",
        "spikes_and_jumps",
        "gaps",
        "duplicate_timestamps",
    }
    assert all(c.passed for c in checks.values())
    assert checks["stale_sensor"].metadata["sensor_windows"].value > 0


def test_feature_windows_asset_refuses_a_bad_window(db_url: str) -> None:
    resources = {
        "database": PostgresResource(database_url=db_url),
        "plant": PlantResource(plant_file=str(EXAMPLE_PLANT)),
    }
    result = dg.materialize(
        [feature_windows_asset],
        resources=resources,
        partition_key="2026-03-01-01:00",
        run_config={"ops": {"feature_windows": {"config": {"window": "60min", "stride": "7min"}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("feature_windows")
    assert "not a whole number of strides" in str(failure.error)


def test_features_build_command(db_url: str, engine: Engine, monkeypatch) -> None:
    from click.testing import CliRunner

    from pdm_orchestration.cli import main

    seed(engine, devices=2)
    monkeypatch.setenv("DATABASE_URL", db_url)
    window = ["--start", (T0 + HOUR).isoformat(), "--end", (T0 + 2 * HOUR).isoformat()]
    result = CliRunner().invoke(main, ["features", "build", *window])
    assert result.exit_code == 0, result.output
    assert "12 device windows of 60min/10min" in result.output
    assert "every check passed" in result.output
    bad = CliRunner().invoke(main, ["features", "build", *window, "--stride", "7min"])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines()[-1].startswith("error: window 1:00:00 is not a whole")
    backwards = CliRunner().invoke(
        main, ["features", "build", "--start", "2026-03-02", "--end", "2026-03-01"]
    )
    assert backwards.exit_code == 1 and "is not before --end" in backwards.output


def test_readings_checks_judge_the_last_hour_and_name_the_culprit(engine: Engine) -> None:
    from pdm_orchestration.defs.features.checks import check_results
    from pdm_orchestration.features.build import assess_latest

    ids = seed(engine, devices=2)
    (device, sensor), (device_id, _) = next(iter(ids.items()))
    stuck = sensor_readings.update().where(
        sensor_readings.c.device_id == device_id,
        sensor_readings.c.sensor == sensor,
        sensor_readings.c.ts > T0 + 2 * HOUR,
    )
    with engine.begin() as conn:
        conn.execute(stuck.values(value=3.0))
    clean = assess_latest(engine, T0 + 2 * HOUR + timedelta(minutes=5), default_interval_s=10)
    assert clean.sensor_windows == len(ids) and not any(clean.failures.values())
    summary = assess_latest(engine, T0 + 3 * HOUR, default_interval_s=10)
    assert summary.failures["flatline"] == 1
    assert summary.examples["flatline"] == [(device, sensor, (T0 + 3 * HOUR).isoformat())]
    warn = {r.check_name: r for r in check_results(summary, "plc_readings")}
    assert not warn["flatline"].passed and warn["gaps"].passed
    assert warn["flatline"].severity == dg.AssetCheckSeverity.WARN
    share = 1 / summary.sensor_windows
    tolerant = {r.check_name: r for r in check_results(summary, "feature_windows", share)}
    strict = {r.check_name: r for r in check_results(summary, "feature_windows", share / 2)}
    assert tolerant["flatline"].passed and not strict["flatline"].passed
    assert strict["flatline"].severity == dg.AssetCheckSeverity.ERROR


def test_device_groups_loaded_ahead_give_the_same_windows(engine: Engine) -> None:
    seed(engine, devices=3)
    build_features(engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10)
    whole = [(r.device_id, r.window_end, r.features) for r in table_rows(engine, feature_windows)]
    build_features(
        engine, SPEC, T0 + HOUR, T0 + 2 * HOUR, default_interval_s=10, devices_per_chunk=1
    )
    grouped = [(r.device_id, r.window_end, r.features) for r in table_rows(engine, feature_windows)]
    assert grouped == whole and len({d for d, _, _ in whole}) == 3


def test_cmapss_cycles_give_windows_of_the_last_n_cycles(engine: Engine, tmp_path) -> None:
    """The replayed C-MAPSS engines (one reading per cycle) through the same build as the plant."""
    from pdm_orchestration.modbus.replay import cmapss_plant, engine_name, read_cmapss, write_plant
    from pdm_orchestration_tests.test_cli_ingest import CMAPSS_TRAIN

    data = read_cmapss(CMAPSS_TRAIN)
    data = data[data.unit <= 3]
    plant_file = tmp_path / "cmapss.yaml"
    write_plant(cmapss_plant(data, port=5020), plant_file, CMAPSS_TRAIN)
    apply_plant(engine, load_plant(plant_file))
    with engine.connect() as conn:
        ids = {
            (r.name, r.sensor): (r.device_id, r.id)
            for r in conn.execute(
                sa.text(
                    "SELECT d.name, m.sensor, m.device_id, m.id FROM plc_register_map m "
                    "JOIN devices d ON d.id = m.device_id"
                )
            )
        }
    cycle = timedelta(hours=1)  # as the replay stamps cycles (--cycle-seconds 3600)
    rows = [
        ReadingRow(device_id, "sensor_11", T0 + r.cycle * cycle, r.sensor_11, "good", map_id, None)
        for r in data.itertuples()
        for device_id, map_id in [ids[(engine_name(r.unit), "sensor_11")]]
    ]
    ReadingWriter(engine).write(rows)
    spec = WindowSpec.parse("30samples")
    last = T0 + int(data.cycle.max()) * cycle
    summary = build_features(engine, spec, T0, last, default_interval_s=10)
    assert summary.windows == len(data)  # one window per engine cycle
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                feature_windows.c.device_id,
                feature_windows.c.window_end,
                feature_windows.c.features,
            ).where(feature_windows.c.window_spec == "30samples")
        ).all()
    expected = data.groupby("unit")["sensor_11"].rolling(30, min_periods=1).mean().to_numpy()
    by_key = {}
    for device_id, window_end, features in stored:
        end = window_end if window_end.tzinfo else window_end.replace(tzinfo=T0.tzinfo)
        by_key[(device_id, end)] = features if isinstance(features, dict) else json.loads(features)
    got = [
        by_key[(ids[(engine_name(r.unit), "sensor_11")][0], T0 + r.cycle * cycle)][
            "sensor_11__mean"
        ]
        for r in data.itertuples()
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # Rebuilding the last 20 cycles alone still uses the 29 cycles before each of them.
    build_features(engine, spec, last - 20 * cycle, last, default_interval_s=10)
    with engine.connect() as conn:
        counts = (
            conn.execute(
                sa.select(feature_windows.c.features).where(
                    feature_windows.c.window_spec == "30samples",
                    feature_windows.c.window_end > last - 20 * cycle,
                )
            )
            .scalars()
            .all()
        )
    assert counts and all(
        (f if isinstance(f, dict) else json.loads(f))["sensor_11__count"] == 30 for f in counts
    )
