"""Each data-quality check with data that passes and data that fails."""

from datetime import timedelta

import pandas as pd
import pytest

from pdm_orchestration.features.quality import BLOCKING, CHECKS, QualityRules, judge
from pdm_orchestration.features.windows import SeriesInfo, WindowSpec, compute_windows
from pdm_orchestration_tests.features.test_windows import HOUR, SPEC, T0, readings


def judged(frame, *, gaps=None, valid=(None, None), spec=SPEC, start=T0 + HOUR, end=T0 + 2 * HOUR):
    """The failed checks of device 1 / temp's last window."""
    low, high = valid
    info = SeriesInfo(
        {(1, "temp"): 10.0},
        {} if low is None else {10: low},
        {} if high is None else {10: high},
    )
    result = compute_windows(frame, spec, start, end, info, gaps)
    flags = judge(result.rows, QualityRules(), spec.by_samples)
    last = result.rows.index[result.rows.window_end == result.rows.window_end.max()][-1]
    return {name for name in CHECKS if flags.loc[last, name]}


def inside(frame: pd.DataFrame) -> int:
    """A row of the judged window (ten minutes before its end)."""
    return frame.index[frame.ts == T0 + 2 * HOUR - timedelta(minutes=10)][0]


def clean():
    return readings(devices=(1,), sensors=("temp",), hours=2.01)


def test_clean_data_passes_every_check() -> None:
    assert judged(clean()) == set()


def test_stale_sensor() -> None:
    frame = clean()
    frame = frame[frame.ts <= T0 + 2 * HOUR - timedelta(seconds=31)]
    assert "stale_sensor" in judged(frame)
    frame = clean()
    frame = frame[frame.ts <= T0 + 2 * HOUR - timedelta(seconds=29)]
    assert "stale_sensor" not in judged(frame)


def test_flatline() -> None:
    flat = clean().assign(value=42.0)
    assert "flatline" in judged(flat)
    flat.loc[inside(flat), "value"] = 42.001
    assert "flatline" not in judged(flat)


def test_on_off_points_may_stay_put() -> None:
    off = clean().assign(value=0.0)
    info = SeriesInfo({(1, "temp"): 10.0}, {}, {}, binary={(1, "temp")})
    result = compute_windows(off, SPEC, T0 + HOUR, T0 + 2 * HOUR, info)
    assert not judge(result.rows, QualityRules(), False)["flatline"].any()


def test_out_of_range_uses_the_plant_files_valid_range() -> None:
    frame = clean()
    assert "out_of_range" not in judged(frame, valid=(0, 200))
    frame.loc[frame.index[-5], "value"] = 250.0
    assert "out_of_range" in judged(frame, valid=(0, 200))


def test_read_error_rate() -> None:
    frame = clean()
    window = frame.index[(frame.ts > T0 + HOUR) & (frame.ts <= T0 + 2 * HOUR)]
    frame.loc[window[::10], "quality"] = "bad_timeout"  # 10 %
    assert "read_error_rate" not in judged(frame)
    frame.loc[window[::3], "quality"] = "bad_exception_2"  # ~37 %
    assert "read_error_rate" in judged(frame)


def test_spikes_and_jumps() -> None:
    frame = clean()
    frame.loc[frame.index[-200], "value"] += 4.0  # within the noise's reach
    assert "spikes_and_jumps" not in judged(frame)
    frame.loc[frame.index[-100], "value"] += 60.0
    assert "spikes_and_jumps" in judged(frame)


def test_gaps_from_ingest_gaps_rows_and_from_spacing() -> None:
    gap = pd.DataFrame(
        {
            "device_id": [1],
            "sensor": [None],
            "gap_start": [T0 + timedelta(minutes=100)],
            "gap_end": [T0 + timedelta(minutes=101)],
        }
    )
    assert "gaps" in judged(clean(), gaps=gap)
    elsewhere = gap.assign(device_id=2)
    assert "gaps" not in judged(clean(), gaps=elsewhere)
    frame = clean()
    hole = (frame.ts > T0 + timedelta(minutes=80)) & (frame.ts < T0 + timedelta(minutes=81))
    assert "gaps" in judged(frame[~hole])  # 60 s between two readings polled every 10 s


def test_duplicate_timestamps() -> None:
    frame = clean()
    assert "duplicate_timestamps" not in judged(frame)
    twice = pd.concat([frame, frame.loc[[inside(frame)]]], ignore_index=True)
    assert "duplicate_timestamps" in judged(twice)
    frame.loc[inside(frame), "quality"] = "bad_clock"
    assert "duplicate_timestamps" in judged(frame)


def test_sample_windows_do_not_judge_staleness_by_poll_interval() -> None:
    frame = readings(devices=(1,), sensors=("temp",), hours=2, every_s=3600 // 30)
    assert judged(frame, spec=WindowSpec.parse("10samples")) == set()


@pytest.mark.parametrize("name", list(CHECKS))
def test_every_check_is_described_and_classified(name: str) -> None:
    assert CHECKS[name].endswith(".")
    assert (name in BLOCKING) == (
        name in {"stale_sensor", "flatline", "out_of_range", "read_error_rate"}
    )
