from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from pdm_orchestration.modbus.codec import BlockDecoder
from pdm_orchestration.modbus.machines import PlantSimulation
from pdm_orchestration.modbus.replay import ReplaySource, cmapss_plant, read_cmapss, write_plant
from pdm_orchestration.modbus.simulator import (
    BackgroundSimulator,
    Faults,
    LiveSource,
    PlcSimulator,
    maintenance_events,
)
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.events import UnknownDevice, record_events
from pdm_orchestration_tests.conftest import EXAMPLE_PLANT, PROJECT_ROOT
from pdm_orchestration_tests.modbus.helpers import free_port

START = datetime(2026, 3, 1, tzinfo=UTC)
CMAPSS = PROJECT_ROOT / "pdm_orchestration_tests" / "data" / "cmapss-mini"  # FD001's first engines


def example_plant(port: int):
    return load_plant(EXAMPLE_PLANT, default_port=port)


def read_all(client: ModbusTcpClient, plant, device: str) -> dict[str, float]:
    """Read every point of `device` one request per point, decoded by the plant's rules."""
    out = {}
    readers = {
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }
    for p in plant.points_of(device):
        response = readers[p.register_kind](p.address, count=p.length, device_id=p.unit_id)
        assert not response.isError(), (p, response)
        data = response.bits[:1] if p.register_kind in ("coil", "discrete") else response.registers
        decoded = BlockDecoder([p], p.address).decode(data)
        out[p.sensor] = decoded.texts[0] if p.data_type == "string" else float(decoded.values[0])
    return out


def test_serves_every_point_as_the_plant_file_encodes_it() -> None:
    port = free_port()
    plant = example_plant(port)
    simulation = PlantSimulation(plant, seed=5, start=START)
    source = LiveSource(simulation, speed=0.001)  # the clock stands (almost) still
    with BackgroundSimulator(PlcSimulator(plant, source)) as sim:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        client.connect()
        try:
            for device in ("pump_02", "motor_01", "compressor_01", "spindle_02"):
                served = read_all(client, plant, device)
                expected = simulation.values(device, clock=source.sim_epoch())
                for sensor, value in expected.items():
                    if isinstance(value, str):
                        assert served[sensor] == value
                    elif sensor == "clock":
                        assert abs(served[sensor] - value) <= 1
                    else:
                        p = next(q for q in plant.points_of(device) if q.sensor == sensor)
                        tolerance = (
                            abs(p.scale) if p.data_type.startswith(("int", "uint")) else 1e-3
                        )
                        assert served[sensor] == pytest.approx(value, rel=1e-5, abs=tolerance), (
                            sensor
                        )
        finally:
            client.close()
    assert sim.function_codes <= {1, 2, 3, 4}


def test_the_simulator_is_read_only_and_audits_every_request() -> None:
    port = free_port()
    plant = example_plant(port)
    source = LiveSource(PlantSimulation(plant, seed=1, start=START), speed=1)
    with BackgroundSimulator(PlcSimulator(plant, source)) as sim:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        client.connect()
        try:
            assert client.write_register(100, 7, device_id=1).isError()
            assert not client.read_holding_registers(100, count=2, device_id=1).isError()
        finally:
            client.close()
    assert sim.audit[(1, 6)] == 1  # the write was seen, and refused
    assert sim.audit[(1, 3)] == 1


def test_same_seed_same_life_other_seed_other_life() -> None:
    plant = example_plant(free_port())
    lives = []
    for seed in (11, 11, 12):
        simulation = PlantSimulation(plant, seed=seed, start=START)
        simulation.advance_to(START.timestamp() + 5 * 24 * 3600)
        lives.append(
            ([(r.device, r.time, r.kind) for r in simulation.records], simulation.values("pump_01"))
        )
    assert lives[0] == lives[1]
    assert lives[0] != lives[2]


