"""Replaying a recorded dataset through the simulator, register by register.

NASA C-MAPSS (turbofan run-to-failure data): each engine becomes a device, its 3 operating
settings and 21 sensors float32 input registers, and its clock a `role: timestamp` register
carrying the time of the cycle served. Each engine advances one cycle each time its clock is read
(one poll tick); after its last cycle it keeps serving that cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pdm_orchestration.modbus.simulator import ValueSource

SETTINGS = [f"op_setting_{i}" for i in range(1, 4)]
SENSORS = [f"sensor_{i}" for i in range(1, 22)]
CMAPSS_COLUMNS = ["unit", "cycle", *SETTINGS, *SENSORS]
UNITS_PER_PORT = 200
CLOCK_ADDRESS = 0
FIRST_VALUE_ADDRESS = 2
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class DatasetError(ValueError):
    """A dataset file that cannot be replayed; the message names the file and the problem."""


def read_cmapss(path: Path) -> pd.DataFrame:
    """One C-MAPSS text file (26 whitespace-separated columns, no header)."""
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, engine="c")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # pandas' messages can span lines; ours is one
        raise DatasetError(f"{path}: not a C-MAPSS file ({reason})") from None
    if frame.shape[1] != len(CMAPSS_COLUMNS):
        raise DatasetError(
            f"{path}: expected {len(CMAPSS_COLUMNS)} columns (unit, cycle, 3 settings, "
            f"21 sensors), found {frame.shape[1]}"
        )
    frame.columns = CMAPSS_COLUMNS
    text = [name for name in CMAPSS_COLUMNS if not pd.api.types.is_numeric_dtype(frame[name])]
    if text:
        raise DatasetError(f"{path}: not a C-MAPSS file (column {text[0]!r} is not numeric)")
    if frame[["unit", "cycle"]].isna().any().any():
        raise DatasetError(f"{path}: missing unit or cycle numbers")
    frame = frame.astype({"unit": int, "cycle": int})
    return frame.sort_values(["unit", "cycle"]).reset_index(drop=True)


def engine_name(unit: int) -> str:
    return f"engine_{unit:03d}"


def cmapss_plant(frame: pd.DataFrame, *, port: int, name: str = "cmapss") -> dict:
    """The plant (as a YAML-ready dict) that describes the replayed engines exactly."""
    units = sorted(frame["unit"].unique())
    connections, devices, points = [], [], []
    for index, unit in enumerate(units):
        group, unit_id = divmod(index, UNITS_PER_PORT)
        connection = f"{name}_{group + 1}" if len(units) > UNITS_PER_PORT else name
        if not connections or connections[-1]["id"] != connection:
            connections.append(
                {"id": connection, "port": port + group, "max_registers_per_read": 125}
            )
        device = engine_name(unit)
        devices.append(
            {
                "id": device,
                "connection": connection,
                "unit_id": unit_id + 1,
                "kind": "turbofan",
                "site": "C-MAPSS",
                "byte_order": "ABCD",
                "description": f"C-MAPSS engine {unit}",
            }
        )
        points.append(
            {
                "device": device,
                "name": "clock",
                "kind": "input",
                "address": CLOCK_ADDRESS,
                "type": "uint32",
                "role": "timestamp",
                "unit": "s",
            }
        )
        for offset, column in enumerate([*SETTINGS, *SENSORS]):
            points.append(
                {
                    "device": device,
                    "name": column,
                    "kind": "input",
                    "address": FIRST_VALUE_ADDRESS + 2 * offset,
                    "type": "float32",
                }
            )
    return {"connections": connections, "devices": devices, "points": points}


def write_plant(plant: dict, path: Path, source: Path) -> None:
    header = (
        f"# Written by `pdm-orch simulate --replay cmapss {source}`: one device per engine,\n"
        "# settings and sensors as float32 input registers, the cycle time in `clock`.\n"
    )
    body = yaml.safe_dump(plant, sort_keys=False, default_flow_style=None, width=120)
    path.write_text(header + body)


@dataclass
class _Engine:
    values: np.ndarray  # cycles x columns
    cycles: np.ndarray
    position: int = -1


class ReplaySource(ValueSource):
    """Serves each engine's cycles in order, one per read of its clock register."""

    def __init__(
        self, frame: pd.DataFrame, *, start: datetime = DEFAULT_START, cycle_seconds: float = 3600
    ) -> None:
        self.start = start.timestamp()
        self.cycle_seconds = cycle_seconds
        self.columns = [*SETTINGS, *SENSORS]
        self.engines = {
            engine_name(unit): _Engine(
                values=group[self.columns].to_numpy(dtype=np.float64),
                cycles=group["cycle"].to_numpy(),
            )
            for unit, group in frame.groupby("unit")
        }

    def cycle_time(self, cycle: int) -> float:
        return self.start + cycle * self.cycle_seconds

    def values(self, device: str, kind: str, first: int, last: int) -> dict[str, float | str]:
        engine = self.engines[device]
        if first <= CLOCK_ADDRESS <= last and engine.position < len(engine.cycles) - 1:
            engine.position += 1
        row = max(engine.position, 0)
        out: dict[str, float | str] = dict(
            zip(self.columns, engine.values[row].tolist(), strict=True)
        )
        out["clock"] = float(self.cycle_time(int(engine.cycles[row])))
        return out

    @property
    def finished(self) -> bool:
        """Every engine has served its last cycle."""
        return all(e.position >= len(e.cycles) - 1 for e in self.engines.values())
