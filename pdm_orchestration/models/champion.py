"""The champion gate: a challenger becomes champion only when it beats it on the same data.

`judge` scores the challenger and the current champion on the validation rows the challenger's
training run logged (the same file for both), compares the family's primary metric (RMSE for
rul, average precision for failure_risk, ROC AUC for anomaly and rules), and records the verdict
on the challenger's version as tags. `promote` moves the `champion` alias to a version whose
verdict passed (or to any version, when forced by hand).

Where the validation rows hold no labelled failures the metric cannot be measured: the gate then
fails and says so (promote by hand), except for rules whose limits changed (the plant file is the
authority on limits) and families with no champion yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pdm_orchestration.models import families
from pdm_orchestration.models.tracking import CHALLENGER, CHAMPION, LoadedModel, ModelStore

PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class Verdict:
    family: str
    challenger: str | None  # version
    champion: str | None
    passed: bool
    reason: str
    metric: str
    challenger_value: float | None = None
    champion_value: float | None = None


def judge(store: ModelStore, family: str) -> Verdict:
    """Decide whether the family's `challenger` may become `champion`; tag the version so."""
    definition = families.family(family)
    metric = definition.metric
    store.check()
    challenger = store.load(family, alias=CHALLENGER)
    if challenger is None:
        return Verdict(family, None, None, False, "no challenger: train the model first", metric)
    champion = store.load(family, alias=CHAMPION)
    verdict = _compare(store, challenger, champion, metric, definition.greater_is_better)
    store.tag_version(
        family,
        challenger.version,
        {
            "validation_status": PASSED if verdict.passed else FAILED,
            "gate_reason": verdict.reason[:4000],
            "gate_metric": metric,
            "gate_challenger_value": _text(verdict.challenger_value),
            "gate_champion_value": _text(verdict.champion_value),
            "gate_champion_version": verdict.champion or "none",
        },
    )
    return verdict


def _compare(
    store: ModelStore,
    challenger: LoadedModel,
    champion: LoadedModel | None,
    metric: str,
    greater_is_better: bool,
) -> Verdict:
    family = challenger.family

    def verdict(passed: bool, reason: str, mine=None, theirs=None) -> Verdict:
        version = champion.version if champion else None
        return Verdict(family, challenger.version, version, passed, reason, metric, mine, theirs)

    run = store.run(challenger.run_id) if challenger.run_id else None
    if run is not None and run.data.params.get("refit_on_all") == "True":
        return verdict(False, "fitted on its own validation rows (refit_on_all): promote by hand")
    if champion is None:
        return verdict(True, "no champion yet")
    if champion.version == challenger.version:
        return verdict(True, "already the champion")
    same = (champion.spec.name, champion.horizon) == (challenger.spec.name, challenger.horizon)
    if not same:
        return verdict(
            False,
            f"the champion learned from {champion.spec.name} windows (horizon "
            f"{champion.horizon:g}), the challenger from {challenger.spec.name} (horizon "
            f"{challenger.horizon:g}): not comparable; promote by hand if that is the change",
        )
    validation = store.validation_frame(challenger.run_id) if challenger.run_id else None
    if validation is None or validation.empty:
        return verdict(False, "the challenger logged no validation rows")
    missing = [c for c in champion.columns if c not in validation.columns]
    if missing:
        return verdict(
            True,
            f"the champion reads inputs the features no longer have ({', '.join(missing[:5])})",
        )
    mine = _metric(challenger, validation, metric)
    theirs = _metric(champion, validation, metric)
    if mine is None or theirs is None:
        if family == "rules":
            old = champion.pipeline.steps[-1][1].limits_
            new = challenger.pipeline.steps[-1][1].limits_
            if old != new:
                return verdict(True, "the plant's limits changed (no labelled failures to compare)")
            return verdict(False, "same limits as the champion")
        return verdict(
            False,
            f"no labelled failures in the {len(validation)} validation windows: {metric} cannot "
            f"show the challenger is better (promote by hand: pdm-orch models promote {family} "
            f"{challenger.version})",
        )
    better = mine > theirs if greater_is_better else mine < theirs
    comparison = f"{metric} {mine:.4g} vs the champion's {theirs:.4g} on {len(validation)} windows"
    outcome = "beats it: " if better else "does not beat it: "
    return verdict(better, outcome + comparison, mine, theirs)


def _metric(model: LoadedModel, validation, metric: str) -> float | None:
    X = validation.reindex(columns=model.columns)
    if "device" in model.columns:
        X["device"] = validation["device"].astype(str)
    outputs = families.predict(model.family, model.pipeline, X, model.policy, model.horizon)
    value = families.metrics(model.family, outputs, validation).get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def _text(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


class PromotionRefused(RuntimeError):
    """The version did not pass the gate (and the promotion was not forced)."""


def promote(
    store: ModelStore, family: str, version: str | None = None, *, force: bool = False
) -> str:
    """Point `champion` at `version` (default: the challenger); returns the version."""
    if version is None:
        found = store.version(family, CHALLENGER)
        if found is None:
            raise PromotionRefused(f"{store.model_name(family)} has no challenger to promote")
        version = str(found.version)
    tags = dict(store.get_version(family, version).tags)
    if not force and tags.get("validation_status") != PASSED:
        reason = tags.get("gate_reason", "it was never judged")
        raise PromotionRefused(
            f"{store.model_name(family)} version {version} did not pass the champion gate "
            f"({reason}); use --force to promote it anyway"
        )
    store.set_alias(family, CHAMPION, version)
    challenger = store.version(family, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        # Promoted, it is no longer a challenger: the next training names the next one.
        store.drop_alias(family, CHALLENGER)
    if force and tags.get("validation_status") != PASSED:
        store.tag_version(family, version, {"promoted_by_hand": "true"})
    return version
