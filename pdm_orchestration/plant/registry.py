"""Applying a validated plant to the database: connections, devices and the register map.

`apply_plant` is idempotent: applying the same plant twice changes no row the second time.
Any change to a point closes its current `plc_register_map` version (`valid_to`) and opens a new
one (`valid_from`), so readings keep the decoding that was valid when they were read (a version is
valid on the half-open span [valid_from, valid_to)). A device that left the file is deactivated and
its points are closed; nothing is deleted.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine

from pdm_orchestration.plant.config import Device, Plant, Point, mapped_fields
from pdm_orchestration.storage.schema import devices, plc_connections, plc_register_map

log = logging.getLogger(__name__)

DEVICE_COLUMNS = tuple(c for c in mapped_fields(Device) if c not in ("name", "connection"))
POINT_COLUMNS = tuple(c for c in mapped_fields(Point) if c not in ("device", "connection"))


@dataclass
class ApplyReport:
    """What applying a plant changed, counted per kind of change."""

    counts: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)

    def note(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        self.details.append(detail)
        log.debug(detail)

    @property
    def changes(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.changes:
            return "0 changes"
        parts = ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts.items()))
        return f"{self.changes} changes ({parts})"


def _differs(row: Any, wanted: dict[str, Any]) -> list[str]:
    """Columns whose stored value differs from the wanted one."""
    return [name for name, value in wanted.items() if _normal(getattr(row, name)) != _normal(value)]


def _normal(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normal(v) for v in value]
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def apply_plant(
    engine: Engine, plant: Plant, *, now: datetime | None = None, dry_run: bool = False
) -> ApplyReport:
    """Make the registry tables describe `plant`; return what changed.

    With `dry_run` the changes are computed and reported, then rolled back.
    """
    now = now or datetime.now(UTC)
    report = ApplyReport()
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection_ids = _apply_connections(connection, plant, now, report)
            device_ids = _apply_devices(connection, plant, connection_ids, now, report)
            _apply_points(connection, plant, device_ids, connection_ids, now, report)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return report


def _apply_connections(
    db: DbConnection, plant: Plant, now: datetime, report: ApplyReport
) -> dict[str, int]:
    wanted = {
        name: {column: value for column, value in asdict(conn).items() if column != "name"}
        for name, conn in plant.connections.items()
    }
    return _sync_named(db, plc_connections, wanted, now, report, "connection")


def _apply_devices(
    db: DbConnection,
    plant: Plant,
    connection_ids: dict[str, int],
    now: datetime,
    report: ApplyReport,
) -> dict[str, int]:
    wanted = {}
    for name, device in plant.devices.items():
        values = asdict(device)
        wanted[name] = {column: values[column] for column in DEVICE_COLUMNS}
        wanted[name]["connection_id"] = connection_ids[device.connection]
    return _sync_named(db, devices, wanted, now, report, "device")


def _sync_named(
    db: DbConnection,
    table: sa.Table,
    wanted: dict[str, dict[str, Any]],
    now: datetime,
    report: ApplyReport,
    noun: str,
) -> dict[str, int]:
    """Make the rows of `table` (keyed by unique `name`) match `wanted`; return their ids.

    Rows missing from `wanted` are deactivated, never deleted.
    """
    existing = {row.name: row for row in db.execute(sa.select(table))}
    stamps = {"updated_at": now, **({"created_at": now} if "created_at" in table.c else {})}
    ids: dict[str, int] = {}
    for name, values in wanted.items():
        values = {**values, "active": True}
        row = existing.get(name)
        if row is None:
            insert = table.insert().values(name=name, **values, **stamps)
            ids[name] = db.execute(insert).inserted_primary_key[0]
            report.note(f"{noun}s added", f"{noun} {name}: added")
            continue
        ids[name] = row.id
        changed = _differs(row, values)
        if changed:
            db.execute(table.update().where(table.c.id == row.id).values(**values, updated_at=now))
            kind = f"{noun}s reactivated" if "active" in changed else f"{noun}s updated"
            report.note(kind, f"{noun} {name}: changed {', '.join(changed)}")
    for name, row in existing.items():
        if name not in wanted and row.active:
            db.execute(
                table.update().where(table.c.id == row.id).values(active=False, updated_at=now)
            )
            report.note(f"{noun}s deactivated", f"{noun} {name}: deactivated (history kept)")
    return ids


def _apply_points(
    db: DbConnection,
    plant: Plant,
    device_ids: dict[str, int],
    connection_ids: dict[str, int],
    now: datetime,
    report: ApplyReport,
) -> None:
    id_to_device = {r.id: r.name for r in db.execute(sa.select(devices.c.id, devices.c.name))}
    current = {
        (row.device_id, row.sensor): row
        for row in db.execute(
            sa.select(plc_register_map).where(plc_register_map.c.valid_to.is_(None))
        )
    }
    wanted_keys = set()
    new_rows = []
    for point in plant.points:
        device_id = device_ids[point.device]
        key = (device_id, point.sensor)
        wanted_keys.add(key)
        values = asdict(point)
        wanted = {column: values[column] for column in POINT_COLUMNS}
        wanted["connection_id"] = connection_ids[point.connection]
        row = current.get(key)
        if row is None:
            report.note("points added", f"point {point.device}/{point.sensor}: added")
        else:
            changed = _differs(row, wanted)
            if not changed:
                continue
            _close(db, [row.id], now)
            report.note(
                "points versioned",
                f"point {point.device}/{point.sensor}: new version ({', '.join(changed)} changed)",
            )
        new_rows.append({**wanted, "device_id": device_id, "valid_from": now, "valid_to": None})
    gone = [row for key, row in current.items() if key not in wanted_keys]
    if gone:
        _close(db, [row.id for row in gone], now)
        for row in gone:
            name = id_to_device.get(row.device_id, f"device #{row.device_id}")
            report.note("points closed", f"point {name}/{row.sensor}: closed (no longer in file)")
    if new_rows:
        db.execute(plc_register_map.insert(), new_rows)


def _close(db: DbConnection, ids: list[int], now: datetime) -> None:
    db.execute(plc_register_map.update().where(plc_register_map.c.id.in_(ids)).values(valid_to=now))


def registry_summary(engine: Engine) -> dict[str, int]:
    """Counts of what the registry holds (for status output and asset metadata)."""
    with engine.connect() as db:
        return {
            "connections": db.scalar(
                sa.select(sa.func.count()).where(plc_connections.c.active.is_(True))
            ),
            "devices": db.scalar(sa.select(sa.func.count()).where(devices.c.active.is_(True))),
            "devices_inactive": db.scalar(
                sa.select(sa.func.count()).where(devices.c.active.is_(False))
            ),
            "points": db.scalar(
                sa.select(sa.func.count()).where(plc_register_map.c.valid_to.is_(None))
            ),
            "register_map_versions": db.scalar(
                sa.select(sa.func.count()).select_from(plc_register_map)
            ),
        }
