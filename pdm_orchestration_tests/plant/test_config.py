import textwrap
from collections import Counter
from pathlib import Path

import pytest

from pdm_orchestration.plant.config import PlantConfigError, load_plant
from pdm_orchestration.storage.schema import DATA_TYPES
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT

GOOD_HEAD = """\
connections:
  - id: gw
    host: 10.0.0.5
devices:
  - {id: press, connection: gw, unit_id: 7, address_base: 1, byte_order: CDAB, groups: {slow: 60}, unreadable: [[50, 59]]}
"""


def write(tmp_path: Path, text: str, name: str = "plant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} not in {path}")


def issues_of(path: Path) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PlantConfigError) as caught:
        load_plant(path)
    return [(issue.line, issue.field, issue.message) for issue in caught.value.issues]


def test_example_plant_is_a_real_plant() -> None:
    plant = load_plant(EXAMPLE_PLANT)
    kinds = Counter(device.kind for device in plant.devices.values())
    assert len(plant.devices) >= 10
    assert len(kinds) >= 3
    per_device = Counter(point.device for point in plant.points)
    assert min(per_device[name] for name in plant.devices) >= 6
    assert {p.data_type for p in plant.points} == set(DATA_TYPES)  # the README says every type
    assert len({p.byte_order for p in plant.points if p.length > 1}) == 4
    assert {p.register_kind for p in plant.points} == {"coil", "discrete", "holding", "input"}


def test_resolves_addresses_orders_groups_and_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """\
points:
  - {device: press, name: temp, kind: input, address: 1, type: float32}
  - {device: press, name: hours, kind: holding, address: 10, type: uint32, byte_order: ABCD, group: slow}
  - {device: press, name: alarm_a, kind: holding, address: 20, type: bit, bit: 0}
  - {device: press, name: alarm_b, kind: holding, address: 20, type: bit, bit: 1}
  - {device: press, name: serial, kind: holding, address: 30, type: string, length: 4}
""",
    )
    plant = load_plant(path, default_host="ignored", default_port=1502)
    connection = plant.connections["gw"]
    assert (connection.host, connection.port) == ("10.0.0.5", 1502)
    assert plant.devices["press"].unreadable == [[49, 58]]  # stored as wire addresses
    points = {p.sensor: p for p in plant.points}
    assert points["temp"].address == 0  # address_base 1: register 1 is wire address 0
    assert points["temp"].byte_order == "CDAB"  # the device's order
    assert points["hours"].byte_order == "ABCD"  # the point's own order wins
    assert points["temp"].poll_group == "default"
    assert points["hours"].poll_group == "slow"
    assert points["serial"].length == 4
    assert points["hours"].end_address == 10


def test_every_error_is_reported_at_once_with_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
connections:
  - id: gw
devices:
  - {id: press, connection: gw, unit_id: 7, groups: {slow: 60}}
  - {id: lathe, connection: nowhere, unit_id: 8}              # E-unknown-connection
  - {id: mill, connection: gw, unit_id: 300}                  # E-unit-range
  - {id: drill, connection: gw}                               # E-unit-missing
points:
  - {device: press, name: temp, kind: input, address: 0, type: float32, group: fast}  # E-group
  - {device: press, name: temp, kind: input, address: 10, type: int16}               # E-duplicate
  - {device: press, name: pressure, kind: input, address: 1, type: float32}          # E-overlap
  - {device: press, name: big, kind: input, address: 65535, type: float32}           # E-width
  - {device: press, name: serial, kind: holding, address: 0, type: string}           # E-length
  - {device: press, name: flag, kind: holding, address: 5, type: bit, bit: 16}       # E-bit
  - {device: press, name: speed, kind: input, address: 20, type: uint16, scale: 0}   # E-scale
  - {device: ghost, name: temp, kind: input, address: 0, type: int16}                # E-device
  - {device: press, name: level, kind: input, address: 30, type: int16, sacle: 2}    # E-typo
