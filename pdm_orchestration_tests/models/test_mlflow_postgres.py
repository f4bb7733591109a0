"""MLflow with a PostgreSQL backend store, as a deployment runs it behind `mlflow server`."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from pdm_orchestration.models import champion, training
from pdm_orchestration.models.tracking import CHAMPION, ModelStore
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration_tests.models.history import seed_history


@pytest.mark.postgres
def test_models_train_register_and_load_through_a_postgres_store(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pdm.db'}")
    migrate.upgrade(engine)
    seed_history(engine, tmp_path)
    store = ModelStore(fresh_pg_url, artifact_location=(tmp_path / "artifacts").as_uri())
    result = training.train(engine, store, training.TrainConfig.for_family("anomaly"))
    assert champion.judge(store, "anomaly").passed
    champion.promote(store, "anomaly")
    loaded = ModelStore(fresh_pg_url).load("anomaly", alias=CHAMPION)
    assert loaded is not None and loaded.version == result.logged.version
    assert (tmp_path / "artifacts").is_dir()
    tables = set(sa.inspect(sa.create_engine(fresh_pg_url)).get_table_names())
    assert {"experiments", "runs", "registered_models", "model_versions"} <= tables
    engine.dispose()
