"""Alerts with hysteresis and a notification outbox; the views BI tools read; a read-only role.

- `alert_state`: per device, the newest window the alert rules judged and the current run of
  windows at warn or above (or at watch or below);
- `alert_notifications`: the outbox the webhook sensor delivers from;
- `alerts.escalated_at`, `alerts.resolved_by`;
- views `v_device_health`, `v_latest_predictions`, `v_readings_hourly`, `v_prediction_history`,
  `v_model_comparison`, `v_alerts`, `v_sensor_quality` (on PostgreSQL and SQLite; each has a
  `time` column for Grafana);
- on PostgreSQL the role `pdm_reader` (no login: grant it to the BI tools' users) may read the
  views and nothing else. Roles belong to the whole server: a downgrade takes this database's
  grants away but leaves the role (another database may use it). Where the migrating user may not
  create roles, the role is left out with a notice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
READER = "pdm_reader"
RISK_RANK = (
    "CASE {c} WHEN 'alarm' THEN 3 WHEN 'warn' THEN 2 WHEN 'watch' THEN 1 "
    "WHEN 'ok' THEN 0 ELSE NULL END"
)


def _views(dialect: str) -> dict[str, str]:
    pg = dialect == "postgresql"
    top = "p.top_sensors -> 0 ->> 'sensor'" if pg else "json_extract(p.top_sensors, '$[0].sensor')"
    hour = "date_trunc('hour', r.ts)" if pg else "strftime('%Y-%m-%d %H:00:00', r.ts)"
    rank = RISK_RANK.format(c="p.risk_level")
    return {
        # The newest prediction of each device and model, from the versions that decide (champion,
        # or the built-in rules while no model exists).
        "v_latest_predictions": f"""
SELECT device_id, device, site, line, kind, model_name, model_version, model_alias,
       mlflow_run_id, window_start, window_end, window_end AS time, predicted_at,
       anomaly_score, failure_probability, rul_estimate, horizon, time_unit, risk_level,
       risk_rank, status, top_sensor, top_sensors, feature_window_id, dagster_run_id
FROM (
    SELECT p.device_id, d.name AS device, d.site, d.line, d.kind, p.model_name,
           p.model_version, p.model_alias, p.mlflow_run_id, p.window_start, p.window_end,
           p.predicted_at, p.anomaly_score, p.failure_probability, p.rul_estimate, p.horizon,
           p.time_unit, p.risk_level, {rank} AS risk_rank, p.status, {top} AS top_sensor,
           p.top_sensors, p.feature_window_id, p.dagster_run_id,
           ROW_NUMBER() OVER (
               PARTITION BY p.device_id, p.model_name ORDER BY p.window_end DESC
           ) AS newest
    FROM maintenance_predictions AS p
    JOIN devices AS d ON d.id = p.device_id
    WHERE p.model_alias IN ('champion', 'builtin') AND d.active
) AS ranked
WHERE newest = 1""",
        # One row per active device: its newest reading, its risk now (the highest of its models'
        # newest predictions), probability and RUL where such models score, what drives it, and
        # its open alerts.
        "v_device_health": """
SELECT d.id AS device_id, d.name AS device, d.site, d.line, d.kind,
       (SELECT max(r.ts) FROM sensor_readings AS r WHERE r.device_id = d.id) AS last_reading_at,
       worst.window_end AS time,
       CASE max_rank WHEN 3 THEN 'alarm' WHEN 2 THEN 'warn' WHEN 1 THEN 'watch'
                     WHEN 0 THEN 'ok' END AS risk_level,
       worst.model_name AS risk_from,
       scores.failure_probability, scores.rul_estimate, scores.rul_unit,
       worst.top_sensor,
       (SELECT count(*) FROM alerts AS a
         WHERE a.device_id = d.id AND a.status <> 'resolved') AS open_alerts
FROM devices AS d
LEFT JOIN (
    SELECT device_id, max(risk_rank) AS max_rank,
           max(CASE WHEN model_name LIKE '%failure_risk' THEN failure_probability END)
               AS failure_probability,
           min(CASE WHEN model_name LIKE '%rul' THEN rul_estimate END) AS rul_estimate,
           max(CASE WHEN model_name LIKE '%rul' THEN time_unit END) AS rul_unit
    FROM v_latest_predictions GROUP BY device_id
) AS scores ON scores.device_id = d.id
LEFT JOIN (
    SELECT device_id, model_name, window_end, top_sensor, ROW_NUMBER() OVER (
               PARTITION BY device_id ORDER BY risk_rank DESC, window_end DESC, model_name
           ) AS pick
    FROM v_latest_predictions WHERE risk_rank IS NOT NULL
) AS worst ON worst.device_id = d.id AND worst.pick = 1
WHERE d.active""",
        "v_readings_hourly": f"""
SELECT r.device_id, d.name AS device, r.sensor, {hour} AS time,
       count(*) AS readings,
       sum(CASE WHEN r.quality = 'good' THEN 1 ELSE 0 END) AS good_readings,
       avg(CASE WHEN r.quality = 'good' THEN r.value END) AS mean,
       min(CASE WHEN r.quality = 'good' THEN r.value END) AS min,
       max(CASE WHEN r.quality = 'good' THEN r.value END) AS max
