import os
from pathlib import Path

import pytest

from pdm_orchestration.settings import SettingsError, load_settings


def test_defaults_put_local_state_under_pdm_home(clean_env: Path) -> None:
    settings = load_settings()
    home = (clean_env / ".pdm").resolve()
    assert settings.pdm_home == home
    assert settings.db_url == f"sqlite:///{home / 'pdm.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.db_echo is False
    assert (settings.plc_host, settings.plc_port) == ("127.0.0.1", 5020)
    assert settings.plc_poll_interval_seconds == 10.0
    assert settings.log_level == "INFO"


def test_environment_overrides_and_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "PLC_HOST=10.1.2.3\nPLC_POLL_INTERVAL_SECONDS=2.5\nDB_ECHO=true\nLOG_LEVEL=debug\n"
    )
    monkeypatch.setenv("PLC_HOST", "plc.local")  # the environment wins over .env
    settings = load_settings()
    assert settings.plc_host == "plc.local"
    assert settings.plc_poll_interval_seconds == 2.5
    assert settings.db_echo is True
    assert settings.log_level == "DEBUG"


def test_relative_sqlite_url_is_made_absolute(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///data/plant.db")
    assert load_settings().db_url == f"sqlite:///{(clean_env / 'data' / 'plant.db').resolve()}"


def test_postgres_url_is_kept(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://pdm:secret@db:5432/pdm")
    assert load_settings().db_url == "postgresql://pdm:secret@db:5432/pdm"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PLC_POLL_INTERVAL_SECONDS", "-5", "greater than 0"),
        ("PLC_POLL_INTERVAL_SECONDS", "often", "valid number"),
        ("DATABASE_URL", "not a url", "not a SQLAlchemy database URL"),
        ("PLC_PORT", "70000", "less than or equal to 65535"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
        ("DB_ECHO", "maybe", "valid boolean"),
    ],
)
def test_bad_value_names_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{variable}={value!r}" in message
    assert expected in message


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        (
            "DATABASE_URL",
            "postgres ql://pdm:s3cret@db.example/pdm",
            "postgres ql://***@db.example/...",
        ),
        ("ALERT_WEBHOOK_URL", "ftp://hooks.example/T0/secret-token", "ftp://hooks.example/..."),
    ],
)
def test_a_bad_url_is_named_without_its_secret(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, shown: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{variable}={shown!r}" in message
    assert "s3cret" not in message and "secret-token" not in message


def test_db_echo_logs_each_statement_once(clean_env: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "DB_ECHO": "true", "PDM_HOME": str(clean_env / "home")}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "pdm-orch"), "db", "current"],
        cwd=clean_env,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in out.stderr.splitlines() if "PRAGMA main.table_info" in line]
    assert len(lines) == 1, out.stderr
