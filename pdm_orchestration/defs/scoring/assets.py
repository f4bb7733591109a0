"""Maintenance predictions per device and window, from the champion models (or another alias)."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from pdm_orchestration.defs.features.partitions import HOURLY
from pdm_orchestration.defs.resources import MlflowResource, PostgresResource
from pdm_orchestration.features.windows import WindowSpec, WindowSpecError
from pdm_orchestration.models import scoring
from pdm_orchestration.models.families import FAMILIES
from pdm_orchestration.models.tracking import CHAMPION, TrackingUnavailable

PREDICTIONS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("device_id", "integer", description="devices.id"),
        dg.TableColumn("window_start", "timestamptz", description="the feature window scored"),
        dg.TableColumn("window_end", "timestamptz"),
        dg.TableColumn("feature_window_id", "bigint", description="feature_windows.id"),
        dg.TableColumn("model_name", "text", description="pdm_rules, pdm_anomaly, ..."),
        dg.TableColumn("model_version", "text", description="registry version ('builtin')"),
        dg.TableColumn("model_alias", "text", description="the alias it was scored under"),
        dg.TableColumn("mlflow_run_id", "text"),
        dg.TableColumn("anomaly_score", "double precision", description="0-1, anomaly"),
        dg.TableColumn("failure_probability", "double precision", description="failure_risk"),
        dg.TableColumn("horizon", "double precision", description="in time_unit"),
        dg.TableColumn("rul_estimate", "double precision", description="rul and rules"),
        dg.TableColumn("time_unit", "text", description="h or samples"),
        dg.TableColumn("risk_level", "text", description="ok, watch, warn, alarm"),
        dg.TableColumn("status", "text", description="scored, suppressed_bad_data, ..."),
        dg.TableColumn("top_sensors", "jsonb", description="[{sensor, contribution}]"),
        dg.TableColumn("dagster_run_id", "text"),
    ]
)


class ScoringConfig(dg.Config):
    """Which model versions score (by alias), and which families."""

    alias: str = Field(default=CHAMPION, description="champion, challenger, or any alias")
    families: list[str] = Field(default=list(FAMILIES))
    fallback_window_spec: str = Field(
        default="60min/10min", description="windows the built-in rules score without models"
    )


@dg.asset(
    group_name="scoring",
    kinds={"scikit-learn", "postgres"},
    owners=["team:pdm"],
    deps=["feature_windows", *(f"{name}_champion" for name in FAMILIES)],
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # New feature windows rescore their hour; the champion assets are lineage, not triggers (with
    # no model yet the built-in rules score, and a new champion scores from the next windows on).
    automation_condition=dg.AutomationCondition.eager().ignore(
        dg.AssetSelection.assets(*(f"{name}_champion" for name in FAMILIES))
    ),
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=3), warn_window=timedelta(hours=1)
    ),
    metadata={
        "dagster/table_name": "maintenance_predictions",
        "dagster/column_schema": PREDICTIONS_SCHEMA,
    },
)
def maintenance_predictions(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    database: PostgresResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """One row per device, feature window and model version ending in the partitions' hours:
    scores, risk level, the sensors that drove it, and what it was based on. A window whose data
    failed a blocking quality check is not scored (`suppressed_bad_data`). Rerunning replaces the
    rows; scoring with another alias (a challenger) adds its rows beside the champion's.
    """
    unknown = sorted(set(config.families) - set(FAMILIES))
    if unknown:
        raise dg.Failure(description=f"unknown model families: {', '.join(unknown)}")
    try:
        models, notes = scoring.load_models(mlflow.store(), config.families, config.alias)
    except TrackingUnavailable as exc:
        raise dg.Failure(description=f"{exc}; no prediction written") from None
    for note in notes:
        context.log.warning(note)
    engine = database.get_engine()
    fallback = not models
    if fallback:
        try:
            spec = WindowSpec.from_name(config.fallback_window_spec)
        except WindowSpecError as exc:
            raise dg.Failure(description=f"fallback_window_spec: {exc}") from None
        context.log.warning(f"no {config.alias!r} model: the built-in rules score instead")
        models = [scoring.builtin_rules(engine, spec)]
    window = context.partition_time_window
    try:
        summary = scoring.score(
            engine, models, window.start, window.end, run_id=context.run.run_id, fallback=fallback
        )
    except scoring.ModelMismatch as exc:
        raise dg.Failure(description=f"{exc}; no prediction written") from None
    context.log.info(
        f"{summary.predictions} predictions ({summary.per_second:,.0f}/s), "
        f"{summary.suppressed} suppressed for bad data"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.predictions,
            "alias": config.alias,
            "models": dg.MetadataValue.json(summary.by_model),
            "fallback_to_builtin_rules": fallback,
            "families_without_model": dg.MetadataValue.json(notes),
            "suppressed_bad_data": summary.suppressed,
            "risk_levels": dg.MetadataValue.json(summary.risk_levels),
            "devices_without_windows": ", ".join(summary.devices_without_windows) or "none",
            "predictions_per_s": round(summary.per_second),
            "duration_s": round(summary.seconds, 2),
        }
    )
