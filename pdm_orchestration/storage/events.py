"""Maintenance events: failures, repairs, preventive work and inspections (the labels)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from pdm_orchestration.storage.schema import EVENT_KINDS, devices, maintenance_events


@dataclass(frozen=True)
class MaintenanceEvent:
    device: str
    time: datetime
    kind: str
    component: str | None = None
    notes: str | None = None
    source: str = "manual"


class UnknownDevice(ValueError):
    """An event names a device the registry does not know."""


def record_events(engine: Engine, events: Iterable[MaintenanceEvent]) -> int:
    """Insert events; one already recorded (same device, time and kind) is not repeated.

    Returns the number of new rows. Raises `UnknownDevice` naming the first unknown device and
    writes nothing then.
    """
    events = list(events)
    if not events:
        return 0
    for event in events:
        if event.kind not in EVENT_KINDS:
            raise ValueError(f"event kind {event.kind!r} is not one of {', '.join(EVENT_KINDS)}")
    with engine.begin() as connection:
        ids = {
            row.name: row.id for row in connection.execute(sa.select(devices.c.id, devices.c.name))
        }
        unknown = sorted({e.device for e in events if e.device not in ids})
        if unknown:
            raise UnknownDevice(f"unknown device(s): {', '.join(unknown)}")
        rows = [
            {
                "device_id": ids[e.device],
                "event_time": e.time,
                "kind": e.kind,
                "component": e.component,
                "notes": e.notes,
                "source": e.source,
            }
            for e in events
        ]
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        statement = insert(maintenance_events).on_conflict_do_nothing(
            index_elements=["device_id", "event_time", "kind"]
        )
        result = connection.execute(statement.returning(maintenance_events.c.id), rows)
        return len(result.all())


def load_events(connection: sa.Connection, until: datetime | None = None) -> pd.DataFrame:
    """Every maintenance event (up to `until`): device_id, device, event_time (UTC), kind."""
    e, d = maintenance_events.c, devices.c
    query = sa.select(e.device_id, d.name.label("device"), e.event_time, e.kind).join(
        devices, d.id == e.device_id
    )
    if until is not None:
        query = query.where(e.event_time <= until)
    frame = pd.DataFrame(
        connection.execute(query.order_by(e.device_id, e.event_time)).all(),
        columns=["device_id", "device", "event_time", "kind"],
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame
