"""The deployment's dagster.yaml works against the real PostgreSQL."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pdm_orchestration.defs.registry.assets import device_registry
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT, PROJECT_ROOT


@pytest.mark.postgres
def test_instance_from_dagster_yaml_stores_runs_in_postgres(
    fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sa.engine.make_url(fresh_pg_url)
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")

    engine = make_engine(fresh_pg_url)  # project tables and Dagster's storage share one database
    migrate.upgrade(engine)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = dg.materialize(
            [device_registry],
            instance=instance,
            resources={
                "database": PostgresResource(database_url=fresh_pg_url),
                "plant": PlantResource(plant_file=str(EXAMPLE_PLANT)),
            },
        )
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("device_registry"))
        assert event is not None and event.run_id == result.run_id
    with engine.connect() as conn:
        runs = conn.scalar(sa.text("SELECT count(*) FROM runs"))
        devices = conn.scalar(sa.text("SELECT count(*) FROM devices"))
    assert (runs, devices) == (1, 12)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()