""",
    )
    found = issues_of(path)
    expected = {
        "E-unknown-connection": ("devices[1].connection", "unknown connection 'nowhere'"),
        "E-unit-range": ("devices[2].unit_id", "less than or equal to 255"),
        "E-unit-missing": ("devices[3].unit_id", "Field required"),
        "E-group": ("points[0].group", "unknown group 'fast'"),
        "E-duplicate": ("points[1].name", "duplicate point"),
        "E-overlap": ("points[2].address", "overlap point 'temp'"),
        "E-width": ("points[3].address", "goes beyond 65535"),
        "E-length": ("points[4].length", "needs 'length'"),
        "E-bit": ("points[5].bit", "less than or equal to 15"),
        "E-scale": ("points[6].scale", "must not be 0"),
        "E-device": ("points[7].device", "unknown device 'ghost'"),
        "E-typo": ("points[8].sacle", "unknown field"),
    }
    assert len(found) == len(expected), found
    for marker, (field, text) in expected.items():
        line = line_of(path, marker)
        matches = [f for f in found if f[0] == line and f[1].startswith(field) and text in f[2]]
        assert matches, f"{marker}: no issue {field!r} / {text!r} on line {line}; got {found}"


def test_an_item_with_a_field_error_still_takes_part_in_the_checks_across_items(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
connections:
  - id: gw
    port: 70000                     # E-port
    reconnect_backoff_s: [60, 1]    # E-backoff
  - id: gw                          # E-duplicate-connection
devices:
  - id: press
    connection: gw
    unit_id: 7
    timeout: 3                      # E-typo
  - {id: lathe, connection: gw, unit_id: 300}                           # E-unit-range
  - {id: lathe, connection: gw, unit_id: 9}                             # E-duplicate-device
points:
  - {device: press, name: top, kind: holding, address: 65536, type: int16}  # E-width
  - {device: lathe, name: a, kind: input, address: 0, type: float32}
  - {device: lathe, name: b, kind: input, address: 1, type: int16}      # E-overlap
  - {device: lathe, name: c, kind: input, address: 5, type: int16, bit: 99}  # E-bit
""",
    )
    found = issues_of(path)
    expected = {
        "E-port": ("connections[0].port (gw)", "less than or equal to 65535"),
        "E-backoff": ("connections[0].reconnect_backoff_s (gw)", "got [60, 1]"),
        "E-duplicate-connection": ("connections[1].id (gw)", "duplicate connection id 'gw'"),
        "E-typo": ("devices[0].timeout (press)", "unknown field"),
        "E-unit-range": ("devices[1].unit_id (lathe)", "less than or equal to 255"),
        "E-duplicate-device": ("devices[2].id (lathe)", "duplicate device id 'lathe'"),
        "E-width": ("points[0].address (press/top)", "65536 + 1 register(s) goes beyond 65535"),
        "E-overlap": ("points[2].address (lathe/b)", "overlap point 'a'"),
        "E-bit": ("points[3].bit (lathe/c)", "less than or equal to 15"),
    }
    for marker, (field, text) in expected.items():
        line = line_of(path, marker)
        assert any(f[:2] == (line, field) and text in f[2] for f in found), (marker, found)
    assert len(found) == len(expected), found


def test_error_text_names_file_line_and_point(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """\
points:
  - {device: press, name: flag, kind: holding, address: 5, type: bit, bit: 17}
""",
    )
    with pytest.raises(PlantConfigError) as caught:
        load_plant(path)
    assert str(caught.value.issues[0]) == (
        f"{path}:7: points[0].bit (press/flag): Input should be less than or equal to 15 (got 17)"
    )


