"""Modbus ingestion: one bounded polling session per run, into `sensor_readings`."""

import asyncio
from pathlib import Path

import dagster as dg
from pydantic import Field

from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.modbus.session import (
    RegistryUnavailable,
    open_store,
    run_session,
    spool_path,
)
from pdm_orchestration.plant.config import PlantConfigError
from pdm_orchestration.storage.spool import Spool

INGEST_POOL = "plc"
READINGS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("device_id", "integer", description="devices.id"),
        dg.TableColumn("sensor", "text", description="the point's name"),
        dg.TableColumn("ts", "timestamptz", description="device clock, or time of the response"),
        dg.TableColumn("value", "double precision", description="engineering value"),
        dg.TableColumn("quality", "text", description="good, bad_timeout, bad_exception_<n> ..."),
        dg.TableColumn("register_map_id", "integer", description="the decoding used"),
        dg.TableColumn("value_text", "text", description="value of string points"),
    ]
)


class PollingConfig(dg.Config):
    """How long the session polls and how often (None: PLC_POLL_INTERVAL_SECONDS)."""

    duration_s: float = Field(default=60.0, gt=0)
    interval_s: float | None = Field(default=None, gt=0)


@dg.asset(
    group_name="ingest",
    kinds={"modbus", "postgres"},
    owners=["team:pdm"],
    deps=["device_registry"],
    pool=INGEST_POOL,
    metadata={"dagster/table_name": "sensor_readings", "dagster/column_schema": READINGS_SCHEMA},
)
def plc_readings(
    context: dg.AssetExecutionContext,
    config: PollingConfig,
    database: PostgresResource,
    plant: PlantResource,
) -> dg.MaterializeResult:
    """Readings of every PLC of the plant from one bounded polling session (Modbus TCP, read-only).

    Each value carries a quality code; spans that could not be read become `ingest_gaps` rows;
    readings the database cannot take wait in the local spool and are forwarded later. With the
    database unreachable at the start, the session polls with the registry ids cached at the last
    start and spools everything.
    """
    try:
        parsed = plant.load()
    except PlantConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    engine = database.get_engine()
    spool = Spool(spool_path(Path(plant.pdm_home).resolve()))
    try:
        try:
            store = open_store(engine, parsed, spool)
        except RegistryUnavailable as exc:
            raise dg.Failure(description=str(exc)) from None
        if store.registry_cached_at is not None:
            context.log.warning(
                f"database unreachable: registry not applied, using the ids cached at "
                f"{store.registry_cached_at}; readings are spooled"
            )
        result = asyncio.run(
            run_session(
                parsed,
                store,
                duration_s=config.duration_s,
                interval_s=config.interval_s or plant.poll_interval_s,
            )
        )
    finally:
        spool.close()
    context.log.info(result.summary())
    p50, p99 = result.poll.latency_ms(0.5), result.poll.latency_ms(0.99)
    return dg.MaterializeResult(
        metadata={
            "readings_written": result.store.written,
            "readings_polled": result.poll.readings,
            "readings_not_good": result.poll.bad_readings,
            "readings_spooled": result.store.spooled,
            "readings_forwarded": result.store.forwarded,
            "spool_pending": result.spool_pending,
            "gaps": result.store.gaps,
            "devices_ok": len(result.devices_ok),
            "devices_failed": len(result.devices_failed),
            "devices_failed_names": ", ".join(result.devices_failed) or "none",
            "requests": result.poll.requests,
            "latency_p50_ms": p50 if p50 is not None else float("nan"),
            "latency_p99_ms": p99 if p99 is not None else float("nan"),
            "duration_s": round(result.duration_s, 2),
            "registry_applied": store.registry_cached_at is None,
        }
    )
