"""The project's own scikit-learn estimators: limit rules and a calibrated anomaly detector.

Both are plain estimators (`fit`, `predict`), so they sit in a `Pipeline` and travel into MLflow
with it (skops, with these classes named as trusted types).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest

from pdm_orchestration.models.frames import feature_column

LIMIT_NAMES = ("warn_low", "warn_high", "alarm_low", "alarm_high")
# Risk levels as numbers: 0 ok, 1 watch, 2 warn, 3 alarm.
OK, WATCH, WARN, ALARM = 0, 1, 2, 3


class LimitRules(BaseEstimator):
    """The plant file's warn and alarm limits, plus trend extrapolation; nothing to learn.

    `fit` takes the limits in force, `{device: {sensor: [warn_low, warn_high, alarm_low,
    alarm_high]}}` (None where a limit is not set). Input rows name their `device` and carry
    `<sensor>__last`, `<sensor>__slope` (per hour, or per sample) and `<sensor>__std`. For each
    sensor with limits: alarm when the last value is past an alarm limit, warn when past a warn
    limit or when the trend reaches an alarm limit within `horizon`, watch when it does within
    `watch_factor` x `horizon`. A trend counts only when it stands out of the noise: the change it
    makes over the window (`span`, in the slope's unit) is more than `significance` x the
    window's standard deviation. `predict` gives the time until the first alarm limit is reached
    (0 when already past it, inf when no trend heads for one): a remaining useful life by rules.
    """

    def __init__(
        self,
        horizon: float = 24.0,
        watch_factor: float = 3.0,
        span: float = 1.0,
        significance: float = 2.0,
    ) -> None:
        self.horizon = horizon
        self.watch_factor = watch_factor
        self.span = span
        self.significance = significance

    def fit(self, X: pd.DataFrame | None = None, y: object = None, *, limits: dict) -> LimitRules:
        self.limits_ = {
            str(device): {
                str(sensor): [None if v is None else float(v) for v in bounds]
                for sensor, bounds in sensors.items()
            }
            for device, sensors in limits.items()
        }
        self.sensors_ = sorted({s for sensors in self.limits_.values() for s in sensors})
        return self

    @property
    def feature_names(self) -> list[str]:
        """The input columns the rules read (beside `device`)."""
        return [
            feature_column(sensor, feature)
            for sensor in self.sensors_
            for feature in ("last", "slope", "std")
        ]

    def assess(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time to alarm, risk level 0-3, urgency per sensor of shape (n, len(sensors_)))."""
        n = len(X)
        devices = X["device"].astype(str).to_numpy()
        to_alarm = np.full((n, len(self.sensors_)), np.inf)
        level = np.zeros((n, len(self.sensors_)), dtype=np.int64)
        for j, sensor in enumerate(self.sensors_):
            bounds = np.array(
                [self.limits_.get(d, {}).get(sensor, [None] * 4) for d in devices], dtype=float
            )
            if not np.isfinite(bounds).any():
                continue
            last = _column(X, feature_column(sensor, "last"), n)
            slope = _column(X, feature_column(sensor, "slope"), n)
            noise = _column(X, feature_column(sensor, "std"), n)
            with np.errstate(invalid="ignore"):
                trending = np.abs(slope) * self.span > self.significance * np.nan_to_num(noise)
            slope = np.where(trending, slope, 0.0)
            warn_low, warn_high, alarm_low, alarm_high = bounds.T
            with np.errstate(invalid="ignore", divide="ignore"):
                past_alarm = (last >= alarm_high) | (last <= alarm_low)
                past_warn = (last >= warn_high) | (last <= warn_low)
                up = np.where(slope > 0, (alarm_high - last) / slope, np.inf)
                down = np.where(slope < 0, (alarm_low - last) / slope, np.inf)
            eta = np.fmin(
                np.where(np.isnan(up), np.inf, up), np.where(np.isnan(down), np.inf, down)
            )
            eta = np.where(past_alarm, 0.0, eta)
            to_alarm[:, j] = eta
            level[:, j] = np.select(
                [
                    past_alarm,
                    past_warn | (eta <= self.horizon),
                    eta <= self.watch_factor * self.horizon,
                ],
                [ALARM, WARN, WATCH],
                OK,
            )
        # Per sensor: 1 past an alarm limit; past a warn limit at least 0.5; else how soon the
        # trend reaches an alarm limit (0 with no trend toward one).
        trend = self.horizon / (self.horizon + to_alarm)
        urgency = np.where(level >= WARN, np.maximum(trend, 0.5), trend)
        soonest = to_alarm.min(axis=1) if len(self.sensors_) else np.full(n, np.inf)
        risk = level.max(axis=1) if len(self.sensors_) else np.zeros(n, dtype=np.int64)
        return soonest, risk, urgency

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.assess(X)[0]


def _column(X: pd.DataFrame, name: str, n: int) -> np.ndarray:
    return X[name].to_numpy(dtype=np.float64) if name in X.columns else np.full(n, np.nan)


class AnomalyDetector(BaseEstimator):
    """An isolation forest whose score is calibrated on the healthy windows it was fitted on.

    `predict` gives the share of the training windows that look less anomalous than this one
    (0.5 is typical, 0.99 rarer than 99 in 100 healthy windows).
    """

    def __init__(self, n_estimators: int = 200, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> AnomalyDetector:
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=1
        ).fit(X)
        self.reference_ = np.sort(-self.forest_.score_samples(X))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = -self.forest_.score_samples(X)
        return np.searchsorted(self.reference_, raw, side="right") / len(self.reference_)
