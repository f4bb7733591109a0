"""Polling PLCs: one serialised connection per endpoint, every endpoint concurrently.

Each endpoint (host and port) gets one pymodbus async client and one task that sends its reads one
after the other, with the configured pause between requests. Endpoints run concurrently, so a dead
or slow endpoint never holds up another. Within an endpoint a unit that did not answer is skipped
for the rest of the cycle; a unit that fails `unit_fail_cycles` cycles in a row is skipped for
`unit_cooldown_s`, then tried again. A lost connection is re-opened (and the read sent again) at
once; a connection that cannot be opened is retried with exponential backoff and jitter.

Every response is checked against its request (function code, unit id, register or bit count)
before it is decoded. A request that got no answer in time, an answer that is not to it, or an
answer that came only after a retry, closes the connection: a late reply can then never be taken
for the answer to another request (devices and gateways that answer late, or label a late answer
with the next request's transaction id, exist). The next request opens a fresh connection, with
the usual backoff.

Every scheduled read yields one reading per point, with a quality code: `good`, `bad_timeout`,
`bad_exception_<code>`, `bad_decode` (NaN, the sentinel, or outside the valid range), `bad_clock`
(the device's clock went backwards). Every span in which a device or point could not be read
becomes a gap with its reason. A device clock that reads backwards on `CLOCK_RESET_POLLS`
consecutive polls, moving forward from its new value, was reset: it is accepted as the new clock.

The client can only send function codes 1-4: reads go through `READERS`, and nothing else of the
client is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from pdm_orchestration.modbus.codec import BAD_CLOCK, BAD_TIMEOUT, GOOD, bad_exception
from pdm_orchestration.modbus.planner import Block, EndpointPlan
from pdm_orchestration.plant.config import BIT_KINDS

log = logging.getLogger(__name__)

# A device clock read this many polls in a row behind its newest value, and moving forward from
# where it went back to, was reset: it becomes the clock again.
CLOCK_RESET_POLLS = 3

# The only requests this module can send: Modbus function codes 1, 2, 3 and 4.
READERS = {
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}


class _Read(NamedTuple):
    """What a read gave: data, or None with the reason for the gap."""

    data: list[int] | list[bool] | None
    quality: str
    reason: str  # of the gap ("" when data came)
    detail: str | None


class Reading(NamedTuple):
    """One value read from a device (value NaN when there is none)."""

    device: str
    sensor: str
    ts: datetime
    value: float
    quality: str
    text: str | None


@dataclass
class Gap:
    """A span in which a device (sensor None) or one point could not be read."""

    device: str
    sensor: str | None
    reason: str
    start: datetime
    end: datetime
    detail: str | None = None


Emit = Callable[[list[Reading], list[Gap]], Awaitable[None]]


class GapTracker:
    """Open spans of failure, extended while the failure lasts and closed by a good read."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str | None, str], Gap] = {}
        self.closed: list[Gap] = []

    def fail(
        self, device: str, sensor: str | None, reason: str, ts: datetime, detail: str | None
    ) -> None:
        key = (device, sensor, reason)
        gap = self.open.get(key)
        if gap is None:
            self.open[key] = Gap(device, sensor, reason, ts, ts, detail)
        else:
            gap.end = max(gap.end, ts)

    def ok(
        self, device: str, sensors: set[str] | None = None, keep: frozenset[str] = frozenset()
    ) -> None:
        """Close the device's spans (device-level ones, and those of `sensors`), but not those
        with a reason in `keep` (a failure that still lasts)."""
        for key in [k for k in self.open if k[0] == device and k[2] not in keep]:
            if key[1] is None or sensors is None or key[1] in sensors:
                self.closed.append(self.open.pop(key))

    def take_closed(self) -> list[Gap]:
        closed, self.closed = self.closed, []
        return closed

    def close_all(self) -> list[Gap]:
        self.closed.extend(self.open.values())
        self.open.clear()
        return self.take_closed()


@dataclass
class PollStats:
    """What a polling run did, for logs and asset metadata."""

    requests: int = 0
    failed_requests: int = 0
    readings: int = 0
    bad_readings: int = 0
    cycles: int = 0
    latencies_s: list[float] = field(default_factory=list)
    devices_ok: set[str] = field(default_factory=set)  # gave data at least once

    def latency_ms(self, quantile: float) -> float | None:
        if not self.latencies_s:
            return None
        return float(np.quantile(self.latencies_s, quantile) * 1000)


