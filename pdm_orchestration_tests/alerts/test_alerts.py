"""Alerts: hysteresis, escalation, acknowledgement, feedback; the webhook outbox."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from pdm_orchestration.alerts.rules import (
    AlertError,
    acknowledge,
    evaluate_alerts,
    resolve,
)
from pdm_orchestration.alerts.webhook import deliver
from pdm_orchestration.cli import main
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.schema import (
    alert_notifications,
    alerts,
    devices,
    maintenance_predictions,
)
from pdm_orchestration_tests.models.history import write_plant

T0 = datetime(2026, 5, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)


@pytest.fixture
def plant(engine: Engine, tmp_path: Path) -> dict[str, int]:
    apply_plant(engine, load_plant(write_plant(tmp_path)))
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(devices.c.name, devices.c.id)).all())


def predict(engine: Engine, device_id: int, levels: str, start: int = 0, **extra) -> None:
    """One prediction per window; levels: o(k) w(atch) W(arn) A(larm) -(suppressed)."""
    names = {"o": "ok", "w": "watch", "W": "warn", "A": "alarm", "-": None}
    rows = [
        {
            "device_id": device_id,
            "window_start": T0 + STEP * (start + i) - timedelta(hours=1),
            "window_end": T0 + STEP * (start + i),
            "predicted_at": T0,
            "model_name": "pdm_rules",
            "model_version": "1",
            "model_alias": "champion",
            "risk_level": names[c],
            "status": "suppressed_bad_data" if c == "-" else "scored",
            "top_sensors": [{"sensor": "bearing_temp", "contribution": 0.9}],
            **extra,
        }
        for i, c in enumerate(levels)
    ]
    with engine.begin() as conn:
        conn.execute(maintenance_predictions.insert(), rows)


def all_alerts(engine: Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(alerts).order_by(alerts.c.id)).all()


def events(engine: Engine) -> list[tuple[int, str, str]]:
    n = alert_notifications.c
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(sa.select(n.alert_id, n.event, n.severity).order_by(n.id))
        ]


def test_hysteresis_a_flapping_score_neither_opens_nor_resolves(
    engine: Engine, plant: dict
) -> None:
    pump = plant["pump_1"]
    predict(engine, pump, "oWoWoWo-W")  # never two windows in a row at warn (suppressed skipped)
    assert evaluate_alerts(engine).opened == []
    predict(engine, pump, "W", start=9)  # warn, (suppressed), warn, warn: now two in a row
    summary = evaluate_alerts(engine)
    assert summary.opened == ["pump_1"] and summary.windows == 1
    # Flapping low and high: still the same alert, not resolved (needs 6 low windows in a row).
    predict(engine, pump, "oWoooooW", start=10)
    summary = evaluate_alerts(engine)
    assert summary.resolved == [] and len(all_alerts(engine)) == 1
    predict(engine, pump, "A", start=18)
    assert evaluate_alerts(engine).escalated == ["pump_1"]
    predict(engine, pump, "wwwwww", start=19)
    assert evaluate_alerts(engine).resolved == ["pump_1"]
    alert = all_alerts(engine)[0]
    assert (alert.status, alert.severity, alert.resolved_by) == ("resolved", "alarm", "auto")
    assert alert.escalated_at is not None and "bearing_temp" in alert.message
    assert events(engine) == [
        (alert.id, "opened", "warn"),
        (alert.id, "escalated", "alarm"),
        (alert.id, "resolved", "alarm"),
    ]
    # Rerunning judges nothing twice.
    assert evaluate_alerts(engine).windows == 0


def test_an_acknowledged_alert_cannot_fire_again(engine: Engine, plant: dict) -> None:
    pump = plant["pump_2"]
    predict(engine, pump, "WW")
    evaluate_alerts(engine)
    alert_id = all_alerts(engine)[0].id
    acknowledge(engine, alert_id, by="maria", feedback=True, note="bearing noisy")
    predict(engine, pump, "WWWWooWW", start=2)
    evaluate_alerts(engine)
    rows = all_alerts(engine)
    assert len(rows) == 1 and rows[0].status == "acknowledged"
    assert (rows[0].acknowledged_by, rows[0].feedback, rows[0].feedback_note) == (
        "maria",
        True,
        "bearing noisy",
    )
    assert [e[1] for e in events(engine)] == ["opened"]
    with pytest.raises(AlertError, match="only an open alert"):
        acknowledge(engine, alert_id, by="maria")
    resolve(engine, alert_id, by="maria", feedback=False)
    assert all_alerts(engine)[0].resolved_by == "maria" and all_alerts(engine)[0].feedback is False
    with pytest.raises(AlertError, match="already resolved"):
        resolve(engine, alert_id, by="maria")
    with pytest.raises(AlertError, match="no alert 999"):
        acknowledge(engine, 999, by="maria")
    # Resolved, a new rise opens a new alert.
    predict(engine, pump, "WW", start=10)
    evaluate_alerts(engine)
    assert [r.status for r in all_alerts(engine)] == ["resolved", "open"]


def test_challenger_rows_do_not_raise_alerts(engine: Engine, plant: dict) -> None:
    predict(engine, plant["pump_3"], "AAAA", model_alias="challenger")
    assert evaluate_alerts(engine).opened == []


def test_feedback_joins_to_the_prediction(engine: Engine, plant: dict) -> None:
    predict(engine, plant["pump_4"], "WWA")
    evaluate_alerts(engine)
    alert = all_alerts(engine)[0]
    acknowledge(engine, alert.id, by="ops", feedback=True)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT a.feedback, p.risk_level, p.window_end FROM alerts a "
                "JOIN maintenance_predictions p ON p.id = a.prediction_id WHERE a.id = :i"
            ),
            {"i": alert.id},
        ).one()
    assert row.feedback is True or row.feedback == 1
    assert row.risk_level == "warn"  # the prediction that opened it (escalation came later)


def test_cli_acknowledges_and_says_why_it_cannot(
    engine: Engine, plant: dict, db_url: str, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    predict(engine, plant["pump_5"], "WW")
    runner = CliRunner()
    assert "opened 1" in runner.invoke(main, ["alerts", "evaluate"]).output
    listed = runner.invoke(main, ["alerts", "list"])
    assert "pump_5" in listed.output and "open" in listed.output
    alert_id = all_alerts(engine)[0].id
    done = runner.invoke(
        main, ["alerts", "ack", str(alert_id), "--by", "ana", "--feedback", "false"]
    )
    assert done.exit_code == 0, done.output
    assert all_alerts(engine)[0].feedback is False
    missing = runner.invoke(main, ["alerts", "ack", "4242"])
    assert missing.exit_code != 0 and missing.output.strip() == "error: no alert 4242"
    bad = runner.invoke(main, ["alerts", "resolve", str(alert_id), "--feedback", "maybe"])
    assert bad.exit_code != 0 and "maybe" in bad.output


class Receiver:
    """A local webhook that misbehaves on purpose: a script of answers, one per request."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append({"key": self.headers["Idempotency-Key"], **body})
                action = receiver.script.pop(0) if receiver.script else "ok"
                if action == "slow":
                    time.sleep(1.0)
                code = {"500": 500, "400": 400}.get(action, 204)
                try:
                    self.send_response(code)
                    self.end_headers()
                except BrokenPipeError:
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(script: list[str]) -> Receiver:
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_webhook_retries_timeouts_and_errors_then_never_sends_again(
    engine: Engine, plant: dict, receiver
) -> None:
    predict(engine, plant["pump_6"], "WWA")
    evaluate_alerts(engine)
    hook = receiver(["slow", "500", "ok", "ok"])
    done = deliver(engine, hook.url, timeout_s=0.3, attempts=3, backoff_s=0.01)
    assert len(done.delivered) == 2 and done.pending == 0 and not done.failed
    # The timed-out and the failed attempts were retried under the same key.
    keys = [r["key"] for r in hook.received]
    assert keys[:3] == ["pdm-alert-1"] * 3 and keys[3] == "pdm-alert-2"
    assert [r["event"] for r in hook.received] == ["opened"] * 3 + ["escalated"]
    assert hook.received[0]["alert"]["device"] == "pump_6"
    # Delivered means done: a second delivery posts nothing.
    assert deliver(engine, hook.url).delivered == [] and len(hook.received) == 4


