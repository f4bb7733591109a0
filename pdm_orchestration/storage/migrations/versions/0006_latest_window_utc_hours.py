"""Three views corrected:

- `v_latest_predictions`: the predictions of each device's newest scored window, one per model (its
  most recently scored version). 0005 took each model's newest window on its own, so a model that
  no longer scores (the built-in rules once a champion exists) kept its old, stale row beside the
  champion's, and `v_device_health` could report its risk;
- `v_device_health`: a column `status` at the end: `scored`, or `suppressed_bad_data` when a
  blocking data-quality check stopped every model at the device's newest window (its risk is then
  empty, and this says why); `time` is that window's end in both cases;
- `v_readings_hourly`: hours cut in UTC whatever the session's time zone (a half-hour zone shifted
  the buckets).

The three views are dropped and created again (in the order they build on each other) and
`pdm_reader` gets its grants back. The downgrade restores 0005's definitions.

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

CHANGED = ("v_latest_predictions", "v_device_health", "v_readings_hourly")  # build order
READER = "pdm_reader"
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
        "v_device_health": """
SELECT d.id AS device_id, d.name AS device, d.site, d.line, d.kind,
       (SELECT max(r.ts) FROM sensor_readings AS r WHERE r.device_id = d.id) AS last_reading_at,
       scores.window_end AS time,
       CASE max_rank WHEN 3 THEN 'alarm' WHEN 2 THEN 'warn' WHEN 1 THEN 'watch'
                     WHEN 0 THEN 'ok' END AS risk_level,
       worst.model_name AS risk_from,
       scores.failure_probability, scores.rul_estimate, scores.rul_unit,
       worst.top_sensor,
       (SELECT count(*) FROM alerts AS a
         WHERE a.device_id = d.id AND a.status <> 'resolved') AS open_alerts,
       CASE WHEN scores.scored > 0 THEN 'scored'
            WHEN scores.device_id IS NOT NULL THEN 'suppressed_bad_data' END AS status
FROM devices AS d
LEFT JOIN (
    SELECT device_id, max(window_end) AS window_end, max(risk_rank) AS max_rank,
           sum(CASE WHEN status = 'suppressed_bad_data' THEN 0 ELSE 1 END) AS scored,
           max(CASE WHEN model_name LIKE '%failure_risk' THEN failure_probability END)
               AS failure_probability,
           min(CASE WHEN model_name LIKE '%rul' THEN rul_estimate END) AS rul_estimate,
           max(CASE WHEN model_name LIKE '%rul' THEN time_unit END) AS rul_unit
    FROM v_latest_predictions GROUP BY device_id
) AS scores ON scores.device_id = d.id
LEFT JOIN (
    SELECT device_id, model_name, top_sensor, ROW_NUMBER() OVER (
               PARTITION BY device_id ORDER BY risk_rank DESC, model_name
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
    }


def _replace(views: dict[str, str]) -> None:
    for name in reversed(CHANGED):
        op.execute(f"DROP VIEW {name}")
    for name in CHANGED:
        op.execute(f"CREATE VIEW {name} AS {views[name]}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        GRANT SELECT ON {", ".join(CHANGED)} TO {READER};
    END IF;
END $$;"""
        )


def upgrade() -> None:
    _replace(_views(op.get_bind().dialect.name))


def downgrade() -> None:
    # 0005's definitions as 0005 wrote them (a migration is never edited once it has run).
    path = Path(__file__).with_name("0005_alerts_outbox_bi_views.py")
    spec = importlib.util.spec_from_file_location("pdm_migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _replace(module._views(op.get_bind().dialect.name))
