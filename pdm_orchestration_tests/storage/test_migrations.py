from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.migrate import VERSION_TABLE
from pdm_orchestration.storage.partitions import ensure_reading_partitions, reading_partitions
from pdm_orchestration.storage.schema import metadata, sensor_readings

TABLES = {
    "plc_connections",
    "devices",
    "plc_register_map",
    "sensor_readings",
    "ingest_gaps",
    "maintenance_events",
    "feature_windows",
    "maintenance_predictions",
    "alerts",
    "sensor_quality",
    "alert_state",
    "alert_notifications",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("fresh_pg_url")


def user_tables(engine: sa.Engine) -> set[str]:
    names = set(sa.inspect(engine).get_table_names())
    return {n for n in names if n != VERSION_TABLE and not n.startswith("sensor_readings_")}


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    engine = make_engine(empty_url)
    assert migrate.current_revision(engine) is None
    assert migrate.upgrade(engine) == migrate.head_revision()
    assert user_tables(engine) == TABLES
    assert migrate.downgrade(engine, "base") is None
    assert user_tables(engine) == set()
    assert migrate.upgrade(engine) == migrate.head_revision()
    assert user_tables(engine) == TABLES
    engine.dispose()


def test_migrated_schema_matches_the_code(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)

    def not_a_partition(name: str | None, type_: str, parents: dict) -> bool:
        # Partitions of sensor_readings (and their indexes) are PostgreSQL's, not the code's.
        table = name if type_ == "table" else parents.get("table_name")
        return table != VERSION_TABLE and not (table or "").startswith("sensor_readings_")

    opts = {"compare_type": True, "include_name": not_a_partition}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)
    assert diff == []
    engine.dispose()


