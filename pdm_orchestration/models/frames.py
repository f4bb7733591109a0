"""Feature windows as model input: one row per device and window, one column per feature.

Rows come from `feature_windows` (`load_feature_frame`) or straight from `compute_windows` (in
memory, as the C-MAPSS evaluation's reference does, `frame_from_rows`); both give the same frame:

- meta columns (`META`): feature_window_id (None in memory), device_id, device, kind, window_start,
  window_end, and `blocked`: the sensors of the window with a failed blocking data-quality check;
- feature columns `<sensor>__<feature>` (float64, NaN where a device lacks the sensor);
- `age`: how long the device has run since its last maintenance event (failure, repair or
  preventive work) or its first window: hours in time windows, samples in sample windows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pdm_orchestration.features.quality import BLOCKING
from pdm_orchestration.features.windows import FEATURES, WindowSpec
from pdm_orchestration.storage.events import load_events
from pdm_orchestration.storage.schema import devices, feature_windows

META = ["feature_window_id", "device_id", "device", "kind", "window_start", "window_end", "blocked"]
AGE = "age"
SEPARATOR = "__"
RESET_KINDS = ("failure", "repair", "preventive")
HOUR_NS = 3600 * 1_000_000_000


def feature_column(sensor: str, feature: str) -> str:
    return f"{sensor}{SEPARATOR}{feature}"


def sensor_of(column: str) -> str:
    """The sensor a feature column describes (`age` describes the device itself)."""
    return column.split(SEPARATOR, 1)[0]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's feature columns, `age` last."""
    columns = sorted(c for c in frame.columns if SEPARATOR in c)
    return [*columns, AGE] if AGE in frame.columns else columns


