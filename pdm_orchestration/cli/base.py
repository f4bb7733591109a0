"""The `pdm-orch` group, its shared helpers, and how errors reach the user."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, get_args

import click
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.plant.config import Plant, PlantConfigError, load_plant
from pdm_orchestration.settings import (
    LogLevel,
    Settings,
    SettingsError,
    configure_logging,
    load_settings,
)
from pdm_orchestration.storage.migrate import MigrationError

log = logging.getLogger("pdm_orchestration.cli")


class CliError(click.ClickException):
    """An error reported as one line on stderr with a non-zero exit."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Group(click.Group):
    """Turns the errors users can cause into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, MigrationError) as exc:
            raise CliError(str(exc)) from None
        except sa.exc.SQLAlchemyError as exc:
            raise CliError(f"database: {_first_line(exc)}") from None
        except OSError as exc:
            raise CliError(_first_line(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(get_args(LogLevel), case_sensitive=False),
    default=None,
    help="Override LOG_LEVEL for this command.",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """pdm-orch: predictive maintenance from PLC registers.

    Settings come from environment variables and `.env` (see `.env.example`).
    """
    settings = load_settings()
    configure_logging((log_level or settings.log_level).upper())
    ctx.obj = settings


pass_settings: Callable[..., Any] = click.make_pass_decorator(Settings)
MAX_CHANGES_SHOWN = 20


def fail_plant(exc: PlantConfigError) -> NoReturn:
    for issue in exc.issues:
        click.echo(str(issue), err=True)
    noun = "problem" if len(exc.issues) == 1 else "problems"
    raise CliError(f"{len(exc.issues)} {noun} in the plant file")


def load_plant_or_fail(
    settings: Settings, path: Path | None = None, *, default_port: int | None = None
) -> Plant:
    """The plant file (default PDM_PLANT_FILE); every problem printed, then a one-line error."""
    try:
        return load_plant(
            path or settings.pdm_plant_file,
            default_host=settings.plc_host,
            default_port=default_port or settings.plc_port,
        )
    except PlantConfigError as exc:
        fail_plant(exc)


def engine_for(settings: Settings) -> Engine:
    """An engine on DATABASE_URL; a URL no installed dialect or driver serves is a CliError."""
    from pdm_orchestration.storage.engine import make_engine

    try:
        return make_engine(settings.db_url, echo=settings.db_echo)
    except sa.exc.NoSuchModuleError:
        name = sa.engine.make_url(settings.db_url).drivername
        raise CliError(
            f"DATABASE_URL={safe_url(settings)}: SQLAlchemy has no database dialect {name!r}"
        ) from None
    except ImportError as exc:  # the dialect's DBAPI module
        backend = sa.engine.make_url(settings.db_url).get_backend_name()
        raise CliError(
            f"DATABASE_URL={safe_url(settings)}: the database driver for {backend} is not "
            f"installed (no module {exc.name!r})"
        ) from None


def safe_url(settings: Settings) -> str:
    return sa.engine.make_url(settings.db_url).render_as_string(hide_password=True)
