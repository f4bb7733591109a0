"""Simulated machines that wear out: the physics behind the PLC simulator.

Every device of a plant file becomes a machine. Time advances in fixed steps of simulated time.
Each step a running machine wears a little, faster the more worn it is and the harder it works
(its operating regime: the load); once the wear passes the machine's failure threshold it fails,
stands still for a repair, and the repair resets the wear. Preventive maintenance now and then
resets it early. Sensor values follow the load and the wear, with noise: temperatures and
vibration rise with wear, flows and pressures sag.

Everything is drawn from one seeded generator per machine, so a seed and a start time give the same
plant life, step for step, whatever the wall-clock timing of the reads.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from pdm_orchestration.plant.config import Plant, Point

HOUR = 3600.0


@dataclass(frozen=True)
class MaintenanceRecord:
    """A failure or a maintenance action the simulation lived through."""

    device: str
    time: datetime
    kind: str  # failure, repair, preventive
    component: str
    notes: str


@dataclass
class Machine:
    """One device's state. `wear` runs from 0 (new) to its `threshold` (failure)."""

    name: str
    kind: str
    points: list[Point]
    rng: np.random.Generator
    wear: float = 0.05
    threshold: float = 1.0
    wear_rate: float = 0.0  # per hour at full load and zero wear
    load: float = 0.8
    running: bool = True
    down_until: float | None = None  # sim epoch seconds while under repair
    run_hours: float = 0.0
    cycles: float = 0.0
    noise: dict[str, float] = field(default_factory=dict)

    def health(self) -> float:
        """1 when new, 0 at failure."""
        return max(0.0, 1.0 - self.wear / self.threshold)


# What a sensor measures decides how it behaves (matched on its name).
RISING = ("temp", "vibration", "current")  # wear drives these up ...
FALLING = ("pressure", "flow", "insulation")  # ... and these down
FOLLOW_LOAD = ("current", "pressure", "flow", "speed", "torque", "load", "power")
RELATIVE_NOISE = {"vibration": 0.04, "current": 0.015}
WEAR_GAIN = 1.5  # at wear 0.82 of the failure point a rising signal reaches its alarm limit


def _matches(name: str, words: tuple[str, ...]) -> bool:
    return any(word in name for word in words)


def reference_level(point: Point) -> float:
    """The value of a healthy machine at typical load, placed relative to the point's limits."""
    low = point.physical_min if point.physical_min is not None else 0.0
    high = point.physical_max if point.physical_max is not None else 100.0
    if point.warn_high is not None:
        return low + 0.7 * (point.warn_high - low)
    if point.warn_low is not None:
        return point.warn_low + 0.3 * (high - point.warn_low)
    return low + 0.5 * (high - low)


