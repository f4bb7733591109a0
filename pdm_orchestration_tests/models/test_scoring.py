"""Scoring into maintenance_predictions: one row per window and model, idempotent, traceable."""

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.models import champion, scoring, training
from pdm_orchestration.models.tracking import (
    CHALLENGER,
    CHAMPION,
    ModelStore,
    TrackingUnavailable,
)
from pdm_orchestration.storage.schema import (
    devices,
    feature_windows,
    maintenance_predictions,
    plc_register_map,
)
from pdm_orchestration_tests.models.history import DAYS, SPEC, T0

START, END = T0, T0 + pd.Timedelta(days=DAYS)


def predictions(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(maintenance_predictions), conn)


def trained(engine: Engine, store: ModelStore, family: str = "rul") -> None:
    training.train(engine, store, training.TrainConfig.for_family(family))
    champion.promote(store, family) if champion.judge(store, family).passed else None


def test_scores_every_window_and_reruns_replace_them(history: Engine, store: ModelStore) -> None:
    trained(history, store, "rul")
    models, notes = scoring.load_models(store, ["rul", "anomaly"], CHAMPION)
    assert [m.name for m in models] == ["pdm_rul"] and notes == [
        "pdm_anomaly has no 'champion' version"
    ]
    summary = scoring.score(history, models, START, END, run_id="run-a")
    rows = predictions(history)
    with history.connect() as conn:
        windows = conn.execute(sa.select(sa.func.count()).select_from(feature_windows)).scalar()
    assert summary.predictions == len(rows) == windows
    assert set(rows["model_name"]) == {"pdm_rul"} and set(rows["model_version"]) == {"1"}
    assert set(rows["dagster_run_id"]) == {"run-a"} and rows["mlflow_run_id"].notna().all()
    assert rows["feature_window_id"].notna().all() and set(rows["time_unit"]) == {"h"}
    scored = rows[rows["status"] == "scored"]
    assert scored["rul_estimate"].ge(0).all() and scored["risk_level"].notna().all()
    assert scored["failure_probability"].isna().all() and scored["anomaly_score"].isna().all()
    # Which sensors drove it: the ones that shortened the life, most first.
    tops = [json.loads(t) if isinstance(t, str) else t for t in scored["top_sensors"]]
    assert all(len(t) <= 3 for t in tops) and any(t for t in tops)
    assert {s["sensor"] for t in tops for s in t} <= {"bearing_temp", "vibration", "flow", "age"}
    ids = dict(
        zip(rows["window_end"].astype(str) + rows["device_id"].astype(str), rows["id"], strict=True)
    )
    # Rerun: same rows (same ids), newer run id; nothing duplicated.
    scoring.score(history, models, START, END, run_id="run-b")
    again = predictions(history)
    assert len(again) == len(rows) and set(again["dagster_run_id"]) == {"run-b"}
    assert ids == dict(
        zip(
            again["window_end"].astype(str) + again["device_id"].astype(str),
            again["id"],
            strict=True,
        )
    )


def test_a_challenger_scores_beside_the_champion(history: Engine, store: ModelStore) -> None:
    trained(history, store, "rul")
    training.train(history, store, training.TrainConfig.for_family("rul", params={"max_iter": 50}))
    assert store.aliases("rul") == {CHAMPION: "1", CHALLENGER: "2"}
    for alias in (CHAMPION, CHALLENGER):
        models, _ = scoring.load_models(store, ["rul"], alias)
        scoring.score(history, models, START, END)
    rows = predictions(history)
    per_version = rows.groupby(["model_version", "model_alias"]).size()
    assert per_version.loc[("1", CHAMPION)] == per_version.loc[("2", CHALLENGER)]
    assert rows.duplicated(["device_id", "window_end", "model_name", "model_version"]).sum() == 0


def test_bad_data_is_suppressed_not_scored(history: Engine, store: ModelStore) -> None:
    trained(history, store, "anomaly")
    models, _ = scoring.load_models(store, ["anomaly"], CHAMPION)
    scoring.score(history, models, START, END)
    before = predictions(history).set_index("feature_window_id")["status"]
    target = before[before == "scored"].index[0]
    with history.begin() as conn:
        conn.execute(
            feature_windows.update()
            .where(feature_windows.c.id == int(target))
            .values(quality_flags={"vibration": ["flatline"], "flow": ["spikes_and_jumps"]})
        )
    summary = scoring.score(history, models, START, END)
    rows = predictions(history).set_index("feature_window_id")
    bad = rows.loc[target]
    assert bad["status"] == "suppressed_bad_data"
    assert summary.suppressed == (before == "suppressed_bad_data").sum() + 1
    assert pd.isna(bad["anomaly_score"]) and pd.isna(bad["risk_level"])
    blocked = bad["top_sensors"]
    blocked = json.loads(blocked) if isinstance(blocked, str) else blocked
    assert blocked == [{"sensor": "vibration", "blocked": True}]  # a warning does not block
    others = rows["status"].drop(index=target).sort_index()
    assert others.equals(before.drop(index=target).sort_index())


