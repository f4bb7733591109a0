"""MLflow: logging trained models, the registry's aliases, loading models back.

One `ModelStore` per tracking URI. Registered models are named `<prefix>_<family>` (default
`pdm_rul`, ...). Versions carry their family, window cut, horizon and risk policy as tags, so a
loaded model knows how to score. Aliases, never stages: a new version is `challenger`, and
`champion` moves to it only through the gate (`champion.py`).

Models are stored with skops; the types it may load are the ones the pipeline holds, checked to
come from scikit-learn, numpy or this package before they are listed as trusted.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
import pandas as pd
import sklearn
import skops
import skops.io
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from sklearn.pipeline import Pipeline

from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.models.families import RiskPolicy

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VALIDATION_ARTIFACT = "validation/validation.parquet"
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "pdm_orchestration.")
# Errors about the request, not the store: a missing model, version or alias.
_ABSENT = {ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)}
_LOGICAL = _ABSENT | {ErrorCode.Name(RESOURCE_ALREADY_EXISTS)}


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached or used; the message names it."""


@dataclass(frozen=True)
class LoggedVersion:
    name: str
    version: str
    run_id: str
    url: str


@dataclass
class LoadedModel:
    """A registered model version, ready to score."""

    family: str
    name: str
    version: str
    alias: str | None
    run_id: str | None
    pipeline: Pipeline
    columns: list[str]  # input columns, in order
    spec: WindowSpec
    horizon: float
    policy: RiskPolicy

    @property
    def unit(self) -> str:
        return "samples" if self.spec.by_samples else "h"


