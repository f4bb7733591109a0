from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pdm_orchestration.definitions import defs
from pdm_orchestration.defs.maintenance.jobs import maintain_database
from pdm_orchestration.defs.registry.assets import device_registry
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.partitions import reading_partitions
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT


def test_definitions_load_with_the_expected_graph() -> None:
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    keys = {key.to_user_string() for key in definitions.resolve_all_asset_keys()}
    assert "device_registry" in keys
    spec = definitions.resolve_assets_def("device_registry")
    assert spec.group_names_by_key[dg.AssetKey("device_registry")] == "registry"
    assert spec.owners_by_key[dg.AssetKey("device_registry")] == ["team:pdm"]
    assert definitions.resolve_job_def("maintain_database") is not None
    assert (
        definitions.resolve_schedule_def("maintain_database_schedule").cron_schedule == "15 0 * * *"
    )
    assert {"database", "plant"} <= set(definitions.resources)
    # The data flow: registry -> readings -> feature windows, each check on its asset.
    assert {"device_registry", "plc_readings", "feature_windows"} <= keys
    features = definitions.resolve_assets_def("feature_windows")
    assert dg.AssetKey("plc_readings") in features.asset_deps[dg.AssetKey("feature_windows")]
    assert isinstance(features.partitions_def, dg.HourlyPartitionsDefinition)
    checks = {
        (c.asset_key.to_user_string(), c.name)
        for c in definitions.resolve_asset_graph().asset_check_keys
    }
    names = {
        "stale_sensor",
        "flatline",
        "out_of_range",
        "read_error_rate",
        "spikes_and_jumps",
        "gaps",
        "duplicate_timestamps",
    }
    assert {("feature_windows", n) for n in names} <= checks
    assert {("plc_readings", n) for n in names} <= checks
    blocking = {s.name for s in features.check_specs if s.blocking}
    assert blocking == {"stale_sensor", "flatline", "out_of_range", "read_error_rate"}


def test_resources_are_configured_from_environment_variables() -> None:
    resources = defs().resources
    assert resources["database"].database_url == dg.EnvVar("DATABASE_URL")
    assert resources["plant"].plant_file == dg.EnvVar("PDM_PLANT_FILE")


def resources(db_url: str, plant_file: Path = EXAMPLE_PLANT) -> dict:
    return {
        "database": PostgresResource(database_url=db_url),
        "plant": PlantResource(plant_file=str(plant_file)),
    }


def test_device_registry_applies_the_plant_idempotently(db_url: str) -> None:
    first = dg.materialize([device_registry], resources=resources(db_url))
    assert first.success
    metadata = first.asset_materializations_for_node("device_registry")[0].metadata
    assert metadata["changes"].value == 121
    assert metadata["devices"].value == 12
    assert metadata["dagster/row_count"].value == 108

    second = dg.materialize([device_registry], resources=resources(db_url))
    metadata = second.asset_materializations_for_node("device_registry")[0].metadata
    assert metadata["changes"].value == 0
    assert metadata["change_log"].value == "no changes"
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM plc_register_map")) == 108
    engine.dispose()


def test_device_registry_fails_with_every_plant_problem(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("connections: [{id: gw}]\ndevices: [{id: a, connection: gw}]\npoints: []\n")
    result = dg.materialize(
        [device_registry], resources=resources(db_url, bad), raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("device_registry")
    assert failure is not None
    assert "devices[0].unit_id (a): Field required" in failure.user_failure_data.description


@pytest.mark.postgres
def test_maintain_database_creates_partitions(fresh_pg_url: str) -> None:
    from pdm_orchestration.storage import migrate

    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE sensor_readings_default"))
        conn.execute(
            sa.text("CREATE TABLE sensor_readings_default PARTITION OF sensor_readings DEFAULT")
        )
        names = [n for n in reading_partitions(engine) if n != "sensor_readings_default"]
        for name in names:
            conn.execute(sa.text(f"DROP TABLE {name}"))
    assert reading_partitions(engine) == ["sensor_readings_default"]
    result = maintain_database.execute_in_process(
        resources={"database": PostgresResource(database_url=fresh_pg_url)},
        run_config={"ops": {"create_reading_partitions": {"config": {"months_ahead": 2}}}},
    )
    assert result.success
    assert result.output_for_node("create_reading_partitions") == 3
    assert len(reading_partitions(engine)) == 4
    engine.dispose()
