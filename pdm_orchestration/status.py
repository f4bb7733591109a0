"""A plain-text picture of what the database holds (used by `pdm-orch status` and the demo)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.schema import (
    devices,
    plc_connections,
    plc_register_map,
    sensor_readings,
)


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [headers, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def database_status(engine: Engine, label: str) -> str:
    """Schema revision, connections and a device table with point and reading counts."""
    at, head = migrate.current_revision(engine), migrate.head_revision()
    lines = [f"database: {label}", f"schema:   revision {at or 'none'} (newest {head})"]
    if at is None:
        lines.append("the database is empty: run `pdm-orch db upgrade`")
        return "\n".join(lines)
    points = (
        sa.select(plc_register_map.c.device_id, sa.func.count().label("points"))
        .where(plc_register_map.c.valid_to.is_(None))
        .group_by(plc_register_map.c.device_id)
        .subquery()
    )
    readings = (
        sa.select(
            sensor_readings.c.device_id,
            sa.func.count().label("readings"),
            sa.func.max(sensor_readings.c.ts).label("last_reading"),
        )
        .group_by(sensor_readings.c.device_id)
        .subquery()
    )
    query = (
        sa.select(
            devices.c.name,
            devices.c.kind,
            devices.c.line,
            plc_connections.c.name.label("connection"),
            devices.c.unit_id,
            sa.func.coalesce(points.c.points, 0),
            sa.func.coalesce(readings.c.readings, 0),
            readings.c.last_reading,
            devices.c.active,
        )
        .select_from(devices)
        .outerjoin(plc_connections, plc_connections.c.id == devices.c.connection_id)
        .outerjoin(points, points.c.device_id == devices.c.id)
        .outerjoin(readings, readings.c.device_id == devices.c.id)
        .order_by(devices.c.name)
    )
    with engine.connect() as db:
        connections = db.execute(sa.select(plc_connections).order_by(plc_connections.c.name)).all()
        device_rows = db.execute(query).all()
    lines.append(f"connections: {len(connections)}")
    for conn in connections:
        state = "" if conn.active else " (inactive)"
        lines.append(f"  {conn.name}: {conn.host}:{conn.port}, timeout {conn.timeout_s} s{state}")
    lines.append(f"devices: {sum(1 for row in device_rows if row.active)} active")
    if device_rows:
        headers = [
            "device",
            "kind",
            "line",
            "connection",
            "unit",
            "points",
            "readings",
            "last reading",
            "active",
        ]
        lines.append(format_table(headers, [list(row) for row in device_rows]))
    return "\n".join(lines)
