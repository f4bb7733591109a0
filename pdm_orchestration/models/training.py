"""Training a family's model: the labelled training set, the fit, validation, and MLflow.

`training_set` reads feature windows, maintenance events and the limits in force from the
database; `assemble` does the same from frames in memory (the C-MAPSS reference path), so both
paths share every step after loading. `fit` trains and validates without MLflow; `train` does
it all and logs params, metrics, plots, the signature, an input example and both datasets'
digests, and registers the model as a new `challenger` version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import mlflow
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.pipeline import Pipeline
from sqlalchemy.engine import Engine

from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.models import families
from pdm_orchestration.models.estimators import LimitRules
from pdm_orchestration.models.families import Outputs, RiskPolicy
from pdm_orchestration.models.frames import AGE, feature_column, load_feature_frame, sensor_of
from pdm_orchestration.models.labels import LabelConfig, Split, split_windows
from pdm_orchestration.models.plots import training_plots
from pdm_orchestration.models.tracking import LoggedVersion, ModelStore
from pdm_orchestration.storage.events import load_events
from pdm_orchestration.storage.schema import devices, plc_register_map

log = logging.getLogger(__name__)


class NotEnoughData(ValueError):
    """The data cannot train this family (the message says what is missing)."""


@dataclass(frozen=True)
class TrainConfig:
    """What to train, on which windows, with which labels."""

    family: str
    window_spec: str = "60min/10min"
    features: tuple[str, ...] = ("last", "mean", "std", "slope")
    sensors: tuple[str, ...] | None = None  # None: every sensor that varies in training
    labels: LabelConfig = field(default_factory=LabelConfig)
    params: dict = field(default_factory=dict)
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    # Fit the final model on the validation rows too (after validating without them). The champion
    # gate then refuses the version: it has seen the data it would be judged on.
    refit_on_all: bool = False
    min_rows: int = 20

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec.from_name(self.window_spec)

    @classmethod
    def for_family(
        cls, family: str, window_spec: str = "60min/10min", horizon: float | None = None, **extra
    ) -> TrainConfig:
        """A config with the usual defaults: a 24 h horizon for time windows, the window's own
        length for sample windows, RUL capped at 3 horizons (raises `WindowSpecError` for a bad
        `window_spec`)."""
        spec = WindowSpec.from_name(window_spec)
        if horizon is None:
            horizon = float(spec.samples) if spec.samples is not None else 24.0
        # RUL capped at 3 horizons: beyond that the exact life matters less than that it is long.
        labels = extra.pop("labels", None) or LabelConfig(horizon=horizon, rul_cap=3 * horizon)
        return cls(
            family=families.family(family).name, window_spec=spec.name, labels=labels, **extra
        )


@dataclass
class TrainingSet:
    """Labelled windows of one family, split, with the model's input columns."""

    config: TrainConfig
    frame: pd.DataFrame
    split: Split
    columns: list[str]
    train: pd.Series  # rows the model fits on, without the validation rows
    validation: pd.Series  # rows it is judged on
    everything: pd.Series  # training and validation rows (the final fit with refit_on_all)
    limits: dict
    removed_devices: list[str]  # devices no longer in the plant: their windows are left out

    @property
    def target(self) -> str | None:
        return families.family(self.config.family).target

    def X(self, rows: pd.Series) -> pd.DataFrame:
        return self.frame.loc[rows, self.columns].reset_index(drop=True)

    def y(self, rows: pd.Series) -> pd.Series | None:
        if self.target is None:
            return None
        return self.split.labels(self.target)[rows].reset_index(drop=True)


def training_set(engine: Engine, config: TrainConfig) -> TrainingSet:
    """The labelled training set from the database (every window of the config's cut)."""
    spec = config.spec
    with engine.connect() as connection:
        frame = load_feature_frame(connection, spec)
        events = load_events(connection)
        active = set(
            connection.execute(sa.select(devices.c.name).where(devices.c.active.is_(True)))
            .scalars()
            .all()
        )
        limits = current_limits(connection)
    return assemble(frame, events, config, active=active, limits=limits)


