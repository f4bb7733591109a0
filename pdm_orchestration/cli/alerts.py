"""`pdm-orch alerts list|evaluate|ack|resolve|notify`: operating the alerts."""

from __future__ import annotations

import getpass

import click

from pdm_orchestration.cli.base import CliError, engine_for, main, pass_settings
from pdm_orchestration.settings import Settings

feedback_option = click.option(
    "--feedback",
    type=click.BOOL,
    default=None,
    help="Was it a real problem? true or false (kept with the alert: a label source).",
)
note_option = click.option("--note", default=None, help="What was found.")
by_option = click.option("--by", default=None, help="Who (default: the current user).")


@main.group("alerts")
def alerts_group() -> None:
    """Alerts raised from the predictions: list, acknowledge, resolve, notify."""


@alerts_group.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved alerts.")
@pass_settings
def alerts_list(settings: Settings, include_resolved: bool) -> None:
    """Open and acknowledged alerts (newest first)."""
    from pdm_orchestration.alerts.rules import list_alerts
    from pdm_orchestration.status import format_table

    engine = engine_for(settings)
    try:
        rows = list_alerts(engine, include_resolved=include_resolved)
    finally:
        engine.dispose()
    if not rows:
        click.echo("no alerts" if include_resolved else "no open alerts")
        return
    click.echo(
        format_table(
            ["id", "device", "severity", "status", "opened", "by", "feedback", "message"],
            [
                [
                    r.id,
                    r.device,
                    r.severity,
                    r.status,
                    r.opened_at.strftime("%Y-%m-%d %H:%M") if r.opened_at else "",
                    r.acknowledged_by,
                    {True: "real", False: "false alarm", None: ""}[r.feedback],
                    r.message,
                ]
                for r in rows
            ],
        )
    )


@alerts_group.command("evaluate")
@pass_settings
def alerts_evaluate(settings: Settings) -> None:
    """Open, escalate and resolve alerts from the predictions not judged yet."""
    from pdm_orchestration.alerts.rules import evaluate_alerts

    engine = engine_for(settings)
    try:
        summary = evaluate_alerts(engine)
    finally:
        engine.dispose()
    click.echo(
        f"{summary.windows} windows judged: opened {len(summary.opened)}, escalated "
        f"{len(summary.escalated)}, resolved {len(summary.resolved)}; "
        f"{summary.open_now} not resolved"
    )


def _act(settings: Settings, action, alert_id: int, **kwargs) -> None:
    from pdm_orchestration.alerts.rules import AlertError

    engine = engine_for(settings)
    try:
        action(engine, alert_id, **kwargs)
    except AlertError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()


@alerts_group.command("ack")
@click.argument("alert_id", type=int)
@by_option
@feedback_option
@note_option
@pass_settings
def alerts_ack(
    settings: Settings, alert_id: int, by: str | None, feedback: bool | None, note: str | None
) -> None:
    """Acknowledge ALERT_ID: it stays open but cannot fire again until it resolves."""
    from pdm_orchestration.alerts.rules import acknowledge

    _act(settings, acknowledge, alert_id, by=by or getpass.getuser(), feedback=feedback, note=note)
    click.echo(f"alert {alert_id} acknowledged")


@alerts_group.command("resolve")
@click.argument("alert_id", type=int)
@by_option
@feedback_option
@note_option
@pass_settings
def alerts_resolve(
    settings: Settings, alert_id: int, by: str | None, feedback: bool | None, note: str | None
) -> None:
    """Resolve ALERT_ID by hand (the rules resolve it themselves once the risk falls)."""
    from pdm_orchestration.alerts.rules import resolve

    _act(settings, resolve, alert_id, by=by or getpass.getuser(), feedback=feedback, note=note)
    click.echo(f"alert {alert_id} resolved")


@alerts_group.command("notify")
@pass_settings
def alerts_notify(settings: Settings) -> None:
    """POST the undelivered notifications to ALERT_WEBHOOK_URL now."""
    from pdm_orchestration.alerts.webhook import deliver, where

    if not settings.alert_webhook_url:
        raise CliError("ALERT_WEBHOOK_URL is not set")
    engine = engine_for(settings)
    try:
        done = deliver(engine, settings.alert_webhook_url)
    finally:
        engine.dispose()
    click.echo(
        f"{len(done.delivered)} delivered to {where(settings.alert_webhook_url)}, "
        f"{done.pending} still pending"
        + (f" (last error: {next(iter(done.failed.values()))})" if done.failed else "")
    )
    if done.failed:
        raise CliError("the webhook did not take every notification; they stay pending")
