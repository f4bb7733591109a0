"""Data-quality checks on the newest readings, run with every ingestion session."""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from pdm_orchestration.defs.features.checks import check_results
from pdm_orchestration.defs.resources import PlantResource, PostgresResource
from pdm_orchestration.features.build import assess_latest
from pdm_orchestration.features.quality import CHECKS


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="plc_readings", description=f"{text} (the last hour)")
        for name, text in CHECKS.items()
    ],
)
def plc_readings_quality(
    database: PostgresResource, plant: PlantResource
) -> Iterator[dg.AssetCheckResult]:
    """The data-quality checks on the readings of the last whole hour (warnings: scoring is
    guarded by the blocking checks of `feature_windows`)."""
    summary = assess_latest(
        database.get_engine(), datetime.now(UTC), default_interval_s=plant.poll_interval_s
    )
    yield from check_results(summary, "plc_readings")