def assemble(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    config: TrainConfig,
    *,
    active: set[str] | None = None,
    limits: dict | None = None,
) -> TrainingSet:
    """The labelled training set of a model frame (from the database or from memory)."""
    spec = config.spec
    name = families.family(config.family).name
    if frame.empty:
        raise NotEnoughData(
            f"no feature windows of {spec.name}: build them first (pdm-orch features build)"
        )
    removed: list[str] = []
    if active is not None:
        gone = ~frame["device"].isin(active)
        removed = sorted(frame.loc[gone, "device"].unique())
        frame = frame[~gone].reset_index(drop=True)
        known = set(frame["device"])
        events = events[events["device"].isin(known)] if "device" in events else events
        if removed:
            log.info("left out the windows and labels of removed devices: %s", ", ".join(removed))
    split = split_windows(frame, events, spec, config.labels)
    limits = limits or {}
    target = families.family(name).target
    if name == "rules":
        rules = LimitRules().fit(limits=limits)
        columns = ["device", *rules.feature_names]
        for column in columns:
            if column not in frame:
                frame[column] = np.nan
        train = pd.Series(False, index=frame.index)
    else:
        base = split.healthy_train() if name == "anomaly" else split.train(target)
        columns = _columns(frame, base, config)
        train = base & ~_blocked(frame, columns)
        if train.any():  # a column the training rows never fill teaches nothing
            filled = frame.loc[train, columns].notna().sum()
            columns = [c for c in columns if filled[c] >= 2 or c == AGE]
    validation = split.validation(target)
    if name == "rules":
        everything = train
    elif target is None:
        everything = split.late["failure_within"].eq(0) & ~_blocked(frame, columns)
    else:
        everything = split.late[target].notna() & ~_blocked(frame, columns)
    data = TrainingSet(
        config, frame, split, columns, train, validation, everything, limits, removed
    )
    _require(data, name)
    return data


def _columns(frame: pd.DataFrame, rows: pd.Series, config: TrainConfig) -> list[str]:
    present = [c for c in frame.columns if "__" in c]
    sensors = config.sensors or sorted({sensor_of(c) for c in present})
    wanted = [feature_column(s, f) for s in sensors for f in config.features]
    columns = [c for c in wanted if c in frame.columns]
    if config.sensors is None and rows.any():
        spread = frame.loc[rows, columns].std(skipna=True)
        varying = {sensor_of(c) for c in columns if spread.get(c, 0) > 0}
        columns = [c for c in columns if sensor_of(c) in varying]
    missing = [s for s in (config.sensors or ()) if not any(sensor_of(c) == s for c in columns)]
    if missing:
        raise NotEnoughData(f"no features of sensor(s) {', '.join(missing)} in the windows")
    return [*columns, AGE]


