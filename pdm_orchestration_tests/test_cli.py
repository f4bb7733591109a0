import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import get_args

import click
import pytest
from click.testing import CliRunner, Result

from pdm_orchestration.cli import main
from pdm_orchestration.settings import LogLevel
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.fixture
def run(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PDM_PLANT_FILE", str(EXAMPLE_PLANT))

    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("command", all_commands(main), ids=lambda c: " ".join(c) or "pdm-orch")
def test_every_command_has_help(run, command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert len(result.output.splitlines()) > 3


def test_first_run_upgrade_apply_twice_status(run, clean_env: Path) -> None:
    assert run("db", "upgrade").exit_code == 0
    assert (clean_env / ".pdm" / "pdm.db").exists()
    first = run("plant", "apply")
    assert first.exit_code == 0
    assert "121 changes (connections added 1, devices added 12, points added 108)" in first.output
    assert "... and 101 more (--verbose lists them)" in first.output
    second = run("plant", "apply")
    assert second.exit_code == 0
    assert second.output.strip().endswith(": 0 changes")
    status = run("status")
    assert status.exit_code == 0
    assert "devices: 12 active" in status.output
    assert "pump_01" in status.output and "compressor_03" in status.output
    current = run("db", "current")
    assert "up to date" in current.output


def test_apply_verbose_lists_every_change(run) -> None:
    run("db", "upgrade")
    result = run("plant", "apply", "--dry-run", "--verbose")
    assert result.exit_code == 0
    assert sum(line.startswith("  ") for line in result.output.splitlines()) == 121
    assert "would apply" in result.output
    assert "devices: 0 active" in run("status").output  # the dry run wrote nothing


def test_validate_ok_and_with_errors(run, tmp_path: Path) -> None:
    ok = run("plant", "validate", str(EXAMPLE_PLANT))
    assert ok.exit_code == 0
    assert "ok (1 connections, 12 devices, 108 points)" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "connections: [{id: gw}]\n"
        "devices: [{id: a, connection: gw, unit_id: 999}]\n"
        "points:\n"
        "  - {device: a, name: x, kind: input, address: 0, type: int16, scale: 0}\n"
    )
    result = CliRunner().invoke(main, ["plant", "validate", str(bad)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == "error: 2 problems in the plant file"
    assert lines[0].startswith(f"{bad}:2: devices[0].unit_id (a):")
    assert lines[1].startswith(f"{bad}:4: points[0].scale (a/x): must not be 0")


def test_apply_reports_plant_errors_and_writes_nothing(run, tmp_path: Path) -> None:
    run("db", "upgrade")
    bad = tmp_path / "bad.yaml"
    bad.write_text("connections: [{id: gw}]\ndevices: [{id: a, connection: nope, unit_id: 1}]\n")
    result = CliRunner().invoke(main, ["plant", "apply", str(bad)])
    assert result.exit_code == 1
    assert "unknown connection 'nope'" in result.output
    assert "devices: 0 active" in run("status").output


def test_bad_setting_fails_at_start_up_naming_the_variable(run) -> None:
    result = CliRunner().invoke(main, ["status"], env={"PLC_POLL_INTERVAL_SECONDS": "-1"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: invalid setting PLC_POLL_INTERVAL_SECONDS='-1': Input should be greater than 0"
    ]


def test_unreachable_database_is_one_line(run) -> None:
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={"DATABASE_URL": "postgresql://pdm@127.0.0.1:1/pdm"}
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: database: ")
    assert "127.0.0.1" in errors[0]
    assert "Traceback" not in result.output


def test_unknown_command_is_a_usage_error(run) -> None:
    result = CliRunner().invoke(main, ["plant", "frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_installed_entry_point_runs(clean_env: Path) -> None:
    script = Path(sys.executable).with_name("pdm-orch")
    result = subprocess.run(
        [str(script), "plant", "validate", str(EXAMPLE_PLANT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "12 devices" in result.stdout


def the_error(result: Result) -> str:
    """The one `error:` line of a failed command, after checking it is the whole story."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    return errors[0]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, clean_env: Path) -> dict[str, str]:
    """DATABASE_URL of a database no migration ever ran on."""
    if request.param == "sqlite":
        return {"DATABASE_URL": f"sqlite:///{clean_env / 'empty.db'}"}
    return {"DATABASE_URL": request.getfixturevalue("fresh_pg_url")}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["db", "upgrade", "nosuch"], "error: Can't locate revision identified by 'nosuch'"),
        (
            ["db", "downgrade", "nosuchrev"],
            "error: Can't locate revision identified by 'nosuchrev'",
        ),
        (["db", "downgrade"], "error: nothing to downgrade: the database is at base"),
        (["db", "downgrade", "--", "-2"], "error: nothing to downgrade: the database is at base"),
    ],
)
def test_migration_errors_are_one_line(
    run, empty_db: dict[str, str], args: list[str], error: str
) -> None:
    assert the_error(run(*args, env=empty_db)) == error


def test_going_back_further_than_base_is_one_line(run, empty_db: dict[str, str]) -> None:
    assert run("db", "upgrade", env=empty_db).exit_code == 0
    result = run("db", "downgrade", "--", "-99", env=empty_db)
    head = migrate.head_revision()
    assert the_error(result) == f"error: cannot go back 99 migrations: the database is at {head}"
    assert f"at {head}, newest {head} (up to date)" in run("db", "current", env=empty_db).output
    # A relative step needs no "--": two back from the newest.
    stepped = run("db", "downgrade", "-2", env=empty_db)
    assert stepped.exit_code == 0, stepped.output
    engine = make_engine(empty_db["DATABASE_URL"])
    assert int(migrate.current_revision(engine)) == int(head) - 2
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "mysql://pdm:secret@127.0.0.1/pdm",
            "error: DATABASE_URL=mysql://pdm:***@127.0.0.1/pdm: the database driver for mysql is "
            "not installed (no module 'MySQLdb')",
        ),
        (
            "postgresql+asyncpg://pdm@127.0.0.1/pdm",
            "error: DATABASE_URL=postgresql+asyncpg://pdm@127.0.0.1/pdm: the database driver for "
            "postgresql is not installed (no module 'asyncpg')",
        ),
        ("foo://bar", "error: DATABASE_URL=foo://bar: SQLAlchemy has no database dialect 'foo'"),
    ],
)
def test_a_database_url_nothing_here_can_serve_names_database_url(
    run, url: str, error: str
) -> None:
    module = error.rsplit("'", 2)[1]
    if "driver" in error and importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    for command in (["db", "upgrade"], ["status"]):
        assert the_error(run(*command, env={"DATABASE_URL": url})) == error


@pytest.mark.parametrize("level", get_args(LogLevel))
def test_log_level_option_takes_what_log_level_takes(run, level: str) -> None:
    assert run("plant", "validate", str(EXAMPLE_PLANT), env={"LOG_LEVEL": level}).exit_code == 0
    assert run("--log-level", level.lower(), "plant", "validate", str(EXAMPLE_PLANT)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "a b c\n1 2 3 4 5\n",
            "(Error tokenizing data. C error: Expected 3 fields in line 2, saw 5)",
        ),
        (" ".join(["x"] * 26) + "\n", "(column 'unit' is not numeric)"),
    ],
)
def test_replaying_a_file_that_is_not_cmapss_is_one_line(
    run, tmp_path: Path, text: str, reason: str
) -> None:
    dataset = tmp_path / "not_cmapss.txt"
    dataset.write_text(text)
    plant = tmp_path / "replay.yaml"
    result = run("simulate", "--replay", "cmapss", str(dataset), "--write-plant", str(plant))
    assert the_error(result) == f"error: {dataset}: not a C-MAPSS file {reason}"
    assert not plant.exists()