def test_required_indexes_exist(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    inspector = sa.inspect(engine)
    readings = {tuple(ix["column_names"]) for ix in inspector.get_indexes("sensor_readings")}
    predictions = {
        tuple(ix["column_names"]) for ix in inspector.get_indexes("maintenance_predictions")
    }
    assert ("device_id", "ts") in readings
    assert ("device_id", "predicted_at") in predictions
    assert inspector.get_pk_constraint("sensor_readings")["constrained_columns"] == [
        "device_id",
        "sensor",
        "ts",
    ]
    engine.dispose()


def test_duplicate_reading_is_rejected_by_the_unique_key(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    row = {"device_id": 1, "sensor": "temp", "ts": datetime(2026, 12, 1, tzinfo=UTC), "value": 1.0}
    with engine.begin() as conn:
        conn.execute(sensor_readings.insert(), [row])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sensor_readings.insert(), [row])
    engine.dispose()


def _month(dt: datetime) -> str:
    return f"sensor_readings_{dt:%Y_%m}"


@pytest.mark.postgres
def test_readings_are_partitioned_by_month_ahead_with_a_default(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        strategy = conn.scalar(
            sa.text(
                "SELECT partstrat FROM pg_partitioned_table "
                "WHERE partrelid = 'sensor_readings'::regclass"
            )
        )
    assert strategy == "r"  # range
    now = datetime.now(UTC)
    names = reading_partitions(engine)
    assert "sensor_readings_default" in names
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    expected = []
    for _ in range(4):  # this month and 3 ahead
        expected.append(_month(month))
        month = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    assert set(expected) <= set(names)
    assert ensure_reading_partitions(engine) == 0  # nothing left to create
    engine.dispose()


@pytest.mark.postgres
def test_out_of_range_readings_are_caught_then_moved_to_their_month(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine)
    old = datetime(2019, 3, 14, 12, tzinfo=UTC)
    far = datetime(2035, 7, 1, tzinfo=UTC)
    rows = [
        {"device_id": 1, "sensor": "temp", "ts": old, "value": 1.0},
        {"device_id": 1, "sensor": "temp", "ts": far, "value": 2.0},
    ]
    with engine.begin() as conn:
        conn.execute(sensor_readings.insert(), rows)  # never rejected
        where = (
            conn.execute(
                sa.text("SELECT tableoid::regclass::text FROM sensor_readings ORDER BY ts")
            )
            .scalars()
            .all()
        )
    assert where == ["sensor_readings_default", "sensor_readings_default"]

    assert ensure_reading_partitions(engine) == 2
    with engine.connect() as conn:
        where = conn.execute(
            sa.text("SELECT tableoid::regclass::text, value FROM sensor_readings ORDER BY ts")
        ).all()
        in_default = conn.scalar(sa.text("SELECT count(*) FROM sensor_readings_default"))
    assert [tuple(r) for r in where] == [(_month(old), 1.0), (_month(far), 2.0)]
    assert in_default == 0
    # The new partitions carry the parent's indexes.
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes(_month(old))}
    assert any("device_id_ts" in name for name in indexes)
    engine.dispose()


def test_sqlite_migrations_keep_what_refers_to_a_rebuilt_table(tmp_path: Path) -> None:
    """SQLite rebuilds a table to change it; the rows that point at it must keep pointing."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0003")
    t0 = "2026-05-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO devices (id, name, active, address_base, byte_order, poll_groups, "
            f"unreadable, created_at, updated_at) VALUES (1, 'p', 1, 0, 'ABCD', '{{}}', '[]', "
            f"'{t0}', '{t0}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO feature_windows (id, device_id, window_start, window_end, features, "
            "reading_count, quality_flags, register_map_ids, computed_at, window_spec) VALUES "
            f"(5, 1, '{t0}', '{t0}', '{{}}', 0, '{{}}', '[]', '{t0}', '60min/10min')"
        )
        conn.exec_driver_sql(
            "INSERT INTO maintenance_predictions (id, device_id, window_start, window_end, "
            "feature_window_id, predicted_at, model_name, model_version, status) VALUES "
            f"(7, 1, '{t0}', '{t0}', 5, '{t0}', 'pdm_rul', '1', 'scored')"
        )
        conn.exec_driver_sql(
            "INSERT INTO alerts (id, device_id, prediction_id, severity, status, dedup_key, "
            f"message, opened_at, updated_at) VALUES (3, 1, 7, 'warn', 'open', 'p:risk', 'm', "
            f"'{t0}', '{t0}')"
        )
    migrate.upgrade(engine)
    migrate.downgrade(engine, "0003")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT prediction_id FROM alerts").scalar() == 7
        link = "SELECT feature_window_id FROM maintenance_predictions"
        assert conn.exec_driver_sql(link).scalar() == 5
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # enforced again
    engine.dispose()


def test_0006_latest_predictions_drop_a_model_that_stopped_scoring(empty_url: str) -> None:
    """0005's view kept each model's newest window on its own; from 0006 only the device's newest
    scored window counts (the built-in rules, retired once a champion scores, drop out)."""
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0005")
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO devices (id, name, active, address_base, byte_order, poll_groups, "
                "unreadable, created_at, updated_at) "
                "VALUES (1, 'p', :yes, 0, 'ABCD', '{}', '[]', :t, :t)"
            ),
            {"yes": True, "t": now},
        )
        for i, (model, alias, hour) in enumerate(
            (("pdm_rules", "builtin", 9), ("pdm_rul", "champion", 11)), start=1
        ):
            end = datetime(2026, 5, 1, hour, tzinfo=UTC)
            conn.execute(
                sa.text(
                    "INSERT INTO maintenance_predictions (id, device_id, window_start, "
                    "window_end, predicted_at, model_name, model_version, model_alias, status, "
                    "risk_level) VALUES (:id, 1, :end, :end, :t, :model, '1', :alias, 'scored', "
                    "'ok')"
                ),
                {"id": i, "end": end, "t": now, "model": model, "alias": alias},
            )

    def latest() -> list[str]:
        with engine.connect() as conn:
            query = "SELECT model_name FROM v_latest_predictions ORDER BY model_name"
            return list(conn.execute(sa.text(query)).scalars())

    assert latest() == ["pdm_rul", "pdm_rules"]  # 0005: the stale rules row stays
    migrate.upgrade(engine, "0006")
    assert latest() == ["pdm_rul"]
    with engine.connect() as conn:  # the view on top of it still reads it
        assert conn.execute(sa.text("SELECT risk_from FROM v_device_health")).scalar() == "pdm_rul"
    migrate.downgrade(engine, "0005")
    assert latest() == ["pdm_rul", "pdm_rules"]
    engine.dispose()
