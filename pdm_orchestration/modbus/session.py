"""A polling session: every endpoint of a plant polled, its readings and gaps stored.

The same core serves `pdm-orch ingest --once` and the `plc_readings` asset (a bounded session) and
`pdm-orch collect` (a session without end, for sub-minute sampling). Batches are written by a task
of their own, in a worker thread, so database writes overlap the Modbus reads; a batch the
database cannot take goes to the local spool and is forwarded when the database is back.
Polling never waits for the database: while the writer is behind (a slow or hung database, its
queue full), batches go straight to the spool.

A session starts by applying the plant to the registry (`open_store`); the ids the registry gave
are cached next to the spool. When the database cannot be reached at the start, the session polls
with the cached ids, provided they hold every point of the plant unchanged, and everything goes to
the spool until the database is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.modbus.planner import plan_plant
from pdm_orchestration.modbus.poller import EndpointPoller, Gap, PollStats, Reading
from pdm_orchestration.plant.config import Plant, Point
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage.readings import ReadingRow, ReadingWriter
from pdm_orchestration.storage.schema import devices, plc_register_map
from pdm_orchestration.storage.spool import Spool

log = logging.getLogger(__name__)


RegistryIds = dict[tuple[str, str], tuple[int, int]]  # (device, sensor) -> (device id, map id)


class RegistryMismatch(RuntimeError):
    """The database's register map does not hold the plant's points (apply the plant first)."""


class RegistryUnavailable(RuntimeError):
    """The database cannot be reached and no cached registry holds the plant."""


@dataclass
class StoreStats:
    written: int = 0  # new rows in sensor_readings
    spooled: int = 0  # readings sent to the spool while the database was away
    forwarded: int = 0  # readings moved from the spool to the database
    gaps: int = 0
    write_errors: int = 0


class IngestStore:
    """Turns readings into rows (device and register-map ids) and stores them, or spools them."""

    def __init__(
        self, engine: Engine, plant: Plant, spool: Spool, *, ids: RegistryIds | None = None
    ) -> None:
        """`ids`: the registry's ids for the plant's points (default: asked of the database)."""
        self.writer = ReadingWriter(engine)
        self.spool = spool
        self.stats = StoreStats()
        self.registry_cached_at: str | None = None  # set when the ids came from the cache
        self.ids = self._registry_ids(engine, plant) if ids is None else ids
        self._stats_lock = threading.Lock()  # the writer thread and the spooling one count

    @staticmethod
    def _registry_ids(engine: Engine, plant: Plant) -> RegistryIds:
        query = (
            sa.select(
                devices.c.name, plc_register_map.c.sensor, devices.c.id, plc_register_map.c.id
            )
            .join(devices, devices.c.id == plc_register_map.c.device_id)
            .where(plc_register_map.c.valid_to.is_(None))
        )
        with engine.connect() as connection:
            ids = {(r[0], r[1]): (r[2], r[3]) for r in connection.execute(query)}
        missing = [
            f"{p.device}/{p.sensor}" for p in plant.points if (p.device, p.sensor) not in ids
        ]
        if missing:
            raise RegistryMismatch(
                f"{len(missing)} point(s) of {plant.source} are not in the registry "
                f"(first: {missing[0]}): run `pdm-orch plant apply`"
            )
        return ids

    def rows(self, readings: list[Reading]) -> list[ReadingRow]:
        out = []
        for r in readings:
            device_id, map_id = self.ids[(r.device, r.sensor)]
            value = None if r.value != r.value else r.value  # NaN -> NULL
            out.append(ReadingRow(device_id, r.sensor, r.ts, value, r.quality, map_id, r.text))
        return out

    def gap_rows(self, gaps: list[Gap]) -> list[dict[str, object]]:
        device_ids = {name: ids[0] for (name, _), ids in self.ids.items()}
        return [
            {
                "device_id": device_ids[g.device],
                "sensor": g.sensor,
                "gap_start": g.start,
                "gap_end": g.end,
                "reason": g.reason,
                "detail": g.detail,
            }
            for g in gaps
        ]

    def write(self, readings: list[Reading], gaps: list[Gap]) -> None:
        """Store a batch; on any database error keep it in the spool instead."""
        rows, gap_rows = self.rows(readings), self.gap_rows(gaps)
        try:
            if self.spool.pending():
                forwarded = self.spool.drain(self.writer.write)
                with self._stats_lock:
                    self.stats.forwarded += forwarded
            written = self.writer.write(rows, gap_rows)
            with self._stats_lock:
                self.stats.written += written
                self.stats.gaps += len(gap_rows)
        except sa.exc.DBAPIError as exc:
            self.spool.append(rows, gap_rows)
            with self._stats_lock:
                self.stats.write_errors += 1
                self.stats.spooled += len(rows)
            first = str(exc.orig or exc).strip().splitlines()[0]
            log.warning("database unavailable (%s): %d readings spooled", first, len(rows))

    def spool_batch(self, readings: list[Reading], gaps: list[Gap]) -> None:
        """Keep a batch in the spool without asking the database (the writer is behind)."""
        rows = self.rows(readings)
        self.spool.append(rows, self.gap_rows(gaps))
        with self._stats_lock:
            self.stats.spooled += len(rows)

    def flush_spool(self) -> None:
        """Forward whatever the spool holds (raises when the database is still away)."""
        if self.spool.pending():
            self.stats.forwarded += self.spool.drain(self.writer.write)


class RegistryCache:
    """The registry ids of the plant's points at the last start that reached the database.

    A small JSON file next to the spool. Each point is kept with a fingerprint of its definition,
    so a point changed in the plant file since (a new register-map version, once applied) does
    not match; nor does a cache written for another database.
    """

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self.database = database

    def save(self, plant: Plant, ids: RegistryIds) -> None:
        points = {
            f"{p.device}/{p.sensor}": [*ids[(p.device, p.sensor)], _fingerprint(p)]
            for p in plant.points
        }
        data = {
            "database": self.database,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "plant": str(plant.source),
            "points": points,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(partial, self.path)  # a crash leaves the old file or the new one

    def ids_for(self, plant: Plant) -> tuple[RegistryIds, str] | None:
        """The ids of every point of `plant` and when they were saved, or None if any is missing
        or changed (or the cache is of another database, or there is none)."""
        try:
            data = json.loads(self.path.read_text())
            if data["database"] != self.database:
                return None
            ids: RegistryIds = {}
            for p in plant.points:
                device_id, map_id, fingerprint = data["points"][f"{p.device}/{p.sensor}"]
                if fingerprint != _fingerprint(p):
                    return None
                ids[(p.device, p.sensor)] = (int(device_id), int(map_id))
            return ids, str(data["saved_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _fingerprint(point: Point) -> str:
    text = json.dumps(asdict(point), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def registry_cache_path(spool: Spool) -> Path:
    return spool.path.with_name("registry.json")


def open_store(engine: Engine, plant: Plant, spool: Spool) -> IngestStore:
    """Apply `plant` to the registry and open the store a session writes through.

    When the database cannot be reached, the store uses the ids cached at the last start that
    reached it (every reading then goes to the spool until the database is back); without a
    cache that holds the plant, `RegistryUnavailable` says so.
    """
    cache = RegistryCache(
        registry_cache_path(spool), engine.url.render_as_string(hide_password=True)
    )
    try:
        apply_plant(engine, plant)  # the registry matches the decoding used
        store = IngestStore(engine, plant, spool)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        cached = cache.ids_for(plant)
        if cached is None:
            raise RegistryUnavailable(
                f"database unreachable ({reason}) and no cached registry matches "
                f"{plant.source}: nothing can be polled until the database is back"
            ) from None
        ids, saved_at = cached
        log.warning(
            "database unreachable (%s): the registry was not applied; polling with the "
            "registry ids cached at %s, readings are spooled until the database is back",
            reason,
            saved_at,
        )
        store = IngestStore(engine, plant, spool, ids=ids)
        store.registry_cached_at = saved_at
        return store
    cache.save(plant, store.ids)
    return store


@dataclass
class SessionResult:
    """What one polling session did."""

    duration_s: float
    poll: PollStats
    store: StoreStats
    spool_pending: int
    devices: list[str] = field(default_factory=list)

    @property
    def devices_ok(self) -> list[str]:
        """Devices that gave data at least once."""
        return sorted(self.poll.devices_ok)

    @property
    def devices_failed(self) -> list[str]:
        """Devices that gave no data at all."""
        return sorted(set(self.devices) - self.poll.devices_ok)

    def summary(self) -> str:
        p50, p99 = self.poll.latency_ms(0.5), self.poll.latency_ms(0.99)
        latency = f"{p50:.1f}/{p99:.1f} ms" if p50 is not None and p99 is not None else "n/a"
        poll, store = self.poll, self.store
        return "; ".join(
            [
                f"{poll.readings} readings in {poll.cycles} cycles over {self.duration_s:.1f} s "
                f"({poll.bad_readings} not good)",
                f"written {store.written}, spooled {store.spooled}, forwarded {store.forwarded}",
                f"gaps {store.gaps}",
                f"devices ok {len(self.devices_ok)}, failed {len(self.devices_failed)}",
                f"request latency p50/p99 {latency}",
            ]
        )


async def run_session(
    plant: Plant,
    store: IngestStore,
    *,
    duration_s: float | None,
    interval_s: float,
    stop: asyncio.Event | None = None,
    progress: Callable[[PollStats, StoreStats], None] | None = None,
) -> SessionResult:
    """Poll every endpoint of `plant` for `duration_s` (None: until `stop` is set)."""
    stop = stop or asyncio.Event()
    stats = PollStats()
    queue: asyncio.Queue[tuple[list[Reading], list[Gap]] | None] = asyncio.Queue(maxsize=64)
    behind = False

    async def emit(readings: list[Reading], gaps: list[Gap]) -> None:
        nonlocal behind
        if not (readings or gaps):
            return
        try:
            queue.put_nowait((readings, gaps))
        except asyncio.QueueFull:
            # The writer is behind (the database is slow or hung): polling never waits for it.
            if not behind:
                log.warning(
                    "database writes are %d batches behind: new batches go to the spool",
                    queue.qsize(),
                )
                behind = True
            await asyncio.to_thread(store.spool_batch, readings, gaps)
            return
        if behind and queue.qsize() <= queue.maxsize // 2:
            log.info("database writes caught up: batches are written again")
            behind = False

    async def write_batches() -> None:
        while (batch := await queue.get()) is not None:
            await asyncio.to_thread(store.write, *batch)
            if progress is not None:
                progress(stats, store.stats)

    started = time.monotonic()
    deadline = None if duration_s is None else started + duration_s
    writer = asyncio.create_task(write_batches())
    pollers = [EndpointPoller(plan, emit, stats) for plan in plan_plant(plant, interval_s)]
    try:
        await asyncio.gather(*(poller.run(deadline, stop) for poller in pollers))
    finally:
        await queue.put(None)
        await writer
    return SessionResult(
        duration_s=time.monotonic() - started,
        poll=stats,
        store=store.stats,
        spool_pending=store.spool.pending(),
        devices=sorted(plant.devices),
    )


def spool_path(pdm_home: Path) -> Path:
    return pdm_home / "spool" / "readings.sqlite3"
