"""`pdm-orch db`: create and migrate the project database."""

from __future__ import annotations

import click

from pdm_orchestration.cli.base import (
    engine_for,
    main,
    pass_settings,
    safe_url,
)
from pdm_orchestration.settings import Settings


@main.group()
def db() -> None:
    """Create and migrate the project database (DATABASE_URL)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from pdm_orchestration.storage import migrate

    at = migrate.upgrade(engine_for(settings), revision)
    click.echo(f"{safe_url(settings)}: at revision {at}")


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision", default="-1")
@pass_settings
def db_downgrade(settings: Settings, revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; `base` drops every table)."""
    from pdm_orchestration.storage import migrate

    at = migrate.downgrade(engine_for(settings), revision)
    click.echo(f"{safe_url(settings)}: at revision {at or 'base (empty)'}")


@db.command("current")
@pass_settings
def db_current(settings: Settings) -> None:
    """Print the database's revision and the newest one this code ships."""
    from pdm_orchestration.storage import migrate

    at = migrate.current_revision(engine_for(settings))
    head = migrate.head_revision()
    state = "up to date" if at == head else "run `pdm-orch db upgrade`"
    click.echo(f"{safe_url(settings)}: at {at or 'base (empty)'}, newest {head} ({state})")


@db.command("partitions")
@click.option("--months-ahead", default=3, show_default=True, type=click.IntRange(0, 120))
@pass_settings
def db_partitions(settings: Settings, months_ahead: int) -> None:
    """Create the monthly sensor_readings partitions ahead (PostgreSQL) and list them."""
    from pdm_orchestration.storage.partitions import ensure_reading_partitions, reading_partitions

    engine = engine_for(settings)
    if engine.dialect.name != "postgresql":
        click.echo("SQLite keeps sensor_readings in one table: nothing to partition")
        return
    created = ensure_reading_partitions(engine, months_ahead)
    names = reading_partitions(engine)
    click.echo(f"created {created}; partitions: {', '.join(names)}")