def test_a_webhook_that_is_down_loses_nothing(engine: Engine, plant: dict, receiver) -> None:
    predict(engine, plant["pump_1"], "WW")
    evaluate_alerts(engine)
    down = receiver(["500"] * 10)
    done = deliver(engine, down.url, attempts=2, backoff_s=0.01)
    assert done.delivered == [] and done.pending == 1 and "HTTP 500" in done.failed[1]
    with engine.connect() as conn:
        row = conn.execute(sa.select(alert_notifications)).one()
    assert row.attempts == 2 and row.delivered_at is None
    assert row.last_error == f"HTTP 500 from http://127.0.0.1:{down.server.server_port}"
    nowhere = deliver(engine, "http://127.0.0.1:9/hooks/T00/secret-token", attempts=1)
    assert nowhere.pending == 1
    assert nowhere.failed[1] == "ConnectionError from http://127.0.0.1:9"  # no path, no secret
    up = receiver([])
    assert deliver(engine, up.url).delivered == [1] and len(up.received) == 1


def test_a_notification_refused_for_good_does_not_hold_up_the_others(
    engine: Engine, plant: dict, receiver
) -> None:
    predict(engine, plant["pump_1"], "WW")
    predict(engine, plant["pump_2"], "WW")
    evaluate_alerts(engine)
    picky = receiver(["400", "ok"])  # the first payload is refused, the second taken
    done = deliver(engine, picky.url, attempts=3, backoff_s=0.01)
    assert done.delivered == [2] and list(done.failed) == [1] and done.pending == 1
    assert len(picky.received) == 2  # a 400 is not retried


def test_the_sensor_posts_new_alerts_and_skips_without_a_url(
    engine: Engine, plant: dict, db_url: str, receiver
) -> None:
    import dagster as dg

    from pdm_orchestration.defs.alerts.assets import alert_webhook_sensor
    from pdm_orchestration.defs.resources import AlertWebhookResource, PostgresResource

    predict(engine, plant["pump_2"], "WW")
    evaluate_alerts(engine)
    hook = receiver(["500", "ok"])

    def tick(url: str, cursor: str | None = None):
        resources = {
            "database": PostgresResource(database_url=db_url),
            "webhook": AlertWebhookResource(url=url, attempts=3),
        }
        with dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(), resources=resources, cursor=cursor
        ) as context:
            return alert_webhook_sensor(context)

    skipped = tick("")
    assert isinstance(skipped, dg.SkipReason) and "ALERT_WEBHOOK_URL" in skipped.skip_message
    posted = tick(hook.url)
    assert isinstance(posted, dg.SensorResult)
    assert json.loads(posted.cursor) == {"delivered": 1, "pending": 0}
    assert [r["event"] for r in hook.received] == ["opened", "opened"]  # a 500, then taken
    assert isinstance(tick(hook.url, posted.cursor), dg.SkipReason)  # nothing new
