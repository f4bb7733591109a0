"""Checking replies against their requests, with pymodbus's own response PDUs."""

from pathlib import Path

import pytest
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from pdm_orchestration.modbus.planner import plan_plant
from pdm_orchestration.modbus.poller import wrong_reply
from pdm_orchestration_tests.modbus.helpers import plant_from


@pytest.fixture
def blocks(tmp_path: Path) -> dict[str, object]:
    plant = plant_from(
        tmp_path,
        """\
connections: [{id: gw}]
devices: [{id: d, connection: gw, unit_id: 4}]
points:
  - {device: d, name: a, kind: input, address: 0, type: float32}
  - {device: d, name: b, kind: input, address: 2, type: uint16}
  - {device: d, name: f, kind: discrete, address: 0, type: bit}
  - {device: d, name: g, kind: discrete, address: 8, type: bit}
""",
    )
    (endpoint,) = plan_plant(plant, 1.0)
    return {block.kind: block for block in endpoint.blocks}


def test_the_answer_to_the_request_is_accepted(blocks) -> None:  # type: ignore[no-untyped-def]
    assert blocks["input"].count == 3 and blocks["discrete"].count == 9
    assert (
        wrong_reply(blocks["input"], ReadInputRegistersResponse(dev_id=4, registers=[1, 2, 3]))
        is None
    )
    assert (
        wrong_reply(blocks["discrete"], ReadDiscreteInputsResponse(dev_id=4, bits=[True] * 16))
        is None
    )
    # A Modbus exception is an answer (the quality code says which).
    assert wrong_reply(blocks["input"], ExceptionResponse(4, 2, device_id=4)) is None


@pytest.mark.parametrize(
    ("kind", "response", "says"),
    [
        ("discrete", ReadInputRegistersResponse(dev_id=4, registers=[1, 2, 3]), "function code 4"),
        ("discrete", ReadCoilsResponse(dev_id=4, bits=[True] * 16), "function code 1"),
        ("input", ReadHoldingRegistersResponse(dev_id=4, registers=[1, 2, 3]), "function code 3"),
        ("input", ExceptionResponse(3, 2, device_id=4), "function code 131"),
        ("input", ReadInputRegistersResponse(dev_id=5, registers=[1, 2, 3]), "from unit 5"),
        ("input", ReadInputRegistersResponse(dev_id=4, registers=[1, 2]), "2 values"),
        ("input", ReadInputRegistersResponse(dev_id=4, registers=[]), "0 values"),
        ("input", ReadInputRegistersResponse(dev_id=4, registers=[1] * 4), "4 values"),
        ("discrete", ReadDiscreteInputsResponse(dev_id=4, bits=[True] * 8), "8 values"),
        ("discrete", ReadDiscreteInputsResponse(dev_id=4, bits=[True] * 24), "24 values"),
    ],
)
def test_a_reply_that_is_not_the_answer_is_refused(blocks, kind, response, says) -> None:  # type: ignore[no-untyped-def]
    problem = wrong_reply(blocks[kind], response)
    assert problem is not None and says in problem