@pytest.mark.parametrize(
    ("point", "field", "text"),
    [
        ("{kind: coil, address: 1, type: uint16}", "type", "type must be 'bit'"),
        ("{kind: coil, address: 1, type: bit, bit: 2}", "bit", "registers only"),
        ("{kind: holding, address: 1, type: bit}", "bit", "needs 'bit'"),
        ("{kind: holding, address: 1, type: int16, bit: 2}", "bit", "type 'bit' only"),
        ("{kind: holding, address: 1, type: int16, length: 2}", "length", "'string' only"),
        ("{kind: holding, address: 0, type: int16}", "address", "below the device's address_base"),
        ("{kind: holding, address: 52, type: int32}", "address", "unreadable range [50, 59]"),
        (
            "{kind: holding, address: 1, type: int16, valid_range: [5, 1]}",
            "valid_range",
            "min < max",
        ),
        (
            "{kind: holding, address: 1, type: int16, warn_low: 9, warn_high: 3}",
            "warn_low",
            "below",
        ),
        (
            "{kind: holding, address: 1, type: int16, warn_high: 90, alarm_high: 80}",
            "warn_high",
            "warn_high (90) must not be above alarm_high (80)",
        ),
        (
            "{kind: holding, address: 1, type: int16, warn_low: 5, alarm_low: 10}",
            "warn_low",
            "warn_low (5) must not be below alarm_low (10)",
        ),
        (
            "{kind: holding, address: 1, type: int16, valid_range: [0, 100], alarm_high: 120}",
            "alarm_high",
            "alarm_high (120) is outside valid_range [0, 100]",
        ),
        (
            "{kind: holding, address: 1, type: int16, valid_range: [0, 100], warn_low: -0.5}",
            "warn_low",
            "warn_low (-0.5) is outside valid_range [0, 100]",
        ),
        (
            "{kind: holding, address: 1, type: string, length: 2, role: timestamp}",
            "role",
            "numeric",
        ),
        ("{kind: register, address: 1, type: int16}", "kind", "'coil', 'discrete', 'holding'"),
        ("{kind: holding, address: 1, type: float16}", "type", "'int16'"),
        ("{kind: holding, address: 1, type: int32, byte_order: ABDC}", "byte_order", "'ABCD'"),
        ("{kind: holding, address: -3, type: int16}", "address", "greater than or equal to 0"),
    ],
)
def test_point_shape_errors(tmp_path: Path, point: str, field: str, text: str) -> None:
    body = point.replace("{", "{device: press, name: p, ", 1)
    path = write(tmp_path, GOOD_HEAD + f"points:\n  - {body}\n")
    found = issues_of(path)
    assert any(f[1].startswith(f"points[0].{field}") and text in f[2] for f in found), found
    assert all(f[0] == 7 for f in found)


NUMBERS = """\
connections: [{id: gw, port: 502, retries: 1}]
devices: [{id: press, connection: gw, unit_id: 7, address_base: 0}]
points:
  - {device: press, name: flag, kind: holding, address: 5, type: bit, bit: 3, scale: 1}
  - {device: press, name: serial, kind: holding, address: 10, type: string, length: 2}
"""


@pytest.mark.parametrize(
    ("good", "bad", "got", "field", "line"),
    [
        ("unit_id: 7", "unit_id: true", True, "devices[0].unit_id (press)", 2),
        ("unit_id: 7", "unit_id: yes", True, "devices[0].unit_id (press)", 2),
        ("unit_id: 7", "unit_id: 1.5", 1.5, "devices[0].unit_id (press)", 2),
        ("unit_id: 7", "unit_id: 7.0", 7.0, "devices[0].unit_id (press)", 2),
        ("unit_id: 7", "unit_id: '7'", "7", "devices[0].unit_id (press)", 2),
        ("address_base: 0", "address_base: false", False, "devices[0].address_base (press)", 2),
        ("port: 502", "port: true", True, "connections[0].port (gw)", 1),
        ("retries: 1", "retries: 2.5", 2.5, "connections[0].retries (gw)", 1),
        ("address: 5", "address: true", True, "points[0].address (press/flag)", 4),
        ("bit: 3", "bit: true", True, "points[0].bit (press/flag)", 4),
        ("length: 2", "length: 1.5", 1.5, "points[1].length (press/serial)", 5),
    ],
)
def test_integers_must_be_written_as_integers(
    tmp_path: Path, good: str, bad: str, got: object, field: str, line: int
) -> None:
    path = write(tmp_path, NUMBERS.replace(good, bad, 1))
    assert issues_of(path) == [(line, field, f"Input should be a valid integer (got {got!r})")]


