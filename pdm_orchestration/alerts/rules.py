"""Turning a device's risk over time into alerts, with hysteresis.

A device's risk at a window is the highest risk level of the predictions that decide (the
champion models', or the built-in rules' while no model exists) for that window; suppressed
windows say nothing and are skipped. Per device, the alert key `<device>:risk`:

- opens when the risk has been at warn or above for `open_after` windows in a row;
- escalates (warn to alarm) while open, at once;
- resolves when it has been at watch or below for `resolve_after` windows in a row.

So a score that flaps around the warn limit neither opens nor resolves alerts one window at a
time. Each device's windows are judged once, in order; a window rescored after it was judged is
not judged again. An acknowledged alert stays the one alert of its key until it resolves: it
cannot fire again meanwhile. Every opening, escalation and resolution goes to the notification
outbox in the same transaction as the alert change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.models.families import RISK_NAMES
from pdm_orchestration.storage.schema import (
    alert_notifications,
    alert_state,
    alerts,
    devices,
    maintenance_predictions,
)

DECIDING_ALIASES = ("champion", "builtin")
LOCK_KEY = 730_151  # pg_advisory_xact_lock key of alert evaluation
WARN, WATCH = RISK_NAMES.index("warn"), RISK_NAMES.index("watch")


@dataclass(frozen=True)
class AlertPolicy:
    open_after: int = 2  # windows in a row at warn or above
    resolve_after: int = 6  # windows in a row at watch or below


@dataclass
class AlertSummary:
    windows: int = 0
    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    open_now: int = 0


def evaluate_alerts(
    engine: Engine, policy: AlertPolicy | None = None, *, now: datetime | None = None
) -> AlertSummary:
    """Judge every deciding prediction newer than each device's last judged window."""
    policy = policy or AlertPolicy()
    now = now or datetime.now(UTC)
    summary = AlertSummary()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One judge at a time (the asset and `pdm-orch alerts evaluate` may overlap).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        state = {row.device_id: row for row in conn.execute(sa.select(alert_state))}
        names = dict(conn.execute(sa.select(devices.c.id, devices.c.name)).all())
        for device_id, rows in _risks(conn).groupby("device_id", sort=True):
            before = state.get(device_id)
            high = before.high_windows if before else 0
            low = before.low_windows if before else 0
            current = _open_alert(conn, device_id)
            name = names[device_id]
            for row in rows.itertuples(index=False):
                summary.windows += 1
                level = int(row.rank)
                high, low = (
                    (high + 1, 0) if level >= WARN else (0, low + 1 if level <= WATCH else 0)
                )
                if current is None and high >= policy.open_after:
                    current = _open(conn, device_id, name, level, row, now)
                    summary.opened.append(name)
                elif current is not None:
                    if level > RISK_NAMES.index(current["severity"]):
                        _escalate(conn, current, level, now)
                        summary.escalated.append(name)
                    if low >= policy.resolve_after:
                        _resolve(conn, current["id"], current["severity"], now, "auto")
                        summary.resolved.append(name)
                        current = None
            last = rows["window_end"].max().to_pydatetime()
            values = {"last_window_end": last, "high_windows": high, "low_windows": low}
            if before is None:
                conn.execute(
                    alert_state.insert().values(device_id=device_id, updated_at=now, **values)
                )
            else:
                conn.execute(
                    alert_state.update()
                    .where(alert_state.c.device_id == device_id)
                    .values(updated_at=now, **values)
                )
        summary.open_now = conn.execute(
            sa.select(sa.func.count()).where(alerts.c.status != "resolved")
        ).scalar_one()
    return summary


def _risks(conn: sa.Connection) -> pd.DataFrame:
    """Per device and window past the device's watermark (every window while it has none): the
    highest deciding risk, and its prediction."""
    p, judged = maintenance_predictions.c, alert_state.c
    rank = sa.case(*((p.risk_level == name, i) for i, name in enumerate(RISK_NAMES)))
    query = (
        sa.select(p.device_id, p.window_end, rank.label("rank"), p.id, p.model_name, p.top_sensors)
        .join(devices, devices.c.id == p.device_id)
        .outerjoin(alert_state, judged.device_id == p.device_id)
        .where(
            p.model_alias.in_(DECIDING_ALIASES),
            p.risk_level.is_not(None),
            devices.c.active.is_(True),
            sa.or_(judged.last_window_end.is_(None), p.window_end > judged.last_window_end),
        )
        .order_by(p.device_id, p.window_end, rank.desc(), p.id)
    )
    rows = conn.execute(query).all()
    frame = pd.DataFrame(
        rows, columns=["device_id", "window_end", "rank", "id", "model_name", "top_sensors"]
    )
    frame["window_end"] = pd.to_datetime(frame["window_end"], utc=True)
    return frame.drop_duplicates(["device_id", "window_end"], keep="first")


