"""Training through MLflow: what a run records, the champion gate, promotion by alias."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from sqlalchemy.engine import Engine

from pdm_orchestration.models import champion, training
from pdm_orchestration.models.tracking import CHALLENGER, CHAMPION, ModelStore
from pdm_orchestration.storage.schema import devices


def test_a_training_run_records_what_it_learned_from(history: Engine, store: ModelStore) -> None:
    result = training.train(
        history, store, training.TrainConfig.for_family("rul"), tags={"dagster_run_id": "run-1"}
    )
    client = MlflowClient(store.tracking_uri)
    run = client.get_run(result.logged.run_id)
    assert run.data.tags["dagster_run_id"] == "run-1"
    assert run.data.params["family"] == "rul" and run.data.params["window_spec"] == "60min/10min"
    assert {"val_rmse", "val_mae", "val_phm08", "train_rows"} <= set(run.data.metrics)
    assert run.data.metrics["val_rmse"] == pytest.approx(result.metrics["rmse"])
    # Both datasets, with the digest the asset metadata reports.
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert inputs["rul-training"] == result.digest and "rul-validation" in inputs
    artifacts = {a.path for a in client.list_artifacts(result.logged.run_id, "plots")}
    assert {"plots/feature_importance.png", "plots/residuals.png"} <= artifacts
    # Registered, as the challenger, with signature and input example; it loads back.
    assert store.aliases("rul") == {CHALLENGER: result.logged.version}
    info = mlflow.models.get_model_info(f"models:/pdm_rul/{result.logged.version}")
    assert info.signature is not None and info.saved_input_example_info is not None
    inputs = info.signature.inputs.input_names()
    loaded = store.load("rul", alias=CHALLENGER)
    assert loaded.columns == inputs and "age" in inputs
    assert loaded.spec.name == "60min/10min" and loaded.horizon == 24
    # Validation rows: held-out device and the newest fifth of the time span.
    validation = store.validation_frame(result.logged.run_id)
    assert len(validation) == result.validation_rows > 0
    assert np.isfinite(validation["rul"]).all()


def test_every_family_trains_on_the_history(history: Engine, store: ModelStore) -> None:
    for family in ("rules", "anomaly", "failure_risk"):
        result = training.train(history, store, training.TrainConfig.for_family(family))
        assert result.logged.version == "1", family
        assert 0.5 < result.metrics["roc_auc"] <= 1, family
    assert (
        training.train(history, store, training.TrainConfig.for_family("failure_risk")).metrics[
            "average_precision"
        ]
        > 0.5
    )


def test_the_gate_promotes_only_a_better_challenger(history: Engine, store: ModelStore) -> None:
    good = training.TrainConfig.for_family("rul")
    first = training.train(history, store, good)
    verdict = champion.judge(store, "rul")
    assert verdict.passed and verdict.reason == "no champion yet"
    champion.promote(store, "rul")
    assert store.aliases("rul") == {CHAMPION: "1"}  # promoted, it is no challenger any more
    # A weaker model (a single boosting step) does not beat it on the same windows.
    weak = training.TrainConfig.for_family("rul", params={"max_iter": 1})
    second = training.train(history, store, weak)
    verdict = champion.judge(store, "rul")
    assert not verdict.passed and verdict.metric == "rmse"
    assert verdict.challenger_value > verdict.champion_value
    tags = store.get_version("rul", second.logged.version).tags
    assert tags["validation_status"] == "failed" and "does not beat it" in tags["gate_reason"]
    with pytest.raises(champion.PromotionRefused, match="did not pass the champion gate"):
        champion.promote(store, "rul")
    assert store.aliases("rul")[CHAMPION] == first.logged.version
    # The good configuration again beats the weak one, which does not count: it is judged
    # against the champion (version 1), with an equal metric: not better, not promoted.
    training.train(history, store, good)
    assert not champion.judge(store, "rul").passed
    # By hand, anything can be promoted, and it says so.
    assert champion.promote(store, "rul", second.logged.version, force=True) == "2"
    assert store.get_version("rul", "2").tags["promoted_by_hand"] == "true"


def test_not_enough_data_says_what_is_missing(engine: Engine, store: ModelStore) -> None:
    with pytest.raises(training.NotEnoughData, match="build them first"):
        training.train(engine, store, training.TrainConfig.for_family("rul"))


def test_no_failures_no_supervised_model(engine: Engine, store: ModelStore, tmp_path: Path) -> None:
    from pdm_orchestration_tests.models.history import seed_history

    seed_history(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM maintenance_events"))
    with pytest.raises(training.NotEnoughData, match="run-to-failure history"):
        training.train(engine, store, training.TrainConfig.for_family("rul"))
    with pytest.raises(training.NotEnoughData, match="failure_risk needs"):
        training.train(engine, store, training.TrainConfig.for_family("failure_risk"))
    # The anomaly model needs no failures: healthy history is every window.
    assert training.train(engine, store, training.TrainConfig.for_family("anomaly")).train_rows


def test_labels_of_a_removed_device_are_left_out(history: Engine, store: ModelStore) -> None:
    with history.begin() as conn:
        conn.execute(devices.update().where(devices.c.name == "pump_1").values(active=False))
    data = training.training_set(history, training.TrainConfig.for_family("rul"))
    assert data.removed_devices == ["pump_1"]
    assert "pump_1" not in set(data.frame["device"])
    result = training.train(history, store, training.TrainConfig.for_family("rul"), data=data)
    validation = store.validation_frame(result.logged.run_id)
    assert "pump_1" not in set(validation["device"])
    assert json.loads(store.get_version("rul", "1").tags["columns"])[-1] == "age"
