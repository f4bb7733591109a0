"""Initial data model: plant registry, readings, gaps, events, features, predictions, alerts.

On PostgreSQL `sensor_readings` is range-partitioned by month with a default partition, and the
function `pdm_ensure_reading_partitions(months_ahead)` creates the monthly partitions ahead (and for
any month whose rows landed in the default partition, moving those rows over).

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

ENSURE_PARTITIONS = r"""
CREATE OR REPLACE FUNCTION pdm_ensure_reading_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month_start date;
    lo timestamptz;
    hi timestamptz;
    part text;
    created integer := 0;
BEGIN
    -- One caller at a time: two sessions must not race to create the same partition.
    PERFORM pg_advisory_xact_lock(hashtext('pdm_ensure_reading_partitions'));
    FOR month_start IN
        SELECT generate_series(
                   date_trunc('month', now() AT TIME ZONE 'UTC'),
                   date_trunc('month', now() AT TIME ZONE 'UTC')
                       + make_interval(months => greatest(months_ahead, 0)),
                   interval '1 month')::date
        UNION
        SELECT DISTINCT date_trunc('month', ts AT TIME ZONE 'UTC')::date
        FROM sensor_readings_default
    LOOP
        part := format('sensor_readings_%s', to_char(month_start, 'YYYY_MM'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        lo := month_start::timestamp AT TIME ZONE 'UTC';
        hi := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I (LIKE sensor_readings INCLUDING DEFAULTS)', part);
        -- Rows of this month that the default partition caught move into the new partition.
        EXECUTE format(
            'WITH moved AS (DELETE FROM sensor_readings_default WHERE ts >= %L AND ts < %L '
            'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format(
            'ALTER TABLE sensor_readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
"""


def _sensor_readings_postgres() -> None:
    op.execute(
        """
        CREATE TABLE sensor_readings (
            device_id integer NOT NULL,
            sensor text NOT NULL,
            ts timestamptz NOT NULL,
            value double precision,
            quality text NOT NULL DEFAULT 'good',
            register_map_id integer,
            ingested_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_sensor_readings PRIMARY KEY (device_id, sensor, ts)
        ) PARTITION BY RANGE (ts)
        """
    )
    op.execute("CREATE INDEX ix_sensor_readings_device_id_ts ON sensor_readings (device_id, ts)")
    op.execute("CREATE TABLE sensor_readings_default PARTITION OF sensor_readings DEFAULT")
    op.execute(ENSURE_PARTITIONS)
    op.execute("SELECT pdm_ensure_reading_partitions(3)")


def _sensor_readings_portable() -> None:
    op.create_table(
        "sensor_readings",
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("sensor", sa.Text, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("quality", sa.Text, nullable=False, server_default="good"),
        sa.Column("register_map_id", sa.Integer),
        sa.Column("ingested_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("device_id", "sensor", "ts", name="pk_sensor_readings"),
    )
    op.create_index("ix_sensor_readings_device_id_ts", "sensor_readings", ["device_id", "ts"])


def upgrade() -> None:
    op.create_table(
        "plc_connections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("pause_between_requests_ms", sa.Integer, nullable=False),
        sa.Column("max_registers_per_read", sa.Integer, nullable=False),
        sa.Column("max_gap_fill", sa.Integer, nullable=False),
        sa.Column("reconnect_backoff_min_s", sa.Float, nullable=False),
        sa.Column("reconnect_backoff_max_s", sa.Float, nullable=False),
        sa.Column("unit_fail_cycles", sa.Integer, nullable=False),
        sa.Column("unit_cooldown_s", sa.Float, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_plc_connections"),
        sa.UniqueConstraint("name", name="uq_plc_connections_name"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("site", sa.Text),
        sa.Column("line", sa.Text),
        sa.Column("kind", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("connection_id", sa.Integer),
        sa.Column("unit_id", sa.Integer),
        sa.Column("address_base", sa.Integer, nullable=False, server_default="0"),
        sa.Column("byte_order", sa.Text, nullable=False, server_default="ABCD"),
        sa.Column("poll_groups", Json, nullable=False),
        sa.Column("unreadable", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["plc_connections.id"],
            name="fk_devices_connection_id_plc_connections",
        ),
    )
    op.create_table(
        "plc_register_map",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("connection_id", sa.Integer, nullable=False),
        sa.Column("unit_id", sa.Integer, nullable=False),
        sa.Column("sensor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False, server_default="value"),
        sa.Column("register_kind", sa.Text, nullable=False),
        sa.Column("address", sa.Integer, nullable=False),
        sa.Column("data_type", sa.Text, nullable=False),
        sa.Column("bit", sa.Integer),
        sa.Column("length", sa.Integer),
        sa.Column("byte_order", sa.Text, nullable=False),
        sa.Column("scale", sa.Float, nullable=False),
        sa.Column("offset", sa.Float, nullable=False),
        sa.Column("unit", sa.Text),
        sa.Column("physical_min", sa.Float),
        sa.Column("physical_max", sa.Float),
        sa.Column("nan_value", sa.Float),
        sa.Column("warn_low", sa.Float),
        sa.Column("warn_high", sa.Float),
        sa.Column("alarm_low", sa.Float),
        sa.Column("alarm_high", sa.Float),
        sa.Column("poll_group", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("valid_from", Timestamp, nullable=False),
        sa.Column("valid_to", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_plc_register_map"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_plc_register_map_device_id_devices"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["plc_connections.id"],
            name="fk_plc_register_map_connection_id_plc_connections",
        ),
        sa.CheckConstraint(
            "register_kind IN ('coil', 'discrete', 'holding', 'input')",
            name="ck_plc_register_map_register_kind",
        ),
        sa.CheckConstraint(
            "data_type IN ('int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', "
            "'float32', 'float64', 'string', 'bit')",
            name="ck_plc_register_map_data_type",
        ),
        sa.CheckConstraint(
            "byte_order IN ('ABCD', 'CDAB', 'BADC', 'DCBA')", name="ck_plc_register_map_byte_order"
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to >= valid_from", name="ck_plc_register_map_validity"
        ),
    )
    op.create_index(
        "ix_plc_register_map_device_id_sensor_valid_from",
        "plc_register_map",
        ["device_id", "sensor", "valid_from"],
    )
    op.create_index(
        "uq_plc_register_map_current",
        "plc_register_map",
        ["device_id", "sensor"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
        sqlite_where=sa.text("valid_to IS NULL"),
    )

    if op.get_bind().dialect.name == "postgresql":
        _sensor_readings_postgres()
    else:
        _sensor_readings_portable()

    op.create_table(
        "ingest_gaps",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("sensor", sa.Text),
        sa.Column("gap_start", Timestamp, nullable=False),
        sa.Column("gap_end", Timestamp, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_gaps"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_ingest_gaps_device_id_devices"
        ),
        sa.CheckConstraint("gap_end >= gap_start", name="ck_ingest_gaps_span"),
    )
    op.create_index("ix_ingest_gaps_device_id_gap_start", "ingest_gaps", ["device_id", "gap_start"])

    op.create_table(
        "maintenance_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("event_time", Timestamp, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("component", sa.Text),
        sa.Column("notes", sa.Text),
        sa.Column("source", sa.Text, nullable=False, server_default="manual"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_events"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_maintenance_events_device_id_devices"
        ),
        sa.CheckConstraint(
            "kind IN ('failure', 'repair', 'preventive', 'inspection')",
            name="ck_maintenance_events_kind",
        ),
        sa.UniqueConstraint(
            "device_id",
            "event_time",
            "kind",
            name="uq_maintenance_events_device_id_event_time_kind",
        ),
    )

    op.create_table(
        "feature_windows",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("window_end", Timestamp, nullable=False),
        sa.Column("features", Json, nullable=False),
        sa.Column("reading_count", sa.Integer, nullable=False),
        sa.Column("quality_flags", Json, nullable=False),
        sa.Column("register_map_ids", Json, nullable=False),
        sa.Column("computed_at", Timestamp, nullable=False),
        sa.Column("dagster_run_id", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_feature_windows"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_feature_windows_device_id_devices"
        ),
        sa.UniqueConstraint(
            "device_id",
            "window_start",
            "window_end",
            name="uq_feature_windows_device_id_window_start_window_end",
        ),
    )
    op.create_index("ix_feature_windows_window_end", "feature_windows", ["window_end"])

    op.create_table(
        "maintenance_predictions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("window_end", Timestamp, nullable=False),
        sa.Column("feature_window_id", BigId),
        sa.Column("predicted_at", Timestamp, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("model_alias", sa.Text),
        sa.Column("mlflow_run_id", sa.Text),
        sa.Column("anomaly_score", sa.Float),
        sa.Column("failure_probability", sa.Float),
        sa.Column("horizon_hours", sa.Float),
        sa.Column("rul_estimate", sa.Float),
        sa.Column("rul_unit", sa.Text),
        sa.Column("risk_level", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="scored"),
        sa.Column("top_sensors", Json),
        sa.Column("dagster_run_id", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_predictions"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_maintenance_predictions_device_id_devices"
        ),
        sa.ForeignKeyConstraint(
            ["feature_window_id"],
            ["feature_windows.id"],
            name="fk_maintenance_predictions_feature_window_id_feature_windows",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "risk_level IS NULL OR risk_level IN ('ok', 'watch', 'warn', 'alarm')",
            name="ck_maintenance_predictions_risk_level",
        ),
        sa.UniqueConstraint(
            "device_id",
            "window_end",
            "model_name",
            "model_version",
            name="uq_maintenance_predictions_key",
        ),
    )
    op.create_index(
        "ix_maintenance_predictions_device_id_predicted_at",
        "maintenance_predictions",
        ["device_id", "predicted_at"],
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("prediction_id", BigId),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("dedup_key", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("opened_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("acknowledged_at", Timestamp),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("resolved_at", Timestamp),
        sa.Column("feedback", sa.Boolean),
        sa.Column("feedback_note", sa.Text),
        sa.Column("notified_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_alerts_device_id_devices"),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["maintenance_predictions.id"],
            name="fk_alerts_prediction_id_maintenance_predictions",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name="ck_alerts_status"
        ),
        sa.CheckConstraint(
            "severity IN ('ok', 'watch', 'warn', 'alarm')", name="ck_alerts_severity"
        ),
    )
    op.create_index("ix_alerts_device_id_opened_at", "alerts", ["device_id", "opened_at"])
    op.create_index(
        "uq_alerts_dedup_key_unresolved",
        "alerts",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        sqlite_where=sa.text("status <> 'resolved'"),
    )


def downgrade() -> None:
    for table in (
        "alerts",
        "maintenance_predictions",
        "feature_windows",
        "maintenance_events",
        "ingest_gaps",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS pdm_ensure_reading_partitions(integer)")
        op.execute("DROP TABLE sensor_readings CASCADE")
    else:
        op.drop_table("sensor_readings")
    for table in ("plc_register_map", "devices", "plc_connections"):
        op.drop_table(table)
