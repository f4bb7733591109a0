"""The plant file: connections, devices and points, validated into a `Plant`.

A plant file is YAML with three sections (documented in `examples/plant.yaml` and the README):

- `connections`: one Modbus TCP endpoint (gateway or PLC) each;
- `devices`: a machine behind a connection, addressed by its unit id;
- `points`: one sensor value each: where it lives (kind, address) and how it decodes.

`load_plant` reports every problem of the file at once, each naming file, line and field, by
raising `PlantConfigError`. What it returns is resolved: every point carries its wire address,
byte order and poll group, exactly as stored in `plc_register_map`.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, create_model

from pdm_orchestration.plant.yamlsource import Located, PathKey, YamlSyntaxError, load_located
from pdm_orchestration.storage.schema import BYTE_ORDERS, DATA_TYPES, REGISTER_KINDS

ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
RegisterKind = Literal["coil", "discrete", "holding", "input"]
DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bit"
]
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
PointName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=48)]
# Numbers as YAML writes them: `true` is not 1, `1.5` (or "7") is not an integer, "2" not a number.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # an int is a number

assert set(ByteOrder.__args__) == set(BYTE_ORDERS)  # type: ignore[attr-defined]
assert set(DataType.__args__) == set(DATA_TYPES)  # type: ignore[attr-defined]
assert set(RegisterKind.__args__) == set(REGISTER_KINDS)  # type: ignore[attr-defined]

MAX_ADDRESS = 65535
DEFAULT_GROUP = "default"
# Registers (16-bit words) each data type occupies; strings take `length` registers.
REGISTER_WIDTH = {
    "int16": 1,
    "uint16": 1,
    "bit": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
BIT_KINDS = ("coil", "discrete")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConnectionSpec(_Spec):
    """One Modbus TCP endpoint. Host and port default to PLC_HOST and PLC_PORT."""

    id: DeviceId
    host: str | None = Field(default=None, min_length=1)
    port: Int | None = Field(default=None, ge=1, le=65535)
    timeout_s: Number = Field(default=1.0, gt=0, le=60)
    retries: Int = Field(default=1, ge=0, le=10)
    pause_between_requests_ms: Int = Field(default=0, ge=0, le=60_000)
    max_registers_per_read: Int = Field(default=125, ge=1, le=125)
    max_gap_fill: Int = Field(default=10, ge=0, le=124)
    reconnect_backoff_s: tuple[Number, Number] = (0.5, 60.0)
    unit_fail_cycles: Int = Field(default=3, ge=1, le=1000)
    unit_cooldown_s: Number = Field(default=60.0, ge=0)


class DeviceSpec(_Spec):
    """A machine behind a connection. `unit_id` has no default: say which unit it is."""

    id: DeviceId
    connection: str
    unit_id: Int = Field(ge=0, le=255)
    address_base: Int = Field(default=0, ge=0, le=1)
    byte_order: ByteOrder = "ABCD"
    unreadable: list[tuple[Int, Int]] = Field(default_factory=list)
    groups: dict[str, Annotated[Number, Field(gt=0)]] = Field(default_factory=dict)
    site: str | None = None
    line: str | None = None
    kind: str | None = None
    description: str | None = None


class PointSpec(_Spec):
    """One sensor value of a device, as written in the plant file."""

    device: str
    name: PointName
    kind: RegisterKind
    address: Int = Field(ge=0, le=MAX_ADDRESS + 1)
    data_type: DataType = Field(alias="type")
    bit: Int | None = Field(default=None, ge=0, le=15)
    length: Int | None = Field(default=None, ge=1, le=125)
    byte_order: ByteOrder | None = None
    scale: Number = 1.0
    offset: Number = 0.0
    unit: str | None = None
    valid_range: tuple[Number, Number] | None = None
    nan_value: Number | None = None
    warn_low: Number | None = None
    warn_high: Number | None = None
    alarm_low: Number | None = None
    alarm_high: Number | None = None
    group: str | None = None
    role: Literal["value", "timestamp"] = "value"
    description: str | None = None


@dataclass(frozen=True)
class Connection:
    """A connection with host and port resolved; fields match `plc_connections` columns."""

    name: str
    host: str
    port: int
    timeout_s: float
    retries: int
    pause_between_requests_ms: int
    max_registers_per_read: int
    max_gap_fill: int
    reconnect_backoff_min_s: float
    reconnect_backoff_max_s: float
    unit_fail_cycles: int
    unit_cooldown_s: float


@dataclass(frozen=True)
class Device:
    """A device; fields match `devices` columns (the connection by name)."""

    name: str
    connection: str
    unit_id: int
    address_base: int
    byte_order: str
    poll_groups: dict[str, float]
    unreadable: list[list[int]]
    site: str | None
    line: str | None
    kind: str | None
    description: str | None


@dataclass(frozen=True)
class Point:
    """A resolved point: one `plc_register_map` row (device and connection by name).

    `address` is the wire (protocol, 0-based) address: the file's address minus the device's
    `address_base`. `length` is the number of registers the value occupies.
    """

    device: str
    sensor: str
    connection: str
    unit_id: int
    role: str
    register_kind: str
    address: int
    data_type: str
    bit: int | None
    length: int
    byte_order: str
    scale: float
    offset: float
    unit: str | None
    physical_min: float | None
    physical_max: float | None
    nan_value: float | None
    warn_low: float | None
    warn_high: float | None
    alarm_low: float | None
    alarm_high: float | None
    poll_group: str
    description: str | None

    @property
    def end_address(self) -> int:
        """Last wire address the point occupies."""
        return self.address + self.length - 1


def mapped_fields(cls: type) -> tuple[str, ...]:
    """Names of the dataclass fields of `cls` (the columns it maps to)."""
    return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Plant:
    """A validated plant file."""

    source: Path
    connections: dict[str, Connection]
    devices: dict[str, Device]
    points: list[Point]

    def points_of(self, device: str) -> list[Point]:
        return [p for p in self.points if p.device == device]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a plant file."""

    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message}"