def test_no_model_yet_the_plant_limits_score(history: Engine, store: ModelStore) -> None:
    models, notes = scoring.load_models(store, ["rul", "rules"], CHAMPION)
    assert models == [] and len(notes) == 2
    rules = scoring.builtin_rules(history, SPEC)
    scoring.score(history, [rules], START, END, fallback=True)
    rows = predictions(history)
    assert set(rows["status"]) == {"fallback_rules", "suppressed_bad_data"}
    assert (rows["status"] == "fallback_rules").mean() > 0.9
    assert set(rows["model_version"]) == {"builtin"} and rows["mlflow_run_id"].isna().all()
    assert {"ok", "watch", "warn"} <= set(rows["risk_level"])  # temperature passes its warn limit


def test_a_model_reading_sensors_the_plant_lost_writes_nothing(
    history: Engine, store: ModelStore
) -> None:
    trained(history, store, "rul")
    with history.begin() as conn:
        conn.execute(
            plc_register_map.update()
            .where(plc_register_map.c.sensor == "vibration")
            .values(sensor="vibration_rms")
        )
        conn.execute(sa.text("UPDATE feature_windows SET features = '{}'"))
    models, _ = scoring.load_models(store, ["rul"], CHAMPION)
    with pytest.raises(scoring.ModelMismatch, match="vibration"):
        scoring.score(history, models, START, END)
    assert predictions(history).empty


def test_an_unreachable_tracking_store_fails_clearly(history: Engine) -> None:
    store = ModelStore("http://127.0.0.1:9/")
    with pytest.raises(TrackingUnavailable, match=r"127\.0\.0\.1:9"):
        scoring.load_models(store, ["rul"], CHAMPION)
    assert predictions(history).empty


def test_devices_without_windows_are_named(history: Engine, store: ModelStore) -> None:
    trained(history, store, "rul")
    with history.begin() as conn:
        pump = conn.execute(sa.select(devices.c.id).where(devices.c.name == "pump_6")).scalar()
        conn.execute(feature_windows.delete().where(feature_windows.c.device_id == pump))
    models, _ = scoring.load_models(store, ["rul"], CHAMPION)
    summary = scoring.score(history, models, START, END)
    assert summary.devices_without_windows == ["pump_6"]
    assert pump not in set(predictions(history)["device_id"])


LINEAGE = Path(__file__).resolve().parents[2] / "sql" / "prediction_lineage.sql"


def test_one_join_leads_from_a_prediction_to_its_readings(
    history: Engine, store: ModelStore
) -> None:
    trained(history, store, "rul")
    models, _ = scoring.load_models(store, ["rul"], CHAMPION)
    scoring.score(history, models, START, END)
    with history.connect() as conn:
        some = conn.execute(
            sa.select(maintenance_predictions.c.id, feature_windows.c.reading_count)
            .join(
                feature_windows, feature_windows.c.id == maintenance_predictions.c.feature_window_id
            )
            .order_by(maintenance_predictions.c.id)
            .limit(5)
        ).all()
        for prediction_id, reading_count in some:
            rows = conn.execute(
                sa.text(LINEAGE.read_text()), {"prediction_id": prediction_id}
            ).all()
            assert len(rows) == reading_count  # every reading of the window, no other
            assert all(r.data_type == "float32" and r.register_map_id for r in rows)


def test_rules_score_with_the_limits_in_force(history: Engine, store: ModelStore) -> None:
    trained(history, store, "rules")
    models, _ = scoring.load_models(store, ["rules"], CHAMPION)
    scoring.score(history, models, START, END)
    before = predictions(history)["risk_level"].value_counts()
    # The plant file now puts the warn limit of the bearings far lower: no retraining needed.
    m = plc_register_map.c
    with history.begin() as conn:
        conn.execute(
            plc_register_map.update()
            .where(m.sensor == "bearing_temp", m.valid_to.is_(None))
            .values(warn_high=40.0)
        )
    scoring.score(history, models, START, END)
    after = predictions(history)["risk_level"].value_counts()
    assert after.get("ok", 0) == 0 < before.get("ok", 0)  # 60 degC and up: past 40 everywhere
