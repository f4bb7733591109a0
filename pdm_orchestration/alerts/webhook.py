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
            "severity": row.severity,
            "status": row.status,
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
    session: requests.Session | None = None,
) -> Delivery:
    """POST undelivered notifications (oldest first); stop at the first that cannot be delivered,
    so they arrive in order."""
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
        .where(n.delivered_at.is_(None))
        .order_by(n.id)
        .limit(limit)
    )
    result = Delivery()
    http = session or requests.Session()
    with engine.connect() as conn:
        pending = conn.execute(query).all()
    for row in pending:
        error = None
        tried = 0
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
                if 200 <= answer.status_code < 300:
                    error = None
                    break
                error = f"HTTP {answer.status_code}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            if attempt + 1 < attempts:
                time.sleep(backoff_s * 2**attempt)
        with engine.begin() as conn:
            values: dict[str, object] = {"attempts": n.attempts + tried, "last_error": error}
            if error is None:
                values["delivered_at"] = datetime.now(UTC)
            conn.execute(alert_notifications.update().where(n.id == row.id).values(**values))
        if error is not None:
            log.warning("alert notification %d not delivered to %s: %s", row.id, where(url), error)
            result.failed[row.id] = error
            break
        result.delivered.append(row.id)
    with engine.connect() as conn:
        result.pending = conn.execute(
            sa.select(sa.func.count()).where(n.delivered_at.is_(None))
        ).scalar_one()
    return result
