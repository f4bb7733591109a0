"""Window features against a plain pandas reference, and the bad inputs they must survive."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pdm_orchestration.features.windows import (
    FEATURES,
    SeriesInfo,
    WindowSpec,
    WindowSpecError,
    compute_windows,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SPEC = WindowSpec.parse("60min", "10min")


def readings(devices=(1, 2), sensors=("temp", "vib"), hours=3.0, every_s=10, seed=0):
    rng = np.random.default_rng(seed)
    ts = pd.date_range(T0, T0 + timedelta(hours=hours), freq=f"{every_s}s", inclusive="left")
    parts = []
    for d in devices:
        for i, s in enumerate(sensors):
            trend = np.arange(len(ts)) * 0.01 * (i + 1)
            parts.append(
                pd.DataFrame(
                    {
                        "device_id": d,
                        "sensor": s,
                        "ts": ts,
                        "value": 100 * d + trend + rng.normal(0, 1, len(ts)),
                        "quality": "good",
                        "register_map_id": 10 * d + i,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def info(frame: pd.DataFrame, interval: float = 10.0) -> SeriesInfo:
    keys = frame[["device_id", "sensor"]].drop_duplicates().itertuples(index=False)
    return SeriesInfo({(int(d), s): interval for d, s in keys}, {}, {})


def reference(frame: pd.DataFrame, device: int, sensor: str, start, end) -> dict[str, float]:
    """The features of one window computed the obvious way."""
    sel = frame[
        (frame.device_id == device)
        & (frame.sensor == sensor)
        & (frame.ts > start)
        & (frame.ts <= end)
    ].sort_values("ts")
    good = sel[(sel.quality == "good") & np.isfinite(sel.value)]
    v = good.value.to_numpy()
    hours = (good.ts - T0).dt.total_seconds().to_numpy() / 3600
    return {
        "count": len(v),
        "mean": v.mean(),
        "std": v.std(),
        "min": v.min(),
        "max": v.max(),
        "last": v[-1],
        "ptp": v.max() - v.min(),
        "rms": np.sqrt(np.mean(v**2)),
        "slope": np.polyfit(hours, v, 1)[0] if len(v) > 1 else np.nan,
        "good_fraction": len(v) / len(sel),
    }


def check_against_reference(frame, rows, sample=12):
    for row in rows.sample(min(sample, len(rows)), random_state=1).itertuples(index=False):
        expected = reference(frame, row.device_id, row.sensor, row.window_start, row.window_end)
        for name in FEATURES:
            got = getattr(row, name)
            assert got == pytest.approx(expected[name], rel=1e-9, abs=1e-9, nan_ok=True), (
                row.device_id,
                row.sensor,
                row.window_end,
                name,
            )


def test_time_windows_match_a_pandas_reference() -> None:
    frame = readings()
    result = compute_windows(frame, SPEC, T0 + HOUR, T0 + 3 * HOUR, info(frame))
    rows = result.rows
    # 12 window ends in (1h, 3h], 2 devices x 2 sensors.
    assert len(rows) == 12 * 4
    assert set(rows.window_end) == set(pd.date_range(T0 + HOUR, T0 + 3 * HOUR, freq="10min")[1:])
    assert (rows.window_end - rows.window_start == HOUR).all()
    assert rows["count"].max() == 360  # (window end at 3h: the data stop 10 s before)
    check_against_reference(frame, rows)


def test_no_look_ahead_readings_after_the_window_end_change_nothing() -> None:
    frame = readings(hours=2)
    base = compute_windows(frame, SPEC, T0 + HOUR, T0 + 2 * HOUR, info(frame)).rows
    later = readings(hours=3, seed=9)
    later = later[later.ts > T0 + 2 * HOUR]
    more = pd.concat([frame, later.assign(value=1e6)], ignore_index=True)
    again = compute_windows(more, SPEC, T0 + HOUR, T0 + 2 * HOUR, info(more)).rows
    pd.testing.assert_frame_equal(base, again)


def test_timestamps_out_of_order_give_the_same_windows() -> None:
    frame = readings()
    shuffled = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    a = compute_windows(frame, SPEC, T0 + HOUR, T0 + 3 * HOUR, info(frame)).rows
    b = compute_windows(shuffled, SPEC, T0 + HOUR, T0 + 3 * HOUR, info(frame)).rows
    pd.testing.assert_frame_equal(a, b)


def test_device_with_no_readings_in_a_window_has_no_row() -> None:
    frame = readings()
    silent = (frame.device_id == 2) & (frame.ts > T0 + 2 * HOUR)
    rows = compute_windows(frame[~silent], SPEC, T0 + 2 * HOUR, T0 + 3 * HOUR, info(frame)).rows
    last = rows[rows.window_end == T0 + 3 * HOUR]
    assert set(last.device_id) == {1}
    # Windows that still overlap device 2's last readings keep it, with fewer readings.
    partial = rows[(rows.device_id == 2)]
    assert len(partial) == 2 * 5 and (partial["count"] < 360).all()


def test_single_reading_nan_inf_and_bad_quality_only() -> None:
    frame = pd.DataFrame(
        {
            "device_id": [1, 1, 1, 1, 1, 1],
            "sensor": ["one", "odd", "odd", "odd", "bad", "bad"],
            "ts": [T0 + timedelta(minutes=m) for m in (70, 65, 66, 67, 68, 69)],
            "value": [5.0, np.nan, np.inf, 3.0, 1.0, 2.0],
            "quality": ["good", "good", "good", "good", "bad_timeout", "bad_decode"],
            "register_map_id": [1, 2, 2, 2, 3, 3],
        }
    )
    rows = compute_windows(frame, SPEC, T0 + HOUR, T0 + HOUR + timedelta(minutes=10), info(frame))
    rows = rows.rows.set_index("sensor")
    one, odd, bad = rows.loc["one"], rows.loc["odd"], rows.loc["bad"]
    assert (one["count"], one["mean"], one["std"], one["last"]) == (1, 5.0, 0.0, 5.0)
    assert np.isnan(one["slope"])
    assert odd["count"] == 1 and odd["readings"] == 3 and odd["mean"] == 3.0
    assert odd["good_fraction"] == pytest.approx(1 / 3)
    assert odd["error_rate"] == pytest.approx(2 / 3)
    assert bad["count"] == 0 and bad["readings"] == 2 and bad["error_rate"] == 1.0
    assert np.isnan(bad["mean"]) and np.isnan(bad["max"]) and bad["good_fraction"] == 0


def test_a_window_spanning_a_register_map_version_change_names_both_versions() -> None:
    frame = readings(devices=(1,), sensors=("temp",), hours=2)
    frame.loc[frame.ts > T0 + timedelta(minutes=95), "register_map_id"] = 99
    result = compute_windows(frame, SPEC, T0 + HOUR, T0 + 2 * HOUR, info(frame))
    ids = result.map_ids.groupby("window_end")["register_map_id"].agg(lambda s: sorted(set(s)))
    assert ids[T0 + timedelta(minutes=90)] == [10]
    assert ids[T0 + timedelta(minutes=100)] == [10, 99]
    assert ids[T0 + 2 * HOUR] == [10, 99]


def test_sample_windows_are_the_last_n_samples() -> None:
    frame = readings(devices=(1, 2), sensors=("s1",), hours=1, every_s=60)  # 60 samples
    spec = WindowSpec.parse("7samples")
    rows = compute_windows(frame, spec, T0 - HOUR, T0 + HOUR, info(frame)).rows
    assert len(rows) == 2 * 60  # a window at every sample, the first ones shorter
    ordered = frame.sort_values(["device_id", "ts"])
    rolling = ordered.groupby("device_id")["value"].rolling(7, min_periods=1)
    expected_mean = rolling.mean().to_numpy()
    expected_std = rolling.std(ddof=0).to_numpy()
    got = rows.sort_values(["device_id", "window_end"])
    np.testing.assert_allclose(got["mean"], expected_mean, rtol=1e-10)
    np.testing.assert_allclose(got["std"], expected_std, rtol=1e-7, atol=1e-9)
    assert list(got["count"][:8]) == [1, 2, 3, 4, 5, 6, 7, 7]
    # Slope per sample: a straight line of step 2 has slope 2.
    line = frame[frame.device_id == 1].assign(value=lambda f: 2.0 * np.arange(len(f)))
    slope = compute_windows(line, spec, T0 - HOUR, T0 + HOUR, info(line)).rows["slope"]
    np.testing.assert_allclose(slope[1:], 2.0)


def test_sample_windows_only_report_ends_in_the_range_but_use_earlier_samples() -> None:
    frame = readings(devices=(1,), sensors=("s1",), hours=1, every_s=60)
    spec = WindowSpec.parse("5samples")
    rows = compute_windows(frame, spec, T0 + timedelta(minutes=30), T0 + HOUR, info(frame)).rows
    assert rows.window_end.min() == T0 + timedelta(minutes=31)
    assert (rows["count"] == 5).all()


@pytest.mark.parametrize(
    ("window", "stride", "message"),
    [
        ("60min", "7min", "not a whole number of strides"),
        ("sixty", "10min", "not a duration"),
        ("60min", "0s", "must be positive"),
        ("0samples", None, "at least 1"),
        ("30samples", "10min", "takes no stride"),
        ("xsamples", None, "not like 30samples"),
    ],
)
def test_bad_window_definitions_are_refused(window, stride, message) -> None:
    with pytest.raises(WindowSpecError, match=message):
        WindowSpec.parse(window, stride)


def test_spec_names() -> None:
    assert SPEC.name == "60min/10min"
    assert WindowSpec.parse("30samples").name == "30samples"
    assert WindowSpec.parse("90s", "30s").name == "90s/30s"
