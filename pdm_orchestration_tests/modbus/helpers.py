"""Small plants and helpers for the Modbus tests."""

import socket
import textwrap
from pathlib import Path

from pdm_orchestration.plant.config import Plant, load_plant


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plant_from(
    tmp_path: Path, text: str, *, port: int | None = None, name: str = "plant.yaml"
) -> Plant:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_plant(path, default_port=port or free_port())


def point(device: str = "d", name: str = "p", **fields: object) -> dict:
    return {"device": device, "name": name, **fields}


TWO_LINES = """\
connections:
  - {{id: line_a, port: {port_a}, timeout_s: 0.3, retries: 0, unit_fail_cycles: 3, unit_cooldown_s: 60,
     reconnect_backoff_s: [0.2, 1]}}
  - {{id: line_b, port: {port_b}, timeout_s: 0.3, retries: 0, reconnect_backoff_s: [0.2, 1]}}
devices:
  - {{id: pump_a, connection: line_a, unit_id: 1, kind: pump, byte_order: CDAB}}
  - {{id: motor_a, connection: line_a, unit_id: 2, kind: motor, address_base: 1}}
  - {{id: pump_b, connection: line_b, unit_id: 1, kind: pump, byte_order: BADC}}
points:
  - {{device: pump_a, name: clock, kind: input, address: 0, type: uint32, byte_order: ABCD, role: timestamp}}
  - {{device: pump_a, name: bearing_temp, kind: input, address: 2, type: float32, valid_range: [-40, 200], warn_high: 80, alarm_high: 95}}
  - {{device: pump_a, name: flow, kind: input, address: 4, type: uint16, scale: 0.1, valid_range: [0, 500], nan_value: 65535}}
  - {{device: pump_a, name: running, kind: coil, address: 0, type: bit}}
  - {{device: motor_a, name: clock, kind: input, address: 1, type: uint32, role: timestamp}}
  - {{device: motor_a, name: current, kind: input, address: 3, type: float32, valid_range: [0, 400], warn_high: 90, alarm_high: 110}}
  - {{device: motor_a, name: torque, kind: holding, address: 11, type: int16, scale: 0.1, valid_range: [-500, 500]}}
  - {{device: pump_b, name: clock, kind: input, address: 0, type: uint32, role: timestamp}}
  - {{device: pump_b, name: vibration_rms, kind: input, address: 2, type: float32, valid_range: [0, 50], warn_high: 7.1, alarm_high: 11.2}}
  - {{device: pump_b, name: model, kind: holding, address: 20, type: string, length: 3}}
"""


def two_lines_text(port_a: int, port_b: int, *, with_pump_b: bool = True) -> str:
    """TWO_LINES for these ports; without pump_b, nothing is served on line_b."""
    text = TWO_LINES.format(port_a=port_a, port_b=port_b)
    if with_pump_b:
        return text
    return "\n".join(line for line in text.splitlines() if "pump_b" not in line) + "\n"
