"""The plots a training run logs to MLflow (matplotlib, drawn to files: there is no screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pdm_orchestration.models.training import Fitted


def training_plots(fitted: Fitted) -> dict[str, Figure]:
    """Feature importance for every family; residuals (rul), precision-recall (failure_risk),
    the score distribution (anomaly)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve

    out: dict[str, Figure] = {}
    outputs, labels = fitted.outputs, fitted.validation
    if outputs.contributions is not None and len(outputs.sensors) and len(outputs.risk):
        strength = np.nanmean(np.abs(outputs.contributions), axis=0)
        order = np.argsort(strength)[-20:]
        figure = Figure(figsize=(7, 0.3 * len(order) + 1.5))
        axes = figure.subplots()
        axes.barh([outputs.sensors[i] for i in order], strength[order])
        axes.set_xlabel("mean |contribution| on the validation windows")
        axes.set_title(f"{fitted.family}: what drives the predictions")
        figure.tight_layout()
        out["feature_importance"] = figure
    if fitted.family == "rul" and outputs.rul_estimate is not None:
        truth = labels["rul"].to_numpy(dtype=float)
        ok = np.isfinite(truth)
        if ok.any():
            figure = Figure(figsize=(10, 4))
            left, right = figure.subplots(1, 2)
            left.scatter(truth[ok], outputs.rul_estimate[ok], s=4, alpha=0.4)
            top = float(truth[ok].max())
            left.plot([0, top], [0, top], color="grey", linewidth=1)
            left.set_xlabel("true RUL")
            left.set_ylabel("predicted RUL")
            right.hist(outputs.rul_estimate[ok] - truth[ok], bins=40)
            right.set_xlabel("residual (predicted - true)")
            figure.tight_layout()
            out["residuals"] = figure
    if outputs.failure_probability is not None:
        within = labels["failure_within"].to_numpy(dtype=float)
        ok = np.isfinite(within)
        if ok.any() and len(set(within[ok])) == 2:
            precision, recall, _ = precision_recall_curve(
                within[ok], outputs.failure_probability[ok]
            )
            figure = Figure(figsize=(5, 4))
            axes = figure.subplots()
            axes.plot(recall, precision)
            axes.set_xlabel("recall")
            axes.set_ylabel("precision")
            axes.set_title("failure within the horizon")
            figure.tight_layout()
            out["precision_recall"] = figure
    if outputs.anomaly_score is not None and len(outputs.anomaly_score):
        figure = Figure(figsize=(5, 4))
        axes = figure.subplots()
        axes.hist(outputs.anomaly_score, bins=40)
        axes.set_xlabel("anomaly score of the validation windows")
        figure.tight_layout()
        out["anomaly_scores"] = figure
    return out
