"""Prediction backfills: one run for the whole range, beside one run per hourly partition.

A RUL model is trained (on a small database of its own, 10 devices x 10 days with failures) and
promoted; then 100 devices x 30 days of feature windows (an hour every 10 minutes: 432,000 windows)
are generated in PostgreSQL, and the `maintenance_predictions` asset backfills the 720 hourly
partitions twice, on one Dagster instance (SQLite storage, in-process runs):

- single run: one run over the whole range (what `BackfillPolicy.single_run()` launches);
- per partition: one run per hourly partition, the same range (the cheapest form of a backfill
  without it: no run launcher, no daemon, no subprocess per run).

Both write the same rows (the second upserts over the first). Figures: predictions per second of
the single run, and both wall times. `--quick`: 10 devices x 12 hours.
Usage: python bench/scoring.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dagster as dg
import sqlalchemy as sa

from pdm_orchestration.defs.resources import MlflowResource, PostgresResource
from pdm_orchestration.defs.scoring.assets import maintenance_predictions
from pdm_orchestration.models import champion, training
from pdm_orchestration.models.tracking import ModelStore
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine

PG_SERVER = os.environ.get("PDM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SENSORS = ("bearing_temp", "vibration", "flow", "current", "pressure")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
LIFE_H = 120  # every device wears out and fails every 120 hours, staggered


def write_plant(path: Path, devices: int) -> None:
    lines = ["connections:", "  - {id: gw, port: 5020}", "devices:"]
    lines += [f"  - {{id: m{d:03d}, connection: gw, unit_id: {d}}}" for d in range(1, devices + 1)]
    lines.append("points:")
    for d in range(1, devices + 1):
        for p, sensor in enumerate(SENSORS):
            lines.append(
                f"  - {{device: m{d:03d}, name: {sensor}, kind: input, address: {2 * p}, "
                "type: float32}"
            )
    path.write_text("\n".join(lines) + "\n")


def features_sql(hours: int) -> str:
    """Feature windows of every device, with a wear cycle that ends in a failure."""
    wear = f"mod(extract(epoch from t - :t0) / 3600 + d.id * 17, {LIFE_H}) / {LIFE_H}"
    pairs = []
    for k, sensor in enumerate(SENSORS):
        level = f"(50 + 10 * {k} + 30 * w * w)"
        pairs += [
            f"'{sensor}__last', {level} + random()",
            f"'{sensor}__mean', {level}",
            f"'{sensor}__std', 0.5 + random() * 0.1",
            f"'{sensor}__slope', 60 * w / {LIFE_H} + (random() - 0.5) * 0.1",
        ]
    return (
        "INSERT INTO feature_windows (device_id, window_start, window_end, features, "
        "reading_count, quality_flags, register_map_ids, computed_at, window_spec) "
        "SELECT d.id, t - interval '60 minutes', t, jsonb_build_object("
        + ", ".join(pairs)
        + "), 360, '{}'::jsonb, '[]'::jsonb, now(), '60min/10min' "
        f"FROM devices d CROSS JOIN generate_series(:t0 + interval '10 minutes', "
        f":t0 + interval '{hours} hours', interval '10 minutes') AS t "
        f"CROSS JOIN LATERAL (SELECT {wear} AS w) AS x"
    )


def events_sql(hours: int) -> str:
    return (
        "INSERT INTO maintenance_events (device_id, event_time, kind, source) "
        f"SELECT d.id, :t0 + make_interval(hours => k * {LIFE_H} - mod(d.id * 17, {LIFE_H})) "
        "  + make_interval(secs => e.after), e.kind, 'bench' "
        f"FROM devices d CROSS JOIN generate_series(1, {hours // LIFE_H + 2}) AS k "
        "CROSS JOIN (VALUES ('failure', 1), ('repair', 2)) AS e(kind, after) "
        f"WHERE k * {LIFE_H} - mod(d.id * 17, {LIFE_H}) BETWEEN 1 AND {hours}"
    )


def prepare(url: str, folder: Path, devices: int, hours: int, with_events: bool) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    write_plant(folder / f"plant-{devices}.yaml", devices)
    apply_plant(engine, load_plant(folder / f"plant-{devices}.yaml"))
    with engine.begin() as conn:
        conn.execute(sa.text(features_sql(hours)), {"t0": T0})
        if with_events:
            conn.execute(sa.text(events_sql(hours)), {"t0": T0})
        conn.execute(sa.text("ANALYZE feature_windows"))
    engine.dispose()


def database(admin: sa.Engine, name: str) -> str:
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def keys(hours: int) -> list[str]:
    return [(T0 + timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M") for h in range(hours)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 devices x 12 hours")
    args = parser.parse_args()
    devices, hours = (10, 12) if args.quick else (100, 30 * 24)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    names = [f"pdm_bench_scoring_train_{tag}", f"pdm_bench_scoring_{tag}"]
    folder = Path(tempfile.mkdtemp(prefix="pdm-bench-scoring-"))
    try:
        train_url = database(admin, names[0])
        url = database(admin, names[1])
        started = time.perf_counter()
        prepare(train_url, folder, 10, 10 * 24, with_events=True)
        store = ModelStore(f"sqlite:///{folder / 'mlflow.db'}")
        engine = make_engine(train_url)
        result = training.train(engine, store, training.TrainConfig.for_family("rul"))
        engine.dispose()
        champion.promote(store, "rul", result.logged.version, force=True)
        print(f"model: {result.logged.name} v{result.logged.version}, {result.metrics}")
        prepare(url, folder, devices, hours, with_events=False)
        windows = devices * hours * 6
        print(f"{windows:,} feature windows generated in {time.perf_counter() - started:.0f} s")
        resources = {
            "database": PostgresResource(database_url=url),
            "mlflow": MlflowResource(tracking_uri=store.tracking_uri),
        }
        partitions = keys(hours)
        quiet = {
            "ops": {"maintenance_predictions": {"config": {"families": ["rul"]}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        }
        with dg.instance_for_test() as instance:
            began = time.perf_counter()
            single = dg.materialize(
                [maintenance_predictions],
                resources=resources,
                instance=instance,
                run_config=quiet,
                tags={
                    "dagster/asset_partition_range_start": partitions[0],
                    "dagster/asset_partition_range_end": partitions[-1],
                },
            )
            single_s = time.perf_counter() - began
            meta = single.asset_materializations_for_node("maintenance_predictions")[0].metadata
            predictions = meta["dagster/row_count"].value
            print(f"single run: {predictions:,} predictions in {single_s:.1f} s", flush=True)
            began = time.perf_counter()
            for index, key in enumerate(partitions, start=1):
                dg.materialize(
                    [maintenance_predictions],
                    resources=resources,
                    instance=instance,
                    run_config=quiet,
                    partition_key=key,
                )
                if index % 50 == 0:
                    print(f"  per partition: {index}/{len(partitions)} runs", flush=True)
            per_partition_s = time.perf_counter() - began
        with make_engine(url).connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM maintenance_predictions")).scalar()
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert stored == predictions == windows, (stored, predictions, windows)
    rate = predictions / single_s
    print(
        f"{devices} devices x {hours} hourly partitions = {windows:,} windows, rul model with "
        "tree contributions"
    )
    print(f"single-run backfill:     {single_s:8.1f} s  ({rate:,.0f} predictions/s)")
    print(
        f"one run per partition:   {per_partition_s:8.1f} s  ({len(partitions)} runs, "
        f"{per_partition_s / single_s:.1f} x the single run)"
    )
    print(
        f"RESULT predictions_per_s={rate:.0f} single_run_s={single_s:.1f} "
        f"per_partition_s={per_partition_s:.1f}"
    )


if __name__ == "__main__":
    main()
