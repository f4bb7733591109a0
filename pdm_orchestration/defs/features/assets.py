"""Feature windows per device, with the data-quality checks that decide what may be scored."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from pdm_orchestration.defs.features.checks import check_results
from pdm_orchestration.defs.features.partitions import HOURLY
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.features.build import build_features
from pdm_orchestration.features.quality import BLOCKING, CHECKS, QualityRules
from pdm_orchestration.features.windows import WindowSpec, WindowSpecError

FEATURES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("device_id", "integer", description="devices.id"),
        dg.TableColumn("window_spec", "text", description="60min/10min, or 30samples"),
        dg.TableColumn("window_start", "timestamptz", description="exclusive"),
        dg.TableColumn("window_end", "timestamptz", description="inclusive; no reading after it"),
        dg.TableColumn("features", "jsonb", description="{sensor__count|mean|std|...: value}"),
        dg.TableColumn("reading_count", "integer", description="readings of every quality"),
        dg.TableColumn("quality_flags", "jsonb", description="{sensor: [failed checks]}"),
        dg.TableColumn("register_map_ids", "jsonb", description="register-map versions read"),
    ]
)


class FeatureConfig(dg.Config):
    """How windows are cut, and how strict the data-quality checks are."""

    window: str = Field(default="60min", description="60min, 1h, ... or 30samples (cycle data)")
    stride: str = Field(default="10min", description="time between window ends (time windows)")
    stale_factor: float = Field(default=3.0, gt=0, description="x the poll interval")
    time_scale: float = Field(
        default=1.0,
        gt=0,
        description="device-clock seconds per second of polling: 1 for a real plant, the "
        "simulator's --speed when it runs accelerated",
    )
    max_error_rate: float = Field(default=0.2, ge=0, le=1)
    jump_ratio: float = Field(default=8.0, gt=1)
    max_blocked_share: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="a blocking check fails the run when more sensor windows than this fail it; "
        "below it, the failing devices' windows are suppressed at scoring instead",
    )


@dg.asset(
    group_name="features",
    kinds={"pandas", "postgres"},
    owners=["team:pdm"],
    deps=["plc_readings"],
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # New readings refresh the newest hour (automation, see defs/automation.py).
    automation_condition=dg.AutomationCondition.eager(),
    metadata={"dagster/table_name": "feature_windows", "dagster/column_schema": FEATURES_SCHEMA},
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="feature_windows", description=text, blocking=name in BLOCKING
        )
        for name, text in CHECKS.items()
    ],
)
def feature_windows(
    context: dg.AssetExecutionContext,
    config: FeatureConfig,
    database: PostgresResource,
    plant: PlantResource,
) -> dg.MaterializeResult:
    """Per-device window features of every sensor (count, mean, std, min, max, last, peak to peak,
    RMS, slope, share of good readings) for the windows ending in the partitions' hours.

    Rerunning a range replaces its windows. Each data-quality check's result names the failing
    devices, sensors and windows; every result also lands in `sensor_quality`.
    """
    try:
        spec = WindowSpec.parse(
            config.window, None if "samples" in config.window else config.stride
        )
    except WindowSpecError as exc:
        raise dg.Failure(description=f"feature window config: {exc}") from None
    window = context.partition_time_window
    rules = QualityRules(
        stale_factor=config.stale_factor,
        max_error_rate=config.max_error_rate,
        jump_ratio=config.jump_ratio,
    )

    def progress(done) -> None:
        context.log.info(
            f"{done.windows} device windows from {done.readings} readings "
            f"({done.readings_per_s:,.0f} readings/s)"
        )

    # The current hour fills while it is refreshed: no window that ends in the future.
    end = min(window.end, datetime.now(UTC))
    if end <= window.start:
        raise dg.Failure(description=f"partition {context.partition_key} lies in the future")
    summary = build_features(
        database.get_engine(),
        spec,
        window.start,
        end,
        default_interval_s=plant.poll_interval_s,
        time_scale=config.time_scale,
        rules=rules,
        run_id=context.run.run_id,
        progress=progress,
    )
    return dg.MaterializeResult(
        metadata={
            "window_spec": spec.name,
            "windows": summary.windows,
            "devices": len(summary.devices),
            "readings": summary.readings,
            "readings_per_s": round(summary.readings_per_s),
            "dagster/row_count": summary.windows,
            "duration_s": round(summary.seconds, 2),
        },
        check_results=check_results(summary, "feature_windows", config.max_blocked_share),
    )
