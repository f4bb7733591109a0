"""Window features per device and sensor, vectorised over all devices at once.

Two ways to cut windows, one code path:

- **time** (`WindowSpec.time(length, stride)`, the live plant): windows of `length` ending at every
  multiple of `stride`, each covering `(end - length, end]`;
- **samples** (`WindowSpec.samples(n)`, cycle-based data such as C-MAPSS): at every sample, the
  window of that sample and the `n - 1` before it.

Either way readings are first reduced to *buckets* (a stride of time, or one sample) per series
(device and sensor) with numpy reductions over sorted arrays, and windows are then sums, minima and
maxima over `m` consecutive buckets. Only readings at or before a window's end are used. Statistics
use good, finite readings; every reading counts toward the reading count and the error rate.

Per sensor and window: count, mean, std (population), min, max, last, ptp (peak to peak), rms, slope
(least-squares trend, per hour in time windows and per sample in sample windows) and good_fraction,
plus the measures the data-quality checks look at (see `quality.py`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

FEATURES = ("count", "mean", "std", "min", "max", "last", "ptp", "rms", "slope", "good_fraction")
NS_PER_S = 1_000_000_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class WindowSpecError(ValueError):
    """A window definition that cannot be used."""


def parse_duration(text: str, what: str) -> timedelta:
    """'90s', '10min', '1h', '2d' -> timedelta (the error names `what`)."""
    match = _DURATION.match(text)
    if not match:
        raise WindowSpecError(f"{what}: {text!r} is not a duration like 30s, 10min, 1h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut: `length` and `stride` of time, or the last `samples` samples."""

    length: timedelta | None = None
    stride: timedelta | None = None
    samples: int | None = None

    @classmethod
    def time(cls, length: timedelta, stride: timedelta) -> WindowSpec:
        if stride <= timedelta(0) or length <= timedelta(0):
            raise WindowSpecError(f"window {length} and stride {stride} must be positive")
        if stride.total_seconds() < 1:
            raise WindowSpecError(f"stride {stride} is below one second")
        ratio = length / stride
        if abs(ratio - round(ratio)) > 1e-9:
            raise WindowSpecError(f"window {length} is not a whole number of strides ({stride})")
        return cls(length=length, stride=stride)

    @classmethod
    def of_samples(cls, samples: int) -> WindowSpec:
        if samples < 1:
            raise WindowSpecError(f"a window of {samples} samples: it needs at least 1")
        return cls(samples=samples)

    @classmethod
    def parse(cls, window: str, stride: str | None = None) -> WindowSpec:
        """'60min' with stride '10min', or '30samples' (no stride)."""
        text = window.strip()
        if text.endswith("samples"):
            if stride:
                raise WindowSpecError("a window counted in samples takes no stride")
            count = text.removesuffix("samples").strip()
            if not count.isdigit():
                raise WindowSpecError(f"window: {window!r} is not like 30samples")
            return cls.of_samples(int(count))
        return cls.time(parse_duration(text, "window"), parse_duration(stride or "10min", "stride"))

    @classmethod
    def from_name(cls, name: str) -> WindowSpec:
        """The spec a `name` names: '60min/10min' or '30samples'."""
        window, _, stride = name.partition("/")
        return cls.parse(window, stride or None)

    @property
    def by_samples(self) -> bool:
        return self.samples is not None

    @property
    def span(self) -> float:
        """A window's length in the unit of its slopes: hours, or samples."""
        if self.samples is not None:
            return float(self.samples)
        assert self.length is not None
        return self.length.total_seconds() / 3600

    @property
    def buckets(self) -> int:
        """Buckets per window (m)."""
        if self.samples is not None:
            return self.samples
        assert self.length is not None and self.stride is not None
        return round(self.length / self.stride)

    @property
    def name(self) -> str:
        if self.samples is not None:
            return f"{self.samples}samples"
        assert self.length is not None and self.stride is not None
        return f"{_minutes(self.length)}/{_minutes(self.stride)}"

    def window_ends(self, start: datetime, end: datetime) -> pd.DatetimeIndex:
        """Ends of time windows in `(start, end]`, on multiples of the stride (time mode)."""
        assert self.stride is not None
        step = int(self.stride.total_seconds() * NS_PER_S)
        lo = pd.Timestamp(start).value // step + 1
        hi = pd.Timestamp(end).value // step
        return pd.to_datetime(np.arange(lo, hi + 1, dtype=np.int64) * step, utc=True)


