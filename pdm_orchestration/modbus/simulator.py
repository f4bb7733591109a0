"""The PLC simulator: a real pymodbus TCP server serving every device and point of a plant file.

Each device is a unit id on one server. Its registers are encoded exactly as the plant file says
(type, byte order, scale, offset), refreshed from the simulated machines (`machines.py`) on each
request, on an accelerated clock: with `speed=1440` a day of plant life passes in a minute.
Points declared `role: timestamp` carry the simulated clock (epoch seconds).

The simulator only ever answers reads; it audits every request it receives (unit id and function
code), which is how the tests prove the poller never sends anything but function codes 1-4.

Fault injection, per unit id: `dead` (never answers), `slow` (answers after a delay), `exception`
(answers every read with an exception code), and `min_request_gap_s` (a gateway that answers
"busy", exception 6, when requests come faster than that). Connections dropped by the device
are simulated by `FaultProxy` (faults.py) in front of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pdm_orchestration.modbus.codec import encode_point
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.plant.config import BIT_KINDS, Plant, Point
from pdm_orchestration.storage.events import MaintenanceEvent

log = logging.getLogger(__name__)

KIND_OF_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
KIND_ORDER = ("coil", "discrete", "holding", "input")  # the order SimDevice wants its blocks in
FOREVER_S = 24 * 3600.0


@dataclass
class Faults:
    """Misbehaviour to inject, by unit id (all empty: a well-behaved plant)."""

    dead: set[int] = field(default_factory=set)
    slow: dict[int, float] = field(default_factory=dict)
    exception: dict[int, int] = field(default_factory=dict)
    min_request_gap_s: float = 0.0


class ValueSource:
    """What the simulator serves: engineering values per device, asked for on each request.

    `first` and `last` are the wire addresses the request covers.
    """

    def values(
        self, device: str, kind: str, first: int, last: int
    ) -> dict[str, float | str]:  # pragma: no cover
        raise NotImplementedError


class LiveSource(ValueSource):
    """The simulated machines on an accelerated clock."""

    def __init__(self, simulation: PlantSimulation, speed: float) -> None:
        self.simulation = simulation
        self.speed = speed
        self.started = time.monotonic()

    def sim_epoch(self) -> float:
        return self.simulation.start + (time.monotonic() - self.started) * self.speed

    def values(self, device: str, kind: str, first: int, last: int) -> dict[str, float | str]:
        now = self.sim_epoch()
        self.simulation.advance_to(now)
        return self.simulation.values(device, clock=now)


def _readable_segments(points: list[Point], unreadable: list[list[int]]) -> list[tuple[int, int]]:
    """[first, last] register ranges to serve: from the lowest to the highest point, minus holes."""
    low = min(p.address for p in points)
    high = max(p.end_address for p in points)
    segments = [(low, high)]
    for start, end in sorted(unreadable):
        next_segments = []
        for a, b in segments:
            if end < a or start > b:
                next_segments.append((a, b))
                continue
            if a < start:
                next_segments.append((a, start - 1))
            if end < b:
                next_segments.append((end + 1, b))
        segments = next_segments
    return segments


class PlcSimulator:
    """Serves a plant on `host` until `stop()`: one Modbus TCP server per port of its connections.

    Devices are reached where the plant says (connections without a port got the default port when
    the plant file was loaded). Unit ids are per port, like on real gateways.
    """

    def __init__(
        self,
        plant: Plant,
        source: ValueSource,
        *,
        host: str = "127.0.0.1",
        faults: Faults | None = None,
        port_offset: int = 0,
    ) -> None:
        self.plant = plant
        self.source = source
        self.host = host
        self.port_offset = port_offset  # bind plant port + offset (a FaultProxy serves the port)
        self.faults = faults or Faults()
        self.audit: Counter[tuple[int, int]] = Counter()  # (unit id, function code) -> requests
        self._last_request: dict[int, float] = {}
        self._servers: list[ModbusTcpServer] = []
        # port -> unit id -> device
        self.endpoints: dict[int, dict[int, str]] = {}
        self._points: dict[tuple[str, str], list[Point]] = {}
        for name, device in plant.devices.items():
            served_port = plant.connections[device.connection].port
            units = self.endpoints.setdefault(served_port, {})
            if device.unit_id in units:
                log.warning(
                    "port %d unit %d serves %s; %s (same unit id) is not simulated",
                    served_port,
                    device.unit_id,
                    units[device.unit_id],
                    name,
                )
                continue
            units[device.unit_id] = name
            for point in plant.points_of(name):
                self._points.setdefault((name, point.register_kind), []).append(point)

    def _device(self, unit_id: int, name: str) -> SimDevice:
        blocks: list[list[SimData]] = []
        unreadable = self.plant.devices[name].unreadable
        for kind in KIND_ORDER:
            points = self._points.get((name, kind), [])
            bits = kind in BIT_KINDS
            datatype = DataType.BITS if bits else DataType.REGISTERS
            if not points:
                # SimDevice wants a block of each kind; this unit has none of these points.
                blocks.append([SimData(address=0, count=16 if bits else 1, datatype=datatype)])
                continue
            segments = _readable_segments(points, [] if bits else unreadable)
            blocks.append(
                [
                    SimData(
                        address=a, count=b - a + 1, values=False if bits else 0, datatype=datatype
                    )
                    for a, b in segments
                ]
            )
        action = functools.partial(self._action, unit_id, name)
        return SimDevice(id=unit_id, simdata=tuple(blocks), action=action)  # type: ignore[arg-type]

    async def _action(
        self,
        unit_id: int,
        name: str,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a simulated plant is read-only
        if unit_id in self.faults.dead:
            await asyncio.sleep(FOREVER_S)
        if unit_id in self.faults.slow:
            await asyncio.sleep(self.faults.slow[unit_id])
        if unit_id in self.faults.exception:
            return ExcCodes(self.faults.exception[unit_id])
        if self.faults.min_request_gap_s:
            now, last = time.monotonic(), self._last_request.get(unit_id)
            self._last_request[unit_id] = now
            if last is not None and now - last < self.faults.min_request_gap_s:
                return ExcCodes.DEVICE_BUSY
        kind = KIND_OF_FUNCTION.get(function_code)
        if kind is None:
            return ExcCodes.ILLEGAL_FUNCTION
        self._refresh(name, kind, start_address, address, count, registers)
        return None

    def _refresh(
        self,
        name: str,
        kind: str,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
    ) -> None:
        points = self._points.get((name, kind), [])
        if not points:
            return
        values = self.source.values(name, kind, address, address + count - 1)
        for point in points:
            value = values.get(point.sensor)
            if value is None:
                continue
            words = encode_point(point, value)
            if kind in BIT_KINDS:
                index, bit = point.address // 16 - start_address, point.address % 16
                registers[index] = (registers[index] & ~(1 << bit)) | (words[0] << bit)
            elif point.data_type == "bit":
                index, bit = point.address - start_address, point.bit or 0
                registers[index] = (registers[index] & ~(1 << bit)) | (words[0] << bit)
            else:
                index = point.address - start_address
                registers[index : index + len(words)] = words

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.audit[(pdu.dev_id, pdu.function_code)] += 1
        return pdu

    @property
    def function_codes(self) -> set[int]:
        """Every function code received so far."""
        return {code for _, code in self.audit}

    async def start(self) -> None:
        for port, units in sorted(self.endpoints.items()):
            devices = [self._device(unit, name) for unit, name in sorted(units.items())]
            bind = port + self.port_offset
            server = ModbusTcpServer(devices, address=(self.host, bind), trace_pdu=self._trace)
            await server.serve_forever(background=True)
            self._servers.append(server)
            log.info("simulating %d devices on %s:%d", len(devices), self.host, bind)

    async def stop(self) -> None:
        for server in self._servers:
            await server.shutdown()
        self._servers = []


def maintenance_events(simulation: PlantSimulation) -> list[MaintenanceEvent]:
    """What the simulated plant lived through, as a maintenance system would hold it."""
    return [
        MaintenanceEvent(r.device, r.time, r.kind, r.component, r.notes, source="simulator")
        for r in simulation.records
    ]


async def serve(
    simulator: PlcSimulator,
    stop: asyncio.Event,
    *,
    every_s: float = 5.0,
    on_tick: Callable[[], None] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve until `stop` is set, calling `on_tick` every `every_s` seconds (progress, events)."""
    await simulator.start()
    if on_started is not None:
        on_started()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            if on_tick is not None:
                on_tick()
    finally:
        await simulator.stop()


class BackgroundSimulator:
    """Runs a `PlcSimulator` on an event loop of its own thread (for tests, benchmarks, demos).

    Use as a context manager: the simulator serves inside the `with` block.
    """

    def __init__(self, simulator: PlcSimulator) -> None:
        self.simulator = simulator
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> PlcSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self.loop).result(timeout=30)
        return self.simulator

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self.loop).result(timeout=30)
        # Requests still sleeping in fault injection belong to this loop: cancel them.
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
