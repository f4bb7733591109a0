"""`pdm-orch demo` and `pdm-orch dev`: they run, they stop, they leave nothing behind."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg

from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.modbus.helpers import free_port

PDM_ORCH = str(Path(sys.executable).parent / "pdm-orch")


def environment(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MLFLOW_"))}
    return {
        **env,
        "PDM_HOME": str(home / ".pdm"),
        "DAGSTER_HOME": str(home / ".pdm" / "dagster"),
        "PDM_PLANT_FILE": str(EXAMPLE_PLANT),
        "PLC_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def descendants_of(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies are dead, whoever reaps them)."""
    out = subprocess.run(["ps", "-eo", "pid,stat,sid"], capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return [int(p) for p, stat, s in rows if int(s) == sid and int(p) != sid and "Z" not in stat]


def test_an_interrupted_demo_stops_everything_and_the_next_run_recovers(tmp_path: Path) -> None:
    port = free_port()
    env = environment(tmp_path, port)
    first = subprocess.Popen(
        [PDM_ORCH, "demo", "--days", "2", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in first.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if line.startswith("[2/7]"):
            break
    time.sleep(3)
    assert listening(port)  # the simulator serves while it polls
    first.send_signal(signal.SIGINT)
    first.wait(timeout=60)
    assert first.returncode != 0
    time.sleep(1)
    assert not listening(port) and descendants_of(first.pid) == []
    # Run again: it starts over and goes to the end.
    done = subprocess.run(
        [PDM_ORCH, "demo", "--days", "0.3", "--speed", "1440", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[7/7] done" in out and "Device health (v_device_health):" in out
    table = out[out.index("Device health") :].splitlines()
    assert (
        sum(1 for line in table if line.startswith(("pump_", "motor_", "compressor_", "spindle_")))
        == 12
    )
    assert "Dagster UI  http://127.0.0.1:3000" in out and "make dev" in out
    assert not listening(port)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) >= 6  # registry, ingest, features, training, predictions, alerts
        key = dg.AssetKey("maintenance_predictions")
        assert instance.get_latest_materialization_event(key) is not None


def wait_until(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return False


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_dev_starts_both_uis_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    plc, dagster_port, mlflow_port = free_port(), free_port(), free_port()
    env = environment(tmp_path, plc)
    (tmp_path / ".pdm").mkdir()
    supervisor = subprocess.Popen(
        [PDM_ORCH, "dev", "--dagster-port", str(dagster_port), "--mlflow-port", str(mlflow_port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: answers(f"http://127.0.0.1:{dagster_port}/server_info"), 180)
        assert wait_until(lambda: answers(f"http://127.0.0.1:{mlflow_port}/health"), 60)
        assert listening(plc)
        children = [
            int(w)
            for w in subprocess.run(
                ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(children) == 3
    finally:
        supervisor.send_signal(signal.SIGINT)
        output, _ = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, output
    assert "stopped everything" in output
    for port in (plc, dagster_port, mlflow_port):
        assert not listening(port), port
    # Each child led a session of its own (Dagster's webserver, daemon and code servers are in
    # dg's): not one process of those sessions is left.
    for child in children:
        assert descendants_of(child) == [], child
