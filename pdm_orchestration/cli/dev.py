"""`pdm-orch dev`: the simulator, the Dagster UI (with its daemon) and the MLflow UI, together.

Dagster's daemon runs the automation: the ingestion schedule, the feature and prediction refresh,
the weekly retraining and the alert sensor. Ctrl-C (or SIGTERM) stops every process it started,
and so does any of them stopping on its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from pdm_orchestration.cli.base import CliError, main, pass_settings
from pdm_orchestration.settings import Settings

STOP_GRACE_S = 10.0


@main.command("dev")
@click.option("--dagster-port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--mlflow-port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="The simulator's speed (1: real time).",
)
@click.option("--no-simulator", is_flag=True, help="Poll real PLCs instead (the plant file's).")
@pass_settings
def dev(
    settings: Settings, dagster_port: int, mlflow_port: int, speed: float, no_simulator: bool
) -> None:
    """Simulator + Dagster UI (127.0.0.1:3000) + MLflow UI (127.0.0.1:5000); Ctrl-C stops all."""
    bin_dir = Path(sys.executable).parent
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or settings.pdm_home / "dagster").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        from pdm_orchestration.cli.demo import DAGSTER_YAML

        (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    project = _project_root()
    commands = {
        "dagster": [
            _tool(bin_dir, "dg"),
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(dagster_port),
        ],
        "mlflow": [
            _tool(bin_dir, "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            str(settings.mlflow_tracking_uri),
        ],
    }
    if not no_simulator:
        commands = {
            "simulator": [
                _tool(bin_dir, "pdm-orch"),
                "simulate",
                "--speed",
                f"{speed:g}",
                "--write-events",
            ],
            **commands,
        }
    running: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in commands.items():
            # A session of its own: Ctrl-C reaches only this supervisor, which stops each group.
            running[name] = subprocess.Popen(command, env=env, cwd=project, start_new_session=True)
            click.echo(f"started {name} (pid {running[name].pid}): {' '.join(command[1:4])} ...")
        click.echo(
            f"Dagster UI http://127.0.0.1:{dagster_port}  MLflow UI http://127.0.0.1:{mlflow_port}"
            "  (Ctrl-C stops everything)"
        )
        gone = None
        while not stopping and gone is None:
            time.sleep(0.5)
            gone = next((n for n, p in running.items() if p.poll() is not None), None)
        if gone is not None and not stopping:
            click.echo(f"{gone} stopped (exit {running[gone].returncode}): stopping the rest")
    finally:
        _stop_all(running)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if gone is not None and not stopping:
        raise CliError(f"{gone} stopped on its own")
    click.echo("stopped everything")


def _project_root() -> Path:
    """The folder of the project's pyproject.toml (where `dg dev` must run)."""
    import pdm_orchestration

    root = Path(pdm_orchestration.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        raise CliError(f"the project folder (with pyproject.toml) is not {root}: run from a clone")
    return root


def _tool(bin_dir: Path, name: str) -> str:
    found = bin_dir / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        raise CliError(f"{name} is not installed (run `make install`)")
    return on_path


def _stop_all(running: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to every process group, then SIGKILL to whatever is left of their sessions."""
    for process in running.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in running.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    while time.monotonic() < deadline and any(_session(p.pid) for p in running.values()):
        time.sleep(0.2)  # workers of a server finishing their shutdown
    for process in running.values():
        for pid in _session(process.pid):  # the ones that did not stop in the grace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def _session(sid: int) -> list[int]:
    """Processes of session `sid` (each child leads one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            found.append(int(entry.name))
    return found


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
