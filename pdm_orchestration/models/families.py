"""The four model families: what each learns, its scikit-learn pipeline, its outputs and metrics.

- `rules`: the plant file's warn/alarm limits plus trend extrapolation; needs no training data;
- `anomaly`: an isolation forest on healthy history (windows with no failure within the horizon),
  for plants with no failure records yet;
- `failure_risk`: the probability of a failure within the horizon (gradient-boosted trees);
- `rul`: remaining useful life regression where run-to-failure histories exist.

Every family gives a risk level (ok, watch, warn, alarm) and per sensor how much it drove the
prediction: limit urgency (rules), robust distance from healthy (anomaly), or exact tree
contributions (failure_risk, rul).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    mean_absolute_error,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from pdm_orchestration.models.contributions import by_sensor, top_sensors, tree_contributions
from pdm_orchestration.models.estimators import ALARM, OK, WARN, WATCH, AnomalyDetector, LimitRules
from pdm_orchestration.models.frames import AGE, sensor_of

RISK_NAMES = ("ok", "watch", "warn", "alarm")


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    target: str | None  # the label it learns (labels.TARGETS), None for rules and anomaly
    metric: str  # primary validation metric: the champion gate compares it
    greater_is_better: bool


FAMILIES = {
    f.name: f
    for f in (
        Family("rules", "warn/alarm limits and trend extrapolation", None, "roc_auc", True),
        Family("anomaly", "isolation forest on healthy history", None, "roc_auc", True),
        Family(
            "failure_risk",
            "probability of a failure within the horizon",
            "failure_within",
            "average_precision",
            True,
        ),
        Family("rul", "remaining useful life regression", "rul", "rmse", False),
    )
}


class UnknownFamily(ValueError):
    pass


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(
            f"unknown model family {name!r}: one of {', '.join(FAMILIES)}"
        ) from None


@dataclass(frozen=True)
class RiskPolicy:
    """Where scores become risk levels (watch, warn, alarm); kept with each model."""

    anomaly: tuple[float, float, float] = (0.95, 0.99, 0.999)  # calibrated score
    probability: tuple[float, float, float] = (0.2, 0.5, 0.8)  # failure within the horizon
    rul: tuple[float, float, float] = (2.0, 1.0, 0.5)  # x the horizon

    def as_params(self) -> dict[str, str]:
        return {f"risk.{k}": ",".join(f"{v:g}" for v in vs) for k, vs in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> RiskPolicy:
        values = {
            k.removeprefix("risk."): tuple(float(x) for x in v.split(","))
            for k, v in params.items()
            if k.startswith("risk.")
        }
        return cls(**values)


DEFAULT_PARAMS: dict[str, dict[str, float | int | str]] = {
    "rules": {"watch_factor": 3.0, "significance": 2.0},
    "anomaly": {"n_estimators": 200},
    # Shallow trees on large leaves: windows 10 minutes apart are nearly copies of each other, so
    # deep trees on small leaves learn the training devices by heart and answer 0 or 1.
    "failure_risk": {
        "max_iter": 100,
        "learning_rate": 0.05,
        "l2_regularization": 1.0,
        "max_depth": 3,
        "min_samples_leaf": 100,
    },
    "rul": {"max_iter": 500, "learning_rate": 0.05, "l2_regularization": 1.0},
}


def build_pipeline(name: str, params: dict, horizon: float, span: float = 1.0) -> Pipeline:
    """The family's pipeline, with `params` over its defaults (random_state fixed at 0).

    `span` is a window's length in the unit of its slopes (hours, or samples)."""
    p = {**DEFAULT_PARAMS[family(name).name], **params}
    if name == "rules":
        rules = LimitRules(
            horizon=horizon,
            watch_factor=float(p["watch_factor"]),
            span=span,
            significance=float(p["significance"]),
        )
        return Pipeline([("rules", rules)])
    if name == "anomaly":
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", RobustScaler()),
                ("detect", AnomalyDetector(n_estimators=int(p["n_estimators"]), random_state=0)),
            ]
        )
    trees = {
        "max_iter": int(p["max_iter"]),
        "learning_rate": float(p["learning_rate"]),
        "l2_regularization": float(p["l2_regularization"]),
        "max_depth": None if p.get("max_depth") is None else int(p["max_depth"]),
        "min_samples_leaf": int(p.get("min_samples_leaf", 20)),
        "early_stopping": False,
        "random_state": 0,
    }
    if name == "failure_risk":
        # Unweighted: its output is then a probability (weighting the rare class would inflate
        # it, and the risk thresholds and the Brier score read it as one).
        model = HistGradientBoostingClassifier(**trees)
    else:
        model = HistGradientBoostingRegressor(**trees)
    return Pipeline([("model", model)])


def fit_pipeline(
    name: str, pipeline: Pipeline, X: pd.DataFrame, y: pd.Series | None, limits: dict | None
) -> Pipeline:
    if name == "rules":
        pipeline.steps[-1][1].fit(limits=limits or {})
        return pipeline
    if name == "anomaly":
        return pipeline.fit(X)
    assert y is not None
    return pipeline.fit(X, y.astype(int) if name == "failure_risk" else y)


