"""Reading what window features need from the database, and storing the windows and checks.

Readings come out of PostgreSQL with a binary COPY of one row per register-map version holding
arrays (times as integer microseconds), which numpy decodes without a parse; of SQLite with one
query.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pdm_orchestration.features.quality import BLOCKING, CHECKS
from pdm_orchestration.features.windows import (
    FEATURES,
    READING_COLUMNS,
    ReadingArrays,
    SeriesInfo,
    WindowSpec,
)
from pdm_orchestration.plant.config import DEFAULT_GROUP
from pdm_orchestration.storage.bulk import insert_frame, upsert_frame
from pdm_orchestration.storage.schema import (
    devices,
    feature_windows,
    ingest_gaps,
    plc_register_map,
    sensor_quality,
    sensor_readings,
)


def load_readings(
    connection: sa.Connection,
    since: datetime,
    until: datetime,
    devices: tuple[int, int] | None = None,
    registry: MapSeries | None = None,
) -> ReadingArrays:
    """Readings with `since < ts <= until` (of the device ids in the closed range `devices`, or of
    every device), as arrays.

    Only readings with a register-map version count (every reading the collector stores has one)
    and no string points' readings.
    """
    r = sensor_readings.c
    where = [
        r.ts > since,
        r.ts <= until,
        r.register_map_id.is_not(None),
        r.value_text.is_(None),  # string points have no features
    ]
    if devices is not None:  # a range, not a list: PostgreSQL filters it without a hash join
        where.append(r.device_id.between(*devices))
    if connection.dialect.name != "postgresql":
        query = sa.select(r.device_id, r.sensor, r.ts, r.value, r.quality, r.register_map_id)
        frame = pd.DataFrame(
            connection.execute(query.where(*where)).all(), columns=list(READING_COLUMNS)
        )
        return ReadingArrays.from_frame(frame)
    registry = registry or map_series(connection)
    quality = sa.case((r.quality == "good", 0), (r.quality == "bad_clock", 1), else_=2)
    # One row per register-map version holding arrays: a few thousand COPY messages instead of
    # millions, so receiving them costs Python next to nothing (and another thread can compute).
    query = (
        sa.select(
            r.register_map_id,
            sa.func.array_agg(r.ts),
            sa.func.array_agg(sa.func.coalesce(r.value, sa.text("'NaN'::float8"))),
            sa.func.array_agg(sa.cast(quality, sa.SmallInteger)),
        )
        .where(*where)
        .group_by(r.register_map_id)
    )
    sql = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
    # The aggregate holds a device group's readings: in memory it takes half the time of a spill
    # to disk at the default 4 MB (this transaction only); JIT compiling costs more than it saves.
    connection.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    connection.execute(sa.text("SET LOCAL jit = off"))
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    buffer = io.BytesIO()
    try:
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT binary)", buffer)
    finally:
        cursor.close()
    map_id, ts, value, quality_code = _decode_array_copy(buffer.getbuffer())
    del buffer
    known = map_id <= registry.max_id
    code = np.where(known, registry.code_of_map[np.minimum(map_id, registry.max_id)], -1)
    if (code < 0).any():  # a version created after the registry was read: read it again
        return load_readings(connection, since, until, devices, map_series(connection))
    return ReadingArrays(
        series=registry.series,
        code=code,
        ts=(ts + _PG_EPOCH_US) * 1000,
        value=value,
        quality=quality_code.astype(np.int8),
        map_id=map_id.astype(np.float64),
    )


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, where PostgreSQL's timestamps count from
# Elements of a binary array: each a 4-byte length, then the big-endian value.
_ELEMENTS = {
    name: np.dtype([("length", ">i4"), ("value", kind)])
    for name, kind in (("ts", ">i8"), ("value", ">f8"), ("quality", ">i2"))
}


def _decode_array_copy(
    data: memoryview,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(register_map_id, ts, value, quality) from PostgreSQL's binary COPY of rows
    (int4, int8[], float8[], int2[]): a 19-byte header (plus extension), then per row a field
    count and (length, bytes) per field, big-endian; each array: ndim, flags, element type, size
    and lower bound, then its elements."""
    position = 19 + int.from_bytes(data[15:19], "big")
    ids, parts = [], {name: [] for name in _ELEMENTS}
    end = len(data) - 2  # the trailer: -1
    while position < end:
        if int.from_bytes(data[position : position + 2], "big", signed=True) != 4:
            raise RuntimeError("unexpected binary COPY layout from PostgreSQL")
        position += 2 + 4
        ids.append(int.from_bytes(data[position : position + 4], "big", signed=True))
        position += 4
        count = 0
        for name, dtype in _ELEMENTS.items():
            length = int.from_bytes(data[position : position + 4], "big", signed=True)
            start = position + 4
            count = int.from_bytes(data[start + 12 : start + 16], "big")
            elements = np.frombuffer(data, dtype=dtype, count=count, offset=start + 20)
            parts[name].append(elements["value"])
            position = start + length
        ids[-1] = (ids[-1], count)
    if not ids:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), empty
    map_id = np.repeat([i for i, _ in ids], [n for _, n in ids]).astype(np.int64)
    ts = np.concatenate(parts["ts"]).astype(np.int64)
    value = np.concatenate(parts["value"]).astype(np.float64)
    quality = np.concatenate(parts["quality"]).astype(np.int16)
    return map_id, ts, value, quality


