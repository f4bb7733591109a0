"""The device registry: the plant file applied to devices, connections and the register map."""

import dagster as dg

from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.plant.config import PlantConfigError
from pdm_orchestration.plant.registry import apply_plant, registry_summary

REGISTER_MAP_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("device_id", "integer", description="devices.id"),
        dg.TableColumn("sensor", "text", description="the point's name"),
        dg.TableColumn("register_kind", "text", description="coil, discrete, holding, input"),
        dg.TableColumn("address", "integer", description="wire address (0-based)"),
        dg.TableColumn("data_type", "text"),
        dg.TableColumn("byte_order", "text"),
        dg.TableColumn("scale", "double precision"),
        dg.TableColumn("offset", "double precision"),
        dg.TableColumn("valid_from", "timestamptz"),
        dg.TableColumn("valid_to", "timestamptz", description="NULL while current"),
    ]
)


@dg.asset(
    group_name="registry",
    kinds={"postgres", "yaml"},
    owners=["team:pdm"],
    metadata={
        "dagster/table_name": "plc_register_map",
        "dagster/column_schema": REGISTER_MAP_SCHEMA,
    },
)
def device_registry(
    context: dg.AssetExecutionContext, database: PostgresResource, plant: PlantResource
) -> dg.MaterializeResult:
    """The plant file (PDM_PLANT_FILE) applied to the registry tables.

    Idempotent: a point whose decoding changed gets a new register-map version, a device that left
    the file is deactivated (its readings are kept), and an unchanged file changes nothing.
    """
    try:
        parsed = plant.load()
    except PlantConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    engine = database.get_engine()
    report = apply_plant(engine, parsed)
    context.log.info("applied %s: %s", plant.plant_file, report.summary())
    counts = registry_summary(engine)
    changes = "\n".join(f"- {line}" for line in report.details[:200]) or "no changes"
    return dg.MaterializeResult(
        metadata={
            "plant_file": plant.plant_file,
            "changes": report.changes,
            "change_log": dg.MetadataValue.md(changes),
            "devices": counts["devices"],
            "devices_inactive": counts["devices_inactive"],
            "connections": counts["connections"],
            "register_map_versions": counts["register_map_versions"],
            "dagster/row_count": counts["points"],
        }
    )