def test_float_fields_take_integers_but_not_booleans_or_strings(tmp_path: Path) -> None:
    path = write(tmp_path, NUMBERS.replace("scale: 1", "scale: true, offset: '1.5'"))
    assert [(f[1], f[2]) for f in issues_of(path)] == [
        ("points[0].offset (press/flag)", "Input should be a valid number (got '1.5')"),
        ("points[0].scale (press/flag)", "Input should be a valid number (got True)"),
    ]
    path = write(tmp_path, NUMBERS.replace("scale: 1", "scale: 2, valid_range: [0, 10]"))
    flag = load_plant(path).points[0]
    assert (flag.scale, flag.physical_min, flag.physical_max) == (2.0, 0.0, 10.0)


def test_limits_may_meet_each_other_and_the_valid_range(tmp_path: Path) -> None:
    point = (
        "{device: press, name: p, kind: holding, address: 1, type: int16, valid_range: [0, 100], "
        "alarm_low: 0, warn_low: 0, warn_high: 100, alarm_high: 100}"
    )
    [p] = load_plant(write(tmp_path, GOOD_HEAD + f"points:\n  - {point}\n")).points
    assert (p.alarm_low, p.warn_low, p.warn_high, p.alarm_high) == (0, 0, 100, 100)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "connections:\n  - id: gw\n    host: [unclosed\ndevices: []\n")
    found = issues_of(path)
    assert len(found) == 1
    line, field, message = found[0]
    assert field == "(file)"
    assert message.startswith("malformed YAML")
    assert line == 4


def test_duplicate_keys_and_unknown_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """\
points:
  - {device: press, name: a, kind: input, address: 1, type: int16, address: 2}
sensors: []
""",
    )
    found = issues_of(path)
    assert (7, "points[0].address", "key appears twice in one mapping") in found
    assert any(f[0] == 8 and f[1] == "sensors" and "unknown section" in f[2] for f in found)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("just text", "(file)", "must be a mapping"),
        ("connections: {id: gw}\ndevices: []\npoints: []\n", "connections", "must be a list"),
        ("devices:\n  - 42\npoints: []\n", "devices[0]", "must be a mapping"),
    ],
)
def test_wrong_shapes(tmp_path: Path, text: str, field: str, message: str) -> None:
    found = issues_of(write(tmp_path, text))
    assert any(f[1] == field and message in f[2] for f in found), found


def test_missing_file() -> None:
    with pytest.raises(PlantConfigError, match="no such file"):
        load_plant(Path("/nonexistent/plant.yaml"))


def test_duplicate_unit_on_one_connection(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """\
  - {id: press2, connection: gw, unit_id: 7}
points:
  - {device: press, name: a, kind: input, address: 1, type: int16}
""",
    )
    found = issues_of(path)
    assert any(
        f[1] == "devices[1].unit_id (press2)" and "already device 'press'" in f[2] for f in found
    )


def test_one_unit_behind_two_connection_entries_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
connections:
  - {id: gw, host: 10.0.0.5, port: 502}
  - {id: gw_again, host: 10.0.0.5, port: 502, timeout_s: 3}
  - {id: other_port, host: 10.0.0.5, port: 503}
devices:
  - {id: press, connection: gw, unit_id: 7}
  - {id: lathe, connection: gw_again, unit_id: 8}
  - {id: press_twin, connection: gw_again, unit_id: 7}  # E-same-unit
  - {id: drill, connection: other_port, unit_id: 7}
points:
  - {device: press, name: a, kind: input, address: 1, type: int16}
""",
    )
    assert issues_of(path) == [
        (
            line_of(path, "E-same-unit"),
            "devices[2].unit_id (press_twin)",
            "unit 7 on 10.0.0.5:502 is already device 'press': connections 'gw' and 'gw_again' "
            "are the same host and port, so both would read one unit",
        )
    ]


def test_connections_without_host_and_port_share_the_default_endpoint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
connections: [{id: a}, {id: b}]
devices:
  - {id: one, connection: a, unit_id: 1}
  - {id: two, connection: b, unit_id: 1}
points:
  - {device: one, name: p, kind: input, address: 0, type: int16}
""",
    )
    [(_, field, message)] = issues_of(path)
    assert field == "devices[1].unit_id (two)"
    assert message.startswith("unit 1 on 127.0.0.1:502 is already device 'one'")
