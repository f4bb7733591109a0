"""Which sensors drove a prediction: exact per-feature contributions of gradient-boosted trees.

For each tree, every node gets the training-count-weighted mean of its leaves' values; a sample's
path from the root to its leaf then splits the leaf value into the root's value plus one step per
split, credited to the feature the split tested (Saabas' decomposition). Summed over the trees,
`bias + contributions.sum(axis=1)` is exactly the model's raw prediction (the regression value, or
the log-odds of a classifier): a test holds it to that.

This reads the fitted trees of scikit-learn's HistGradientBoosting estimators (`_predictors`, the
documented-in-code `nodes` record array) and nothing else; it changes nothing.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

Boosted = HistGradientBoostingRegressor | HistGradientBoostingClassifier


def tree_contributions(model: Boosted, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(contributions of shape (n_samples, n_features), bias of shape (n_samples,))."""
    X = np.asarray(X, dtype=np.float64)
    n, n_features = X.shape
    if getattr(model, "_preprocessor", None) is not None:
        raise ValueError("tree contributions need numeric features (no categorical preprocessing)")
    trees = [tree for iteration in model._predictors for tree in iteration]
    if trees and len(model._predictors[0]) != 1:
        raise ValueError("tree contributions support regression and binary classification")
    contributions = np.zeros(n * n_features)
    flat_X = np.ascontiguousarray(X).ravel()
    base = np.arange(n, dtype=np.int64) * n_features
    bias = np.full(n, float(np.ravel(model._baseline_prediction)[0]))
    for tree in trees:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise ValueError("tree contributions do not support categorical splits")
        value = _node_means(nodes)
        bias += value[0]
        # Plain arrays of the record's fields, leaves pointing at themselves: every row walks
        # the tree's depth in lockstep, and a row at its leaf adds nothing more.
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes), dtype=np.int64)
        feature_of = np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64)
        threshold = np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64)
        nan_left = nodes["missing_go_to_left"].astype(bool) | leaf
        left_of = np.where(leaf, own, nodes["left"]).astype(np.int64)
        right_of = np.where(leaf, own, nodes["right"]).astype(np.int64)
        node = np.zeros(n, dtype=np.int64)
        for _ in range(int(nodes["depth"].max())):
            feature = feature_of[node]
            at = base + feature
            x = flat_X[at]
            go_left = np.where(np.isnan(x), nan_left[node], x <= threshold[node])
            child = np.where(go_left, left_of[node], right_of[node])
            # One step per row and level: the (row, feature) cells are distinct, so += is exact.
            contributions[at] += value[child] - value[node]
            node = child
    return contributions.reshape(n, n_features), bias


def _node_means(nodes: np.ndarray) -> np.ndarray:
    """Leaf values as the trees hold them; inner nodes the count-weighted mean of their leaves."""
    value = nodes["value"].astype(np.float64).copy()
    count = nodes["count"].astype(np.float64)
    # Children come after their parent in the array: fill inner nodes from the back.
    for index in range(len(nodes) - 1, -1, -1):
        if not nodes["is_leaf"][index]:
            left, right = nodes["left"][index], nodes["right"][index]
            total = count[left] + count[right]
            value[index] = (
                (count[left] * value[left] + count[right] * value[right]) / total
                if total
                else 0.5 * (value[left] + value[right])
            )
    return value


def by_sensor(contributions: np.ndarray, sensors: list[str]) -> tuple[list[str], np.ndarray]:
    """Feature contributions summed per sensor: (sensor names, array (n_samples, n_sensors))."""
    names = sorted(set(sensors))
    position = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(sensors), len(names)))
    matrix[np.arange(len(sensors)), [position[s] for s in sensors]] = 1.0
    return names, contributions @ matrix


def top_sensors(
    names: list[str], values: np.ndarray, count: int = 3, *, key: np.ndarray | None = None
) -> list[list[dict[str, float]]]:
    """Per row, the `count` sensors ranked highest by `key` (default: |contribution|), with their
    contributions; sensors that contributed nothing are left out."""
    if not len(names) or not len(values):
        return [[] for _ in range(len(values))]
    rank = np.abs(values) if key is None else key
    rank = np.nan_to_num(rank, nan=-np.inf)
    order = np.argsort(-rank, axis=1, kind="stable")[:, :count]
    out = []
    for row, picks in enumerate(order):
        out.append(
            [
                {"sensor": names[j], "contribution": round(float(values[row, j]), 6)}
                for j in picks
                if np.isfinite(values[row, j]) and values[row, j] != 0 and rank[row, j] > 0
            ]
        )
    return out