def _minutes(span: timedelta) -> str:
    seconds = span.total_seconds()
    return f"{seconds / 60:g}min" if seconds % 60 == 0 else f"{seconds:g}s"


@dataclass
class SeriesInfo:
    """What the checks need to know of each sensor: its poll interval and physical range."""

    interval_s: dict[tuple[int, str], float]
    valid_min: dict[int, float]  # register_map_id -> physical min
    valid_max: dict[int, float]
    # Bits, coils and discrete inputs: on/off signals that may rightly stay put for hours.
    binary: set[tuple[int, str]] = field(default_factory=set)


@dataclass
class WindowResult:
    """Per series and window: the features and the check measures (long form, one row each)."""

    rows: pd.DataFrame  # device_id, sensor, window_start, window_end, FEATURES..., measures...
    map_ids: pd.DataFrame  # device_id, window_end, register_map_id (the versions each window used)


MEASURES = (
    "readings",
    "last_good_age_s",
    "out_of_range",
    "max_jump_ratio",
    "jump_steps",
    "max_spacing_s",
    "gap_rows",
    "duplicates",
    "error_rate",
    "interval_s",
    "binary",
)
ROW_COLUMNS = ("device_id", "sensor", "window_start", "window_end", *FEATURES, *MEASURES)
READING_COLUMNS = ("device_id", "sensor", "ts", "value", "quality", "register_map_id")


