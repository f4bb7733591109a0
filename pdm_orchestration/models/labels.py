"""Leakage-safe labels from `maintenance_events`, and the split into training and validation.

For a window of a device ending at t:

- `in_repair`: the device's last failure before t came after its last repair or preventive
  work: the machine is down and the window says nothing about wear; it gets no label;
- `rul`: remaining useful life, from t to the device's next failure (at or after t), in hours
  (time windows) or in samples (sample windows: the device's windows ending in (t, failure]);
  unknown (NaN) when no failure follows, so the life is censored. With `rul_cap`, labels are
  capped, and a life of at least the cap is known once the device ran that long without failing
  (censored or not). `rul_time` is when it became known: the failure's time, or t + cap;
- `failure_within`: 1 when the next failure comes within `horizon` of t; 0 when it is known that
  none did: the next failure came later, or the device's windows reach t + horizon without one;
  unknown (NaN) otherwise. `within_time` is when it became known: the failure's time for a 1,
  t + horizon for a 0 (sample windows: the end of the device's window `horizon` + 1 samples on).

Labels look only forward from t, so a window's features (which end at t) and its label never
share an event.

Split (`split_windows`): validation devices are a stable share of the devices, chosen by a hash of
their names (the same devices every time, so no model ever trains on them); the cutoff is a time,
and windows ending after it are validation data for every device. Training rows are the other
devices' windows ending at or before the cutoff whose labels were known by the cutoff, computed
from the events up to the cutoff only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pdm_orchestration.features.windows import WindowSpec

RESTORING_KINDS = ("repair", "preventive")
TARGETS = {"rul": "rul_time", "failure_within": "within_time"}
_NONE = np.iinfo(np.int64).min


@dataclass(frozen=True)
class LabelConfig:
    """What the labels mean and how the data is split."""

    horizon: float = 24.0  # hours (time windows) or samples (sample windows)
    rul_cap: float | None = None
    validation_devices: float = 0.2  # share of devices held out entirely
    validation_time: float = 0.2  # share of the time span held out at the end (0: no time split)


def make_labels(
    frame: pd.DataFrame, events: pd.DataFrame, spec: WindowSpec, config: LabelConfig
) -> pd.DataFrame:
    """Labels for every row of `frame` (device_id, window_end), same index; `events` holds
    device_id, event_time and kind."""
    n = len(frame)
    in_repair = np.zeros(n, dtype=bool)
    rul = np.full(n, np.nan)
    within = np.full(n, np.nan)
    rul_time = np.full(n, _NONE, dtype=np.int64)
    within_time = np.full(n, _NONE, dtype=np.int64)
    ends_all = _ns(frame["window_end"])
    horizon_ns = round(config.horizon * 3600e9)
    for device_id, positions in frame.groupby("device_id").indices.items():
        order = positions[np.argsort(ends_all[positions], kind="stable")]
        ends = ends_all[order]
        mine = events[events["device_id"] == device_id]
        failures = np.sort(_ns(mine.loc[mine["kind"] == "failure", "event_time"]))
        restoring = np.sort(_ns(mine.loc[mine["kind"].isin(RESTORING_KINDS), "event_time"]))
        last_failure = _last_at_or_before(failures, ends - 1)  # the last failure before t
        last_restore = _last_at_or_before(restoring, ends)
        down = (last_failure != _NONE) & (last_failure > last_restore)
        nxt = np.searchsorted(failures, ends, side="left")  # the next failure, at or after t
        has_next = nxt < len(failures)
        next_failure = (
            np.where(has_next, failures[np.minimum(nxt, len(failures) - 1)], _NONE)
            if len(failures)
            else np.full(len(ends), _NONE, dtype=np.int64)
        )
        index = np.arange(len(ends))
        if spec.by_samples:
            to_go = np.searchsorted(ends, next_failure, side="right") - index - 1
            life = np.where(has_next, to_go, np.nan).astype(np.float64)
            soon = has_next & (life <= config.horizon)
            # No failure within h samples is known once the (h+1)-th window came without one.
            ahead = index + int(config.horizon) + 1
            zero_time = np.where(ahead < len(ends), ends[np.minimum(ahead, len(ends) - 1)], _NONE)
            zero_time = np.where((zero_time == _NONE) & has_next & ~soon, next_failure, zero_time)
        else:
            life = np.where(has_next, (next_failure - ends) / 3.6e12, np.nan)
            soon = has_next & (next_failure - ends <= horizon_ns)
            reach = ends + horizon_ns
            zero_time = np.where((reach <= ends[-1]) | (has_next & ~soon), reach, _NONE)
        life_time = np.where(np.isnan(life), _NONE, next_failure)
        if config.rul_cap is not None:
            # A life of at least the cap is known once the device ran the cap without failing,
            # whether or not a failure came later: the capped label needs no failure (a device
            # that never failed still teaches what a long life looks like).
            cap = config.rul_cap
            if spec.by_samples:
                ahead = index + int(cap)
                cap_time = np.where(
                    ahead < len(ends), ends[np.minimum(ahead, len(ends) - 1)], _NONE
                )
            else:
                cap_time = ends + round(cap * 3600e9)
                cap_time = np.where(cap_time <= ends[-1], cap_time, _NONE)
            long = (np.isnan(life) | (life >= cap)) & (cap_time != _NONE)
            life = np.where(long, cap, np.minimum(life, cap))
            life_time = np.where(long, cap_time, life_time)
        known_zero = ~soon & (zero_time != _NONE)
        label = np.where(soon, 1.0, np.where(known_zero, 0.0, np.nan))
        life[down], label[down] = np.nan, np.nan
        in_repair[order] = down
        rul[order] = life
        within[order] = label
        rul_time[order] = np.where(np.isnan(life), _NONE, life_time)
        within_time[order] = np.where(
            np.isnan(label), _NONE, np.where(soon, next_failure, zero_time)
        )
    return pd.DataFrame(
        {
            "in_repair": in_repair,
            "rul": rul,
            "rul_time": _times(rul_time),
            "failure_within": within,
            "within_time": _times(within_time),
        },
        index=frame.index,
    )


def validation_devices(names: list[str], share: float) -> list[str]:
    """A stable share of the devices (by a hash of the name): the same whatever else changes."""
    if share <= 0 or len(names) < 2:
        return []
    ranked = sorted(names, key=lambda name: (zlib.crc32(name.encode()), name))
    return sorted(ranked[: max(1, round(share * len(names)))])


@dataclass
class Split:
    """Training and validation rows of a frame, for a target (`rul` or `failure_within`)."""

    early: pd.DataFrame  # labels from the events up to the cutoff (what training may know)
    late: pd.DataFrame  # labels from every event (validation)
    on_validation_device: pd.Series
    after_cutoff: pd.Series
    cutoff: pd.Timestamp | None
    held_out: list[str]

    def train(self, target: str) -> pd.Series:
        """Rows that may train a model of `target`: label known by the cutoff."""
        settled = self.early[target].notna()
        if self.cutoff is not None:
            settled &= self.early[TARGETS[target]] <= self.cutoff
        return ~self.on_validation_device & ~self.after_cutoff & settled

    def validation(self, target: str | None) -> pd.Series:
        """Rows that judge a model: held-out devices and every window after the cutoff, not
        under repair (with a known label of `target`, when it learns one)."""
        rows = (self.on_validation_device | self.after_cutoff) & ~self.late["in_repair"]
        return rows if target is None else rows & self.late[target].notna()

    def labels(self, target: str) -> pd.Series:
        """The label of each row: as training knew it on training rows, as known now elsewhere."""
        return self.late[target].where(~self.train(target), self.early[target])

    def healthy_train(self) -> pd.Series:
        """Training rows known to have no failure within the horizon (the anomaly model's)."""
        return self.train("failure_within") & (self.early["failure_within"] == 0)


def split_windows(
    frame: pd.DataFrame, events: pd.DataFrame, spec: WindowSpec, config: LabelConfig
) -> Split:
    """Split the rows of `frame` (device, device_id, window_end) and label them."""
    held_out = validation_devices(sorted(frame["device"].unique()), config.validation_devices)
    cutoff = None
    if config.validation_time > 0 and len(frame):
        first, last = frame["window_end"].min(), frame["window_end"].max()
        cutoff = first + (last - first) * (1 - config.validation_time)
    known = events if cutoff is None else events[events["event_time"] <= cutoff]
    after = (
        frame["window_end"] > cutoff if cutoff is not None else pd.Series(False, index=frame.index)
    )
    return Split(
        early=make_labels(frame, known, spec, config),
        late=make_labels(frame, events, spec, config),
        on_validation_device=frame["device"].isin(held_out),
        after_cutoff=after,
        cutoff=cutoff,
        held_out=held_out,
    )


def _ns(times: pd.Series) -> np.ndarray:
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8


def _times(ns: np.ndarray) -> pd.DatetimeIndex:
    """UTC times of int64 nanoseconds; the int64 minimum is NaT, as numpy has it."""
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _last_at_or_before(stamps: np.ndarray, ends: np.ndarray) -> np.ndarray:
    if not len(stamps):
        return np.full(len(ends), _NONE, dtype=np.int64)
    found = np.searchsorted(stamps, ends, side="right") - 1
    return np.where(found >= 0, stamps[np.maximum(found, 0)], _NONE)
