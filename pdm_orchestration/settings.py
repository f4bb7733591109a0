"""Every knob of pdm-orchestration, read from environment variables and an optional `.env` file.

The names are the environment variable names (documented in `.env.example`). Nothing here is read
at import time: call `get_settings()` where a setting is needed. A bad value raises `SettingsError`
whose message names the variable.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _absolute_sqlite_url(url: str) -> str:
    """Make a relative `sqlite:///file` URL absolute, so the file does not move with the cwd."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or Path(parsed.database).is_absolute():
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(
        hide_password=False
    )


class Settings(BaseSettings):
    """Configuration from the environment (and `.env` in the working directory)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    pdm_home: Path = Field(
        default=Path(".pdm"),
        description="Folder for local state: the default SQLite database, MLflow store, spool.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the project database; default: SQLite under PDM_HOME.",
    )
    db_echo: bool = Field(default=False, description="Log every SQL statement.")
    plc_host: str = Field(
        default="127.0.0.1", min_length=1, description="Host of connections that name none."
    )
    plc_port: int = Field(
        default=5020, ge=1, le=65535, description="Port of connections that name none."
    )
    plc_poll_interval_seconds: float = Field(
        default=10.0, gt=0, description="Poll interval of points in no poll group."
    )
    pdm_plant_file: Path = Field(
        default=Path("examples/plant.yaml"), description="The plant configuration YAML."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking store; default: SQLite under PDM_HOME."
    )
    log_level: LogLevel = Field(default="INFO", description="Python logging level.")
    alert_webhook_url: str | None = Field(
        default=None, description="Where new alerts are POSTed as JSON (none: not sent)."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("not an http:// or https:// URL")
        return value

    @field_validator("database_url", "mlflow_tracking_uri", "alert_webhook_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _absolute_mlflow_store(cls, value: str | None) -> str | None:
        # MLflow resolves a relative sqlite path against the cwd of each process: pin it.
        if value is None or not value.startswith("sqlite:"):
            return value
        try:
            return _absolute_sqlite_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a valid sqlite URI ({exc})") from None

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a SQLAlchemy database URL ({exc})") from None
        return _absolute_sqlite_url(value)

    @model_validator(mode="after")
    def _defaults_under_home(self) -> Settings:
        self.pdm_home = self.pdm_home.expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.pdm_home / 'pdm.db'}"
        if self.mlflow_tracking_uri is None:
            self.mlflow_tracking_uri = f"sqlite:///{self.pdm_home / 'mlflow.db'}"
        return self

    @property
    def db_url(self) -> str:
        """The database URL, never None after validation."""
        assert self.database_url is not None
        return self.database_url


def load_settings(**overrides: object) -> Settings:
    """Read the settings now; raise `SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}={_shown(name, error.get('input'))!r}: {message}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None


def _shown(name: str, value: object) -> object:
    """A bad value as the error shows it: URLs without their password or secret path."""
    if not isinstance(value, str) or not name.endswith(("_URL", "_URI")):
        return value
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{'***@' if '@' in rest.split('/', 1)[0] else ''}{host}/..."


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()


def configure_logging(level: str) -> None:
    """Send log records of this package (and its libraries) to stderr at `level`."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )
    # pymodbus logs each failed request as an ERROR with its raw frames; the poller reports
    # failures itself (quality codes, gaps, warnings), so pymodbus speaks only when debugging.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))
