"""Delivering the alert outbox to a webhook: JSON POSTs, retried, never lost, never sent twice.

Each notification is POSTed with an `Idempotency-Key` header that names it (`pdm-alert-<id>`).
It counts as delivered only on a 2xx answer; a timeout, a refused connection or any other status
leaves it in the outbox, with the error, for the next delivery. After a success it is never sent
again; a receiver that honours the key also ignores the one retry that can follow a timeout whose
answer was lost.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.storage.schema import alert_notifications, alerts, devices

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    delivered: list[int] = field(default_factory=list)  # notification ids
    failed: dict[int, str] = field(default_factory=dict)  # id -> last error
    pending: int = 0  # still in the outbox afterwards


def where(url: str) -> str:
    """The receiver without path or credentials (webhook URLs often carry a secret)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def payload(row: sa.Row) -> dict[str, object]:
    return {
        "event": row.event,
        "notification_id": row.id,
        "alert": {
            "id": row.alert_id,
            "device": row.device,
            "severity": row.severity,  # when this event happened
            "status_now": row.status,
            "message": row.message,
            "opened_at": row.opened_at.isoformat() if row.opened_at else None,
            "prediction_id": row.prediction_id,
        },
        "created_at": row.created_at.isoformat(),
    }


def deliver(
    engine: Engine,
    url: str,
    *,
    timeout_s: float = 5.0,
    attempts: int = 3,
    backoff_s: float = 0.5,
    limit: int = 50,
) -> Delivery:
    """POST undelivered notifications, oldest first.

    A receiver that is away (timeouts, refused connections, 5xx, 408, 429) stops the delivery, so
    notifications arrive in order once it is back; one it refuses for good (another 4xx) stays in
    the outbox with its error and the next ones go on. On PostgreSQL each notification is claimed
    (`FOR UPDATE SKIP LOCKED`) while it is sent, so two deliveries at once never send one twice.
    """
    n = alert_notifications.c
    result = Delivery()
    with engine.connect() as conn:
        pending = (
            conn.execute(
                sa.select(n.id).where(n.delivered_at.is_(None)).order_by(n.id).limit(limit)
            )
            .scalars()
            .all()
        )
    with requests.Session() as http:
        for notification_id in pending:
            outcome = _deliver_one(
                engine, http, url, notification_id, timeout_s, attempts, backoff_s
            )
            if outcome is None:
                continue  # delivered meanwhile by someone else
            error, away = outcome
            if error is None:
                result.delivered.append(notification_id)
                continue
            log.warning(
                "alert notification %d not delivered to %s: %s", notification_id, where(url), error
            )
            result.failed[notification_id] = error
            if away:
                break
    with engine.connect() as conn:
        result.pending = conn.execute(
            sa.select(sa.func.count()).where(n.delivered_at.is_(None))
        ).scalar_one()
    return result


def _deliver_one(
    engine: Engine,
    http: requests.Session,
    url: str,
    notification_id: int,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
) -> tuple[str | None, bool] | None:
    """(error or None, whether the receiver is away); None when there was nothing to send."""
    n, a, d = alert_notifications.c, alerts.c, devices.c
    query = (
        sa.select(
            n.id,
            n.alert_id,
            n.event,
            n.severity,
            n.created_at,
            a.status,
            a.message,
            a.opened_at,
            a.prediction_id,
            d.name.label("device"),
        )
        .join(alerts, a.id == n.alert_id)
        .join(devices, d.id == a.device_id)
        .where(n.id == notification_id, n.delivered_at.is_(None))
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=alert_notifications, skip_locked=True)
        row = conn.execute(query).first()
        if row is None:
            return None
        error, away, tried = None, False, 0
        for attempt in range(attempts):
            tried += 1
            try:
                answer = http.post(
                    url,
                    data=json.dumps(payload(row)),
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": f"pdm-alert-{row.id}",
                    },
                    timeout=timeout_s,
                )
            except requests.RequestException as exc:
                # Not str(exc): it holds the URL, whose path may be a secret.
                error, away = f"{type(exc).__name__} from {where(url)}", True
            else:
                if 200 <= answer.status_code < 300:
                    error = None
                    break
                error = f"HTTP {answer.status_code} from {where(url)}"
                away = answer.status_code >= 500 or answer.status_code in (408, 429)
                if not away:
                    break  # refused for good: retrying will not help
            if attempt + 1 < attempts:
                time.sleep(backoff_s * 2**attempt)
        values: dict[str, object] = {"attempts": n.attempts + tried, "last_error": error}
        if error is None:
            values["delivered_at"] = datetime.now(UTC)
        conn.execute(alert_notifications.update().where(n.id == row.id).values(**values))
    return error, away
