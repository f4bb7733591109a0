"""`pdm-orch features build`: window features and data-quality checks for a time range."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import click

from pdm_orchestration.cli.base import CliError, engine_for, main, pass_settings
from pdm_orchestration.features.build import BuildSummary, build_features
from pdm_orchestration.features.quality import CHECKS, QualityRules
from pdm_orchestration.features.windows import WindowSpec, WindowSpecError
from pdm_orchestration.settings import Settings

log = logging.getLogger(__name__)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"{name}: {value!r} is not an ISO time like 2026-05-01T00:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.group("features")
def features() -> None:
    """Window features per device and the data-quality checks on them."""


@features.command("build")
@click.option("--start", help="Windows ending after this time (ISO, UTC; default: --end - 1 day).")
@click.option("--end", help="... and at or before this one (ISO, UTC; default: now).")
@click.option("--window", default="60min", show_default=True, help="60min, 1h, ... or 30samples.")
@click.option("--stride", default="10min", show_default=True, help="Between window ends (time).")
@click.option(
    "--stale-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Stale after this many poll intervals without a reading.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Device-clock seconds per second of polling (the simulator's --speed).",
)
@pass_settings
def build(
    settings: Settings,
    start: str | None,
    end: str | None,
    window: str,
    stride: str,
    stale_factor: float,
    time_scale: float,
) -> None:
    """Compute and store the feature windows ending in (START, END]; a rerun replaces them."""
    try:
        spec = WindowSpec.parse(window, None if window.strip().endswith("samples") else stride)
    except WindowSpecError as exc:
        raise CliError(str(exc)) from None
    until = _time(end, "--end") or datetime.now(UTC)
    since = _time(start, "--start") or until - timedelta(days=1)
    if since >= until:
        raise CliError(f"--start {since.isoformat()} is not before --end {until.isoformat()}")

    def progress(done: BuildSummary) -> None:
        log.info(
            "%d device windows from %d readings (%.0f readings/s)",
            done.windows,
            done.readings,
            done.readings_per_s,
        )

    engine = engine_for(settings)
    try:
        summary = build_features(
            engine,
            spec,
            since,
            until,
            default_interval_s=settings.plc_poll_interval_seconds,
            time_scale=time_scale,
            rules=QualityRules(stale_factor=stale_factor),
            progress=progress,
        )
    finally:
        engine.dispose()
    click.echo(
        f"{summary.windows} device windows of {spec.name} ending in "
        f"({since.isoformat()}, {until.isoformat()}] from {summary.readings} readings "
        f"in {summary.seconds:.1f} s"
    )
    for name in CHECKS:
        failed = summary.failures[name]
        if failed:
            examples = "; ".join(" ".join(e) for e in summary.examples[name][:3])
            click.echo(
                f"  {name}: {failed} of {summary.sensor_windows} sensor windows ({examples})"
            )
    if not any(summary.failures.values()) and summary.sensor_windows:
        click.echo(f"  every check passed on {summary.sensor_windows} sensor windows")