def _open_alert(conn: sa.Connection, device_id: int) -> dict | None:
    row = conn.execute(
        sa.select(alerts.c.id, alerts.c.severity).where(
            alerts.c.device_id == device_id, alerts.c.status != "resolved"
        )
    ).first()
    return None if row is None else {"id": row.id, "severity": row.severity}


def _message(name: str, level: int, row) -> str:
    sensors = row.top_sensors
    if isinstance(sensors, str):
        sensors = json.loads(sensors or "[]")
    sensors = sensors if isinstance(sensors, list) else []
    drivers = ", ".join(s["sensor"] for s in sensors if "sensor" in s) or "no sensor named"
    return (
        f"{name}: risk {RISK_NAMES[level]} from {row.model_name} at "
        f"{pd.Timestamp(row.window_end).isoformat()} (driven by {drivers})"
    )


def _open(conn: sa.Connection, device_id: int, name: str, level: int, row, now: datetime) -> dict:
    severity = RISK_NAMES[level]
    alert_id = conn.execute(
        alerts.insert()
        .values(
            device_id=device_id,
            prediction_id=int(row.id),
            severity=severity,
            status="open",
            dedup_key=f"{name}:risk",
            message=_message(name, level, row),
            opened_at=now,
            updated_at=now,
        )
        .returning(alerts.c.id)
    ).scalar_one()
    _notify(conn, alert_id, "opened", severity, now)
    return {"id": alert_id, "severity": severity}


def _escalate(conn: sa.Connection, current: dict, level: int, now: datetime) -> None:
    """Raise the severity; the alert keeps pointing at the prediction that opened it."""
    severity = RISK_NAMES[level]
    conn.execute(
        alerts.update()
        .where(alerts.c.id == current["id"])
        .values(severity=severity, escalated_at=now, updated_at=now)
    )
    current["severity"] = severity
    _notify(conn, current["id"], "escalated", severity, now)


def _resolve(conn: sa.Connection, alert_id: int, severity: str, now: datetime, by: str) -> None:
    conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id)
        .values(status="resolved", resolved_at=now, resolved_by=by, updated_at=now)
    )
    _notify(conn, alert_id, "resolved", severity, now)


def _notify(conn: sa.Connection, alert_id: int, event: str, severity: str, now: datetime) -> None:
    conn.execute(
        alert_notifications.insert().values(
            alert_id=alert_id, event=event, severity=severity, created_at=now
        )
    )


class AlertError(ValueError):
    """An operator action that cannot be taken (the message says why)."""


def acknowledge(
    engine: Engine,
    alert_id: int,
    *,
    by: str,
    feedback: bool | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Acknowledge an open alert (with optional feedback: was it a real problem?)."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        status = _status(conn, alert_id)
        if status != "open":
            raise AlertError(
                f"alert {alert_id} is {status}: only an open alert can be acknowledged"
            )
        values = {"status": "acknowledged", "acknowledged_at": now, "acknowledged_by": by}
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(updated_at=now, **values, **_feedback(feedback, note))
        )


def resolve(
    engine: Engine,
    alert_id: int,
    *,
    by: str,
    feedback: bool | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Resolve an open or acknowledged alert by hand, with optional feedback."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        status = _status(conn, alert_id)
        if status == "resolved":
            raise AlertError(f"alert {alert_id} is already resolved")
        severity = conn.execute(
            sa.select(alerts.c.severity).where(alerts.c.id == alert_id)
        ).scalar_one()
        if feedback is not None or note is not None:
            conn.execute(
                alerts.update().where(alerts.c.id == alert_id).values(**_feedback(feedback, note))
            )
        _resolve(conn, alert_id, severity, now, by)


def _status(conn: sa.Connection, alert_id: int) -> str:
    status = conn.execute(sa.select(alerts.c.status).where(alerts.c.id == alert_id)).scalar()
    if status is None:
        raise AlertError(f"no alert {alert_id}")
    return status


def _feedback(feedback: bool | None, note: str | None) -> dict:
    out: dict[str, object] = {}
    if feedback is not None:
        out["feedback"] = feedback
    if note is not None:
        out["feedback_note"] = note
    return out


def list_alerts(engine: Engine, *, include_resolved: bool = False) -> list[sa.Row]:
    a, d = alerts.c, devices.c
    query = (
        sa.select(
            a.id,
            d.name.label("device"),
            a.severity,
            a.status,
            a.opened_at,
            a.acknowledged_by,
            a.feedback,
            a.message,
        )
        .join(devices, d.id == a.device_id)
        .order_by(a.opened_at.desc(), a.id.desc())
    )
    if not include_resolved:
        query = query.where(a.status != "resolved")
    with engine.connect() as conn:
        return conn.execute(query).all()
