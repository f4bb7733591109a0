"""Data-quality checks on each sensor's window: which fail, and which of those block scoring.

The measures come from `windows.compute_windows` (one row per device, sensor and window); the
rules here turn them into pass or fail, vectorised. A blocking failure means a model must not score
that device's window (its prediction is suppressed instead); the others are warnings.

Blocking (the window is not scored):

- stale_sensor: the newest good reading is older than `stale_factor` x the poll interval at the
  window's end (or there is none);
- flatline: at least `flatline_min_count` good readings and not one change (on/off points, bits,
  coils and discrete inputs, are exempt: they may rightly stay put);
- out_of_range: a reading outside the point's `valid_range`;
- read_error_rate: more than `max_error_rate` of the readings are not good.

Warnings:

- spikes_and_jumps: a step between two readings above `jump_ratio` x the window's mean step;
- gaps: an `ingest_gaps` row overlaps the window, or two readings lie more than `stale_factor` x
  the poll interval apart;
- duplicate_timestamps: a timestamp repeats, or the device clock did not vouch for it (`bad_clock`).

Windows counted in samples (cycle data) have no poll-interval meaning: there stale_sensor and the
spacing part of gaps are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CHECKS = {
    "stale_sensor": "No good reading for longer than k x the sensor's poll interval.",
    "flatline": "The sensor's value did not change at all over the window.",
    "out_of_range": "Readings outside the physical range the plant file gives the point.",
    "read_error_rate": "Too many readings of the window failed (timeouts, exceptions, bad decode).",
    "spikes_and_jumps": "A step between two readings far larger than the window's typical step.",
    "gaps": "Spans the collector could not read (ingest_gaps), or readings too far apart.",
    "duplicate_timestamps": "Repeated timestamps, or times the device clock did not vouch for.",
}
BLOCKING = ("stale_sensor", "flatline", "out_of_range", "read_error_rate")


@dataclass(frozen=True)
class QualityRules:
    stale_factor: float = 3.0
    flatline_min_count: int = 5
    max_error_rate: float = 0.2
    jump_ratio: float = 8.0
    jump_min_steps: int = 10


def judge(rows: pd.DataFrame, rules: QualityRules, by_samples: bool) -> pd.DataFrame:
    """One boolean column per check (True: failed), for each row of `compute_windows`."""
    limit = rules.stale_factor * rows["interval_s"].to_numpy(dtype=np.float64)
    age = rows["last_good_age_s"].to_numpy(dtype=np.float64)
    spacing = rows["max_spacing_s"].to_numpy(dtype=np.float64)
    count = rows["count"].to_numpy()
    failed = {
        # No good reading at all in the window counts as stale.
        "stale_sensor": np.zeros(len(rows), bool)
        if by_samples
        else ~np.isfinite(age) | (np.isfinite(limit) & (age > limit)),
        "flatline": (count >= rules.flatline_min_count)
        & (rows["ptp"].to_numpy() == 0)
        & ~rows["binary"].to_numpy(dtype=bool),
        "out_of_range": rows["out_of_range"].to_numpy() > 0,
        "read_error_rate": rows["error_rate"].to_numpy(dtype=np.float64) > rules.max_error_rate,
        "spikes_and_jumps": (rows["jump_steps"].to_numpy() >= rules.jump_min_steps)
        & (np.nan_to_num(rows["max_jump_ratio"].to_numpy(dtype=np.float64)) > rules.jump_ratio),
        "gaps": (rows["gap_rows"].to_numpy() > 0)
        | (False if by_samples else (np.isfinite(limit) & (spacing > limit))),
        "duplicate_timestamps": rows["duplicates"].to_numpy() > 0,
    }
    return pd.DataFrame(failed, index=rows.index)


def failed_lists(flags: pd.DataFrame) -> tuple[list[list[str]], np.ndarray]:
    """Per row: the names of the failed checks, and whether any of them blocks."""
    names = np.array(list(flags.columns), dtype=object)
    matrix = flags.to_numpy()
    lists = [list(names[row]) for row in matrix] if len(matrix) else []
    blocking = flags[list(BLOCKING)].to_numpy().any(axis=1)
    return lists, blocking
