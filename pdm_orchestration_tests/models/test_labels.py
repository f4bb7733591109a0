"""Labels from maintenance events: what each window is told, and that nothing leaks."""

import numpy as np
import pandas as pd
import pytest

from pdm_orchestration.features.windows import WindowSpec
from pdm_orchestration.models.labels import (
    LabelConfig,
    make_labels,
    split_windows,
    validation_devices,
)

T = pd.Timestamp("2026-01-01", tz="UTC")
TIME = WindowSpec.parse("60min", "10min")


def hours(*values: float) -> list[pd.Timestamp]:
    return [T + pd.Timedelta(hours=h) for h in values]


def windows(device_id: int, name: str, count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"device_id": device_id, "device": name, "window_end": hours(*range(count))}
    )


def events(rows: list[tuple[int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device_id": [r[0] for r in rows],
            "device": [f"d{r[0]}" for r in rows],
            "event_time": hours(*(r[1] for r in rows)),
            "kind": [r[2] for r in rows],
        }
    )


def test_rul_failure_within_and_the_repair_gap() -> None:
    frame = windows(1, "d1", 12)
    history = events([(1, 5, "failure"), (1, 7, "repair")])
    labels = make_labels(frame, history, TIME, LabelConfig(horizon=2))
    # Before the failure: hours to go; at the failure itself 0.
    assert labels["rul"].iloc[:6].tolist() == [5, 4, 3, 2, 1, 0]
    assert labels["failure_within"].iloc[:6].tolist() == [0, 0, 0, 1, 1, 1]
    # Down between the failure and its repair: no label at all.
    assert labels["in_repair"].tolist() == [False] * 6 + [True] + [False] * 5
    assert labels.loc[6, ["rul", "failure_within"]].isna().all()
    # After the repair no failure follows: life censored; 0 once the data reaches t + horizon.
    assert labels["rul"].iloc[7:].isna().all()
    assert labels["failure_within"].iloc[7:10].tolist() == [0, 0, 0]
    assert labels["failure_within"].iloc[10:].isna().all()  # the data ends before t + horizon


def test_a_failure_without_repair_keeps_the_device_down() -> None:
    labels = make_labels(windows(1, "d1", 6), events([(1, 2, "failure")]), TIME, LabelConfig())
    assert labels["in_repair"].tolist() == [False, False, False, True, True, True]


def test_sample_windows_count_samples_to_the_failure_and_cap_them() -> None:
    frame = windows(1, "d1", 10)
    labels = make_labels(
        frame, events([(1, 9, "failure")]), WindowSpec.of_samples(3), LabelConfig(3, rul_cap=5)
    )
    assert labels["rul"].tolist() == [5, 5, 5, 5, 5, 4, 3, 2, 1, 0]
    assert labels["failure_within"].tolist() == [0] * 6 + [1] * 4


def test_a_capped_life_is_known_without_a_failure() -> None:
    frame = windows(1, "d1", 12)
    labels = make_labels(frame, events([(1, 10, "failure")]), TIME, LabelConfig(2, rul_cap=4))
    assert labels["rul"].tolist()[:11] == [4, 4, 4, 4, 4, 4, 4, 3, 2, 1, 0]
    # Known at t + cap for the long lives, at the failure for the short ones.
    assert labels["rul_time"].iloc[0] == T + pd.Timedelta(hours=4)
    assert labels["rul_time"].iloc[8] == T + pd.Timedelta(hours=10)
    never = make_labels(frame, events([]), TIME, LabelConfig(2, rul_cap=4))
    assert never["rul"].iloc[:8].tolist() == [4.0] * 8
    assert never["rul"].iloc[8:].isna().all()  # the data must reach t + cap


def test_labels_ignore_events_before_the_window() -> None:
    frame = windows(1, "d1", 10)
    late = events([(1, 8, "failure"), (1, 8.5, "repair")])
    early = events([(1, 1, "failure"), (1, 2, "repair"), (1, 8, "failure"), (1, 8.5, "repair")])
    a = make_labels(frame, late, TIME, LabelConfig(horizon=2))
    b = make_labels(frame, early, TIME, LabelConfig(horizon=2))
    after = frame["window_end"] >= T + pd.Timedelta(hours=2)
    pd.testing.assert_frame_equal(a[after], b[after])


def random_history(seed: int, devices: int = 8, count: int = 200) -> tuple:
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for d in range(1, devices + 1):
        frame = windows(d, f"d{d}", count)
        frames.append(frame)
        t = float(rng.uniform(0, 30))
        while t < count:
            rows.append((d, t, "failure"))
            repair = t + float(rng.uniform(1, 6))
            rows.append((d, repair, "repair"))
            t = repair + float(rng.uniform(10, 60))
    return pd.concat(frames, ignore_index=True), events(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spec", [TIME, WindowSpec.of_samples(5)], ids=["time", "samples"])
@pytest.mark.parametrize("cap", [None, 24.0], ids=["uncapped", "capped"])
def test_no_training_label_crosses_the_validation_cutoff(
    seed: int, spec: WindowSpec, cap: float | None
) -> None:
    frame, history = random_history(seed)
    config = LabelConfig(horizon=12, rul_cap=cap, validation_devices=0.25, validation_time=0.3)
    split = split_windows(frame, history, spec, config)
    assert split.cutoff is not None
    for target, when in (("rul", "rul_time"), ("failure_within", "within_time")):
        train = split.train(target)
        assert train.sum() > 50, target
        # Every training window ends by the cutoff, and so does what its label was learned from.
        assert (frame.loc[train, "window_end"] <= split.cutoff).all()
        assert (split.early.loc[train, when] <= split.cutoff).all()
        # ... and the label is the same as known today: nothing after the cutoff changed it.
        pd.testing.assert_series_equal(
            split.early.loc[train, target], split.late.loc[train, target]
        )
        assert not split.early.loc[train, "in_repair"].any()
        # Validation: held-out devices (any time) and every device after the cutoff.
        validation = split.validation(target)
        assert not (train & validation).any()
        assert set(frame.loc[validation, "device"]) >= set(split.held_out)
        assert not frame.loc[train, "device"].isin(split.held_out).any()
    # Windows whose label needed a later failure are not in training, though they are labelled now.
    late_known = split.late["rul"].notna() & (split.late["rul_time"] > split.cutoff)
    before = frame["window_end"] <= split.cutoff
    assert (late_known & before & ~frame["device"].isin(split.held_out)).any()
    assert not (split.train("rul") & late_known).any()


def test_validation_devices_are_stable_whatever_else_the_plant_holds() -> None:
    names = [f"pump_{i:02d}" for i in range(20)]
    chosen = validation_devices(names, 0.2)
    assert len(chosen) == 4
    more = validation_devices([*names, "new_a", "new_b", "new_c"], 0.2)
    assert len(set(chosen) & set(more)) >= 3
    assert validation_devices(["only"], 0.5) == []
    assert validation_devices(names, 0) == []
