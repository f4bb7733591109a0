"""Building feature windows for a time range: load, compute, check, store, chunk by chunk.

A range is cut into chunks (a day of window ends, and at most `devices_per_chunk` devices) so that
memory stays bounded whatever the range; each chunk is one transaction, so a rerun of the same
range replaces exactly its windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.features import store
from pdm_orchestration.features.quality import CHECKS, QualityRules, judge
from pdm_orchestration.features.windows import ReadingArrays, WindowSpec, compute_windows

log = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """What a build did, for logs, asset metadata and checks."""

    spec: str
    start: datetime
    end: datetime
    readings: int = 0
    windows: int = 0
    devices: set[int] = field(default_factory=set)
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    # A few failing (device, sensor, window_end) per check, for check metadata.
    examples: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=lambda: {name: [] for name in CHECKS}
    )
    sensor_windows: int = 0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


def build_features(
    engine: Engine,
    spec: WindowSpec,
    start: datetime,
    end: datetime,
    *,
    default_interval_s: float,
    time_scale: float = 1.0,
    rules: QualityRules | None = None,
    run_id: str | None = None,
    devices_per_chunk: int = 125,
    progress: Callable[[BuildSummary], None] | None = None,
) -> BuildSummary:
    """Compute and store every window of `spec` ending in `(start, end]`."""
    if end <= start:
        raise ValueError(f"empty range: {start.isoformat()} .. {end.isoformat()}")
    rules = rules or QualityRules()
    summary = BuildSummary(spec.name, start, end)
    began = time.perf_counter()
    computed_at = datetime.now(UTC)
    with engine.connect() as connection:
        info = store.load_series_info(connection, default_interval_s, time_scale)
        names = store.device_names(connection)
        registry = store.map_series(connection) if engine.dialect.name == "postgresql" else None
    all_devices = list(names)
    groups = [
        all_devices[i : i + devices_per_chunk]
        for i in range(0, len(all_devices), devices_per_chunk)
    ]
    for lo, hi in _chunks(spec, start, end):
        with engine.begin() as connection, _Writer(connection) as writer:
            since = _look_back(connection, spec, lo, hi)
            gaps = store.load_gaps(connection, since, hi)
            qualities = []
            for readings in _prefetched(engine, since, hi, groups, registry):
                summary.readings += int((readings.ts > pd.Timestamp(lo).value).sum())
                result = compute_windows(readings, spec, lo, hi, info, gaps)
                del readings
                if result.rows.empty:
                    continue
                flags = judge(result.rows, rules, spec.by_samples)
                windows = store.device_windows(result.rows, flags, result.map_ids)
                summary.windows += len(windows)
                summary.devices |= set(windows["device_id"].tolist())
                writer.submit(
                    store.upsert_windows,
                    connection,
                    spec,
                    windows,
                    computed_at=computed_at,
                    run_id=run_id,
                )
                qualities.append(store.quality_rows(result.rows, flags))
                _tally(summary, result.rows, flags, names)
            writer.wait()
            quality = pd.concat(qualities, ignore_index=True) if qualities else pd.DataFrame()
            store.finish_windows(
                connection, spec, lo, hi, quality, computed_at=computed_at, run_id=run_id
            )
        summary.seconds = time.perf_counter() - began
        if progress is not None:
            progress(summary)
    summary.seconds = time.perf_counter() - began
    return summary


class _Writer:
    """Runs a chunk's upserts one after the other on its connection, in a thread of its own on
    PostgreSQL (so the next device group computes meanwhile), inline on SQLite."""

    def __init__(self, connection: sa.Connection) -> None:
        threaded = connection.dialect.name == "postgresql"
        self.pool = (
            ThreadPoolExecutor(1, thread_name_prefix="pdm-features-write") if threaded else None
        )
        self.pending: list[Future] = []

    def submit(self, fn: Callable[..., None], *args: object, **kwargs: object) -> None:
        if self.pool is None:
            fn(*args, **kwargs)
        else:
            self.pending.append(self.pool.submit(fn, *args, **kwargs))

    def wait(self) -> None:
        """Until every upsert is done (raising the first error)."""
        for future in self.pending:
            future.result()
        self.pending.clear()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _prefetched(
    engine: Engine,
    since: datetime,
    until: datetime,
    groups: list[list[int]],
    registry: store.MapSeries | None,
) -> Iterator[ReadingArrays]:
    """The readings of each device group; the next group loads (in PostgreSQL, on a connection
    of its own) while the caller computes on this one, so the two cores both work."""

    def load(group: list[int]) -> ReadingArrays:
        # Groups are slices of the sorted device ids, so the id range selects exactly the group.
        with engine.connect() as connection, connection.begin():
            return store.load_readings(connection, since, until, (group[0], group[-1]), registry)

    if engine.dialect.name != "postgresql" or len(groups) < 2:
        for group in groups:
            yield load(group)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdm-features-load") as pool:
        pending = pool.submit(load, groups[0])
        for following in [*groups[1:], None]:
            readings = pending.result()
            if following is not None:
                pending = pool.submit(load, following)
            yield readings
            del readings


def _chunks(spec: WindowSpec, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """(start, end] cut into a day of window ends each (time windows: on stride boundaries)."""
    day = timedelta(days=1)
    out, lo = [], start
    while lo < end:
        hi = min(lo + day, end)
        out.append((lo, hi))
        lo = hi
    return out


def _look_back(
    connection, spec: WindowSpec, start: datetime, end: datetime | None = None
) -> datetime:
    """From when readings are needed so that windows ending in (start, end] are whole."""
    if spec.length is not None and spec.stride is not None:
        return start - spec.length - spec.stride  # one stride more: steps into the first bucket
    assert spec.samples is not None
    earliest = store.sample_lookback(connection, start, spec.samples, end)
    return min(earliest - timedelta(microseconds=1), start) if earliest is not None else start


def _tally(
    summary: BuildSummary, rows: pd.DataFrame, flags: pd.DataFrame, names: dict[int, str]
) -> None:
    summary.sensor_windows += len(rows)
    for name in CHECKS:
        hits = flags[name].to_numpy()
        count = int(hits.sum())
        summary.failures[name] += count
        room = 10 - len(summary.examples[name])
        if count and room > 0:
            sample = rows.loc[hits, ["device_id", "sensor", "window_end"]].head(room)
            summary.examples[name] += [
                (names.get(int(d), str(d)), str(s), pd.Timestamp(w).isoformat())
                for d, s, w in sample.itertuples(index=False)
            ]


def assess_latest(
    engine: Engine,
    end: datetime,
    *,
    length: timedelta = timedelta(hours=1),
    default_interval_s: float,
    rules: QualityRules | None = None,
) -> BuildSummary:
    """The data-quality checks on the readings of the last `length` before `end`, nothing stored
    (the checks of `plc_readings`)."""
    spec = WindowSpec.time(length, length)
    window_end = spec.window_ends(end - length, end)[-1].to_pydatetime()
    summary = BuildSummary(spec.name, window_end - length, window_end)
    with engine.connect() as connection:
        info = store.load_series_info(connection, default_interval_s)
        names = store.device_names(connection)
        since = _look_back(connection, spec, window_end - length)
        readings = store.load_readings(connection, since, window_end)
        gaps = store.load_gaps(connection, since, window_end)
    summary.readings = len(readings)
    result = compute_windows(readings, spec, window_end - length, window_end, info, gaps)
    if not result.rows.empty:
        flags = judge(result.rows, rules or QualityRules(), by_samples=False)
        _tally(summary, result.rows, flags, names)
        summary.devices = set(result.rows["device_id"].tolist())
    return summary