def load_feature_frame(
    connection: sa.Connection,
    spec: WindowSpec,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    active_only: bool = False,
) -> pd.DataFrame:
    """The windows of `spec` ending in `(start, end]` (open where None), with `age`."""
    w, d = feature_windows.c, devices.c
    query = (
        sa.select(
            w.id,
            w.device_id,
            d.name,
            d.kind,
            w.window_start,
            w.window_end,
            w.features,
            w.quality_flags,
        )
        .join(devices, d.id == w.device_id)
        .where(w.window_spec == spec.name)
        .order_by(w.device_id, w.window_end)
    )
    if start is not None:
        query = query.where(w.window_end > start)
    if end is not None:
        query = query.where(w.window_end <= end)
    if active_only:
        query = query.where(d.active.is_(True))
    rows = connection.execute(query).all()
    meta = pd.DataFrame(
        [r[:6] for r in rows], columns=[c for c in META if c != "blocked"], dtype=object
    )
    values = pd.DataFrame.from_records([r.features for r in rows], index=meta.index)
    frame = _assemble(meta, values, [r.quality_flags for r in rows])
    events = load_events(connection, until=end)

    def counted_before(device_id: int, after: pd.Timestamp | None) -> int:
        """Windows of the device ending in (after, start]: the sample age a range starts at."""
        if start is None:
            return 0
        count = sa.select(sa.func.count()).where(
            w.window_spec == spec.name, w.device_id == device_id, w.window_end <= start
        )
        if after is not None:
            count = count.where(w.window_end > after.to_pydatetime())
        return int(connection.execute(count).scalar_one())

    if spec.by_samples:
        return add_age(frame, events, spec, counted_before)
    first = dict(
        connection.execute(
            sa.select(w.device_id, sa.func.min(w.window_start))
            .where(w.window_spec == spec.name)
            .group_by(w.device_id)
        ).all()
    )
    return add_age(frame, events, spec, first_start={k: _utc(v) for k, v in first.items()})


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def frame_from_rows(
    rows: pd.DataFrame,
    names: dict[int, str],
    kinds: dict[int, str | None] | None = None,
    flags: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The model frame of `compute_windows` rows (in memory; no feature_window_id, no age).

    `flags` (from `quality.judge`, on the same rows) marks the sensors that failed a blocking
    check, as `feature_windows.quality_flags` does in the database."""
    keys = ["device_id", "window_end"]
    wide = rows.set_index([*keys, "sensor"])[list(FEATURES)].unstack("sensor")
    wide.columns = [feature_column(sensor, feature) for feature, sensor in wide.columns]
    wide = wide.reset_index()
    starts = rows.groupby(keys)["window_start"].min().reset_index(drop=True)
    meta = pd.DataFrame(
        {
            "feature_window_id": None,
            "device_id": wide["device_id"].astype("int64"),
            "device": wide["device_id"].map(names),
            "kind": wide["device_id"].map(kinds or {}),
            "window_start": starts,
            "window_end": wide["window_end"],
        }
    )
    window_flags: list[dict | None] = [{}] * len(meta)
    if flags is not None:
        hit = flags[list(BLOCKING)].any(axis=1).to_numpy()
        bad = rows.loc[hit, [*keys, "sensor"]]
        per_window = bad.groupby(keys)["sensor"].agg(lambda s: {x: list(BLOCKING) for x in s})
        lookup = per_window.to_dict()
        keys_of_rows = zip(wide["device_id"], wide["window_end"], strict=True)
        window_flags = [lookup.get(key, {}) for key in keys_of_rows]
    values = wide.drop(columns=keys)
    return _assemble(meta, values, window_flags)


def _assemble(meta: pd.DataFrame, values: pd.DataFrame, flags: list[dict | None]) -> pd.DataFrame:
    meta = meta.copy()
    for column in ("window_start", "window_end"):
        meta[column] = pd.to_datetime(meta[column], utc=True)
    meta["device_id"] = meta["device_id"].astype("int64")
    meta["blocked"] = [_blocked(f) for f in flags]
    values = values.reindex(sorted(values.columns), axis=1).astype(np.float64)
    return pd.concat([meta, values], axis=1)


def _blocked(flags: dict | None) -> frozenset[str]:
    if not flags:
        return frozenset()
    return frozenset(sensor for sensor, failed in flags.items() if set(failed) & set(BLOCKING))


def add_age(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    spec: WindowSpec,
    counted_before: Callable[[int, pd.Timestamp | None], int] | None = None,
    *,
    first_start: dict[int, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Add `age`: since the device's last maintenance event before the window's end (or its first
    window). Sample windows count windows, the frame's own plus `counted_before(device, after)`
    earlier ones; time windows count hours from `first_start` (default: the frame's first)."""
    frame = frame.sort_values(["device_id", "window_end"], ignore_index=True)
    resets = events[events["kind"].isin(RESET_KINDS)]
    anchor = np.full(len(frame), np.iinfo(np.int64).min, dtype=np.int64)
    ends = frame["window_end"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    ends = ends.astype(np.int64)
    for device_id, positions in frame.groupby("device_id").indices.items():
        times = resets.loc[resets["device_id"] == device_id, "event_time"]
        if times.empty:
            continue
        stamps = np.sort(times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"))
        stamps = stamps.astype(np.int64)
        # The newest event strictly before the window's end: a failure at the last window's end
        # (a run-to-failure record) does not reset that window.
        found = np.searchsorted(stamps, ends[positions], side="left") - 1
        anchor[positions] = np.where(found >= 0, stamps[np.maximum(found, 0)], anchor[positions])
    if spec.by_samples:
        groups = pd.Series(anchor).groupby([frame["device_id"], anchor])
        rank = groups.cumcount().to_numpy() + 1
        base = np.zeros(len(frame), dtype=np.int64)
        if counted_before is not None:
            for (device_id, after), positions in groups.indices.items():
                since = None if after == np.iinfo(np.int64).min else pd.Timestamp(after, tz="UTC")
                base[positions] = counted_before(int(device_id), since)
        frame[AGE] = (base + rank).astype(np.float64)
        return frame
    first = frame.groupby("device_id")["window_start"].transform("min")
    origin = first.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    origin = origin.astype(np.int64)
    if first_start:
        known = frame["device_id"].map(first_start)
        has = known.notna().to_numpy()
        origin[has] = pd.DatetimeIndex(known[has]).tz_convert("UTC").as_unit("ns").asi8
    frame[AGE] = (ends - np.maximum(origin, anchor)) / HOUR_NS
    return frame
