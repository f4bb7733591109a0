"""`pdm-orch plant` and `pdm-orch status`: the plant file, the registry, what is stored."""

from __future__ import annotations

from pathlib import Path

import click

from pdm_orchestration.cli.base import (
    MAX_CHANGES_SHOWN,
    engine_for,
    load_plant_or_fail,
    main,
    pass_settings,
    safe_url,
)
from pdm_orchestration.settings import Settings


@main.group()
def plant() -> None:
    """Validate a plant file and apply it to the device registry."""


@plant.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@pass_settings
def plant_validate(settings: Settings, file: Path) -> None:
    """Check FILE and report every problem at once (file, line and field of each)."""
    result = load_plant_or_fail(settings, file)
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
    result = load_plant_or_fail(settings, path)
    report = apply_plant(engine_for(settings), result, dry_run=dry_run)
    shown = report.details if verbose else report.details[:MAX_CHANGES_SHOWN]
    for line in shown:
        click.echo(f"  {line}")
    if len(shown) < len(report.details):
        click.echo(f"  ... and {len(report.details) - len(shown)} more (--verbose lists them)")
    prefix = "would apply" if dry_run else "applied"
    click.echo(f"{prefix} {path}: {report.summary()}")


@main.command("status")
@pass_settings
def status(settings: Settings) -> None:
    """Print what the database holds: schema revision, connections, devices, readings."""
    from pdm_orchestration.status import database_status

    engine = engine_for(settings)
    click.echo(database_status(engine, safe_url(settings)))
