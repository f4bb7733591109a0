"""The project's estimators: exact tree contributions, limit rules, the anomaly calibration."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from pdm_orchestration.models.contributions import by_sensor, top_sensors, tree_contributions
from pdm_orchestration.models.estimators import ALARM, OK, WARN, WATCH, AnomalyDetector, LimitRules


def data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[rng.random((n, 5)) < 0.05] = np.nan  # missing values take their own branch
    y = 3 * np.nan_to_num(X[:, 0]) - 2 * np.nan_to_num(X[:, 1]) ** 2 + rng.normal(0, 0.1, n)
    return X, y


def test_contributions_add_up_to_the_regression() -> None:
    X, y = data()
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(X, y)
    contributions, bias = tree_contributions(model, X)
    np.testing.assert_allclose(bias + contributions.sum(axis=1), model.predict(X), atol=1e-9)
    # The features the target depends on carry the contributions; noise features nearly none.
    strength = np.abs(contributions).mean(axis=0)
    assert strength[0] > 5 * strength[2] and strength[1] > 5 * strength[3]


def test_contributions_add_up_to_the_log_odds_of_a_classifier() -> None:
    X, y = data(seed=1)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y > 0)
    contributions, bias = tree_contributions(model, X)
    np.testing.assert_allclose(
        bias + contributions.sum(axis=1), model.decision_function(X), atol=1e-9
    )


def test_contributions_refuse_multiclass_models() -> None:
    X, y = data()
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, np.digitize(y, [-1, 1]))
    with pytest.raises(ValueError, match="binary"):
        tree_contributions(model, X)


def test_sensor_sums_and_the_top_sensors() -> None:
    names, summed = by_sensor(np.array([[1.0, 2.0, -4.0]]), ["a", "a", "b"])
    assert names == ["a", "b"]
    assert summed.tolist() == [[3.0, -4.0]]
    assert top_sensors(names, summed, 1) == [[{"sensor": "b", "contribution": -4.0}]]
    # Ranked by what raised the risk: b lowered it, so it is left out.
    assert top_sensors(names, summed, 2, key=summed) == [[{"sensor": "a", "contribution": 3.0}]]


def rules() -> LimitRules:
    limits = {
        "p1": {"temp": [None, 80.0, None, 95.0], "flow": [60.0, None, 40.0, None]},
        "p2": {"temp": [None, 50.0, None, 60.0]},
    }
    return LimitRules(horizon=24.0, span=1.0).fit(limits=limits)


def rows(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "device": ["p1"] * n,
        "temp__last": [70.0] * n,
        "temp__slope": [0.0] * n,
        "temp__std": [0.5] * n,
        "flow__last": [100.0] * n,
        "flow__slope": [0.0] * n,
        "flow__std": [1.0] * n,
    }
    return pd.DataFrame({**base, **columns})


def test_limit_rules_levels() -> None:
    model = rules()
    X = rows(
        temp__last=[70.0, 85.0, 96.0, 70.0, 70.0, 70.0, 70.0],
        temp__slope=[0.0, 0.0, 0.0, 2.0, 0.5, 0.4, np.nan],
        temp__std=[0.5, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5],
    )
    eta, risk, urgency = model.assess(X)
    # ok; past warn; past alarm; trend reaches 95 in 12.5 h (warn); in 50 h (watch); a slope
    # within the noise (0.4 over the window vs 2 x 0.5) does not count; NaN is no trend.
    assert risk.tolist() == [OK, WARN, ALARM, WARN, WATCH, OK, OK]
    assert eta[2] == 0 and eta[3] == pytest.approx(12.5) and eta[4] == pytest.approx(50)
    assert np.isinf(eta[[0, 1, 5, 6]]).all()
    temp = model.sensors_.index("temp")
    assert urgency[2, temp] == 1.0 and urgency[1, temp] == 0.5  # past alarm; past warn, no trend
    assert urgency[0, temp] == 0.0


def test_limit_rules_use_each_devices_own_limits_and_low_limits() -> None:
    model = rules()
    X = rows(device=["p1", "p2", "p1"], temp__last=[55.0, 55.0, 70.0], flow__last=[100, 100, 35])
    _, risk, _ = model.assess(X)
    assert risk.tolist() == [OK, WARN, ALARM]  # p2 warns at 50; flow 35 is below p1's alarm_low


def test_anomaly_scores_are_calibrated_on_the_healthy_windows() -> None:
    rng = np.random.default_rng(3)
    healthy = rng.normal(size=(2000, 4))
    detector = AnomalyDetector(n_estimators=100).fit(healthy)
    scores = detector.predict(rng.normal(size=(2000, 4)))
    assert 0.35 < np.median(scores) < 0.65  # new healthy data lands in the middle
    assert np.mean(scores >= 0.99) < 0.03
    assert detector.predict(np.full((1, 4), 8.0))[0] == 1.0