@dataclass
class MapSeries:
    """Each register-map version's series: (device_id, sensor) codes for the binary loader."""

    series: pd.MultiIndex
    code_of_map: np.ndarray
    max_id: int


def map_series(connection: sa.Connection) -> MapSeries:
    m = plc_register_map.c
    rows = connection.execute(sa.select(m.id, m.device_id, m.sensor)).all()
    frame = pd.DataFrame(rows, columns=["id", "device_id", "sensor"])
    keys = pd.MultiIndex.from_frame(frame[["device_id", "sensor"]])
    codes, series = pd.factorize(keys, sort=True)
    max_id = int(frame["id"].max()) if len(frame) else 0
    code_of_map = np.full(max_id + 1, -1, dtype=np.int64)
    code_of_map[frame["id"].to_numpy()] = codes
    series = pd.MultiIndex.from_tuples(list(series), names=["device_id", "sensor"])
    return MapSeries(series, code_of_map, max_id)


def load_gaps(connection: sa.Connection, since: datetime, until: datetime) -> pd.DataFrame:
    g = ingest_gaps.c
    query = sa.select(g.device_id, g.sensor, g.gap_start, g.gap_end).where(
        g.gap_end >= since, g.gap_start <= until
    )
    return pd.DataFrame(
        connection.execute(query).all(), columns=["device_id", "sensor", "gap_start", "gap_end"]
    )


def load_series_info(
    connection: sa.Connection, default_interval_s: float, time_scale: float = 1.0
) -> SeriesInfo:
    """Poll interval of every current point; physical range of every register-map version.

    Intervals are the poll intervals of the plant file (and `default_interval_s`) times
    `time_scale`: the device clock's seconds per second of polling (1 for a real plant; the
    simulator's --speed when it runs accelerated)."""
    m, d = plc_register_map.c, devices.c
    query = sa.select(
        m.id,
        m.device_id,
        m.sensor,
        m.poll_group,
        m.physical_min,
        m.physical_max,
        m.valid_to,
        m.data_type,
        m.register_kind,
        d.poll_groups,
    ).join(devices, d.id == m.device_id)
    interval: dict[tuple[int, str], float] = {}
    binary: set[tuple[int, str]] = set()
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    for row in connection.execute(query):
        if row.physical_min is not None:
            low[row.id] = row.physical_min
        if row.physical_max is not None:
            high[row.id] = row.physical_max
        if row.valid_to is None:
            groups = row.poll_groups or {}
            seconds = (
                default_interval_s
                if row.poll_group == DEFAULT_GROUP
                else groups.get(row.poll_group)
            )
            interval[(row.device_id, row.sensor)] = (
                float(seconds or default_interval_s) * time_scale
            )
            if row.data_type == "bit" or row.register_kind in ("coil", "discrete"):
                binary.add((row.device_id, row.sensor))
    return SeriesInfo(interval, low, high, binary)


def device_names(connection: sa.Connection) -> dict[int, str]:
    """Every device (active or not: old windows of removed devices can still be rebuilt)."""
    query = sa.select(devices.c.id, devices.c.name).order_by(devices.c.id)
    return dict(connection.execute(query).all())


def sample_lookback(
    connection: sa.Connection, before: datetime, samples: int, until: datetime | None = None
) -> datetime | None:
    """The earliest time from which every device with readings in `(before, until]` (every device,
    without `until`) has `samples` readings of each sensor up to `before` (None: no such reading).
    """
    r = sensor_readings.c
    counted = sa.select(r.device_id, sa.func.count(sa.distinct(r.sensor))).where(r.ts <= before)
    if until is not None:
        recent = sa.select(r.device_id).where(r.ts > before, r.ts <= until).distinct()
        counted = counted.where(r.device_id.in_(recent.scalar_subquery()))
    sensors_per_device = dict(connection.execute(counted.group_by(r.device_id)).all())
    earliest: datetime | None = None
    for device_id, sensors in sensors_per_device.items():
        ts = connection.execute(
            sa.select(r.ts)
            .where(r.device_id == device_id, r.ts <= before)
            .order_by(r.ts.desc())
            .offset(samples * sensors)
            .limit(1)
        ).scalar()
        if ts is None:
            ts = connection.execute(
                sa.select(sa.func.min(r.ts)).where(r.device_id == device_id)
            ).scalar()
        if ts is not None:
            ts = pd.Timestamp(ts).tz_localize("UTC") if pd.Timestamp(ts).tzinfo is None else ts
            earliest = ts if earliest is None or ts < earliest else earliest
    return earliest