@dataclass
class ReadingArrays:
    """Readings as arrays: what `compute_windows` works on (build it from a frame, or load it so).

    `series` lists the (device_id, sensor) of each series code; `quality` is 0 (good), 1
    (bad_clock) or 2 (any other code); `map_id` is NaN where unknown.
    """

    series: pd.MultiIndex
    code: np.ndarray  # int64
    ts: np.ndarray  # int64 ns since the epoch, UTC
    value: np.ndarray  # float64
    quality: np.ndarray  # int8
    map_id: np.ndarray  # float64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ReadingArrays:
        missing = [c for c in READING_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"readings lack column(s) {', '.join(missing)}")
        sensors = frame["sensor"].astype(str).astype("category").cat
        n_cat = max(len(sensors.categories), 1)
        key = frame["device_id"].to_numpy(dtype=np.int64) * n_cat + sensors.codes.to_numpy()
        codes, uniques = pd.factorize(key, sort=True)
        series = pd.MultiIndex.from_arrays(
            [uniques // n_cat, np.asarray(sensors.categories, dtype=object)[uniques % n_cat]],
            names=["device_id", "sensor"],
        )
        quality = frame["quality"].astype(str).to_numpy()
        return cls(
            series=series,
            code=codes.astype(np.int64),
            ts=_ns(frame["ts"]),
            value=frame["value"].to_numpy(dtype=np.float64, na_value=np.nan),
            quality=np.where(quality == "good", 0, np.where(quality == "bad_clock", 1, 2)).astype(
                np.int8
            ),
            map_id=pd.to_numeric(frame["register_map_id"], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            ),
        )

    def __len__(self) -> int:
        return len(self.ts)


def compute_windows(
    readings: pd.DataFrame | ReadingArrays,
    spec: WindowSpec,
    start: datetime,
    end: datetime,
    info: SeriesInfo,
    gaps: pd.DataFrame | None = None,
) -> WindowResult:
    """Features of every window whose end falls in `(start, end]`, for every series in `readings`.

    `readings` columns: device_id, sensor, ts (UTC), value, quality, register_map_id; it may hold
    readings before `start` (the look-back a window needs) and be in any order. `gaps`: rows of
    ingest_gaps (device_id, sensor or None for the whole device, gap_start, gap_end).
    A series with no reading at all in a window has no row for it.
    """
    b = _Buckets.build(readings, spec, start, end)
    if b is None:
        return WindowResult(_empty_rows(), _empty_map_ids())
    m = spec.buckets
    shape = (b.n_series, b.n_buckets)
    good = b.good
    cells = b.cells
    every = _Runs(b.flat, cells)  # readings are sorted by cell: reductions run over sorted runs
    vmin, vmax = _valid_ranges(b.map_id, info)
    outside = np.isfinite(b.values) & ((b.values < vmin) | (b.values > vmax))
    del vmin, vmax
    sums = {
        "n_all": every.count(),
        "n_bad": every.count(~good),
        "oor": every.count(outside),
        "dup": every.count(b.duplicate),
    }
    spacing = every.reduce(np.maximum, b.spacing_s, 0.0)

    # Statistics of good readings; values shifted by each series' first good value so that sums of
    # squares keep their precision.
    g = _Runs(b.flat[good], cells)
    g_s, g_val, g_t = b.s[good], b.values[good], b.t[good]
    ref = np.zeros(b.n_series)
    same = g_s[1:] == g_s[:-1]
    ref[g_s[np.r_[True, ~same][: len(g_s)]]] = g_val[np.r_[True, ~same][: len(g_s)]]
    v = g_val - ref[g_s]
    sums |= {
        "n": g.count(),
        "sv": g.total(v),
        "svv": g.total(v * v),
        "st": g.total(g_t),
        "stt": g.total(g_t * g_t),
        "stv": g.total(g_t * v),
    }
    del v
    low = g.reduce(np.minimum, g_val, np.inf)
    high = g.reduce(np.maximum, g_val, -np.inf)
    last_ts = g.reduce(np.maximum, b.ts[good].astype(np.float64), -np.inf)
    last_val = g.last(g_val)
    # Steps between consecutive good readings of a series (spikes and jumps), in the cell of the
    # later reading.
    steps = _Runs(g.flat[1:][same], cells)
    step = np.abs(np.diff(g_val))[same]
    sums["n_steps"] = steps.count()
    sums["s_steps"] = steps.total(step)
    max_step = steps.reduce(np.maximum, step, -np.inf)
    del g, g_s, g_val, g_t, step, steps

    w = {name: _window_sum(a.reshape(shape), m) for name, a in sums.items()}
    w_low = _window_reduce(low.reshape(shape), m, np.min, np.inf)
    w_high = _window_reduce(high.reshape(shape), m, np.max, -np.inf)
    w_last_ts, w_last = _window_last(last_ts.reshape(shape), last_val.reshape(shape), m)
    w_max_step = _window_reduce(max_step.reshape(shape), m, np.max, -np.inf)
    w_spacing = _window_reduce(spacing.reshape(shape), m, np.max, 0.0)
    w_gaps = _gap_overlaps(gaps, b, m)

    report = b.reportable(start, end, m) & (w["n_all"] > 0)
    si, bj = np.nonzero(report)

    def at(a: np.ndarray) -> np.ndarray:
        return a[si, bj]

    cnt = at(w["n"])
    n_all = at(w["n_all"])
    r = ref[si]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_v = at(w["sv"]) / cnt
        var = np.maximum(at(w["svv"]) / cnt - mean_v**2, 0.0)
        sum_sq = at(w["svv"]) + 2 * r * at(w["sv"]) + cnt * r**2
        denom = cnt * at(w["stt"]) - at(w["st"]) ** 2
        slope = (cnt * at(w["stv"]) - at(w["st"]) * at(w["sv"])) / denom
        mean_step = at(w["s_steps"]) / at(w["n_steps"])
        jump_ratio = at(w_max_step) / mean_step
    slope[(cnt < 2) | ~(np.abs(denom) > 1e-12)] = np.nan
    jump_ratio[~np.isfinite(jump_ratio)] = np.nan
    empty = cnt == 0
    mean = np.where(empty, np.nan, mean_v + r)
    std = np.where(empty, np.nan, np.sqrt(var))
    rms = np.where(empty, np.nan, np.sqrt(np.maximum(sum_sq, 0) / np.maximum(cnt, 1)))
    if spec.by_samples:
        mean, std, rms, slope = _sample_moments(b, m, si, bj)
    low_r, high_r = at(w_low), at(w_high)
    low_r[empty] = high_r[empty] = np.nan
    end_ns = at(b.end_ns)
    newest_good = at(w_last_ts)
    series_interval = np.array(
        [info.interval_s.get((int(d), str(x)), np.nan) for d, x in b.series], dtype=np.float64
    )
    rows = pd.DataFrame(
        {
            "device_id": b.series_device[si],
            "sensor": b.series_sensor[si],
            "window_start": pd.to_datetime(at(b.start_ns(m)), utc=True),
            "window_end": pd.to_datetime(end_ns, utc=True),
            "count": cnt.astype(np.int64),
            "mean": mean,
            "std": std,
            "min": low_r,
            "max": high_r,
            "last": at(w_last),
            "ptp": high_r - low_r,
            "rms": rms,
            "slope": slope,
            "good_fraction": cnt / n_all,
            "readings": n_all.astype(np.int64),
            "last_good_age_s": np.where(
                np.isfinite(newest_good), (end_ns - newest_good) / NS_PER_S, np.nan
            ),
            "out_of_range": at(w["oor"]).astype(np.int64),
            "max_jump_ratio": jump_ratio,
            "jump_steps": at(w["n_steps"]).astype(np.int64),
            "max_spacing_s": at(w_spacing),
            "gap_rows": at(w_gaps).astype(np.int64),
            "duplicates": at(w["dup"]).astype(np.int64),
            "error_rate": at(w["n_bad"]) / n_all,
            "interval_s": series_interval[si],
            "binary": np.array([(int(d), str(x)) in info.binary for d, x in b.series], bool)[si],
        }
    )
    return WindowResult(rows, _window_map_ids(b, report, m))


@dataclass
class _Buckets:
    """Readings sorted by series and time, each with its bucket; windows are m buckets."""

    series: pd.MultiIndex  # (device_id, sensor) of each series code
    s: np.ndarray  # series code of each reading
    k: np.ndarray  # bucket of each reading within its series' row
    ts: np.ndarray  # int64 ns
    t: np.ndarray  # time for the slope: hours (time windows) or sample rank (sample windows)
    values: np.ndarray
    good_quality: np.ndarray  # quality == "good"
    bad_clock: np.ndarray  # quality == "bad_clock"
    map_id: np.ndarray  # float, NaN where unknown
    n_buckets: int
    end_ns: np.ndarray  # (series, bucket) -> end of the bucket (time) or the sample's time
    step_ns: int | None  # time windows: the stride

    @classmethod
    def build(
        cls,
        readings: pd.DataFrame | ReadingArrays,
        spec: WindowSpec,
        start: datetime,
        end: datetime,
    ) -> _Buckets | None:
        if isinstance(readings, pd.DataFrame):
            readings = ReadingArrays.from_frame(readings)
        if not len(readings):
            return None
        ts_all = readings.ts
        keep = ts_all <= pd.Timestamp(end).value  # never a reading after the last window's end
        if spec.stride is not None:
            step = int(spec.stride.total_seconds() * NS_PER_S)
            ends = spec.window_ends(start, end)
            if len(ends) == 0:
                return None
            k0 = ends[0].value // step - spec.buckets  # bucket 0: one bucket of context
            keep &= (ts_all > k0 * step - step) & (ts_all <= ends[-1].value)
        if not keep.any():
            return None
        if not keep.all():
            ts_all = ts_all[keep]
        order = _series_time_order(readings.code if keep.all() else readings.code[keep], ts_all)
        if not keep.all():
            order = np.flatnonzero(keep)[order]
            ts_all = readings.ts
        s = readings.code[order]
        ts = ts_all[order]
        series = readings.series
        n_series = len(series)
        if spec.stride is None:
            starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
            k = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
            n_buckets = int(k.max()) + 1
            end_ns = np.full((n_series, n_buckets), np.iinfo(np.int64).min, dtype=np.int64)
            end_ns[s, k] = ts
            t = k.astype(np.float64)
            step_ns = None
        else:
            bucket = -((-ts) // step)  # bucket of a time x: ceil(x / step), holding (x-step, x]
            k = bucket - k0
            n_buckets = int(ends[-1].value // step - k0) + 1
            end_ns = np.broadcast_to(
                (k0 + np.arange(n_buckets, dtype=np.int64)) * step, (n_series, n_buckets)
            )
            t = (ts - k0 * step) / (3600 * NS_PER_S)
            step_ns = step
        quality = readings.quality[order]
        return cls(
            series,
            s,
            k,
            ts,
            t,
            readings.value[order],
            quality == 0,
            quality == 1,
            readings.map_id[order],
            n_buckets,
            end_ns,
            step_ns,
        )

    @property
    def n_series(self) -> int:
        return len(self.series)

    @functools.cached_property
    def flat(self) -> np.ndarray:
        """(series, bucket) cell of each reading, in order: readings are sorted by it."""
        return self.s * self.n_buckets + self.k

    @functools.cached_property
    def good(self) -> np.ndarray:
        return self.good_quality & np.isfinite(self.values)

    @functools.cached_property
    def same_series(self) -> np.ndarray:
        return np.r_[False, self.s[1:] == self.s[:-1]]

    @property
    def cells(self) -> int:
        return self.n_series * self.n_buckets

    @property
    def series_device(self) -> np.ndarray:
        return np.asarray(self.series.get_level_values(0), dtype=np.int64)

    @property
    def series_sensor(self) -> np.ndarray:
        return np.asarray(self.series.get_level_values(1), dtype=object)

    @property
    def duplicate(self) -> np.ndarray:
        """A timestamp seen before in the series, or one the device clock could not vouch for."""
        repeated = self.same_series & (np.diff(self.ts, prepend=self.ts[:1]) == 0)
        return repeated | self.bad_clock

    @property
    def spacing_s(self) -> np.ndarray:
        return np.where(self.same_series, np.diff(self.ts, prepend=self.ts[:1]) / NS_PER_S, 0.0)

    def start_ns(self, m: int) -> np.ndarray:
        """(series, bucket) -> start of the window ending there."""
        if self.step_ns is not None:
            return np.asarray(self.end_ns) - m * self.step_ns
        first = np.maximum(np.arange(self.n_buckets) - m + 1, 0)
        return self.end_ns[:, first]

    def reportable(self, start: datetime, end: datetime, m: int) -> np.ndarray:
        """(series, bucket) cells whose window ends in (start, end] and has its full look-back."""
        lo, hi = pd.Timestamp(start).value, pd.Timestamp(end).value
        ends = np.asarray(self.end_ns)
        out = (ends > lo) & (ends <= hi)
        if self.step_ns is not None:
            out[:, : min(m, self.n_buckets)] = False  # look-back buckets
        return out


class _Runs:
    """Per-cell reductions of values whose cells (`flat`, sorted) come in runs."""

    def __init__(self, flat: np.ndarray, cells: int) -> None:
        self.flat = flat
        self.cells = cells
        self.starts = np.r_[0, np.flatnonzero(np.diff(flat)) + 1] if len(flat) else flat[:0]

    def count(self, where: np.ndarray | None = None) -> np.ndarray:
        flat = self.flat if where is None else self.flat[where]
        return np.bincount(flat, minlength=self.cells).astype(np.float64)

    def total(self, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.flat, weights=weights, minlength=self.cells)

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(self.cells, fill)
        if len(self.starts):
            out[self.flat[self.starts]] = ufunc.reduceat(values, self.starts)
        return out

    def last(self, values: np.ndarray) -> np.ndarray:
        out = np.full(self.cells, np.nan)
        if len(self.starts):
            ends = np.r_[self.starts[1:] - 1, len(self.flat) - 1]
            out[self.flat[ends]] = values[ends]
        return out


def _sample_moments(
    b: _Buckets, m: int, si: np.ndarray, bj: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std, rms and slope of sample windows, each from its own m values alone.

    Sums over buckets depend on where a build's range began (they are differences of running
    sums, shifted by the first value loaded); these do not, so a window's features are the same
    bit for bit however the range was cut, and the same as computed from the whole series at once.
    """
    grid = np.full((b.n_series, b.n_buckets + m - 1), np.nan)
    good = b.good
    grid[b.s[good], b.k[good] + m - 1] = b.values[good]
    x = grid[si[:, None], bj[:, None] + np.arange(m)[None, :]]  # (windows, m), oldest first
    valid = np.isfinite(x)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(valid, x, 0.0)
        mean = values.sum(axis=1) / n
        dev = np.where(valid, x - mean[:, None], 0.0)
        std = np.sqrt((dev * dev).sum(axis=1) / n)
        rms = np.sqrt((values * values).sum(axis=1) / n)
        t = np.where(valid, np.arange(m, dtype=np.float64)[None, :], 0.0)
        dt = np.where(valid, t - (t.sum(axis=1) / n)[:, None], 0.0)
        slope = (dt * dev).sum(axis=1) / (dt * dt).sum(axis=1)
    slope[n < 2] = np.nan
    return mean, std, rms, slope


def _series_time_order(code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions sorting readings by series, then time (one integer sort where the key fits)."""
    if len(ts) == 0:
        return np.arange(0)
    t_min, t_max = int(ts.min()), int(ts.max())
    span_us = (t_max - t_min) // 1000 + 1
    if int(code.max() + 1) * span_us < 2**62:
        # Readings are stored to the microsecond, so the time part of the key loses nothing.
        key = code * span_us + (ts - t_min) // 1000
        return np.argsort(key, kind="stable")
    return np.lexsort((ts, code))


def _window_sum(a: np.ndarray, m: int) -> np.ndarray:
    c = np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)
    lo = np.maximum(np.arange(a.shape[1]) + 1 - m, 0)
    return c[:, 1:] - c[:, lo]


def _window_reduce(a: np.ndarray, m: int, fn, fill: float) -> np.ndarray:
    padded = np.concatenate([np.full((a.shape[0], m - 1), fill), a], axis=1)
    return fn(sliding_window_view(padded, m, axis=1), axis=2)


def _window_last(
    last_ts: np.ndarray, last_val: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Newest good time in each window, and the value read then."""
    pad_ts = np.concatenate([np.full((last_ts.shape[0], m - 1), -np.inf), last_ts], axis=1)
    pad_val = np.concatenate([np.full((last_val.shape[0], m - 1), np.nan), last_val], axis=1)
    view = sliding_window_view(pad_ts, m, axis=1)
    pick = np.argmax(view, axis=2)
    rows = np.arange(last_ts.shape[0])[:, None]
    cols = np.arange(last_ts.shape[1])[None, :] + pick
    return view.max(axis=2), pad_val[rows, cols]


def _valid_ranges(map_id: np.ndarray, info: SeriesInfo) -> tuple[np.ndarray, np.ndarray]:
    """Physical min and max of each reading's register-map version (infinite where none)."""
    ids = np.nan_to_num(map_id, nan=-1).astype(np.int64)
    size = int(ids.max()) + 1 if len(ids) else 0
    low, high = np.full(size + 1, -np.inf), np.full(size + 1, np.inf)  # [size]: no version
    for table, bounds in ((low, info.valid_min), (high, info.valid_max)):
        for version, bound in bounds.items():
            if 0 <= version < size:
                table[version] = bound
    index = np.where(ids >= 0, ids, size)
    return low[index], high[index]


def _gap_overlaps(gaps: pd.DataFrame | None, b: _Buckets, m: int) -> np.ndarray:
    """(series, bucket) -> how many ingest_gaps rows overlap the window ending there."""
    shape = (b.n_series, b.n_buckets)
    if gaps is None or gaps.empty:
        return np.zeros(shape)
    diff = np.zeros((b.n_series, b.n_buckets + 1))
    position = {key: code for code, key in enumerate(b.series)}
    by_device: dict[int, list[int]] = {}
    for code, (device, _) in enumerate(b.series):
        by_device.setdefault(int(device), []).append(code)
    starts, ends = _ns(gaps["gap_start"]), _ns(gaps["gap_end"])
    for device, sensor, lo, hi in zip(gaps["device_id"], gaps["sensor"], starts, ends, strict=True):
        if sensor is None or sensor != sensor:
            codes = by_device.get(int(device), [])
        else:
            code = position.get((int(device), str(sensor)))
            codes = [] if code is None else [code]
        for code in codes:
            first, last = _span(b, code, lo, hi)
            if first > last:
                continue
            diff[code, first] += 1
            diff[code, min(last + m, b.n_buckets)] -= 1
    return np.cumsum(diff, axis=1)[:, : b.n_buckets]


def _span(b: _Buckets, code: int, lo: int, hi: int) -> tuple[int, int]:
    """Buckets of series `code` that the time span [lo, hi] (ns) touches."""
    if b.step_ns is not None:
        k0 = int(b.end_ns[0, 0]) // b.step_ns
        first = -((-lo) // b.step_ns) - k0
        last = -((-hi) // b.step_ns) - k0
        return max(int(first), 0), min(int(last), b.n_buckets - 1)
    times = b.end_ns[code]
    valid = times > np.iinfo(np.int64).min
    times = times[valid]
    first = int(np.searchsorted(times, lo, side="left"))
    last = int(np.searchsorted(times, hi, side="right")) - 1
    return first, last


def _window_map_ids(b: _Buckets, report: np.ndarray, m: int) -> pd.DataFrame:
    """The register-map versions each reported (device, window end) was read with."""
    known = np.isfinite(b.map_id)
    if not known.any():
        return _empty_map_ids()
    s, k, ids = b.s[known], b.k[known], b.map_id[known].astype(np.int64)
    change = np.r_[True, (s[1:] != s[:-1]) | (ids[1:] != ids[:-1])]
    run_start = np.flatnonzero(change)
    run_end = np.r_[run_start[1:], len(s)] - 1
    first, last = k[run_start], np.minimum(k[run_end] + m - 1, b.n_buckets - 1)
    lengths = last - first + 1
    run = np.repeat(np.arange(len(run_start)), lengths)
    offset = np.arange(len(run)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    code, bucket = s[run_start][run], first[run] + offset
    hit = report[code, bucket]
    code, bucket, run = code[hit], bucket[hit], run[hit]
    out = pd.DataFrame(
        {
            "device_id": b.series_device[code],
            "window_end": pd.to_datetime(np.asarray(b.end_ns)[code, bucket], utc=True),
            "register_map_id": ids[run_start][run],
        }
    )
    return out.drop_duplicates(ignore_index=True)


def _ns(times: pd.Series) -> np.ndarray:
    """UTC times (datetimes, strings, or pandas times) as int64 nanoseconds since the epoch."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in ROW_COLUMNS})


def _empty_map_ids() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in ("device_id", "window_end", "register_map_id")})
