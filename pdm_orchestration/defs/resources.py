"""Resources shared by every domain, configured from environment variables (`.env`)."""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from pdm_orchestration.models.tracking import ModelStore
from pdm_orchestration.plant.config import Plant, load_plant
from pdm_orchestration.settings import load_settings
from pdm_orchestration.storage.engine import make_engine


class PostgresResource(dg.ConfigurableResource):
    """The project database through one SQLAlchemy engine per run.

    PostgreSQL in production; any SQLAlchemy URL works (the local default is SQLite).
    """

    database_url: str
    echo: bool = False

    _engine: Engine | None = PrivateAttr(default=None)

    def get_engine(self) -> Engine:
        """The run's engine, created on first use."""
        if self._engine is None:
            url = load_settings(database_url=self.database_url).db_url
            self._engine = make_engine(url, echo=self.echo)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class PlantResource(dg.ConfigurableResource):
    """The plant file, how to reach its PLCs, and how often to poll them.

    `plc_host`/`plc_port` serve connections that name none; `poll_interval_s` the points in no poll
    group; `pdm_home` holds the store-and-forward spool.
    """

    plant_file: str
    plc_host: str = "127.0.0.1"
    plc_port: int = 5020
    # Text, as environment variables are: dg.EnvVar can feed str (and int) fields only.
    poll_interval_seconds: str = "10"
    pdm_home: str = ".pdm"

    @property
    def poll_interval_s(self) -> float:
        """The poll interval, validated like PLC_POLL_INTERVAL_SECONDS everywhere else."""
        value = self.poll_interval_seconds
        return load_settings(plc_poll_interval_seconds=value).plc_poll_interval_seconds

    def load(self) -> Plant:
        """Read and validate the plant file (raises `PlantConfigError` listing every problem)."""
        return load_plant(
            Path(self.plant_file), default_host=self.plc_host, default_port=self.plc_port
        )


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking store (and registry) the models live in.

    Every MLflow run started through it is tagged with the Dagster run id, so a run in the MLflow
    UI leads back to the Dagster run that made it (and the asset metadata links the other way).
    """

    tracking_uri: str
    experiment: str = "pdm-orchestration"
    model_prefix: str = "pdm"

    def store(self) -> ModelStore:
        # Relative SQLite paths are made absolute, as MLFLOW_TRACKING_URI is everywhere else.
        uri = load_settings(mlflow_tracking_uri=self.tracking_uri).mlflow_tracking_uri
        assert uri is not None
        return ModelStore(uri, experiment=self.experiment, prefix=self.model_prefix)

    @staticmethod
    def run_tags(context: dg.AssetExecutionContext) -> dict[str, str]:
        return {"dagster_run_id": context.run.run_id, "dagster_job": context.run.job_name}


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alert notifications are POSTed (ALERT_WEBHOOK_URL; empty: nowhere)."""

    url: str = ""
    timeout_s: float = 5.0
    attempts: int = 3


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "database": PostgresResource(database_url=dg.EnvVar("DATABASE_URL")),
            "plant": PlantResource(
                plant_file=dg.EnvVar("PDM_PLANT_FILE"),
                plc_host=dg.EnvVar("PLC_HOST"),
                plc_port=dg.EnvVar.int("PLC_PORT"),
                poll_interval_seconds=dg.EnvVar("PLC_POLL_INTERVAL_SECONDS"),
                pdm_home=dg.EnvVar("PDM_HOME"),
            ),
            "mlflow": MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI")),
            "webhook": AlertWebhookResource(url=dg.EnvVar("ALERT_WEBHOOK_URL")),
        }
    )