class ModelStore:
    """Models of one MLflow tracking store (and its registry)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "pdm-orchestration",
        prefix: str = "pdm",
        ui_url: str | None = None,
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.prefix = prefix
        # Without a tracking server MLflow would put artifacts in ./mlruns of whatever the working
        # directory is: keep them beside a SQLite store, or under PDM_HOME for a database store.
        self.artifact_location = artifact_location or _default_artifacts(tracking_uri)
        self.ui_url = (ui_url or _ui_base(tracking_uri)).rstrip("/")
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def model_name(self, family: str) -> str:
        return f"{self.prefix}_{family}"

    @contextmanager
    def _reaching(self, what: str) -> Iterator[None]:
        try:
            yield
        except TrackingUnavailable:
            raise
        except MlflowException as exc:
            if exc.error_code in _LOGICAL:
                raise
            raise TrackingUnavailable(self._unavailable(what, exc)) from None
        except Exception as exc:  # connection errors, a broken SQLite store, ...
            raise TrackingUnavailable(self._unavailable(what, exc)) from None

    @property
    def safe_uri(self) -> str:
        """The tracking URI without a password (for messages and logs)."""
        return _hide_password(self.tracking_uri)

    def _unavailable(self, what: str, exc: BaseException) -> str:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        first = first.replace(self.tracking_uri, self.safe_uri)
        return f"MLflow tracking store {self.safe_uri} unavailable while {what}: {first}"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def check(self, timeout_s: float = 5.0) -> None:
        """Raise `TrackingUnavailable` unless the store answers.

        A tracking server is asked for its health first, once and briefly: MLflow's own client
        retries a server that is not there for minutes before it gives up."""
        if self.tracking_uri.startswith(("http://", "https://")):
            import requests

            try:
                requests.get(f"{self.tracking_uri.rstrip('/')}/health", timeout=timeout_s)
            except requests.RequestException as exc:
                raise TrackingUnavailable(self._unavailable("connecting", exc)) from None
        with self._reaching("connecting"):
            self.client().search_experiments(max_results=1)

    def run(self, run_id: str):
        with self._reaching("reading a run"):
            return self.client().get_run(run_id)

    def run_url(self, run_id: str) -> str:
        with self._reaching("reading a run"):
            run = self.client().get_run(run_id)
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
        """An MLflow run in the project's experiment, tagged (e.g. with the Dagster run id)."""
        with self._reaching("starting a run"):
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            experiment = self._experiment()
            run = mlflow.start_run(
                experiment_id=experiment.experiment_id, run_name=run_name, tags=tags
            )
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run()

    def _experiment(self):
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            client.create_experiment(self.experiment, artifact_location=self.artifact_location)
            found = client.get_experiment_by_name(self.experiment)
        return mlflow.set_experiment(experiment_id=found.experiment_id)

    def log_model(
        self,
        family: str,
        pipeline: Pipeline,
        example: pd.DataFrame,
        *,
        spec: WindowSpec,
        horizon: float,
        policy: RiskPolicy,
        validation: pd.DataFrame,
    ) -> LoggedVersion:
        """Log and register `pipeline` in the active run; the new version becomes `challenger`."""
        name = self.model_name(family)
        run = mlflow.active_run()
        assert run is not None, "log_model runs inside start_run"
        with self._reaching("logging the model"):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "validation.parquet"
                validation.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), artifact_path="validation")
            signature = infer_signature(example, _example_output(pipeline, example))
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=example.head(5),
                registered_model_name=name,
                serialization_format="skops",
                skops_trusted_types=trusted_types(pipeline),
                pip_requirements=[
                    f"scikit-learn=={sklearn.__version__}",
                    f"skops=={skops.__version__}",
                    "pdm-orchestration",
                ],
            )
            version = str(info.registered_model_version)
            client = self.client()
            tags = {
                "family": family,
                "window_spec": spec.name,
                "horizon": f"{horizon:g}",
                "unit": "samples" if spec.by_samples else "h",
                "columns": json.dumps(list(example.columns)),
                **policy.as_params(),
            }
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
            client.set_registered_model_alias(name, CHALLENGER, version)
        return LoggedVersion(name, version, run.info.run_id, self.run_url(run.info.run_id))

    def version(self, family: str, alias: str) -> ModelVersion | None:
        """The version `alias` points at, or None (no such model or alias)."""
        with self._reaching("resolving an alias"):
            try:
                return self.client().get_model_version_by_alias(self.model_name(family), alias)
            except MlflowException as exc:
                if exc.error_code in _ABSENT:
                    return None
                raise

    def set_alias(self, family: str, alias: str, version: str) -> None:
        with self._reaching("moving an alias"):
            self.client().set_registered_model_alias(self.model_name(family), alias, version)

    def drop_alias(self, family: str, alias: str) -> None:
        with self._reaching("removing an alias"):
            self.client().delete_registered_model_alias(self.model_name(family), alias)

    def tag_version(self, family: str, version: str, tags: dict[str, str]) -> None:
        with self._reaching("tagging a version"):
            client = self.client()
            for key, value in tags.items():
                client.set_model_version_tag(self.model_name(family), version, key, value)

    def get_version(self, family: str, version: str) -> ModelVersion:
        with self._reaching("reading a version"):
            return self.client().get_model_version(self.model_name(family), version)

    def versions(self, family: str) -> list[ModelVersion]:
        with self._reaching("listing versions"):
            try:
                found = self.client().search_model_versions(f"name = '{self.model_name(family)}'")
            except MlflowException as exc:
                if exc.error_code in _ABSENT:
                    return []
                raise
        return sorted(found, key=lambda v: int(v.version))

    def aliases(self, family: str) -> dict[str, str]:
        """alias -> version of the family's registered model ({} when it has none)."""
        with self._reaching("reading aliases"):
            try:
                model = self.client().get_registered_model(self.model_name(family))
            except MlflowException as exc:
                if exc.error_code in _ABSENT:
                    return {}
                raise
        return {alias: str(version) for alias, version in model.aliases.items()}

    def load(self, family: str, *, alias: str | None = None, version: str | None = None):
        """The model `alias` (or `version`) of the family, or None when there is none."""
        if version is None:
            assert alias is not None
            found = self.version(family, alias)
            if found is None:
                return None
            version = str(found.version)
        key = (self.model_name(family), version)
        if key not in self._loaded:
            with self._reaching("loading a model"):
                mv = self.get_version(family, version)
                pipeline = mlflow.sklearn.load_model(f"models:/{key[0]}/{version}")
            tags = dict(mv.tags)
            self._loaded[key] = LoadedModel(
                family=family,
                name=key[0],
                version=version,
                alias=alias,
                run_id=mv.run_id,
                pipeline=pipeline,
                columns=json.loads(tags["columns"]),
                spec=WindowSpec.from_name(tags["window_spec"]),
                horizon=float(tags["horizon"]),
                policy=RiskPolicy.from_params(tags),
            )
        loaded = self._loaded[key]
        if alias is not None and loaded.alias != alias:
            loaded = LoadedModel(**{**loaded.__dict__, "alias": alias})
        return loaded

    def validation_frame(self, run_id: str) -> pd.DataFrame:
        """The validation rows a run logged (what the champion gate compares on)."""
        with self._reaching("downloading validation data"), tempfile.TemporaryDirectory() as out:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=VALIDATION_ARTIFACT,
                dst_path=out,
                tracking_uri=self.tracking_uri,
            )
            return pd.read_parquet(path)


def trusted_types(pipeline: Pipeline) -> list[str]:
    """The types skops must trust to load `pipeline`; only scikit-learn's, numpy's and ours."""
    found = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    foreign = [t for t in found if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise ValueError(f"the pipeline holds types that are not trusted: {', '.join(foreign)}")
    return found


def _example_output(pipeline: Pipeline, example: pd.DataFrame):
    return pipeline.predict(example.head(5))


def _hide_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _default_artifacts(tracking_uri: str) -> str | None:
    """Where a store without a server keeps artifacts (a server decides for itself: None)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return (database.parent / "mlartifacts").resolve().as_uri()
    from pdm_orchestration.settings import get_settings

    return (get_settings().pdm_home / "mlartifacts").as_uri()


def _ui_base(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri
    return "http://127.0.0.1:5000"
