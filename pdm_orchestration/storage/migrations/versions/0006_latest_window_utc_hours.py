"""Two views corrected:

- `v_latest_predictions`: the predictions of each device's newest scored window, one per model (its
  most recently scored version). 0005 took each model's newest window on its own, so a model that
  no longer scores (the built-in rules once a champion exists) kept its old, stale row beside the
  champion's, and `v_device_health` could report its risk;
- `v_readings_hourly`: hours cut in UTC whatever the session's time zone (a half-hour zone shifted
  the buckets).

Same columns as before, so grants and the views built on them stay. The downgrade restores 0005's
definitions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANGED = ("v_latest_predictions", "v_readings_hourly")
DECIDING = "p.model_alias IN ('champion', 'builtin')"
RISK_RANK = (
    "CASE p.risk_level WHEN 'alarm' THEN 3 WHEN 'warn' THEN 2 WHEN 'watch' THEN 1 "
    "WHEN 'ok' THEN 0 ELSE NULL END"
)


def _views(dialect: str) -> dict[str, str]:
    pg = dialect == "postgresql"
    top = "p.top_sensors -> 0 ->> 'sensor'" if pg else "json_extract(p.top_sensors, '$[0].sensor')"
    hour = (
        "date_trunc('hour', r.ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if pg
        else "strftime('%Y-%m-%d %H:00:00', r.ts)"
    )
    return {
        "v_latest_predictions": f"""
SELECT device_id, device, site, line, kind, model_name, model_version, model_alias,
       mlflow_run_id, window_start, window_end, window_end AS time, predicted_at,
       anomaly_score, failure_probability, rul_estimate, horizon, time_unit, risk_level,
       risk_rank, status, top_sensor, top_sensors, feature_window_id, dagster_run_id
FROM (
    SELECT p.device_id, d.name AS device, d.site, d.line, d.kind, p.model_name, p.model_version,
           p.model_alias, p.mlflow_run_id, p.window_start, p.window_end, p.predicted_at,
           p.anomaly_score, p.failure_probability, p.rul_estimate, p.horizon,
           p.time_unit, p.risk_level, {RISK_RANK} AS risk_rank, p.status, {top} AS top_sensor,
           p.top_sensors, p.feature_window_id, p.dagster_run_id,
           ROW_NUMBER() OVER (
               PARTITION BY p.device_id, p.model_name ORDER BY p.predicted_at DESC, p.id DESC
           ) AS newest
    FROM maintenance_predictions AS p
    JOIN devices AS d ON d.id = p.device_id
    JOIN (
        SELECT p.device_id, max(p.window_end) AS window_end FROM maintenance_predictions AS p
        WHERE {DECIDING} GROUP BY p.device_id
    ) AS latest ON latest.device_id = p.device_id AND latest.window_end = p.window_end
    WHERE {DECIDING} AND d.active
) AS ranked
WHERE newest = 1""",
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
    }


def _replace(views: dict[str, str]) -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in CHANGED:
        if postgresql:  # in place: the views on top of it and the grants stay
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {views[name]}")
        else:  # SQLite resolves a view's views when it is read: drop and create
            op.execute(f"DROP VIEW {name}")
            op.execute(f"CREATE VIEW {name} AS {views[name]}")


def upgrade() -> None:
    _replace(_views(op.get_bind().dialect.name))


def downgrade() -> None:
    # 0005's definitions as 0005 wrote them (a migration is never edited once it has run).
    path = Path(__file__).with_name("0005_alerts_outbox_bi_views.py")
    spec = importlib.util.spec_from_file_location("pdm_migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _replace(module._views(op.get_bind().dialect.name))
