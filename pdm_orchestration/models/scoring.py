"""Scoring feature windows and writing `maintenance_predictions`.

For each model (a registered version, loaded by alias, or the built-in rules when no family has a
model under that alias), every window of the model's cut ending in the range gets one row: the
family's scores, a risk level, the sensors that drove it, and what it is based on (model name,
version, MLflow run, feature window, Dagster run). A window whose sensors failed a blocking
data-quality check gets no score: its row says `suppressed_bad_data` and names those sensors.

Everything is computed before anything is written, and the rows of a call are written in one
transaction with an upsert on (device, window end, model name, model version): a rerun replaces
its rows, never duplicates them, and a failure leaves no partial set behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.models import families
from pdm_orchestration.models.families import RiskPolicy
from pdm_orchestration.models.frames import AGE, load_feature_frame, sensor_of
from pdm_orchestration.models.tracking import CHAMPION, LoadedModel, ModelStore
from pdm_orchestration.models.training import current_limits
from pdm_orchestration.storage.bulk import upsert_frame
from pdm_orchestration.storage.schema import devices, maintenance_predictions, plc_register_map

log = logging.getLogger(__name__)

SCORED, SUPPRESSED, FALLBACK = "scored", "suppressed_bad_data", "fallback_rules"
BUILTIN = "builtin"
PREDICTION_KEY = ("device_id", "window_end", "model_name", "model_version")


class ModelMismatch(ValueError):
    """A model reads inputs the feature windows do not have (the message names them)."""


def load_models(
    store: ModelStore, family_names: list[str], alias: str
) -> tuple[list[LoadedModel], list[str]]:
    """The models `alias` points at, per family, and notes on the families that have none.

    Raises `TrackingUnavailable` when the store cannot be reached.
    """
    store.check()
    found, notes = [], []
    for name in family_names:
        model = store.load(families.family(name).name, alias=alias)
        if model is None:
            notes.append(f"{store.model_name(name)} has no {alias!r} version")
            continue
        if alias != CHAMPION:
            # Its rows are the champion's rows (same version): scoring them again under another
            # alias would relabel them.
            champion = store.version(name, CHAMPION)
            if champion is not None and str(champion.version) == model.version:
                notes.append(
                    f"{store.model_name(name)} {alias!r} is the champion (v{model.version})"
                )
                continue
        found.append(model)
    return found, notes


def builtin_rules(
    engine: Engine, spec: WindowSpec, *, horizon: float = 24.0, policy: RiskPolicy | None = None
) -> LoadedModel:
    """The plant file's limits as a rules model, for when no model has been registered."""
    with engine.connect() as connection:
        limits = current_limits(connection)
    pipeline = families.build_pipeline("rules", {}, horizon, spec.span)
    families.fit_pipeline("rules", pipeline, None, None, limits)
    rules = pipeline.steps[-1][1]
    return LoadedModel(
        family="rules",
        name="pdm_rules",
        version=BUILTIN,
        alias=BUILTIN,
        run_id=None,
        pipeline=pipeline,
        columns=["device", *rules.feature_names],
        spec=spec,
        horizon=horizon,
        policy=policy or RiskPolicy(),
    )


@dataclass
class ScoreSummary:
    predictions: int = 0
    suppressed: int = 0
    by_model: dict[str, int] = field(default_factory=dict)  # "name v<version>" -> rows
    risk_levels: dict[str, int] = field(default_factory=dict)
    devices_without_windows: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.predictions / self.seconds if self.seconds else 0.0


