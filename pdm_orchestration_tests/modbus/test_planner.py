from pathlib import Path

from pdm_orchestration.modbus.planner import plan_blocks, plan_plant
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT
from pdm_orchestration_tests.modbus.helpers import plant_from

HEAD = """\
connections:
  - {id: gw, port: 1502, max_registers_per_read: 20, max_gap_fill: 4}
devices:
  - {id: d, connection: gw, unit_id: 1, unreadable: [[30, 31]], groups: {slow: 60}}
"""


def spans(blocks) -> list[tuple[str, int, int, list[str]]]:
    return [(b.kind, b.start, b.count, [p.sensor for p in b.points]) for b in blocks]


def test_neighbours_merge_holes_are_bridged_up_to_max_gap_fill(tmp_path: Path) -> None:
    plant = plant_from(
        tmp_path,
        HEAD
        + """\
points:
  - {device: d, name: a, kind: input, address: 0, type: float32}
  - {device: d, name: b, kind: input, address: 2, type: int16}
  - {device: d, name: c, kind: input, address: 7, type: int16}
  - {device: d, name: e, kind: input, address: 13, type: int16}
""",
    )
    blocks = plan_plant(plant, 10)[0].blocks
    # hole 3..6 (4 registers) bridged; hole 8..12 (5 registers) is not
    assert spans(blocks) == [("input", 0, 8, ["a", "b", "c"]), ("input", 13, 1, ["e"])]


def test_never_across_unreadable_ranges(tmp_path: Path) -> None:
    plant = plant_from(
        tmp_path,
        HEAD
        + """\
points:
  - {device: d, name: a, kind: holding, address: 28, type: int16}
  - {device: d, name: b, kind: holding, address: 32, type: int16}
""",
    )
    assert spans(plan_plant(plant, 10)[0].blocks) == [
        ("holding", 28, 1, ["a"]),
        ("holding", 32, 1, ["b"]),
    ]


def test_block_size_limit_and_points_are_never_split(tmp_path: Path) -> None:
    lines = [
        f"  - {{device: d, name: p{i}, kind: input, address: {2 * i}, type: float32}}"
        for i in range(15)
    ]
    plant = plant_from(tmp_path, HEAD + "points:\n" + "\n".join(lines) + "\n")
    blocks = plan_plant(plant, 10)[0].blocks
    assert [b.count for b in blocks] == [20, 10]
    assert all(b.count <= 20 for b in blocks)
    assert sum(len(b.points) for b in blocks) == 15
    for block in blocks:
        assert all(block.start <= p.address and p.end_address <= block.end for p in block.points)


def test_separate_requests_per_kind_group_and_unit(tmp_path: Path) -> None:
    plant = plant_from(
        tmp_path,
        HEAD
        + """\
  - {id: e, connection: gw, unit_id: 2}
points:
  - {device: d, name: a, kind: input, address: 0, type: int16}
  - {device: d, name: b, kind: holding, address: 1, type: int16}
  - {device: d, name: c, kind: input, address: 1, type: int16, group: slow}
  - {device: d, name: run, kind: coil, address: 0, type: bit}
  - {device: d, name: fault, kind: coil, address: 9, type: bit}
  - {device: e, name: a, kind: input, address: 0, type: int16}
""",
    )
    plan = plan_plant(plant, 10)[0]
    keys = sorted((b.unit_id, b.kind, b.poll_group, b.start, b.count) for b in plan.blocks)
    assert keys == [
        (1, "coil", "default", 0, 1),
        (1, "coil", "default", 9, 1),  # hole of 8 bits > max_gap_fill 4
        (1, "holding", "default", 1, 1),
        (1, "input", "default", 0, 1),
        (1, "input", "slow", 1, 1),
        (2, "input", "default", 0, 1),
    ]
    assert plan.intervals == {("d", "default"): 10, ("d", "slow"): 60, ("e", "default"): 10}
    assert {b.function_code for b in plan.blocks} == {1, 3, 4}


def test_connections_sharing_host_and_port_share_one_endpoint(tmp_path: Path) -> None:
    plant = plant_from(
        tmp_path,
        """\
connections:
  - {id: a, host: 10.0.0.1, port: 502}
  - {id: b, host: 10.0.0.1, port: 502}
  - {id: c, host: 10.0.0.1, port: 503}
devices:
  - {id: x, connection: a, unit_id: 1}
  - {id: y, connection: b, unit_id: 2}
  - {id: z, connection: c, unit_id: 1}
points:
  - {device: x, name: v, kind: input, address: 0, type: int16}
  - {device: y, name: v, kind: input, address: 0, type: int16}
  - {device: z, name: v, kind: input, address: 0, type: int16}
""",
    )
    plans = plan_plant(plant, 10)
    assert [(p.key, sorted(p.devices)) for p in plans] == [
        ("10.0.0.1:502", ["x", "y"]),
        ("10.0.0.1:503", ["z"]),
    ]


def test_example_plant_needs_few_requests() -> None:
    plant = load_plant(EXAMPLE_PLANT)
    blocks = plan_plant(plant, 10)[0].blocks
    per_device = {d: sum(1 for b in blocks if b.device == d) for d in plant.devices}
    assert max(per_device.values()) <= 5  # ~10 points in at most 5 requests per device
    assert len(blocks) < len(plant.points) / 2


def test_plan_blocks_of_nothing_is_nothing() -> None:
    assert plan_blocks([], max_registers=125, max_gap_fill=10, unreadable=[]) == []
