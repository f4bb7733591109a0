"""The BI views return the expected rows for known data; pdm_reader reads them and nothing else."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.alerts.rules import evaluate_alerts
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.schema import (
    devices,
    maintenance_predictions,
    plc_register_map,
    sensor_quality,
    sensor_readings,
)
from pdm_orchestration_tests.models.history import write_plant

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
VIEWS = (
    "v_device_health",
    "v_latest_predictions",
    "v_readings_hourly",
    "v_prediction_history",
    "v_model_comparison",
    "v_alerts",
    "v_sensor_quality",
)


def prediction(device_id: int, minutes: int, model: str, alias: str, risk: str, **extra) -> dict:
    scores = {"rul_estimate": None, "time_unit": None, "failure_probability": None}
    return {
        **scores,
        "device_id": device_id,
        "window_start": T0 + timedelta(minutes=minutes - 60),
        "window_end": T0 + timedelta(minutes=minutes),
        "predicted_at": T0,
        "model_name": model,
        "model_version": extra.pop("version", "1"),
        "model_alias": alias,
        "risk_level": risk,
        "status": "scored",
        "top_sensors": [{"sensor": extra.pop("top", "vibration"), "contribution": 1.0}],
        **extra,
    }


@pytest.fixture
def known(engine: Engine, tmp_path: Path) -> dict[str, int]:
    return load_known(engine, tmp_path)


def load_known(engine: Engine, tmp_path: Path) -> dict[str, int]:
    apply_plant(engine, load_plant(write_plant(tmp_path)))
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(devices.c.name, devices.c.id)).all())
        maps = dict(
            conn.execute(
                sa.select(plc_register_map.c.sensor, plc_register_map.c.id).where(
                    plc_register_map.c.device_id == ids["pump_1"]
                )
            ).all()
        )
    p1, p2 = ids["pump_1"], ids["pump_2"]
    readings = [
        {
            "device_id": p1,
            "sensor": "flow",
            "ts": T0 + timedelta(minutes=m),
            "value": v,
            "quality": q,
            "register_map_id": maps["flow"],
        }
        for m, v, q in (
            (5, 100.0, "good"),
            (25, 110.0, "good"),
            (45, None, "bad_timeout"),
            (65, 90.0, "good"),
        )
    ]
    rows = [
        prediction(p1, 0, "pdm_rul", "champion", "ok", rul_estimate=40.0, time_unit="h"),
        prediction(
            p1,
            10,
            "pdm_rul",
            "champion",
            "warn",
            rul_estimate=20.0,
            time_unit="h",
            top="bearing_temp",
        ),
        prediction(p1, 10, "pdm_failure_risk", "champion", "watch", failure_probability=0.3),
        prediction(p1, 10, "pdm_rul", "challenger", "alarm", rul_estimate=9.0, version="2"),
        prediction(p2, 10, "pdm_rules", "builtin", "ok"),
    ]
    with engine.begin() as conn:
        conn.execute(sensor_readings.insert(), readings)
        conn.execute(maintenance_predictions.insert(), rows)
        conn.execute(
            sensor_quality.insert(),
            [
                {
                    "device_id": p2,
                    "sensor": "flow",
                    "window_spec": "60min/10min",
                    "window_start": T0,
                    "window_end": T0 + timedelta(hours=1),
                    "readings": 6,
                    "good_readings": 0,
                    "out_of_range": 0,
                    "gap_rows": 1,
                    "duplicates": 0,
                    "error_rate": 1.0,
                    "failed": ["read_error_rate", "gaps"],
                    "blocking": True,
                    "checked_at": T0,
                }
            ],
        )
    # Two windows at warn: an alert opens for pump_1 (from the champion rows only).
    with engine.begin() as conn:
        conn.execute(
            maintenance_predictions.insert(),
            [
                prediction(
                    p1,
                    20,
                    "pdm_rul",
                    "champion",
                    "warn",
                    rul_estimate=15.0,
                    time_unit="h",
                    top="bearing_temp",
                ),
                prediction(
                    p1, 20, "pdm_failure_risk", "champion", "watch", failure_probability=0.3
                ),
            ],
        )
    evaluate_alerts(engine)
    return ids


@pytest.fixture
def pg_known(pg_session_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The session's PostgreSQL database holding the known data."""
    from pdm_orchestration_tests.conftest import _truncate_all

    engine = make_engine(pg_session_url)
    _truncate_all(engine)
    load_known(engine, tmp_path)
    yield engine
    engine.dispose()


def view(engine: Engine, name: str, order: str = "1") -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY {order}")).all()


