"""Alerts from the predictions, and the sensor that posts them to a webhook."""

import json

import dagster as dg
from pydantic import Field

from pdm_orchestration.alerts.rules import AlertPolicy, evaluate_alerts
from pdm_orchestration.alerts.webhook import deliver, where
from pdm_orchestration.defs.resources import AlertWebhookResource, PostgresResource


class AlertConfig(dg.Config):
    open_after: int = Field(default=2, ge=1, description="windows in a row at warn or above")
    resolve_after: int = Field(default=6, ge=1, description="windows in a row at watch or below")


@dg.asset(
    group_name="alerts",
    kinds={"postgres"},
    owners=["team:pdm"],
    deps=["maintenance_predictions"],
    # New predictions (of any hour) are judged; hours never scored do not hold it back.
    automation_condition=dg.AutomationCondition.eager().without(
        ~dg.AutomationCondition.any_deps_missing()
    ),
    metadata={"dagster/table_name": "alerts"},
)
def device_alerts(
    context: dg.AssetExecutionContext, config: AlertConfig, database: PostgresResource
) -> dg.MaterializeResult:
    """Alerts opened when a device's risk stays at warn or above, escalated to alarm, resolved
    when it stays low again (hysteresis: a flapping score neither opens nor resolves alerts one
    window at a time). Each change goes to the notification outbox for `alert_webhook_sensor`."""
    summary = evaluate_alerts(
        database.get_engine(),
        AlertPolicy(open_after=config.open_after, resolve_after=config.resolve_after),
    )
    context.log.info(
        f"{summary.windows} windows judged; opened {summary.opened}, escalated "
        f"{summary.escalated}, resolved {summary.resolved}"
    )
    return dg.MaterializeResult(
        metadata={
            "windows_judged": summary.windows,
            "opened": ", ".join(summary.opened) or "none",
            "escalated": ", ".join(summary.escalated) or "none",
            "resolved": ", ".join(summary.resolved) or "none",
            "not_resolved": summary.open_now,
            "dagster/row_count": summary.open_now,
        }
    )


@dg.sensor(
    name="alert_webhook_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="POSTs each new, escalated or resolved alert as JSON to ALERT_WEBHOOK_URL, "
    "retrying until the receiver takes it.",
)
def alert_webhook_sensor(
    context: dg.SensorEvaluationContext,
    database: PostgresResource,
    webhook: AlertWebhookResource,
) -> dg.SensorResult | dg.SkipReason:
    if not webhook.url:
        return dg.SkipReason("ALERT_WEBHOOK_URL is not set: alerts are not posted")
    done = deliver(
        database.get_engine(), webhook.url, timeout_s=webhook.timeout_s, attempts=webhook.attempts
    )
    state = json.loads(context.cursor) if context.cursor else {"delivered": 0}
    state["delivered"] += len(done.delivered)
    state["pending"] = done.pending
    if done.failed:
        context.log.warning(
            f"{where(webhook.url)} did not take notification(s) {list(done.failed)}: "
            f"{next(iter(done.failed.values()))}; {done.pending} pending"
        )
    if not done.delivered and not done.failed:
        return dg.SkipReason("no new alert to post")
    return dg.SensorResult(cursor=json.dumps(state))
