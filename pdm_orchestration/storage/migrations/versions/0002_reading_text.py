"""Readings of string points keep their text (value_text); readings are found by arrival time.

`ix_sensor_readings_ingested_at` lets the collector sensor find new readings without a scan:
BRIN on PostgreSQL (readings arrive in time order, so it stays tiny), btree on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On PostgreSQL the column reaches every partition, present and future.
    op.add_column("sensor_readings", sa.Column("value_text", sa.Text))
    op.create_index(
        "ix_sensor_readings_ingested_at",
        "sensor_readings",
        ["ingested_at"],
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index("ix_sensor_readings_ingested_at", table_name="sensor_readings")
    with op.batch_alter_table("sensor_readings") as batch:
        batch.drop_column("value_text")