def test_machines_wear_fail_and_get_repaired() -> None:
    plant = example_plant(free_port())
    simulation = PlantSimulation(plant, seed=3, start=START, mean_life_hours=48)
    temps, end = [], START + timedelta(days=12)
    while simulation.now < end.timestamp():
        simulation.advance_to(simulation.now + 600)
        machine = simulation.machines["pump_01"]
        if machine.running and machine.down_until is None:
            temps.append(
                (simulation.time, machine.wear, simulation.values("pump_01")["bearing_temp"])
            )
    kinds = {r.kind for r in simulation.records}
    assert {"failure", "repair"} <= kinds
    failures = [r for r in simulation.records if r.device == "pump_01" and r.kind == "failure"]
    assert failures, "pump_01 should fail within 12 days at a 48 h mean life"
    first = failures[0].time
    before = [t for when, _, t in temps if first - timedelta(hours=6) <= when < first]
    healthy = [t for _, wear, t in temps if wear < 0.2]  # after a repair
    assert np.mean(before) > np.mean(healthy) + 10  # the bearing runs hot before it fails
    repairs = [r for r in simulation.records if r.device == "pump_01" and r.kind == "repair"]
    assert repairs and repairs[0].time > first


def test_maintenance_events_are_recorded_once(engine) -> None:
    plant = example_plant(free_port())
    apply_plant(engine, plant)
    simulation = PlantSimulation(plant, seed=3, start=START, mean_life_hours=24)
    simulation.advance_to(START.timestamp() + 4 * 24 * 3600)
    events = maintenance_events(simulation)
    assert any(e.kind == "failure" for e in events)
    assert record_events(engine, events) == len(events)
    assert record_events(engine, events) == 0
    with pytest.raises(UnknownDevice, match="ghost"):
        record_events(engine, [events[0].__class__("ghost", START, "failure")])


def test_fault_injection_exception_and_busy_gateway() -> None:
    port = free_port()
    plant = example_plant(port)
    source = LiveSource(PlantSimulation(plant, seed=1, start=START), speed=1)
    faults = Faults(exception={2: 11}, min_request_gap_s=0.2)
    with BackgroundSimulator(PlcSimulator(plant, source, faults=faults)):
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        client.connect()
        try:
            assert client.read_input_registers(0, count=2, device_id=2).exception_code == 11
            assert not client.read_input_registers(0, count=2, device_id=1).isError()
            assert client.read_input_registers(0, count=2, device_id=1).exception_code == 6
        finally:
            client.close()


def test_replay_serves_one_cycle_per_poll_and_writes_its_plant(tmp_path: Path) -> None:
    frame = read_cmapss(CMAPSS / "train_FD001.txt")
    frame = frame[frame["unit"] <= 3]
    port = free_port()
    plant_file = tmp_path / "cmapss.yaml"
    write_plant(cmapss_plant(frame, port=port), plant_file, CMAPSS / "train_FD001.txt")
    plant = load_plant(plant_file)
    assert sorted(plant.devices) == ["engine_001", "engine_002", "engine_003"]
    assert len(plant.points_of("engine_002")) == 25
    source = ReplaySource(frame, start=START, cycle_seconds=600)
    with BackgroundSimulator(PlcSimulator(plant, source)):
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        client.connect()
        try:
            points = plant.points_of("engine_002")
            decoder = BlockDecoder(points, 0)
            served = []
            for _ in range(3):
                response = client.read_input_registers(0, count=50, device_id=2)
                served.append(decoder.decode(response.registers).values)
        finally:
            client.close()
    rows = frame[frame["unit"] == 2].head(3)
    for cycle, values in enumerate(served, start=1):
        assert values[0] == START.timestamp() + cycle * 600  # the clock carries the cycle time
        expected = rows.iloc[cycle - 1][[p.sensor for p in points[1:]]].to_numpy(dtype=float)
        assert np.allclose(values[1:], expected, rtol=1e-6)  # float32 registers