def _blocked(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Windows where a sensor the model reads failed a blocking data-quality check."""
    used = {sensor_of(c) for c in columns}
    return frame["blocked"].map(lambda sensors: bool(sensors & used))


def _require(data: TrainingSet, name: str) -> None:
    if name == "rules":
        if not data.limits:
            raise NotEnoughData("no point of the plant has warn or alarm limits")
        return
    rows = int(data.train.sum())
    cap = data.config.labels.rul_cap
    if name == "rul" and cap is not None:
        # Capped lives alone (no failure seen) say nothing of how a life ends.
        rows = int((data.y(data.train) < cap).sum())
    if rows < data.config.min_rows:
        what = {
            "anomaly": "healthy windows (no failure within the horizon, data good)",
            "failure_risk": "windows with a known failure-within-horizon label",
            "rul": "windows followed by a recorded failure (run-to-failure history)",
        }[name]
        raise NotEnoughData(
            f"{name} needs at least {data.config.min_rows} training {what}; found {rows}"
        )
    if name == "failure_risk":
        classes = set(data.y(data.train).astype(int).unique())
        if classes != {0, 1}:
            raise NotEnoughData(
                "failure_risk needs training windows with and without a failure within the "
                f"horizon; found only {'failures' if classes == {1} else 'windows without one'} "
                "(record failures in maintenance_events)"
            )


def current_limits(connection: sa.Connection) -> dict[str, dict[str, list[float | None]]]:
    """The warn and alarm limits in force, {device: {sensor: [warn_low, warn_high, alarm_low,
    alarm_high]}}, of active devices' points that have any."""
    m, d = plc_register_map.c, devices.c
    rows = connection.execute(
        sa.select(d.name, m.sensor, m.warn_low, m.warn_high, m.alarm_low, m.alarm_high)
        .join(devices, d.id == m.device_id)
        .where(m.valid_to.is_(None), d.active.is_(True))
        .order_by(d.name, m.sensor)
    ).all()
    out: dict[str, dict[str, list[float | None]]] = {}
    for device, sensor, *bounds in rows:
        if any(b is not None for b in bounds):
            out.setdefault(device, {})[sensor] = list(bounds)
    return out


@dataclass
class Fitted:
    """A trained pipeline and how it did on the validation rows."""

    family: str
    pipeline: Pipeline
    columns: list[str]
    metrics: dict[str, float]
    validation: pd.DataFrame  # meta, inputs and labels of the validation rows
    outputs: Outputs  # on the validation rows
    train_rows: int
    seconds: float


def fit(data: TrainingSet) -> Fitted:
    """Fit the family's pipeline on the training rows and judge it on the validation rows
    (with `refit_on_all`, the model returned is then fitted again on both)."""
    config = data.config
    name = config.family
    horizon = config.labels.horizon
    started = time.perf_counter()

    def fitted_on(rows: pd.Series) -> Pipeline:
        pipeline = families.build_pipeline(name, config.params, horizon, config.spec.span)
        return families.fit_pipeline(name, pipeline, data.X(rows), data.y(rows), data.limits)

    judged = fitted_on(data.train)
    final = fitted_on(data.everything) if config.refit_on_all and name != "rules" else judged
    X_val = data.X(data.validation)
    labels = data.split.late.loc[data.validation].reset_index(drop=True)
    outputs = families.predict(name, judged, X_val, config.risk, horizon)
    metrics = families.metrics(name, outputs, labels) if len(X_val) else {"rows": 0.0}
    # Every feature of the validation windows, not only this model's inputs: the champion gate
    # scores other versions (with other inputs) on exactly these windows.
    features = [c for c in data.frame.columns if "__" in c or c == AGE]
    kept = list(dict.fromkeys(["device", "window_end", *features, *data.columns]))
    rows = data.frame.loc[data.validation, kept].reset_index(drop=True)
    validation = pd.concat([rows, labels[["rul", "failure_within"]]], axis=1)
    fitted_rows = data.everything if final is not judged else data.train
    return Fitted(
        name,
        final,
        data.columns,
        metrics,
        validation,
        outputs,
        int(fitted_rows.sum()),
        time.perf_counter() - started,
    )


@dataclass
class TrainResult:
    family: str
    logged: LoggedVersion
    metrics: dict[str, float]
    train_rows: int
    validation_rows: int
    digest: str
    removed_devices: list[str]


def train(
    engine: Engine,
    store: ModelStore,
    config: TrainConfig,
    *,
    tags: dict[str, str] | None = None,
    data: TrainingSet | None = None,
) -> TrainResult:
    """Build the training set, fit, validate, log to MLflow and register a `challenger`."""
    store.check()
    data = data or training_set(engine, config)
    fitted = fit(data)
    name = config.family
    run_tags = {"family": name, "window_spec": config.window_spec, **(tags or {})}
    with store.start_run(f"{name}-{datetime.now():%Y%m%d-%H%M%S}", run_tags):
        digest = _log_run(data, fitted)
        example = data.X(data.train if data.train.any() else data.validation).head(20)
        if example.empty:
            example = data.frame[data.columns].head(20).reset_index(drop=True)
        logged = store.log_model(
            name,
            fitted.pipeline,
            example,
            spec=config.spec,
            horizon=config.labels.horizon,
            policy=config.risk,
            validation=fitted.validation,
        )
    log.info(
        "%s: version %s of %s, %s", name, logged.version, logged.name, _metric_text(fitted.metrics)
    )
    return TrainResult(
        name,
        logged,
        fitted.metrics,
        fitted.train_rows,
        len(fitted.validation),
        digest,
        data.removed_devices,
    )


def _log_run(data: TrainingSet, fitted: Fitted) -> str:
    config = data.config
    split = data.split
    mlflow.log_params(
        {
            "family": config.family,
            "window_spec": config.window_spec,
            "features": ",".join(config.features),
            "inputs": len(data.columns),
            "sensors": len({sensor_of(c) for c in data.columns if "__" in c}),
            "horizon": config.labels.horizon,
            "rul_cap": config.labels.rul_cap,
            "validation_devices": ",".join(split.held_out)[:500] or "none",
            "validation_cutoff": split.cutoff.isoformat() if split.cutoff is not None else "none",
            "refit_on_all": config.refit_on_all,
            **{f"model.{k}": v for k, v in _model_params(fitted.pipeline).items()},
            **config.risk.as_params(),
        }
    )
    mlflow.log_metrics(
        {
            **{f"val_{k}": v for k, v in fitted.metrics.items() if np.isfinite(v)},
            "train_rows": fitted.train_rows,
            "fit_seconds": fitted.seconds,
        }
    )
    target = data.target
    training = data.X(data.train)
    if target is not None:
        training[target] = data.y(data.train)
    dataset = mlflow.data.from_pandas(training, name=f"{config.family}-training", targets=target)
    mlflow.log_input(dataset, context="training")
    mlflow.log_input(
        mlflow.data.from_pandas(
            fitted.validation.drop(columns=["window_end"]), name=f"{config.family}-validation"
        ),
        context="validation",
    )
    for title, figure in training_plots(fitted).items():
        mlflow.log_figure(figure, f"plots/{title}.png")
    return dataset.digest


def _model_params(pipeline: Pipeline) -> dict[str, object]:
    step = pipeline.steps[-1][1]
    return {
        k: v
        for k, v in step.get_params(deep=False).items()
        if isinstance(v, int | float | str | bool) or v is None
    }


def _metric_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "rows")