def device_windows(rows: pd.DataFrame, flags: pd.DataFrame, map_ids: pd.DataFrame) -> pd.DataFrame:
    """One row per device and window: features as JSON `{sensor__feature: value}`, the reading
    count, the failed checks per sensor, and the register-map versions read."""
    keys = ["device_id", "window_end"]
    frames = []
    # Devices with the same sensors share one wide frame (no keys for sensors a device lacks).
    sensor_sets = rows.groupby("device_id")["sensor"].agg(lambda s: tuple(sorted(set(s))))
    for _, group_devices in sensor_sets.groupby(sensor_sets):
        part = rows[rows["device_id"].isin(group_devices.index)]
        wide = part.set_index([*keys, "sensor"])[list(FEATURES)].unstack("sensor")
        wide.columns = [f"{sensor}__{feature}" for feature, sensor in wide.columns]
        wide = wide.reindex(sorted(wide.columns), axis=1)
        frames.append(pd.DataFrame({"features": _exact_json(wide)}, index=wide.index))
    out = pd.concat(frames).sort_index()
    grouped = rows.groupby(keys)
    out["window_start"] = grouped["window_start"].min()
    out["reading_count"] = grouped["readings"].sum().astype("int64")
    out["quality_flags"] = "{}"
    failing = flags.any(axis=1).to_numpy()
    if failing.any():
        bad = rows.loc[failing, [*keys, "sensor"]].copy()
        bad["failed"] = [
            [name for name, hit in zip(flags.columns, row, strict=True) if hit]
            for row in flags.to_numpy()[failing]
        ]
        per_window = bad.groupby(keys)[["sensor", "failed"]].apply(
            lambda g: json.dumps(dict(zip(g["sensor"], g["failed"], strict=True)), sort_keys=True)
        )
        out.loc[per_window.index, "quality_flags"] = per_window
    ids = (
        map_ids.sort_values([*keys, "register_map_id"])
        .astype({"register_map_id": "int64"})
        .astype({"register_map_id": str})
        .groupby(keys)["register_map_id"]
        .agg(",".join)
    )
    out["register_map_ids"] = "[" + ids.reindex(out.index).fillna("") + "]"
    return out.reset_index()


def _exact_json(wide: pd.DataFrame) -> list[str]:
    """Each row as a JSON object whose numbers read back as the very same doubles (shortest
    round-trip form; NaN becomes null): models trained on stored features see what was computed."""
    values = wide.to_numpy(dtype=np.float64)
    cells = values.astype(object)
    cells[np.isnan(values)] = None
    columns = list(wide.columns)
    return [json.dumps(dict(zip(columns, row, strict=True))) for row in cells.tolist()]


def quality_rows(rows: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """`sensor_quality` rows of the sensor windows that failed a check: the measures, the names of
    the failed checks, blocking or not. (A sensor window without a row passed every check.)"""
    failing = flags.any(axis=1).to_numpy()
    rows, flags = rows[failing], flags[failing]
    failed = pd.Series("", index=rows.index)
    for name in CHECKS:
        failed = failed + np.where(flags[name].to_numpy(), f'"{name}",', "")
    out = rows[
        [
            "device_id",
            "sensor",
            "window_start",
            "window_end",
            "readings",
            "last_good_age_s",
            "out_of_range",
            "max_jump_ratio",
            "max_spacing_s",
            "gap_rows",
            "duplicates",
            "error_rate",
        ]
    ].copy()
    out.insert(5, "good_readings", rows["count"].astype("int64"))
    out["value_range"] = rows["ptp"]
    out["failed"] = "[" + failed.str.rstrip(",") + "]"
    out["blocking"] = flags[list(BLOCKING)].to_numpy().any(axis=1)
    return out


def upsert_windows(
    connection: sa.Connection,
    spec: WindowSpec,
    windows: pd.DataFrame,
    *,
    computed_at: datetime,
    run_id: str | None,
) -> None:
    """Insert or replace device windows (rows keep their ids, which predictions refer to)."""
    windows["window_spec"] = spec.name
    windows["computed_at"] = pd.Timestamp(computed_at)
    windows["dagster_run_id"] = run_id
    upsert_frame(connection, feature_windows, windows, ("device_id", "window_spec", "window_end"))


def finish_windows(
    connection: sa.Connection,
    spec: WindowSpec,
    start: datetime,
    end: datetime,
    quality: pd.DataFrame,
    *,
    computed_at: datetime,
    run_id: str | None,
) -> None:
    """After the upserts of a range: drop its windows this run did not produce again (their
    readings are gone) and replace its quality rows."""
    w = feature_windows.c
    connection.execute(
        feature_windows.delete().where(
            w.window_spec == spec.name,
            w.window_end > start,
            w.window_end <= end,
            w.computed_at < computed_at,
        )
    )
    # Nothing refers to quality rows: the range's rows are replaced wholesale.
    q = sensor_quality.c
    connection.execute(
        sensor_quality.delete().where(
            q.window_spec == spec.name, q.window_end > start, q.window_end <= end
        )
    )
    quality["window_spec"] = spec.name
    quality["checked_at"] = pd.Timestamp(computed_at)
    quality["dagster_run_id"] = run_id
    insert_frame(connection, sensor_quality, quality)
