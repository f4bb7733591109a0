"""Feature windows are keyed by their window definition; data-quality results per sensor and window.

`feature_windows.window_spec` names how a window was cut ("60min/10min": an hour every ten
minutes; "30samples": the last 30 samples), so windows of two definitions can coexist and a rerun
replaces exactly its own. `sensor_quality` holds every sensor window that failed a data-quality
check, with the measures the checks look at and which checks failed, for BI and for scoring (a
blocking failure suppresses the device's prediction for that window).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feature_windows") as batch:
        batch.add_column(sa.Column("window_spec", sa.Text, nullable=False, server_default=""))
        batch.drop_constraint(
            "uq_feature_windows_device_id_window_start_window_end", type_="unique"
        )
        batch.create_unique_constraint(
            "uq_feature_windows_device_id_window_spec_window_end",
            ["device_id", "window_spec", "window_end"],
        )
    if op.get_bind().dialect.name == "postgresql":
        # Feature rows are rewritten on every refresh and read whole: compressing them (pglz)
        # costs more time than the disk it saves.
        op.execute("ALTER TABLE feature_windows ALTER COLUMN features SET STORAGE EXTERNAL")
    op.create_table(
        "sensor_quality",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("sensor", sa.Text, nullable=False),
        sa.Column("window_spec", sa.Text, nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("window_end", Timestamp, nullable=False),
        sa.Column("readings", sa.Integer, nullable=False),
        sa.Column("good_readings", sa.Integer, nullable=False),
        sa.Column("last_good_age_s", sa.Float),
        sa.Column("value_range", sa.Float),
        sa.Column("out_of_range", sa.Integer, nullable=False),
        sa.Column("max_jump_ratio", sa.Float),
        sa.Column("max_spacing_s", sa.Float),
        sa.Column("gap_rows", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("error_rate", sa.Float),
        sa.Column("failed", Json, nullable=False),
        sa.Column("blocking", sa.Boolean, nullable=False),
        sa.Column("checked_at", Timestamp, nullable=False),
        sa.Column("dagster_run_id", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_sensor_quality"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_sensor_quality_device_id_devices"
        ),
        sa.UniqueConstraint(
            "device_id",
            "sensor",
            "window_spec",
            "window_end",
            name="uq_sensor_quality_device_id_sensor_window_spec_window_end",
        ),
    )
    op.create_index("ix_sensor_quality_window_end", "sensor_quality", ["window_end"])


def downgrade() -> None:
    op.drop_index("ix_sensor_quality_window_end", table_name="sensor_quality")
    op.drop_table("sensor_quality")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE feature_windows ALTER COLUMN features SET STORAGE EXTENDED")
    with op.batch_alter_table("feature_windows") as batch:
        batch.drop_constraint("uq_feature_windows_device_id_window_spec_window_end", type_="unique")
        batch.create_unique_constraint(
            "uq_feature_windows_device_id_window_start_window_end",
            ["device_id", "window_start", "window_end"],
        )
        batch.drop_column("window_spec")
