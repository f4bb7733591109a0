"""The `pdm-orch` command: database migrations, plant configuration and status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.plant.config import PlantConfigError, load_plant
from pdm_orchestration.settings import Settings, SettingsError, configure_logging, load_settings

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
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        except sa.exc.SQLAlchemyError as exc:
            raise CliError(f"database: {_first_line(exc)}") from None
        except OSError as exc:
            raise CliError(_first_line(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
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


def _engine(settings: Settings) -> Engine:
    from pdm_orchestration.storage.engine import make_engine

    return make_engine(settings.db_url, echo=settings.db_echo)


def _safe_url(settings: Settings) -> str:
    return sa.engine.make_url(settings.db_url).render_as_string(hide_password=True)


pass_settings: Callable[..., Any] = click.make_pass_decorator(Settings)
MAX_CHANGES_SHOWN = 20


# --------------------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Create and migrate the project database (DATABASE_URL)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from pdm_orchestration.storage import migrate

    at = migrate.upgrade(_engine(settings), revision)
    click.echo(f"{_safe_url(settings)}: at revision {at}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@pass_settings
def db_downgrade(settings: Settings, revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; `base` drops every table)."""
    from pdm_orchestration.storage import migrate

    at = migrate.downgrade(_engine(settings), revision)
    click.echo(f"{_safe_url(settings)}: at revision {at or 'base (empty)'}")


@db.command("current")
@pass_settings
def db_current(settings: Settings) -> None:
    """Print the database's revision and the newest one this code ships."""
    from pdm_orchestration.storage import migrate

    at = migrate.current_revision(_engine(settings))
    head = migrate.head_revision()
    state = "up to date" if at == head else "run `pdm-orch db upgrade`"
    click.echo(f"{_safe_url(settings)}: at {at or 'base (empty)'}, newest {head} ({state})")


@db.command("partitions")
@click.option("--months-ahead", default=3, show_default=True, type=click.IntRange(0, 120))
@pass_settings
def db_partitions(settings: Settings, months_ahead: int) -> None:
    """Create the monthly sensor_readings partitions ahead (PostgreSQL) and list them."""
    from pdm_orchestration.storage.partitions import ensure_reading_partitions, reading_partitions

    engine = _engine(settings)
    if engine.dialect.name != "postgresql":
        click.echo("SQLite keeps sensor_readings in one table: nothing to partition")
        return
    created = ensure_reading_partitions(engine, months_ahead)
    names = reading_partitions(engine)
    click.echo(f"created {created}; partitions: {', '.join(names)}")


# ------------------------------------------------------------------------ plant


def _fail_plant(exc: PlantConfigError) -> NoReturn:
    for issue in exc.issues:
        click.echo(str(issue), err=True)
    noun = "problem" if len(exc.issues) == 1 else "problems"
    raise CliError(f"{len(exc.issues)} {noun} in the plant file")


@main.group()
def plant() -> None:
    """Validate a plant file and apply it to the device registry."""


@plant.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@pass_settings
def plant_validate(settings: Settings, file: Path) -> None:
    """Check FILE and report every problem at once (file, line and field of each)."""
    try:
        result = load_plant(file, default_host=settings.plc_host, default_port=settings.plc_port)
    except PlantConfigError as exc:
        _fail_plant(exc)
    click.echo(
        f"{file}: ok ({len(result.connections)} connections, {len(result.devices)} devices, "
        f"{len(result.points)} points)"
    )


@plant.command("apply")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--dry-run", is_flag=True, help="Report the changes without making them.")
@click.option("-v", "--verbose", is_flag=True, help="List every change, however many.")
@pass_settings
def plant_apply(settings: Settings, file: Path | None, dry_run: bool, verbose: bool) -> None:
    """Apply FILE (default: PDM_PLANT_FILE) to the registry; safe to run again."""
    from pdm_orchestration.plant.registry import apply_plant

    path = file or settings.pdm_plant_file
    try:
        result = load_plant(path, default_host=settings.plc_host, default_port=settings.plc_port)
    except PlantConfigError as exc:
        _fail_plant(exc)
    report = apply_plant(_engine(settings), result, dry_run=dry_run)
    shown = report.details if verbose else report.details[:MAX_CHANGES_SHOWN]
    for line in shown:
        click.echo(f"  {line}")
    if len(shown) < len(report.details):
        click.echo(f"  ... and {len(report.details) - len(shown)} more (--verbose lists them)")
    prefix = "would apply" if dry_run else "applied"
    click.echo(f"{prefix} {path}: {report.summary()}")


# ----------------------------------------------------------------------- status


@main.command("status")
@pass_settings
def status(settings: Settings) -> None:
    """Print what the database holds: schema revision, connections, devices, readings."""
    from pdm_orchestration.status import database_status

    engine = _engine(settings)
    click.echo(database_status(engine, _safe_url(settings)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
