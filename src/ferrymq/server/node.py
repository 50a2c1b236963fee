"""A running FerryMQ node: the broker core plus its listeners, started and stopped as one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ferrymq.core.broker import Broker
from ferrymq.core.clock import Clock, LoopClock
from ferrymq.server.amqp_listener import AMQPServerProtocol
from ferrymq.server.config import Config

log = logging.getLogger("ferrymq.server")


class ListenError(Exception):
    """A listener could not be opened (port in use, bad address)."""


class Node:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock
        self.broker: Broker
        self.connections: set[AMQPServerProtocol] = set()
        self.listeners: dict[str, tuple[str, int]] = {}
        self._servers: list[asyncio.base_events.Server] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.broker = Broker(self._clock or LoopClock(loop), self.config.settings)
        data_dir = Path(self.config.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ListenError(f"cannot create data directory {data_dir}: {exc.strerror}") from None
        host, port = self.config.bind, self.config.amqp_port
        try:
            server = await loop.create_server(
                lambda: AMQPServerProtocol(self), host, port, backlog=1024, reuse_address=True
            )
        except OSError as exc:
            raise ListenError(
                f"cannot listen for AMQP on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.listeners["amqp"] = (str(sockname[0]), int(sockname[1]))
        log.info("AMQP 0-9-1 listening on %s:%d", *self.listeners["amqp"])

    def ready_line(self) -> str:
        parts = " ".join(f"{name}={host}:{port}" for name, (host, port) in self.listeners.items())
        return f"ferrymq ready {parts}"

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, close every client with 320 CONNECTION_FORCED, wait for them to go."""
        for server in self._servers:
            server.close()
        for protocol in list(self.connections):
            if protocol.conn is not None:
                protocol.conn.shutdown()
        deadline = asyncio.get_running_loop().time() + grace
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        log.info("stopped")