FROM sensor_readings AS r
JOIN devices AS d ON d.id = r.device_id
WHERE r.value_text IS NULL
GROUP BY r.device_id, d.name, r.sensor, {hour}""",
        "v_prediction_history": f"""
SELECT p.id AS prediction_id, p.device_id, d.name AS device, d.kind, p.window_end AS time,
       p.window_start, p.window_end, p.predicted_at, p.model_name, p.model_version,
       p.model_alias, p.mlflow_run_id, p.anomaly_score, p.failure_probability, p.rul_estimate,
       p.horizon, p.time_unit, p.risk_level, p.status, {top} AS top_sensor, p.top_sensors,
       p.feature_window_id, p.dagster_run_id
FROM maintenance_predictions AS p
JOIN devices AS d ON d.id = p.device_id""",
        # Champion and challenger on the same windows of the same device.
        "v_model_comparison": """
SELECT c.device_id, d.name AS device, c.window_end AS time, c.model_name,
       c.model_version AS champion_version, k.model_version AS challenger_version,
       c.risk_level AS champion_risk, k.risk_level AS challenger_risk,
       c.anomaly_score AS champion_anomaly_score, k.anomaly_score AS challenger_anomaly_score,
       c.failure_probability AS champion_failure_probability,
       k.failure_probability AS challenger_failure_probability,
       c.rul_estimate AS champion_rul, k.rul_estimate AS challenger_rul,
       CASE WHEN c.risk_level = k.risk_level THEN 1 ELSE 0 END AS same_risk
FROM maintenance_predictions AS c
JOIN maintenance_predictions AS k
  ON k.device_id = c.device_id AND k.window_end = c.window_end
 AND k.model_name = c.model_name AND k.model_alias = 'challenger'
JOIN devices AS d ON d.id = c.device_id
WHERE c.model_alias = 'champion'""",
        "v_alerts": """
SELECT a.id AS alert_id, a.device_id, d.name AS device, d.site, d.line, d.kind,
       a.opened_at AS time, a.severity, a.status, a.message, a.opened_at, a.updated_at,
       a.escalated_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by,
       a.feedback, a.feedback_note, a.prediction_id, p.model_name, p.model_version,
       p.window_end AS prediction_window_end, p.risk_level AS prediction_risk,
       (SELECT count(*) FROM alert_notifications AS n
         WHERE n.alert_id = a.id AND n.delivered_at IS NULL) AS undelivered_notifications
FROM alerts AS a
JOIN devices AS d ON d.id = a.device_id
LEFT JOIN maintenance_predictions AS p ON p.id = a.prediction_id""",
        "v_sensor_quality": """
SELECT q.device_id, d.name AS device, q.sensor, q.window_spec, q.window_end AS time,
       q.window_start, q.window_end, q.readings, q.good_readings, q.error_rate,
       q.last_good_age_s, q.value_range, q.out_of_range, q.max_jump_ratio, q.max_spacing_s,
       q.gap_rows, q.duplicates, q.failed, q.blocking, q.checked_at
FROM sensor_quality AS q
JOIN devices AS d ON d.id = q.device_id""",
    }


VIEW_ORDER = (
    "v_latest_predictions",
    "v_device_health",
    "v_readings_hourly",
    "v_prediction_history",
    "v_model_comparison",
    "v_alerts",
    "v_sensor_quality",
)


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("escalated_at", Timestamp))
        batch.add_column(sa.Column("resolved_by", sa.Text))
    op.create_table(
        "alert_state",
        sa.Column("device_id", sa.Integer, nullable=False),
        sa.Column("last_window_end", Timestamp, nullable=False),
        sa.Column("high_windows", sa.Integer, nullable=False),
        sa.Column("low_windows", sa.Integer, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_alert_state"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_alert_state_device_id_devices"
        ),
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", BigId, nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_alert_notifications"),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_alert_notifications_alert_id_alerts"
        ),
        # op.f: the name as written (the naming convention would prefix it a second time).
        sa.CheckConstraint(
            "event IN ('opened', 'escalated', 'resolved')",
            name=op.f("ck_alert_notifications_event"),
        ),
    )
    op.create_index("ix_alert_notifications_delivered_at", "alert_notifications", ["delivered_at"])
    dialect = op.get_bind().dialect.name
    views = _views(dialect)
    for name in VIEW_ORDER:
        op.execute(f"CREATE VIEW {name} AS {views[name]}")
    if dialect == "postgresql":
        _grant_reader()


def _grant_reader() -> None:
    names = ", ".join(VIEW_ORDER)
    op.execute(
        f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        CREATE ROLE {READER} NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'no permission to create role {READER}: BI access is left to the DBA';
END $$;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO {READER}', current_schema());
        GRANT SELECT ON {names} TO {READER};
    END IF;
END $$;"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        names = ", ".join(VIEW_ORDER)
        op.execute(
            f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        REVOKE SELECT ON {names} FROM {READER};
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {READER}', current_schema());
    END IF;
END $$;"""
        )
    for name in reversed(VIEW_ORDER):
        op.execute(f"DROP VIEW {name}")
    op.drop_index("ix_alert_notifications_delivered_at", table_name="alert_notifications")
    op.drop_table("alert_notifications")
    op.drop_table("alert_state")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("resolved_by")
        batch.drop_column("escalated_at")
