"""Planning reads: which requests fetch every point of a plant with the fewest round trips.

Points are grouped per endpoint (host and port: one TCP connection), unit id, register kind and poll
group, sorted by address, and merged into blocks of at most `max_registers_per_read` registers
(2000 bits for coils and discrete inputs). A hole between two points is read across when it is at
most `max_gap_fill` registers and touches none of the device's unreadable ranges. A point is never
split across two requests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pdm_orchestration.modbus.codec import BlockDecoder
from pdm_orchestration.plant.config import BIT_KINDS, DEFAULT_GROUP, Connection, Plant, Point

MAX_BITS_PER_READ = 2000
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


@dataclass
class Block:
    """One read request: `count` registers (or bits) of `kind` from `start` on `unit_id`."""

    device: str
    unit_id: int
    kind: str
    poll_group: str
    start: int
    count: int
    points: list[Point]
    decoder: BlockDecoder = field(init=False, repr=False)
    # (index in `points`, sensor) of every point that yields a reading (not the device clock).
    sensors: list[tuple[int, str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.decoder = BlockDecoder(self.points, self.start)
        self.sensors = [(i, p.sensor) for i, p in enumerate(self.points) if p.role != "timestamp"]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.kind]

    @property
    def end(self) -> int:
        return self.start + self.count - 1


@dataclass
class EndpointPlan:
    """Everything read through one TCP connection (one host and port)."""

    host: str
    port: int
    connection: Connection
    blocks: list[Block]
    devices: dict[str, int]  # device name -> unit id
    intervals: dict[tuple[str, str], float]  # (device, poll group) -> seconds

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"


def _crosses(hole_start: int, hole_end: int, unreadable: list[list[int]]) -> bool:
    return any(hole_start <= end and hole_end >= start for start, end in unreadable)


def plan_blocks(
    points: list[Point], *, max_registers: int, max_gap_fill: int, unreadable: list[list[int]]
) -> list[Block]:
    """Blocks for the points of one device, kind and poll group (see the module docstring)."""
    if not points:
        return []
    ordered = sorted(points, key=lambda p: (p.address, p.bit or 0))
    is_bits = ordered[0].register_kind in BIT_KINDS
    limit = MAX_BITS_PER_READ if is_bits else max_registers
    blocks: list[Block] = []
    current = [ordered[0]]
    start, end = ordered[0].address, ordered[0].end_address
    for point in ordered[1:]:
        new_end = max(end, point.end_address)
        hole = point.address - end - 1
        fits = new_end - start + 1 <= limit
        bridgeable = hole <= max_gap_fill and not (
            hole > 0 and _crosses(end + 1, point.address - 1, unreadable)
        )
        if fits and bridgeable:
            current.append(point)
            end = new_end
            continue
        blocks.append(_block(current, start, end))
        current, start, end = [point], point.address, point.end_address
    blocks.append(_block(current, start, end))
    return blocks


def _block(points: list[Point], start: int, end: int) -> Block:
    first = points[0]
    return Block(
        device=first.device,
        unit_id=first.unit_id,
        kind=first.register_kind,
        poll_group=first.poll_group,
        start=start,
        count=end - start + 1,
        points=points,
    )


def plan_plant(plant: Plant, default_interval_s: float) -> list[EndpointPlan]:
    """One plan per endpoint; connections of the plant that share host and port share it."""
    by_endpoint: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for point in plant.points:
        connection = plant.connections[point.connection]
        by_endpoint[(connection.host, connection.port)].append(point)
    plans = []
    for (host, port), points in sorted(by_endpoint.items()):
        connection = plant.connections[points[0].connection]
        groups: dict[tuple[str, str, str], list[Point]] = defaultdict(list)
        for point in points:
            groups[(point.device, point.register_kind, point.poll_group)].append(point)
        blocks: list[Block] = []
        for (device, _, _), members in sorted(groups.items()):
            own = plant.connections[members[0].connection]
            blocks += plan_blocks(
                members,
                max_registers=own.max_registers_per_read,
                max_gap_fill=own.max_gap_fill,
                unreadable=plant.devices[device].unreadable,
            )
        devices = {p.device: p.unit_id for p in points}
        intervals = {}
        for device in devices:
            configured = plant.devices[device].poll_groups
            for group in {p.poll_group for p in points if p.device == device}:
                seconds = default_interval_s if group == DEFAULT_GROUP else configured[group]
                intervals[(device, group)] = seconds
        plans.append(EndpointPlan(host, port, connection, blocks, devices, intervals))
    return plans