class PlantConfigError(ValueError):
    """A plant file has problems; `issues` lists every one of them."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        noun = "problem" if len(issues) == 1 else "problems"
        super().__init__(f"{len(issues)} {noun} in the plant file:\n" + "\n".join(map(str, issues)))


SECTIONS = ("connections", "devices", "points")
LIMITS = ("warn_low", "warn_high", "alarm_low", "alarm_high")
SpecT = TypeVar("SpecT", bound=_Spec)


@dataclass(frozen=True)
class _Item(Generic[SpecT]):
    """One item of a section, validated field by field.

    `bad` names the fields that failed validation (their error is reported): on `spec` they hold
    their default, or None where the field is required, so a check that reads one must first ask
    `valid(...)`. Everything else on `spec` is what the file says. `name` is the item's `id` as
    written, valid or not, so that others can still refer to it; `label` names it in messages.
    """

    index: int
    spec: SpecT
    bad: frozenset[str]
    name: str | None
    label: str | None

    def valid(self, *field_names: str) -> bool:
        return self.bad.isdisjoint(field_names)


class _Collector:
    """Collects issues, naming each with its path and the line it is on."""

    def __init__(self, source: Path, located: Located) -> None:
        self.source = source
        self.located = located
        self.issues: list[ConfigIssue] = []

    def add(self, path: PathKey, message: str, label: str | None = None) -> None:
        field = _path_label(path)
        if label:
            field = f"{field} ({label})"
        self.issues.append(ConfigIssue(self.source, self.located.line_of(path), field, message))


def _path_label(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def load_plant(
    path: str | Path, *, default_host: str = "127.0.0.1", default_port: int = 502
) -> Plant:
    """Read and validate a plant file; raise `PlantConfigError` listing every problem."""
    source = Path(path)
    try:
        located = load_located(source)
    except FileNotFoundError:
        raise PlantConfigError([ConfigIssue(source, None, "(file)", "no such file")]) from None
    except YamlSyntaxError as exc:
        raise PlantConfigError([ConfigIssue(source, exc.line, "(file)", str(exc))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlantConfigError([ConfigIssue(source, None, "(file)", str(exc))]) from None

    out = _Collector(source, located)
    for key_path, line in located.duplicate_keys:
        out.issues.append(
            ConfigIssue(source, line, _path_label(key_path), "key appears twice in one mapping")
        )
    data = located.data
    if not isinstance(data, dict):
        out.add((), "the file must be a mapping with sections " + ", ".join(SECTIONS))
        raise PlantConfigError(out.issues)
    for key in data:
        if key not in SECTIONS:
            out.add((key,), f"unknown section; expected one of {', '.join(SECTIONS)}")

    connections = _parse_section(out, data, "connections", ConnectionSpec)
    devices = _parse_section(out, data, "devices", DeviceSpec)
    points = _parse_section(out, data, "points", PointSpec)

    resolved_connections, endpoints = _check_connections(
        out, connections, default_host, default_port
    )
    known_connections = {item.name for item in connections if item.name is not None}
    resolved_devices = _check_devices(out, devices, known_connections, endpoints)
    resolved_points = _check_points(out, points, devices)
    if out.issues:
        out.issues.sort(key=lambda issue: (issue.line or 0, issue.field))
        raise PlantConfigError(out.issues)
    return Plant(source, resolved_connections, resolved_devices, resolved_points)


def _parse_section(
    out: _Collector, data: dict[str, Any], section: str, spec: type[SpecT]
) -> list[_Item[SpecT]]:
    """Validate each item of a section on its own, so one bad item hides no other problem.

    An item with field errors is kept with its valid fields (see `_Item`), so it still takes part
    in the checks across items: its id stays known, its registers still occupy addresses.
    """
    items = data.get(section)
    if items is None:
        if section != "connections" or "devices" in data:
            out.add((section,), "section is missing or empty")
        return []
    if not isinstance(items, list):
        out.add((section,), "must be a list")
        return []
    field_of = {info.alias or name: name for name, info in spec.model_fields.items()}
    parsed: list[_Item[SpecT]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.add((section, index), "must be a mapping")
            continue
        label = _item_label(section, item)
        name = str(item["id"]) if section != "points" and "id" in item else None
        try:
            parsed.append(_Item(index, spec.model_validate(item), frozenset(), name, label))
            continue
        except ValidationError as exc:
            errors = exc.errors()
        for error in errors:
            loc = tuple(error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            elif "input" in error and error["type"] != "missing":
                message = f"{message} (got {error['input']!r})"
            out.add((section, index, *loc[:1]), message, label)
        failed = {error["loc"][0] for error in errors}
        valid_part = {
            key: value for key, value in item.items() if isinstance(key, str) and key not in failed
        }
        partial = _lenient(spec).model_validate(valid_part)
        bad = frozenset(field_of.get(str(key), str(key)) for key in failed)
        parsed.append(_Item(index, partial, bad, name, label))
    return parsed


@cache
def _lenient(spec: type[SpecT]) -> type[SpecT]:
    """`spec` with its required fields optional (None), to build an item from its valid fields.

    Only fields that already passed `spec` reach it, so it needs none of their constraints.
    """
    optional: dict[str, Any] = {
        name: (info.annotation | None, Field(default=None, alias=info.alias))
        for name, info in spec.model_fields.items()
        if info.is_required()
    }
    return cast(type[SpecT], create_model(f"Lenient{spec.__name__}", __base__=spec, **optional))


def _item_label(section: str, item: dict[str, Any]) -> str | None:
    if section == "points":
        return f"{item.get('device')}/{item.get('name')}"
    value = item.get("id")
    return str(value) if value is not None else None


def _check_connections(
    out: _Collector,
    connections: list[_Item[ConnectionSpec]],
    default_host: str,
    default_port: int,
) -> tuple[dict[str, Connection], dict[str, tuple[str, int]]]:
    """The connections resolved, and the (host, port) of each whose host and port are valid."""
    resolved: dict[str, Connection] = {}
    endpoints: dict[str, tuple[str, int]] = {}
    seen: set[str] = set()
    for item in connections:
        spec, name = item.spec, item.name
        path: PathKey = ("connections", item.index)
        low, high = spec.reconnect_backoff_s
        if item.valid("reconnect_backoff_s") and not 0 < low <= high:
            out.add(
                (*path, "reconnect_backoff_s"),
                f"must be [min, max] with 0 < min <= max, got [{low:g}, {high:g}]",
                name,
            )
        if name is None:  # no id: reported as missing, and nothing can refer to it
            continue
        if name in seen:
            out.add((*path, "id"), f"duplicate connection id {name!r}", name)
            continue
        seen.add(name)
        if item.valid("host", "port"):
            endpoints[name] = (spec.host or default_host, spec.port or default_port)
        if item.bad:
            continue  # the plant is not returned: nothing to resolve
        resolved[name] = Connection(
            name=name,
            host=spec.host or default_host,
            port=spec.port or default_port,
            timeout_s=spec.timeout_s,
            retries=spec.retries,
            pause_between_requests_ms=spec.pause_between_requests_ms,
            max_registers_per_read=spec.max_registers_per_read,
            max_gap_fill=spec.max_gap_fill,
            reconnect_backoff_min_s=low,
            reconnect_backoff_max_s=high,
            unit_fail_cycles=spec.unit_fail_cycles,
            unit_cooldown_s=spec.unit_cooldown_s,
        )
    return resolved, endpoints


def _check_devices(
    out: _Collector,
    devices: list[_Item[DeviceSpec]],
    known_connections: set[str],
    endpoints: dict[str, tuple[str, int]],
) -> dict[str, Device]:
    resolved: dict[str, Device] = {}
    seen: set[str] = set()
    # A unit is one per endpoint (host and port), whichever connection entry reaches it; by
    # connection name where the endpoint is not known (an unknown connection, a bad port).
    units: dict[tuple[str, int] | tuple[str, int, int], tuple[str, str]] = {}
    for item in devices:
        spec, name = item.spec, item.name
        path: PathKey = ("devices", item.index)
        if item.valid("unreadable", "address_base"):
            for range_index, (start, end) in enumerate(spec.unreadable):
                if not spec.address_base <= start <= end <= MAX_ADDRESS + spec.address_base:
                    out.add(
                        (*path, "unreadable", range_index),
                        f"must be [start, end] with {spec.address_base} <= start <= end <= "
                        f"{MAX_ADDRESS + spec.address_base}, got [{start}, {end}]",
                        name,
                    )
        if name is None:
            continue
        if name in seen:
            out.add((*path, "id"), f"duplicate device id {name!r}", name)
            continue
        seen.add(name)
        if not item.valid("connection"):
            continue
        if spec.connection not in known_connections:
            out.add((*path, "connection"), f"unknown connection {spec.connection!r}", name)
        if item.valid("unit_id"):
            _check_unit(out, item, endpoints, units)
        if item.bad:
            continue
        resolved[name] = Device(
            name=name,
            connection=spec.connection,
            unit_id=spec.unit_id,
            address_base=spec.address_base,
            byte_order=spec.byte_order,
            poll_groups=dict(spec.groups),
            unreadable=[
                [start - spec.address_base, end - spec.address_base]
                for start, end in spec.unreadable
            ],
            site=spec.site,
            line=spec.line,
            kind=spec.kind,
            description=spec.description,
        )
    return resolved


def _check_unit(
    out: _Collector,
    item: _Item[DeviceSpec],
    endpoints: dict[str, tuple[str, int]],
    units: dict[tuple[str, int] | tuple[str, int, int], tuple[str, str]],
) -> None:
    spec, name = item.spec, str(item.name)
    endpoint = endpoints.get(spec.connection)
    unit_key: tuple[str, int] | tuple[str, int, int] = (
        (*endpoint, spec.unit_id) if endpoint is not None else (spec.connection, spec.unit_id)
    )
    if (seen := units.get(unit_key)) is not None:
        other, other_connection = seen
        if other_connection == spec.connection:
            message = (
                f"unit {spec.unit_id} on connection {spec.connection!r} is already device {other!r}"
            )
        else:
            where = f"{endpoint[0]}:{endpoint[1]}" if endpoint else spec.connection
            message = (
                f"unit {spec.unit_id} on {where} is already device {other!r}: connections "
                f"{other_connection!r} and {spec.connection!r} are the same host and port, "
                "so both would read one unit"
            )
        out.add(("devices", item.index, "unit_id"), message, name)
    units[unit_key] = (name, spec.connection)


def _point_shape_issues(item: _Item[PointSpec]) -> Iterator[tuple[str, str]]:
    """(field, message) for a point whose (valid) fields contradict each other."""
    spec, valid = item.spec, item.valid
    # kind and type are required: None when they failed. An invalid bit or length is None too,
    # so the checks that object to one being given need no guard.
    kind, data_type = spec.kind, spec.data_type
    if kind in BIT_KINDS:
        if data_type not in (None, "bit"):
            yield "type", f"a {kind} holds one bit: type must be 'bit', got {data_type!r}"
        if spec.bit is not None:
            yield "bit", f"a {kind} is a single bit address; 'bit' applies to registers only"
    elif kind is not None and data_type == "bit" and spec.bit is None and valid("bit"):
        yield "bit", "type 'bit' of a register needs 'bit' (0-15)"
    if data_type not in (None, "bit") and spec.bit is not None:
        yield "bit", f"'bit' applies to type 'bit' only, not {data_type!r}"
    if data_type == "string" and spec.length is None and valid("length"):
        yield "length", "type 'string' needs 'length' (number of registers, 2 characters each)"
    if data_type not in (None, "string") and spec.length is not None:
        yield "length", f"'length' applies to type 'string' only, not {data_type!r}"
    if valid("scale") and spec.scale == 0:
        yield "scale", "must not be 0 (every value would read as the offset)"
    valid_range = spec.valid_range if valid("valid_range") else None
    if valid_range is not None and valid_range[0] >= valid_range[1]:
        yield (
            "valid_range",
            f"must be [min, max] with min < max, got [{valid_range[0]:g}, {valid_range[1]:g}]",
        )
        valid_range = None
    if valid("role") and spec.role == "timestamp" and data_type in ("string", "bit"):
        yield "role", f"a timestamp must be numeric (epoch seconds), not {data_type!r}"
    yield from _limit_issues(
        {name: getattr(spec, name) for name in LIMITS if valid(name)}, valid_range
    )


def _limit_issues(
    limits: dict[str, float | None], valid_range: tuple[float, float] | None
) -> Iterator[tuple[str, str]]:
    """Limits in the order alarm_low <= warn_low < warn_high <= alarm_high, within valid_range."""
    orders = (
        ("warn_low", "warn_high", operator.lt, "must be below"),
        ("alarm_low", "alarm_high", operator.lt, "must be below"),
        ("warn_low", "alarm_low", operator.ge, "must not be below"),
        ("warn_high", "alarm_high", operator.le, "must not be above"),
    )
    for name, other, in_order, relation in orders:
        value, bound = limits.get(name), limits.get(other)
        if value is not None and bound is not None and not in_order(value, bound):
            yield name, f"{name} ({value:g}) {relation} {other} ({bound:g})"
    if valid_range is None:
        return
    low, high = valid_range
    for name in LIMITS:
        value = limits.get(name)
        if value is not None and not low <= value <= high:
            yield (
                name,
                f"{name} ({value:g}) is outside valid_range [{low:g}, {high:g}]: "
                "no valid reading can reach it",
            )


def _check_points(
    out: _Collector, points: list[_Item[PointSpec]], devices: list[_Item[DeviceSpec]]
) -> list[Point]:
    device_items = {item.name: item for item in reversed(devices) if item.name is not None}
    resolved: list[Point] = []
    names: dict[tuple[str, str], int] = {}
    timestamps: dict[str, str] = {}
    occupied: dict[tuple[str, str], list[tuple[int, int, int | None, str]]] = defaultdict(list)
    for item in points:
        spec, valid = item.spec, item.valid
        path: PathKey = ("points", item.index)
        label = item.label
        problems = list(_point_shape_issues(item))
        for field_name, message in problems:
            out.add((*path, field_name), message, label)
        if not valid("device"):
            continue
        device_item = device_items.get(spec.device)
        if device_item is None:
            out.add((*path, "device"), f"unknown device {spec.device!r}", label)
            continue
        device = device_item.spec
        if valid("name"):
            key = (spec.device, spec.name)
            if key in names:
                out.add(
                    (*path, "name"),
                    f"duplicate point: {spec.device!r} already has {spec.name!r} "
                    f"(points[{names[key]}])",
                    label,
                )
                continue
            names[key] = item.index
        grouped = valid("group") and device_item.valid("groups") and spec.group is not None
        if grouped and spec.group not in device.groups:
            known = ", ".join(sorted(device.groups)) or "none"
            out.add(
                (*path, "group"),
                f"unknown group {spec.group!r} for device {spec.device!r} (groups: {known})",
                label,
            )
        if valid("role", "name") and spec.role == "timestamp":
            if spec.device in timestamps:
                out.add(
                    (*path, "role"),
                    f"device {spec.device!r} already has a timestamp point "
                    f"{timestamps[spec.device]!r}",
                    label,
                )
            timestamps[spec.device] = spec.name
        if not (
            valid("kind", "data_type", "length", "bit", "address")
            and device_item.valid("address_base")
        ):
            continue  # where its registers are is not known
        width = _width(spec)
        if width is None:  # a string without length, reported above
            continue
        wire = spec.address - device.address_base
        if wire < 0:
            out.add(
                (*path, "address"),
                f"address {spec.address} is below the device's address_base {device.address_base}",
                label,
            )
            continue
        if wire + width - 1 > MAX_ADDRESS:
            out.add(
                (*path, "address"),
                f"address {spec.address} + {width} register(s) goes beyond {MAX_ADDRESS} "
                f"(wire address {wire + width - 1})",
                label,
            )
            continue
        last = spec.address + width - 1
        if device_item.valid("unreadable") and spec.kind not in BIT_KINDS:
            for start, end in device.unreadable:  # in the file's numbering, like spec.address
                if spec.address <= end and last >= start:
                    out.add(
                        (*path, "address"),
                        f"registers {spec.address}..{last} fall in the device's "
                        f"unreadable range [{start}, {end}]",
                        label,
                    )
        bit = spec.bit if spec.data_type == "bit" and spec.kind not in BIT_KINDS else None
        for other_start, other_end, other_bit, other_name in occupied[(spec.device, spec.kind)]:
            if wire > other_end or wire + width - 1 < other_start:
                continue
            if bit is not None and other_bit is not None and bit != other_bit:
                continue  # different bits of one status word
            out.add(
                (*path, "address"),
                f"{spec.kind} registers {spec.address}..{last} overlap point "
                f"{other_name!r} of the same device",
                label,
            )
            break
        occupied[(spec.device, spec.kind)].append((wire, wire + width - 1, bit, str(spec.name)))
        if problems or item.bad or device_item.bad:
            continue  # the plant is not returned: nothing to resolve
        low, high = spec.valid_range if spec.valid_range else (None, None)
        resolved.append(
            Point(
                device=spec.device,
                sensor=spec.name,
                connection=device.connection,
                unit_id=device.unit_id,
                role=spec.role,
                register_kind=spec.kind,
                address=wire,
                data_type=spec.data_type,
                bit=spec.bit,
                length=width,
                byte_order=spec.byte_order or device.byte_order,
                scale=spec.scale,
                offset=spec.offset,
                unit=spec.unit,
                physical_min=low,
                physical_max=high,
                nan_value=spec.nan_value,
                warn_low=spec.warn_low,
                warn_high=spec.warn_high,
                alarm_low=spec.alarm_low,
                alarm_high=spec.alarm_high,
                poll_group=spec.group or DEFAULT_GROUP,
                description=spec.description,
            )
        )
    return resolved


def _width(spec: PointSpec) -> int | None:
    """Registers (or bits, for coils and discrete inputs) the point occupies; None if unknown."""
    if spec.kind in BIT_KINDS:
        return 1
    if spec.data_type == "string":
        return spec.length
    return REGISTER_WIDTH[spec.data_type]