def test_views_answer_what_they_promise(engine: Engine, known: dict[str, int]) -> None:
    latest = view(engine, "v_latest_predictions", "device, model_name")
    assert [(r.device, r.model_name, r.risk_level) for r in latest] == [
        ("pump_1", "pdm_failure_risk", "watch"),
        ("pump_1", "pdm_rul", "warn"),  # the newest champion row; the challenger's alarm is not
        ("pump_2", "pdm_rules", "ok"),
    ]
    health = {r.device: r for r in view(engine, "v_device_health", "device")}
    assert len(health) == 6  # every active device, scored or not
    p1 = health["pump_1"]
    assert (p1.risk_level, p1.risk_from, p1.top_sensor) == ("warn", "pdm_rul", "bearing_temp")
    assert (p1.failure_probability, p1.rul_estimate, p1.rul_unit) == (0.3, 15.0, "h")
    assert p1.open_alerts == 1 and str(p1.last_reading_at)[:16] == "2026-05-01 13:05"
    assert health["pump_2"].risk_level == "ok" and health["pump_2"].open_alerts == 0
    assert health["pump_3"].risk_level is None
    hourly = view(engine, "v_readings_hourly", "time")
    assert [(r.readings, r.good_readings, r.mean) for r in hourly] == [(3, 2, 105.0), (1, 1, 90.0)]
    assert str(hourly[0].time).startswith("2026-05-01 12:00")
    history = view(engine, "v_prediction_history", "prediction_id")
    assert len(history) == 7 and {r.model_alias for r in history} == {
        "champion",
        "challenger",
        "builtin",
    }
    comparison = view(engine, "v_model_comparison")
    assert [
        (
            r.device,
            r.champion_version,
            r.challenger_version,
            r.champion_risk,
            r.challenger_risk,
            r.same_risk,
        )
        for r in comparison
    ] == [("pump_1", "1", "2", "warn", "alarm", 0)]
    alert = view(engine, "v_alerts")
    assert [
        (r.device, r.severity, r.status, r.model_name, r.undelivered_notifications) for r in alert
    ] == [("pump_1", "warn", "open", "pdm_rul", 1)]
    quality = view(engine, "v_sensor_quality")
    assert [(r.device, r.sensor, r.error_rate) for r in quality] == [("pump_2", "flow", 1.0)]


def test_device_health_says_when_bad_data_stopped_the_models(
    engine: Engine, known: dict[str, int]
) -> None:
    p4 = known["pump_4"]
    suppressed = {"status": "suppressed_bad_data", "top_sensors": None}
    with engine.begin() as conn:
        conn.execute(
            maintenance_predictions.insert(),
            [
                prediction(p4, 10, "pdm_rul", "champion", "alarm", rul_estimate=2.0, time_unit="h"),
                {**prediction(p4, 20, "pdm_rul", "champion", None), **suppressed},
                {**prediction(p4, 20, "pdm_failure_risk", "champion", None), **suppressed},
            ],
        )
    health = {r.device: r for r in view(engine, "v_device_health", "device")}
    p4_health = health["pump_4"]
    # The newest window: no risk (the old alarm is not the risk now), and the reason why.
    assert (p4_health.status, p4_health.risk_level, p4_health.rul_estimate) == (
        "suppressed_bad_data",
        None,
        None,
    )
    assert str(p4_health.time)[:16] == "2026-05-01 12:20"
    assert health["pump_1"].status == "scored" and health["pump_3"].status is None


@pytest.mark.postgres
def test_hours_are_utc_hours_in_any_session_time_zone(pg_known: Engine) -> None:
    with pg_known.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'Asia/Kolkata'"))  # UTC+05:30
        query = "SELECT time, readings FROM v_readings_hourly ORDER BY time"
        hours = [(t.astimezone(UTC).isoformat(), n) for t, n in conn.execute(sa.text(query))]
    assert hours == [("2026-05-01T12:00:00+00:00", 3), ("2026-05-01T13:00:00+00:00", 1)]


@pytest.mark.postgres
def test_pdm_reader_reads_the_views_and_nothing_else(pg_known: Engine) -> None:
    with pg_known.connect() as conn:
        conn.execute(sa.text("SET ROLE pdm_reader"))
        counts = {
            name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() for name in VIEWS
        }
        assert counts["v_device_health"] == 6 and counts["v_alerts"] == 1
        for statement in (
            "SELECT count(*) FROM sensor_readings",
            "SELECT count(*) FROM maintenance_predictions",
            "INSERT INTO alerts (device_id, severity, status, dedup_key, message, opened_at, "
            "updated_at) VALUES (1, 'warn', 'open', 'x', 'x', now(), now())",
            "DELETE FROM devices",
        ):
            denied = pytest.raises(sa.exc.ProgrammingError, match="permission denied")
            with denied, conn.begin_nested():
                conn.execute(sa.text(statement))


def readme_queries() -> list[str]:
    """The example queries of sql/README.md, Grafana's macros filled in as Grafana would."""
    text = (Path(__file__).resolve().parents[2] / "sql" / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    queries = [b for b in blocks if b.lstrip().upper().startswith("SELECT")]
    return [q.replace("$__timeFilter(time)", "true").replace("$device", "pump_1") for q in queries]


@pytest.mark.postgres
def test_the_example_queries_run_as_pdm_reader(pg_known: Engine) -> None:
    queries = readme_queries()
    assert len(queries) == 5
    with pg_known.connect() as conn:
        conn.execute(sa.text("SET ROLE pdm_reader"))
        results = [conn.execute(sa.text(q)).all() for q in queries]
    hourly, risk, plant, weekly, comparison = results
    assert [r.value for r in hourly] == [105.0, 90.0]
    assert [(r.metric, r.value) for r in risk] == [
        ("pdm_rul", 0),
        ("pdm_failure_risk", 1),
        ("pdm_rul", 2),
        ("pdm_failure_risk", 1),
        ("pdm_rul", 2),
    ]
    assert plant[0].device == "pump_1" and plant[0].risk_level == "warn" and len(plant) == 6
    assert weekly[0].alerts == 1
    assert [(r.model_name, r.windows, r.agreement) for r in comparison] == [("pdm_rul", 1, 0)]
