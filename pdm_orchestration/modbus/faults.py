"""A TCP proxy that misbehaves like field devices do: it drops connections.

Put in front of the simulator (or any server), it forwards bytes both ways and, as configured,
closes a client's connection after a number of requests (`drop_after`), or when the client sent
nothing for `idle_close_s` seconds, the way many gateways close idle sockets. It can also refuse
all new connections while `refusing` is set (a device or server that is away), and stop forwarding
without closing anything between `hold()` and `release()` (a hung server, a black-holed route).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class FaultProxy:
    """Listens on `port` and forwards to `target_host`:`target_port`."""

    def __init__(
        self,
        port: int,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        target_host: str = "127.0.0.1",
        drop_after: int | None = None,
        idle_close_s: float | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.target_host, self.target_port = target_host, target_port
        self.drop_after = drop_after
        self.idle_close_s = idle_close_s
        self.refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.connections = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    def hold(self) -> None:
        """Stop forwarding, both ways, keeping every connection open (call on the proxy's loop)."""
        self._flowing.clear()

    def release(self) -> None:
        """Forward again, what was held first (call on the proxy's loop)."""
        self._flowing.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        upstream = asyncio.create_task(self._pipe(up_reader, writer))
        self._tasks.add(upstream)
        requests = 0
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=self.idle_close_s)
                except TimeoutError:
                    log.debug("closing an idle connection")
                    self.dropped += 1
                    break
                if not data:
                    break
                requests += 1
                if self.drop_after is not None and requests > self.drop_after:
                    self.dropped += 1
                    break
                await self._flowing.wait()
                up_writer.write(data)
                await up_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            upstream.cancel()
            self._tasks.discard(upstream)
            for stream in (writer, up_writer):
                stream.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await stream.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