@dataclass
class _UnitState:
    failed_cycles: int = 0
    cooldown_until: float = 0.0
    last_clock: float | None = None
    # Consecutive polls that read the clock behind `last_clock`; the first and last such reading.
    behind_polls: int = 0
    behind_first: float = 0.0
    behind_last: float = 0.0


def _now() -> datetime:
    return datetime.now(UTC)


class EndpointPoller:
    """Polls every block of one endpoint on its own schedule, over one connection."""

    def __init__(
        self,
        plan: EndpointPlan,
        emit: Emit,
        stats: PollStats,
        *,
        client_factory: Callable[..., Any] = AsyncModbusTcpClient,
    ) -> None:
        self.plan = plan
        self.emit = emit
        self.stats = stats
        self.connection = plan.connection
        self.client = client_factory(
            plan.host,
            port=plan.port,
            timeout=self.connection.timeout_s,
            retries=self.connection.retries,
            reconnect_delay=0,  # reconnects are ours: backoff with jitter, below
        )
        self.gaps = GapTracker()
        self.units: dict[str, _UnitState] = defaultdict(_UnitState)
        self._connect_failures = 0
        self._next_connect = 0.0
        self._last_request = 0.0
        self._generation = 0  # counts successful connects
        self._request_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._by_due: dict[tuple[str, str], list[Block]] = defaultdict(list)
        for block in plan.blocks:
            self._by_due[(block.device, block.poll_group)].append(block)
        self._clock_block = {
            block.device: block
            for block in plan.blocks
            if any(p.role == "timestamp" for p in block.points)
        }

    async def run(self, deadline: float | None, stop: asyncio.Event) -> None:
        """Poll until `deadline` (monotonic seconds) or until `stop` is set."""
        next_due = {key: time.monotonic() for key in self._by_due}
        try:
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                due = [key for key, at in next_due.items() if at <= now]
                if not due:
                    wake = min(next_due.values())
                    if deadline is not None:
                        wake = min(wake, deadline)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(0.0, wake - now))
                    continue
                for key in due:
                    interval = self.plan.intervals[key]
                    # A late cycle is not made up for: the next one is an interval from now.
                    next_due[key] = max(next_due[key] + interval, now + interval * 0.5)
                await self._cycle(due)
        finally:
            await self.emit([], self.gaps.close_all())
            self.client.close()

    async def _cycle(self, due: list[tuple[str, str]]) -> None:
        self.stats.cycles += 1
        readings: list[Reading] = []
        by_device: dict[str, list[Block]] = defaultdict(list)
        for key in due:
            by_device[key[0]].extend(self._by_due[key])
        polls = []
        for device, blocks in by_device.items():
            clock = self._clock_block.get(device)
            if clock is not None:
                blocks = [clock, *(b for b in blocks if b is not clock)]
            polls.append(self._poll_device(device, blocks))
        for device_readings in await asyncio.gather(*polls):
            readings += device_readings
        self.stats.readings += len(readings)
        self.stats.bad_readings += sum(1 for r in readings if r.quality != "good")
        await self.emit(readings, self.gaps.take_closed())

    async def _poll_device(self, device: str, blocks: list[Block]) -> list[Reading]:
        unit = self.units[device]
        now = time.monotonic()
        if unit.cooldown_until > now:
            self.gaps.fail(device, None, "unit_cooldown", _now(), None)
            return []
        if not await self._connected():
            ts = _now()
            self.gaps.fail(device, None, "connect_failed", ts, self.plan.key)
            return _all_bad(blocks, ts, BAD_TIMEOUT)
        readings: list[Reading] = []
        device_ts: datetime | None = None
        answered = got_data = False
        silent: tuple[str, str] | None = None  # (gap reason, detail) once the unit did not answer
        good_sensors: set[str] = set()
        for block in blocks:
            if silent is not None:
                # A unit that did not answer is not asked again this cycle: its points are a gap.
                ts = _now()
                self._fail_points(block, silent[0], ts, silent[1])
                readings += _all_bad([block], ts, BAD_TIMEOUT)
                continue
            result = await self._read(block)
            ts = _now()
            if result.data is None:
                self._fail_points(block, result.reason, ts, result.detail)
                readings += _all_bad([block], ts, result.quality)
                if result.quality == BAD_TIMEOUT:
                    silent = (result.reason, f"not asked this cycle after: {result.detail}")
                else:
                    answered = True
                continue
            answered = got_data = True
            decoded = block.decoder.decode(result.data)
            if block is self._clock_block.get(device):
                device_ts = self._device_time(device, block, decoded.values, ts)
            stamp = device_ts or ts
            values, qualities, texts = decoded.values.tolist(), decoded.quality, decoded.texts
            if device_ts is None and device in self._clock_block:
                # The device clock was unreadable or went backwards.
                qualities = [BAD_CLOCK if q == GOOD else q for q in qualities]
            readings += [
                Reading(device, sensor, stamp, values[i], qualities[i], texts[i])
                for i, sensor in block.sensors
            ]
            good_sensors.update(sensor for _, sensor in block.sensors)
        self._settle_unit(device, unit, answered)
        if answered:
            # A clock still behind keeps its gap open until it is back or accepted as reset.
            keep = frozenset({"clock_backwards"}) if unit.behind_polls else frozenset()
            self.gaps.ok(device, good_sensors, keep)
        if got_data:
            self.stats.devices_ok.add(device)
        return readings

    def _fail_points(self, block: Block, reason: str, ts: datetime, detail: str | None) -> None:
        for _, sensor in block.sensors:
            self.gaps.fail(block.device, sensor, reason, ts, detail)

    def _device_time(
        self, device: str, block: Block, values: np.ndarray, received: datetime
    ) -> datetime | None:
        """The device's own clock, or None (the reading time is used) when it went backwards.

        A clock read behind its newest value on `CLOCK_RESET_POLLS` polls in a row, never going
        back from where it went back to and having moved on, was reset: it becomes the clock.
        """
        index = next(i for i, p in enumerate(block.points) if p.role == "timestamp")
        clock = float(values[index])
        unit = self.units[device]
        if not np.isfinite(clock):
            return None
        if unit.last_clock is not None and clock < unit.last_clock:
            if unit.behind_polls and clock >= unit.behind_last:
                unit.behind_polls += 1
            else:  # the first read behind, or it went back again: count anew
                unit.behind_polls, unit.behind_first = 1, clock
            unit.behind_last = clock
            detail = f"device clock went back from {unit.last_clock:.0f} to {clock:.0f}"
            self.gaps.fail(device, None, "clock_backwards", received, detail)
            reset = unit.behind_polls >= CLOCK_RESET_POLLS and clock > unit.behind_first
            if not reset:
                if unit.behind_polls == 1:
                    log.warning("%s: %s", device, detail)
                return None
            log.warning(
                "%s: device clock reset: behind %.0f on %d polls in a row and moving forward, "
                "from %.0f to %.0f; it is the clock again",
                device,
                unit.last_clock,
                unit.behind_polls,
                unit.behind_first,
                clock,
            )
            gap = self.gaps.open[(device, None, "clock_backwards")]
            gap.detail = f"{gap.detail}; taken as reset at {clock:.0f}"
        unit.behind_polls = 0
        unit.last_clock = clock
        return datetime.fromtimestamp(clock, UTC)

    def _settle_unit(self, device: str, unit: _UnitState, answered: bool) -> None:
        if answered:
            unit.failed_cycles = 0
            return
        unit.failed_cycles += 1
        if unit.failed_cycles >= self.connection.unit_fail_cycles:
            unit.cooldown_until = time.monotonic() + self.connection.unit_cooldown_s
            unit.failed_cycles = 0
            log.warning(
                "%s (unit %s on %s) failed %d cycles in a row: skipped for %.0f s",
                device,
                self.plan.devices[device],
                self.plan.key,
                self.connection.unit_fail_cycles,
                self.connection.unit_cooldown_s,
            )

    async def _connected(self) -> bool:
        async with self._connect_lock:
            return await self._connect()

    async def _connect(self) -> bool:
        if self.client.connected:
            return True
        now = time.monotonic()
        if now < self._next_connect:
            return False
        if await self.client.connect():
            if self._connect_failures:
                log.info("%s: connected again", self.plan.key)
            self._connect_failures = 0
            self._generation += 1
            return True
        self._connect_failures += 1
        low = self.connection.reconnect_backoff_min_s
        high = self.connection.reconnect_backoff_max_s
        delay = min(high, low * 2 ** (self._connect_failures - 1)) * random.uniform(0.5, 1.0)
        self._next_connect = now + delay
        log.warning("%s: cannot connect; next try in %.1f s", self.plan.key, delay)
        return False

    async def _reconnect(self, generation: int) -> bool:
        """Open the connection again, unless another read already did since `generation`."""
        async with self._connect_lock:
            if self._generation != generation:
                return self.client.connected
            self.client.close()
            self._next_connect = 0.0
            return await self._connect()

    async def _read(self, block: Block) -> _Read:
        """The block's registers or bits, or why there are none (quality, gap reason, detail).

        Devices of an endpoint are polled by concurrent tasks; the request lock sends their reads
        one at a time (with the configured pause), while the others decode what they got.
        """
        read = getattr(self.client, READERS[block.kind])
        for attempt in (1, 2):
            generation = self._generation
            response: Any = None
            failure: str | None = None
            async with self._request_lock:
                if not self.client.connected and not await self._connected():
                    return _Read(None, BAD_TIMEOUT, "connect_failed", self.plan.key)
                await self._pause()
                started = time.monotonic()
                self.stats.requests += 1
                try:
                    response = await read(block.start, count=block.count, device_id=block.unit_id)
                    failure = wrong_reply(block, response)
                except ModbusException as exc:
                    failure = _first_line(exc)
                finally:
                    self._last_request = time.monotonic()
                dropped = False
                if self.client.connected and (failure is not None or response.retries):
                    # No answer in time, an answer that is not to this request, or one that came
                    # only after a retry: a late reply may still arrive. A fresh connection makes
                    # sure it is never taken for the answer to another request.
                    self.client.close()
                    dropped = True
            # Let the next device's request go out before this one's answer is decoded.
            await asyncio.sleep(0)
            if failure is not None:
                self.stats.failed_requests += 1
                if response is not None:
                    log.warning(
                        "%s: %s (unit %d, %s %d+%d): not used, connection dropped",
                        self.plan.key,
                        failure,
                        block.unit_id,
                        block.kind,
                        block.start,
                        block.count,
                    )
                elif not dropped and attempt == 1 and await self._reconnect(generation):
                    # The device closed the connection (idle timeout, restart): reopen, send again.
                    continue
                return _Read(None, BAD_TIMEOUT, "timeout", failure)
            self.stats.latencies_s.append(self._last_request - started)
            if response.isError():
                self.stats.failed_requests += 1
                code = int(getattr(response, "exception_code", 0))
                return _Read(
                    None,
                    bad_exception(code),
                    f"exception_{code}",
                    f"exception {code} at {block.kind} {block.start}",
                )
            if block.kind in BIT_KINDS:
                return _Read(list(response.bits[: block.count]), GOOD, "", None)
            return _Read(list(response.registers), GOOD, "", None)
        return _Read(None, BAD_TIMEOUT, "timeout", "connection lost")  # pragma: no cover

    async def _pause(self) -> None:
        pause = self.connection.pause_between_requests_ms / 1000
        if pause:
            wait = self._last_request + pause - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)


def wrong_reply(block: Block, response: Any) -> str | None:
    """Why `response` cannot be the answer to the read of `block` (None: it can be)."""
    code = int(getattr(response, "function_code", 0))
    if code & 0x7F != block.function_code:
        return f"reply with function code {code} to a read with function code {block.function_code}"
    unit = getattr(response, "dev_id", None)
    if unit != block.unit_id:
        return f"reply from unit {unit} to a read of unit {block.unit_id}"
    if response.isError():
        return None
    if block.kind in BIT_KINDS:
        got, wanted = len(response.bits), -(-block.count // 8) * 8  # whole bytes of bits
    else:
        got, wanted = len(response.registers), block.count
    if got != wanted:
        return f"reply with {got} values to a read of {block.count} {block.kind} values"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _all_bad(blocks: list[Block], ts: datetime, quality: str) -> list[Reading]:
    return [
        Reading(b.device, sensor, ts, float("nan"), quality, None)
        for b in blocks
        for _, sensor in b.sensors
    ]
