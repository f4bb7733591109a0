"""One model asset per family (a new `challenger` in MLflow), gated on its way to `champion`.

For each family: `<family>_model` trains and registers a challenger; its blocking check
`beats_champion` compares it with the champion on the same validation windows; `<family>_champion`
moves the `champion` alias to it, and only runs when the check passed.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from pdm_orchestration.defs.resources import MlflowResource, PostgresResource
from pdm_orchestration.features.windows import WindowSpecError
from pdm_orchestration.models import champion, training
from pdm_orchestration.models.families import FAMILIES
from pdm_orchestration.models.labels import LabelConfig
from pdm_orchestration.models.tracking import CHALLENGER, CHAMPION, TrackingUnavailable

GROUP = "training"


class ModelConfig(dg.Config):
    """Which windows a model learns from and what its labels mean."""

    window_spec: str = Field(default="60min/10min", description="60min/10min, 30samples, ...")
    horizon: float | None = Field(
        default=None, gt=0, description="hours (time windows) or samples; default 24 h / window"
    )
    rul_cap: float | None = Field(
        default=None, gt=0, description="cap of the RUL label; default 3 x the horizon"
    )
    validation_devices: float = Field(default=0.2, ge=0, lt=1)
    validation_time: float = Field(default=0.2, ge=0, lt=1)
    sensors: list[str] | None = Field(default=None, description="default: every varying sensor")
    features: list[str] = Field(default=["last", "mean", "std", "slope"])
    params: dict[str, float] = Field(
        default={}, description="hyperparameters over the family's defaults, e.g. max_iter"
    )

    def train_config(self, family: str) -> training.TrainConfig:
        spec_default = training.TrainConfig.for_family(family, self.window_spec, self.horizon)
        labels = LabelConfig(
            horizon=spec_default.labels.horizon,
            rul_cap=self.rul_cap or spec_default.labels.rul_cap,
            validation_devices=self.validation_devices,
            validation_time=self.validation_time,
        )
        return training.TrainConfig.for_family(
            family,
            self.window_spec,
            labels=labels,
            sensors=tuple(self.sensors) if self.sensors else None,
            features=tuple(self.features),
            params=dict(self.params),
        )


def _model_asset(family: str) -> dg.AssetsDefinition:
    definition = FAMILIES[family]

    @dg.asset(
        name=f"{family}_model",
        group_name=GROUP,
        kinds={"mlflow", "scikit-learn"},
        owners=["team:pdm"],
        deps=["feature_windows"],
        # Retrained weekly (retrain_models_weekly); a model older than two weeks is stale.
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(days=15), warn_window=timedelta(days=8)
        ),
        description=(
            f"The {family} model ({definition.description}): trained on the stored feature "
            "windows and the labels maintenance_events give, validated on held-out devices and "
            "the newest windows, logged to MLflow and registered as the `challenger` version."
        ),
    )
    def model(
        context: dg.AssetExecutionContext,
        config: ModelConfig,
        database: PostgresResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        try:
            train_config = config.train_config(family)
            result = training.train(
                database.get_engine(),
                mlflow.store(),
                train_config,
                tags=MlflowResource.run_tags(context),
            )
        except (training.NotEnoughData, WindowSpecError, TrackingUnavailable) as exc:
            raise dg.Failure(description=f"{family}: {exc}") from None
        context.log.info(f"{result.logged.name} version {result.logged.version}: {result.metrics}")
        metrics = {f"validation_{k}": round(v, 6) for k, v in result.metrics.items()}
        return dg.MaterializeResult(
            metadata={
                "model_name": result.logged.name,
                "model_version": result.logged.version,
                "mlflow_run_id": result.logged.run_id,
                "mlflow_run": dg.MetadataValue.url(result.logged.url),
                "window_spec": train_config.window_spec,
                "training_windows": result.train_rows,
                "validation_windows": result.validation_rows,
                "training_data_digest": result.digest,
                "removed_devices_left_out": ", ".join(result.removed_devices) or "none",
                **metrics,
            }
        )

    return model


def _gate(family: str) -> dg.AssetChecksDefinition:
    metric = FAMILIES[family].metric

    @dg.asset_check(
        asset=f"{family}_model",
        name="beats_champion",
        blocking=True,
        description=(
            f"The challenger's {metric} beats the champion's on the same validation windows (or "
            "there is no champion yet); only then may it become champion."
        ),
    )
    def beats_champion(mlflow: MlflowResource) -> dg.AssetCheckResult:
        try:
            verdict = champion.judge(mlflow.store(), family)
        except TrackingUnavailable as exc:
            raise dg.Failure(description=str(exc)) from None
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.reason,
            metadata={
                "challenger_version": verdict.challenger or "none",
                "champion_version": verdict.champion or "none",
                "metric": metric,
                "challenger_value": verdict.challenger_value
                if verdict.challenger_value is not None
                else float("nan"),
                "champion_value": verdict.champion_value
                if verdict.champion_value is not None
                else float("nan"),
            },
        )

    return beats_champion


def _champion_asset(family: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{family}_champion",
        group_name=GROUP,
        kinds={"mlflow"},
        owners=["team:pdm"],
        deps=[f"{family}_model"],
        description=(
            f"The {family} version that scores: the `champion` alias moved to the challenger "
            "once it passed `beats_champion`."
        ),
    )
    def champion_asset(
        context: dg.AssetExecutionContext, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        store = mlflow.store()
        try:
            before = store.version(family, CHAMPION)
            version = champion.promote(store, family)
        except champion.PromotionRefused as exc:
            raise dg.Failure(description=str(exc)) from None
        except TrackingUnavailable as exc:
            raise dg.Failure(description=str(exc)) from None
        challenger = store.get_version(family, version)
        context.log.info(f"{store.model_name(family)}: champion is version {version}")
        return dg.MaterializeResult(
            metadata={
                "model_name": store.model_name(family),
                "champion_version": version,
                "previous_champion": str(before.version) if before else "none",
                "mlflow_run": dg.MetadataValue.url(store.run_url(challenger.run_id)),
                "gate": dict(challenger.tags).get("gate_reason", ""),
                "alias_moved_from": CHALLENGER,
            }
        )

    return champion_asset


MODEL_ASSETS = [_model_asset(name) for name in FAMILIES]
CHAMPION_ASSETS = [_champion_asset(name) for name in FAMILIES]
GATES = [_gate(name) for name in FAMILIES]

training_job = dg.define_asset_job(
    "retrain_models",
    selection=dg.AssetSelection.groups(GROUP),
    description="Train every family's challenger, judge it, and promote the winners.",
)

retrain_models_weekly = dg.ScheduleDefinition(
    name="retrain_models_weekly",
    job=training_job,
    cron_schedule="0 3 * * 1",  # Mondays, 03:00 UTC
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[*MODEL_ASSETS, *CHAMPION_ASSETS],
        asset_checks=GATES,
        jobs=[training_job],
        schedules=[retrain_models_weekly],
    )
