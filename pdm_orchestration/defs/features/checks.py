"""Asset-check results from a feature build's tally of failed data-quality checks."""

import dagster as dg

from pdm_orchestration.features.build import BuildSummary
from pdm_orchestration.features.quality import BLOCKING, CHECKS


def check_results(
    summary: BuildSummary, asset: str, max_blocked_share: float | None = None
) -> list[dg.AssetCheckResult]:
    """One result per check, naming a few failing (device, sensor, window_end).

    With `max_blocked_share`, a blocking check fails (severity ERROR, which stops downstream
    assets) only when more than that share of the sensor windows failed it; below it the
    failing devices' windows are suppressed at scoring instead. Without it every check warns on
    any failure.
    """
    total = max(summary.sensor_windows, 1)
    results = []
    for name in CHECKS:
        failed = summary.failures[name]
        blocking = max_blocked_share is not None and name in BLOCKING
        passed = failed / total <= max_blocked_share if blocking else failed == 0
        results.append(
            dg.AssetCheckResult(
                asset_key=asset,
                check_name=name,
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "failing_sensor_windows": failed,
                    "sensor_windows": summary.sensor_windows,
                    "failing_share": round(failed / total, 4),
                    "windows": f"{summary.start.isoformat()} .. {summary.end.isoformat()}",
                    "examples (device, sensor, window_end)": dg.MetadataValue.json(
                        [list(e) for e in summary.examples[name]]
                    ),
                },
            )
        )
    return results
