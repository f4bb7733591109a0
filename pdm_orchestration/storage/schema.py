"""The project's tables as SQLAlchemy Core, one `MetaData`.

These definitions are what the code reads and writes through. The database itself is only ever
created and changed by the Alembic migrations in `migrations/versions/`; a test checks that the
migrated schema and these tables agree.

Times are UTC instants (`timestamptz` on PostgreSQL). On PostgreSQL `sensor_readings` is
range-partitioned by month (see migration 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Constraint names follow one convention so migrations can refer to them on every dialect.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

REGISTER_KINDS = ("coil", "discrete", "holding", "input")
DATA_TYPES = (
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
    "bit",
)
BYTE_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
EVENT_KINDS = ("failure", "repair", "preventive", "inspection")
RISK_LEVELS = ("ok", "watch", "warn", "alarm")
ALERT_STATUSES = ("open", "acknowledged", "resolved")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


plc_connections = sa.Table(
    "plc_connections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
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
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("site", sa.Text),
    sa.Column("line", sa.Text),
    sa.Column("kind", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("connection_id", sa.Integer, sa.ForeignKey("plc_connections.id")),
    sa.Column("unit_id", sa.Integer),
    sa.Column("address_base", sa.Integer, nullable=False, server_default="0"),
    sa.Column("byte_order", sa.Text, nullable=False, server_default="ABCD"),
    sa.Column("poll_groups", Json, nullable=False),
    sa.Column("unreadable", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

plc_register_map = sa.Table(
    "plc_register_map",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("connection_id", sa.Integer, sa.ForeignKey("plc_connections.id"), nullable=False),
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
    sa.CheckConstraint(_in("register_kind", REGISTER_KINDS), name="register_kind"),
    sa.CheckConstraint(_in("data_type", DATA_TYPES), name="data_type"),
    sa.CheckConstraint(_in("byte_order", BYTE_ORDERS), name="byte_order"),
    sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="validity"),
    sa.Index(
        "ix_plc_register_map_device_id_sensor_valid_from", "device_id", "sensor", "valid_from"
    ),
    # At most one open (current) version per device and sensor.
    sa.Index(
        "uq_plc_register_map_current",
        "device_id",
        "sensor",
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
        sqlite_where=sa.text("valid_to IS NULL"),
    ),
)

sensor_readings = sa.Table(
    "sensor_readings",
    metadata,
    sa.Column("device_id", sa.Integer, nullable=False),
    sa.Column("sensor", sa.Text, nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("quality", sa.Text, nullable=False, server_default="good"),
    sa.Column("register_map_id", sa.Integer),
    sa.Column("ingested_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("value_text", sa.Text),  # the value of string points (value is NULL then)
    sa.PrimaryKeyConstraint("device_id", "sensor", "ts", name="pk_sensor_readings"),
    sa.Index("ix_sensor_readings_device_id_ts", "device_id", "ts"),
    sa.Index("ix_sensor_readings_ingested_at", "ingested_at", postgresql_using="brin"),
)

ingest_gaps = sa.Table(
    "ingest_gaps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("sensor", sa.Text),
    sa.Column("gap_start", Timestamp, nullable=False),
    sa.Column("gap_end", Timestamp, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("gap_end >= gap_start", name="span"),
    sa.Index("ix_ingest_gaps_device_id_gap_start", "device_id", "gap_start"),
)

maintenance_events = sa.Table(
    "maintenance_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("event_time", Timestamp, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("component", sa.Text),
    sa.Column("notes", sa.Text),
    sa.Column("source", sa.Text, nullable=False, server_default="manual"),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
    sa.UniqueConstraint("device_id", "event_time", "kind"),
)

feature_windows = sa.Table(
    "feature_windows",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("window_start", Timestamp, nullable=False),
    sa.Column("window_end", Timestamp, nullable=False),
    sa.Column("features", Json, nullable=False),
    sa.Column("reading_count", sa.Integer, nullable=False),
    sa.Column("quality_flags", Json, nullable=False),
    sa.Column("register_map_ids", Json, nullable=False),
    sa.Column("computed_at", Timestamp, nullable=False),
    sa.Column("dagster_run_id", sa.Text),
    # How the window was cut: "60min/10min" (time) or "30samples" (the last N samples).
    sa.Column("window_spec", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("device_id", "window_spec", "window_end"),
    sa.Index("ix_feature_windows_window_end", "window_end"),
)

# Every sensor window that failed a data-quality check: what the checks measured, which failed.
# (A sensor window without a row passed every check.)
sensor_quality = sa.Table(
    "sensor_quality",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("sensor", sa.Text, nullable=False),
    sa.Column("window_spec", sa.Text, nullable=False),
    sa.Column("window_start", Timestamp, nullable=False),
    sa.Column("window_end", Timestamp, nullable=False),
    sa.Column("readings", sa.Integer, nullable=False),  # every quality
    sa.Column("good_readings", sa.Integer, nullable=False),  # good and finite
    sa.Column("last_good_age_s", sa.Float),  # window end minus the newest good reading
    sa.Column("value_range", sa.Float),  # max - min of good readings
    sa.Column("out_of_range", sa.Integer, nullable=False),  # readings outside valid_range
    sa.Column("max_jump_ratio", sa.Float),  # largest step / mean step
    sa.Column("max_spacing_s", sa.Float),  # longest time between two readings
    sa.Column("gap_rows", sa.Integer, nullable=False),  # ingest_gaps rows overlapping the window
    sa.Column("duplicates", sa.Integer, nullable=False),  # repeated or untrusted timestamps
    sa.Column("error_rate", sa.Float),  # share of readings not good
    sa.Column("failed", Json, nullable=False),  # names of the checks that failed
    sa.Column("blocking", sa.Boolean, nullable=False),  # a blocking check failed
    sa.Column("checked_at", Timestamp, nullable=False),
    sa.Column("dagster_run_id", sa.Text),
    sa.UniqueConstraint("device_id", "sensor", "window_spec", "window_end"),
    sa.Index("ix_sensor_quality_window_end", "window_end"),
)

maintenance_predictions = sa.Table(
    "maintenance_predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("window_start", Timestamp, nullable=False),
    sa.Column("window_end", Timestamp, nullable=False),
    sa.Column(
        "feature_window_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("feature_windows.id", ondelete="SET NULL"),
    ),
    sa.Column("predicted_at", Timestamp, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("model_alias", sa.Text),
    sa.Column("mlflow_run_id", sa.Text),
    sa.Column("anomaly_score", sa.Float),
    sa.Column("failure_probability", sa.Float),
    sa.Column("horizon", sa.Float),  # in time_unit
    sa.Column("rul_estimate", sa.Float),  # in time_unit
    sa.Column("time_unit", sa.Text),  # "h" (time windows) or "samples" (sample windows)
    sa.Column("risk_level", sa.Text),
    sa.Column("status", sa.Text, nullable=False, server_default="scored"),
    sa.Column("top_sensors", Json),
    sa.Column("dagster_run_id", sa.Text),
    sa.CheckConstraint(
        "risk_level IS NULL OR " + _in("risk_level", RISK_LEVELS), name="risk_level"
    ),
    sa.UniqueConstraint(
        "device_id",
        "window_end",
        "model_name",
        "model_version",
        name="uq_maintenance_predictions_key",
    ),
    sa.Index("ix_maintenance_predictions_device_id_predicted_at", "device_id", "predicted_at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column(
        "prediction_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("maintenance_predictions.id", ondelete="SET NULL"),
    ),
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
    sa.Column("escalated_at", Timestamp),
    sa.Column("resolved_by", sa.Text),  # "auto" when the risk fell back, else who resolved it
    sa.CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
    sa.CheckConstraint(_in("severity", RISK_LEVELS), name="severity"),
    sa.Index("ix_alerts_device_id_opened_at", "device_id", "opened_at"),
    # Deduplication: one alert per key that is not yet resolved.
    sa.Index(
        "uq_alerts_dedup_key_unresolved",
        "dedup_key",
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        sqlite_where=sa.text("status <> 'resolved'"),
    ),
)

# Where the alert rules stand per device: the newest window judged and the run of windows at warn
# or above (or at watch or below) that ends there; what makes opening and resolving hysteretic.
alert_state = sa.Table(
    "alert_state",
    metadata,
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("last_window_end", Timestamp, nullable=False),
    sa.Column("high_windows", sa.Integer, nullable=False),
    sa.Column("low_windows", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

NOTIFICATION_EVENTS = ("opened", "escalated", "resolved")

# The outbox of alert notifications: written with the alert change, delivered to the webhook
# later; `delivered_at` is set only once the receiver accepted it, so none is lost or sent again.
alert_notifications = sa.Table(
    "alert_notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.CheckConstraint(_in("event", NOTIFICATION_EVENTS), name="event"),
    sa.Index("ix_alert_notifications_delivered_at", "delivered_at"),
)