@dataclass
class Outputs:
    """What a family says about each row."""

    risk: np.ndarray  # int 0-3
    anomaly_score: np.ndarray | None = None
    failure_probability: np.ndarray | None = None
    rul_estimate: np.ndarray | None = None
    sensors: list[str] = field(default_factory=list)
    contributions: np.ndarray | None = None  # (rows, sensors)
    rank_key: np.ndarray | None = None  # what ranks the sensors (default: |contribution|)

    @property
    def score(self) -> np.ndarray:
        """One number per row, higher meaning nearer a failure (for ranking metrics)."""
        if self.failure_probability is not None:
            return self.failure_probability
        if self.anomaly_score is not None:
            return self.anomaly_score
        assert self.rul_estimate is not None
        return -self.rul_estimate

    def top(self, count: int = 3) -> list[list[dict[str, float]]]:
        """The sensors that drove each row (`age` drives too, but is not a sensor to look at)."""
        if self.contributions is None:
            return [[] for _ in range(len(self.risk))]
        keep = [i for i, name in enumerate(self.sensors) if name != AGE]
        key = None if self.rank_key is None else self.rank_key[:, keep]
        names = [self.sensors[i] for i in keep]
        return top_sensors(names, self.contributions[:, keep], count, key=key)

    def risk_names(self) -> np.ndarray:
        return np.array(RISK_NAMES, dtype=object)[self.risk]


def predict(
    name: str, pipeline: Pipeline, X: pd.DataFrame, policy: RiskPolicy, horizon: float
) -> Outputs:
    """The family's outputs for rows `X` (the model's input columns, in its order)."""
    if name == "rules":
        rules: LimitRules = pipeline.steps[-1][1]
        soonest, risk, urgency = rules.assess(X)
        return Outputs(
            risk=risk,
            rul_estimate=soonest,
            sensors=list(rules.sensors_),
            contributions=urgency,
        )
    columns = list(X.columns)
    sensors = [sensor_of(c) for c in columns]
    if name == "anomaly":
        score = pipeline.predict(X)
        z = np.abs(pipeline[:-1].transform(X))
        names, matrix = _max_by_sensor(z, sensors)
        return Outputs(
            risk=_levels(score, policy.anomaly, rising=True),
            anomaly_score=score,
            sensors=names,
            contributions=matrix,
        )
    model = pipeline.steps[-1][1]
    values = pipeline[:-1].transform(X) if len(pipeline) > 1 else X
    contributions, _ = tree_contributions(model, np.asarray(values, dtype=np.float64))
    names, matrix = by_sensor(contributions, sensors)
    if name == "failure_risk":
        probability = pipeline.predict_proba(X)[:, 1]
        return Outputs(
            risk=_levels(probability, policy.probability, rising=True),
            failure_probability=probability,
            sensors=names,
            contributions=matrix,
            rank_key=matrix,  # what raised the risk
        )
    rul = np.maximum(pipeline.predict(X), 0.0)
    limits = tuple(f * horizon for f in policy.rul)
    return Outputs(
        risk=_levels(rul, limits, rising=False),
        rul_estimate=rul,
        sensors=names,
        contributions=matrix,
        rank_key=-matrix,  # what shortened the life
    )


def _levels(values: np.ndarray, limits: tuple[float, float, float], *, rising: bool) -> np.ndarray:
    watch, warn, alarm = limits
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf if rising else np.inf)
    if rising:
        conditions = [v >= alarm, v >= warn, v >= watch]
    else:
        conditions = [v <= alarm, v <= warn, v <= watch]
    return np.select(conditions, [ALARM, WARN, WATCH], OK).astype(np.int64)


def _max_by_sensor(values: np.ndarray, sensors: list[str]) -> tuple[list[str], np.ndarray]:
    names = sorted(set(sensors))
    out = np.zeros((len(values), len(names)))
    for j, name in enumerate(names):
        picks = [i for i, s in enumerate(sensors) if s == name]
        out[:, j] = values[:, picks].max(axis=1)
    return names, out


def metrics(name: str, outputs: Outputs, labels: pd.DataFrame) -> dict[str, float]:
    """Validation metrics: RMSE, MAE and PHM08 for rul; average precision, ROC AUC and Brier
    score for failure_risk; ROC AUC against failure within the horizon where known, and the
    share of rows at warn or above, for every family."""
    out: dict[str, float] = {"rows": float(len(outputs.risk))}
    out["warn_or_above_share"] = float(np.mean(outputs.risk >= WARN)) if len(outputs.risk) else 0
    within = labels["failure_within"].to_numpy(dtype=np.float64)
    known = np.isfinite(within)
    classes = set(within[known].astype(int).tolist())
    if classes == {0, 1}:
        score = np.nan_to_num(outputs.score[known], nan=0.0, posinf=1e300, neginf=-1e300)
        out["roc_auc"] = float(roc_auc_score(within[known], score))
        if outputs.failure_probability is not None:
            p = outputs.failure_probability[known]
            out["average_precision"] = float(average_precision_score(within[known], p))
            out["brier"] = float(brier_score_loss(within[known], p))
    if name == "rul":
        truth = labels["rul"].to_numpy(dtype=np.float64)
        ok = np.isfinite(truth)
        if ok.any():
            out.update(rul_errors(outputs.rul_estimate[ok], truth[ok]))
    return out


def rul_errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and the PHM08 score (late predictions cost more than early ones)."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    phm = np.where(d < 0, np.exp(-d / 13) - 1, np.exp(d / 10) - 1)
    return {
        "rmse": float(np.sqrt(np.mean(d**2))),
        "mae": float(mean_absolute_error(truth, predicted)),
        "phm08": float(phm.sum()),
    }