def score(
    engine: Engine,
    models: list[LoadedModel],
    start: datetime,
    end: datetime,
    *,
    run_id: str | None = None,
    fallback: bool = False,
) -> ScoreSummary:
    """Score the windows ending in (start, end] with every model and upsert the rows."""
    began = time.perf_counter()
    summary = ScoreSummary()
    predicted_at = pd.Timestamp(datetime.now(UTC))
    frames: dict[str, pd.DataFrame] = {}
    parts = []
    with engine.connect() as connection:
        known_sensors = set(
            connection.execute(
                sa.select(plc_register_map.c.sensor)
                .join(devices, devices.c.id == plc_register_map.c.device_id)
                .where(plc_register_map.c.valid_to.is_(None), devices.c.active.is_(True))
            ).scalars()
        )
        active = set(
            connection.execute(sa.select(devices.c.name).where(devices.c.active.is_(True)))
            .scalars()
            .all()
        )
        limits = current_limits(connection)
        for model in models:
            if model.spec.name not in frames:
                frames[model.spec.name] = load_feature_frame(
                    connection, model.spec, start, end, active_only=True
                )
    scored_devices: set[str] = set()
    for model in models:
        frame = frames[model.spec.name]
        scored_devices |= set(frame["device"])
        if model.family == "rules":
            model = _with_limits(model, limits)
        rows = _score_model(model, frame, known_sensors, fallback)
        rows["predicted_at"] = predicted_at
        rows["dagster_run_id"] = run_id
        parts.append(rows)
        label = f"{model.name} v{model.version}"
        summary.by_model[label] = len(rows)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not out.empty:
        with engine.begin() as connection:
            upsert_frame(connection, maintenance_predictions, out, PREDICTION_KEY)
        summary.predictions = len(out)
        summary.suppressed = int((out["status"] == SUPPRESSED).sum())
        summary.risk_levels = out["risk_level"].fillna("none").value_counts().to_dict()
    summary.devices_without_windows = sorted(active - scored_devices)
    summary.seconds = time.perf_counter() - began
    return summary


def _with_limits(model: LoadedModel, limits: dict) -> LoadedModel:
    """The rules model with the limits in force now: the plant file is the authority on limits,
    the registered version keeps its method (horizon, trend significance)."""
    pipeline = copy.deepcopy(model.pipeline)
    rules = pipeline.steps[-1][1].fit(limits=limits)
    return dataclasses.replace(model, pipeline=pipeline, columns=["device", *rules.feature_names])


def _score_model(
    model: LoadedModel, frame: pd.DataFrame, known_sensors: set[str], fallback: bool
) -> pd.DataFrame:
    missing = [c for c in model.columns if c not in frame.columns and c not in ("device", AGE)]
    unknown = sorted({sensor_of(c) for c in missing} - known_sensors)
    if unknown:
        raise ModelMismatch(
            f"{model.name} version {model.version} reads sensor(s) the plant no longer has: "
            f"{', '.join(unknown[:10])}; retrain it (pdm-orch models train {model.family})"
        )
    X = frame.reindex(columns=model.columns)  # sensors no device of the range has: NaN
    used = {sensor_of(c) for c in model.columns if c not in ("device", AGE)}
    blocked = frame["blocked"].map(lambda sensors: sorted(sensors & used)).to_numpy()
    suppressed = np.array([bool(b) for b in blocked], dtype=bool)
    n = len(frame)
    anomaly = np.full(n, np.nan)
    probability = np.full(n, np.nan)
    rul = np.full(n, np.nan)
    risk = np.full(n, None, dtype=object)
    top: list[str] = [json.dumps([{"sensor": s, "blocked": True} for s in b]) for b in blocked]
    keep = ~suppressed
    if keep.any():
        outputs = families.predict(
            model.family,
            model.pipeline,
            X.loc[keep].reset_index(drop=True),
            model.policy,
            model.horizon,
        )
        for target, values in (
            (anomaly, outputs.anomaly_score),
            (probability, outputs.failure_probability),
            (rul, outputs.rul_estimate),
        ):
            if values is not None:
                target[keep] = values
        risk[keep] = outputs.risk_names()
        for position, sensors in zip(np.flatnonzero(keep), outputs.top(), strict=True):
            top[position] = json.dumps(sensors)
    rul[~np.isfinite(rul)] = np.nan  # "no trend toward a limit" is no estimate
    status = np.where(suppressed, SUPPRESSED, FALLBACK if fallback else SCORED)
    return pd.DataFrame(
        {
            "device_id": frame["device_id"].to_numpy(),
            "window_start": frame["window_start"],
            "window_end": frame["window_end"],
            "feature_window_id": frame["feature_window_id"].astype("Int64"),
            "model_name": model.name,
            "model_version": model.version,
            "model_alias": model.alias,
            "mlflow_run_id": model.run_id,
            "anomaly_score": anomaly,
            "failure_probability": probability,
            "horizon": model.horizon,
            "rul_estimate": rul,
            "time_unit": model.unit,
            "risk_level": risk,
            "status": status,
            "top_sensors": top,
        }
    )
