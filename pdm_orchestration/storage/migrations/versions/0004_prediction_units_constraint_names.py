"""Predictions say the unit of their horizon and RUL; check constraints get their intended names.

`maintenance_predictions.horizon_hours` becomes `horizon` and `rul_unit` becomes `time_unit`: models
trained on sample windows (cycle data) count their horizon and remaining life in samples, the
others in hours, and one column says which (`h` or `samples`).

The check constraints of 0001 were created with names the naming convention prefixed a second
time (`ck_alerts_ck_alerts_status`); on PostgreSQL they are renamed to the names `schema.py`
gives them (`ck_alerts_status`), and a downgrade leaves them so (0001's downgrade drops the tables
by name, not the constraints). SQLite keeps its names: nothing refers to them there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# table -> (constraint name as schema.py has it, a column its definition mentions)
CHECKS = {
    "plc_register_map": [
        ("register_kind", "register_kind"),
        ("data_type", "data_type"),
        ("byte_order", "byte_order"),
        ("validity", "valid_to"),
    ],
    "ingest_gaps": [("span", "gap_end")],
    "maintenance_events": [("kind", "kind")],
    "maintenance_predictions": [("risk_level", "risk_level")],
    "alerts": [("status", "status"), ("severity", "severity")],
}


def _rename_checks() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, checks in CHECKS.items():
        for short, column in checks:
            good = f"ck_{table}_{short}"
            found = bind.execute(
                sa.text(
                    "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
                    "AND contype = 'c' AND pg_get_constraintdef(oid) LIKE :pattern"
                ),
                {"t": table, "pattern": f"%{column}%"},
            ).scalars()
            for name in found:
                if name.startswith(f"ck_{table}_ck_"):
                    op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT "{name}" TO "{good}"')


def upgrade() -> None:
    with op.batch_alter_table("maintenance_predictions") as batch:
        batch.alter_column("horizon_hours", new_column_name="horizon")
        batch.alter_column("rul_unit", new_column_name="time_unit")
    _rename_checks()


def downgrade() -> None:
    with op.batch_alter_table("maintenance_predictions") as batch:
        batch.alter_column("horizon", new_column_name="horizon_hours")
        batch.alter_column("time_unit", new_column_name="rul_unit")
