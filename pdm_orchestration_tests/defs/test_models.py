"""The model and prediction assets in Dagster: metadata, the blocking gate, backfills, failures."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from pdm_orchestration.definitions import defs
from pdm_orchestration.defs.resources import MlflowResource, PostgresResource
from pdm_orchestration.defs.scoring.assets import maintenance_predictions
from pdm_orchestration.models.tracking import CHAMPION, ModelStore
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.schema import maintenance_predictions as predictions_table
from pdm_orchestration_tests.models.history import T0, seed_history

DEFS = defs()


def assets(*names: str) -> list:
    wanted = {dg.AssetKey(n) for n in names}
    chosen = []
    for spec in DEFS.assets or []:
        if isinstance(spec, dg.AssetsDefinition) and set(spec.keys) & wanted:
            chosen.append(spec)
    checks = [
        c
        for c in DEFS.asset_checks or []
        if set(c.check_keys) and any(k.asset_key in wanted for k in c.check_keys)
    ]
    return [*chosen, *checks]


@pytest.fixture
def plant(tmp_path: Path) -> dict:
    url = f"sqlite:///{tmp_path / 'pdm.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    seed_history(engine, tmp_path)
    engine.dispose()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {
        "url": url,
        "mlflow_uri": uri,
        "resources": {
            "database": PostgresResource(database_url=url),
            "mlflow": MlflowResource(tracking_uri=uri),
        },
    }


def rows(url: str) -> pd.DataFrame:
    engine = make_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(predictions_table), conn)
    engine.dispose()
    return frame


def test_the_graph_has_every_family_gated_on_its_way_to_champion() -> None:
    graph = DEFS.resolve_asset_graph()
    for family in ("rules", "anomaly", "failure_risk", "rul"):
        model = DEFS.resolve_assets_def(f"{family}_model")
        key = dg.AssetKey(f"{family}_model")
        assert dg.AssetKey("feature_windows") in model.asset_deps[key]
        champion = DEFS.resolve_assets_def(f"{family}_champion")
        assert key in champion.asset_deps[dg.AssetKey(f"{family}_champion")]
        gate = dg.AssetCheckKey(key, "beats_champion")
        assert gate in graph.asset_check_keys
    scoring = DEFS.resolve_assets_def("maintenance_predictions")
    assert isinstance(scoring.partitions_def, dg.HourlyPartitionsDefinition)
    assert scoring.backfill_policy == dg.BackfillPolicy.single_run()
    deps = scoring.asset_deps[dg.AssetKey("maintenance_predictions")]
    assert {dg.AssetKey("feature_windows"), dg.AssetKey("rul_champion")} <= deps
    assert DEFS.resources["mlflow"].tracking_uri == dg.EnvVar("MLFLOW_TRACKING_URI")


def test_train_gate_promote_then_a_worse_challenger_is_held_back(plant: dict) -> None:
    selection = assets("rul_model", "rul_champion")
    first = dg.materialize(selection, resources=plant["resources"])
    assert first.success
    meta = first.asset_materializations_for_node("rul_model")[0].metadata
    assert meta["model_version"].value == "1" and meta["validation_rmse"].value > 0
    assert meta["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/")
    assert len(meta["training_data_digest"].value) >= 8
    run = MlflowClient(plant["mlflow_uri"]).get_run(meta["mlflow_run_id"].value)
    assert run.data.tags["dagster_run_id"] == first.run_id
    gate = first.get_asset_check_evaluations()[0]
    assert gate.passed and gate.check_name == "beats_champion"
    store = ModelStore(plant["mlflow_uri"])
    assert store.aliases("rul")[CHAMPION] == "1"
    # A much weaker challenger: the blocking check fails and the champion step does not run.
    weak = {"ops": {"rul_model": {"config": {"params": {"max_iter": 1}}}}}
    second = dg.materialize(
        selection, resources=plant["resources"], run_config=weak, raise_on_error=False
    )
    evaluation = second.get_asset_check_evaluations()[0]
    assert not evaluation.passed and "does not beat it" in evaluation.description
    assert not second.asset_materializations_for_node("rul_champion")
    assert store.aliases("rul") == {CHAMPION: "1", "challenger": "2"}


def test_a_family_without_data_fails_with_the_reason(plant: dict, tmp_path: Path) -> None:
    engine = make_engine(plant["url"])
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM maintenance_events"))
    engine.dispose()
    result = dg.materialize(
        assets("failure_risk_model"), resources=plant["resources"], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "failure_risk needs" in failure.step_failure_data.error.message


def partition_range(start: pd.Timestamp, hours: int) -> dict[str, str]:
    end = start + pd.Timedelta(hours=hours - 1)
    return {
        "dagster/asset_partition_range_start": start.strftime("%Y-%m-%d-%H:%M"),
        "dagster/asset_partition_range_end": end.strftime("%Y-%m-%d-%H:%M"),
    }


def test_predictions_backfill_in_one_run_beside_a_challenger(plant: dict) -> None:
    assert dg.materialize(
        assets("anomaly_model", "anomaly_champion"), resources=plant["resources"]
    ).success
    start = pd.Timestamp(T0) + pd.Timedelta(hours=6)
    result = dg.materialize(
        [maintenance_predictions], resources=plant["resources"], tags=partition_range(start, 4)
    )
    meta = result.asset_materializations_for_node("maintenance_predictions")[0].metadata
    frame = rows(plant["url"])
    assert meta["dagster/row_count"].value == len(frame) == 4 * 6 * 6  # 4 h x 6 windows x 6 pumps
    assert pd.to_datetime(frame["window_end"], utc=True).min() > start
    assert set(frame["model_alias"]) == {CHAMPION}
    assert set(frame["dagster_run_id"]) == {result.run_id}
    assert meta["fallback_to_builtin_rules"].value is False
    # Rerun: replaced, not duplicated; a challenger's rows come beside the champion's.
    dg.materialize(
        [maintenance_predictions], resources=plant["resources"], tags=partition_range(start, 4)
    )
    assert len(rows(plant["url"])) == len(frame)
    # A new challenger (version 2, trained but not promoted) scores beside the champion.
    retrain = {"ops": {"anomaly_model": {"config": {"params": {"n_estimators": 50}}}}}
    dg.materialize(  # its gate may fail (a blocking check fails the run): it stays challenger
        assets("anomaly_model"),
        resources=plant["resources"],
        run_config=retrain,
        raise_on_error=False,
    )
    challenger = {"ops": {"maintenance_predictions": {"config": {"alias": "challenger"}}}}
    dg.materialize(
        [maintenance_predictions],
        resources=plant["resources"],
        tags=partition_range(start, 4),
        run_config=challenger,
    )
    both = rows(plant["url"])
    assert both.groupby(["model_alias", "model_version"]).size().to_dict() == {
        ("challenger", "2"): 144,
        ("champion", "1"): 144,
    }


def test_no_model_the_built_in_rules_score_and_say_so(plant: dict) -> None:
    start = pd.Timestamp(T0) + pd.Timedelta(hours=12)
    result = dg.materialize(
        [maintenance_predictions],
        resources=plant["resources"],
        partition_key=start.strftime("%Y-%m-%d-%H:%M"),
    )
    meta = result.asset_materializations_for_node("maintenance_predictions")[0].metadata
    assert meta["fallback_to_builtin_rules"].value is True
    assert len(meta["families_without_model"].value) == 4
    frame = rows(plant["url"])
    assert set(frame["model_version"]) == {"builtin"} and "fallback_rules" in set(frame["status"])


def test_an_unreachable_mlflow_fails_the_run_and_writes_nothing(plant: dict) -> None:
    resources = {**plant["resources"], "mlflow": MlflowResource(tracking_uri="http://127.0.0.1:9")}
    result = dg.materialize(
        [maintenance_predictions],
        resources=resources,
        partition_key=(pd.Timestamp(T0) + pd.Timedelta(hours=12)).strftime("%Y-%m-%d-%H:%M"),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "MLflow tracking store http://127.0.0.1:9 unavailable"
        in failure.step_failure_data.error.message
    )
    assert rows(plant["url"]).empty