class PlantSimulation:
    """The simulated life of every machine of a plant, advanced on a simulated clock."""

    def __init__(
        self,
        plant: Plant,
        *,
        seed: int = 0,
        start: datetime | None = None,
        step_s: float = 60.0,
        mean_life_hours: float = 72.0,
    ) -> None:
        self.plant = plant
        self.seed = seed
        self.step_s = step_s
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.start = start.timestamp()
        self.now = self.start
        self.records: list[MaintenanceRecord] = []
        self.machines: dict[str, Machine] = {}
        for name, device in plant.devices.items():
            # One generator per machine, seeded by plant seed and device name: adding a device
            # does not change the life of the others.
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            machine = Machine(
                name=name, kind=device.kind or "machine", points=plant.points_of(name), rng=rng
            )
            machine.wear = float(rng.uniform(0.0, 0.6))
            self._new_life(machine, mean_life_hours)
            self.machines[name] = machine
        self.mean_life_hours = mean_life_hours

    def _new_life(self, machine: Machine, mean_life_hours: float) -> None:
        machine.threshold = float(machine.rng.uniform(0.85, 1.0))
        hours = float(machine.rng.uniform(0.5, 1.5)) * mean_life_hours
        # Wear grows as dw/dt = rate * load * (1 + 2 w); this rate reaches the threshold in `hours`
        # at a typical load of 0.8.
        machine.wear_rate = math.log(1 + 2 * machine.threshold) / (2 * 0.8 * hours)

    def advance_to(self, sim_epoch: float) -> None:
        """Live every step up to `sim_epoch` (seconds since 1970, simulated)."""
        while self.now + self.step_s <= sim_epoch:
            self.now += self.step_s
            for machine in self.machines.values():
                self._step(machine)

    def _step(self, machine: Machine) -> None:
        rng, dt_h = machine.rng, self.step_s / HOUR
        if machine.down_until is not None:
            if self.now >= machine.down_until:
                machine.down_until = None
                machine.wear = float(rng.uniform(0.0, 0.08))
                self._new_life(machine, self.mean_life_hours)
                machine.running = True
                self._record(machine, "repair", "component replaced after failure")
            return
        # Operating regime: load changes a few times a day; short planned stops.
        if rng.random() < dt_h / 4:
            machine.load = float(rng.choice([0.55, 0.8, 1.0], p=[0.25, 0.5, 0.25]))
        if machine.running and rng.random() < dt_h / 30:
            machine.running = False
        elif not machine.running and rng.random() < dt_h / 0.5:
            machine.running = True
        if not machine.running:
            return
        machine.wear += machine.wear_rate * machine.load * (1 + 2 * machine.wear) * dt_h
        machine.run_hours += dt_h
        machine.cycles += dt_h * 60 * machine.load
        if machine.wear >= machine.threshold:
            machine.running = False
            machine.down_until = self.now + float(rng.uniform(4, 12)) * HOUR
            self._record(machine, "failure", f"wear {machine.wear:.2f} reached the failure point")
        elif machine.wear > 0.6 * machine.threshold and rng.random() < dt_h / 48:
            machine.wear = float(rng.uniform(0.05, 0.2))
            self._record(machine, "preventive", "preventive maintenance")

    def _record(self, machine: Machine, kind: str, notes: str) -> None:
        component = {"pump": "bearing", "motor": "winding", "compressor": "airend"}.get(
            machine.kind, "spindle bearing"
        )
        when = datetime.fromtimestamp(self.now, UTC)
        self.records.append(MaintenanceRecord(machine.name, when, kind, component, notes))

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def values(self, device: str, clock: float | None = None) -> dict[str, float | str]:
        """Engineering value of each point of `device` now (strings for string points).

        `clock` is what timestamp points show (default: the current step's time); the values
        themselves change once per step.
        """
        machine = self.machines[device]
        rng = np.random.default_rng([self.seed, zlib.crc32(device.encode()), int(self.now)])
        active = machine.running and machine.down_until is None
        load = machine.load if active else 0.0
        wear = machine.wear / machine.threshold
        out: dict[str, float | str] = {}
        for point in machine.points:
            if point.role == "timestamp":
                out[point.sensor] = float(int(clock if clock is not None else self.now))
            else:
                out[point.sensor] = self._value(point, machine, load, wear, active, rng)
        return out

    def _value(
        self,
        point: Point,
        machine: Machine,
        load: float,
        wear: float,
        active: bool,
        rng: np.random.Generator,
    ) -> float | str:
        name = point.sensor
        if point.data_type == "string":
            return f"{machine.kind[:3].upper()}-{len(machine.name)}{machine.name[-2:]}"
        if point.data_type == "bit" or point.register_kind in ("coil", "discrete"):
            if "running" in name:
                return 1.0 if active else 0.0
            if "ok" in name:
                return 0.0 if wear > 0.9 else 1.0
            return 1.0 if wear > 0.85 and rng.random() < 0.5 else 0.0  # leaks, trips
        if "hours" in name:
            return float(int(machine.run_hours))
        if "cycles" in name:
            return float(int(machine.cycles))
        low = point.physical_min if point.physical_min is not None else 0.0
        high = point.physical_max if point.physical_max is not None else 100.0
        ref = reference_level(point)
        relative_load = load / 0.8
        if _matches(name, FOLLOW_LOAD):
            level = low + (ref - low) * relative_load
        elif "temp" in name:
            level = low + (ref - low) * (0.25 + 0.75 * relative_load if active else 0.25)
        elif "vibration" in name:
            level = ref * (0.7 + 0.3 * relative_load) if active else low
        else:
            level = ref
        if active and _matches(name, RISING):
            limit = point.alarm_high or point.warn_high or high - 0.1 * (high - low)
            level += (limit - ref) * WEAR_GAIN * wear**2
        elif active and _matches(name, FALLING):
            limit = point.alarm_low or point.warn_low or low + 0.1 * (high - low)
            level -= (ref - limit) * WEAR_GAIN * wear**2
        noise = RELATIVE_NOISE.get(next((k for k in RELATIVE_NOISE if k in name), ""), 0.01)
        level += abs(level - low) * noise * rng.standard_normal()
        return float(min(max(level, low), high))

    def records_since(self, when: datetime) -> list[MaintenanceRecord]:
        return [r for r in self.records if r.time >= when]
