"""A running FerryMQ node: the broker core plus its listeners, started and stopped as one."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferrymq.core.broker import Broker
from ferrymq.core.clock import Clock, LoopClock
from ferrymq.server.amqp_listener import AMQPServerProtocol
from ferrymq.server.config import Config
from ferrymq.server.monitor import ResourceMonitor
from ferrymq.server.persistence import JournalStore
from ferrymq.server.recovery import recover_definitions, recover_messages
from ferrymq.server.status import serve_status
from ferrymq.store.journal import Journal

log = logging.getLogger("ferrymq.server")


def _find_mqtt() -> Any:
    """The MQTT listener module, if this build has one (it arrives with its own issue)."""
    try:
        return importlib.import_module("ferrymq.server.mqtt_listener")
    except ImportError:
        return None


_mqtt = _find_mqtt()


class ListenError(Exception):
    """A listener could not be opened (port in use, bad address)."""


class Node:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock
        self.broker: Broker
        self.connections: set[Any] = set()  # server protocols with .conn.shutdown()
        self.listeners: dict[str, tuple[str, int]] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self.monitor: ResourceMonitor | None = None
        self.store: JournalStore | None = None
        self.started_at = time.monotonic()
        self._status_server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.broker = Broker(self._clock or LoopClock(loop), self.config.settings)
        data_dir = Path(self.config.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ListenError(f"cannot create data directory {data_dir}: {exc.strerror}") from None
        try:
            self._open_store(data_dir)
        except OSError as exc:
            raise ListenError(f"cannot open the store in {data_dir}: {exc}") from None
        self.monitor = ResourceMonitor(self.broker, data_dir)
        self.monitor.store = self.store
        self.monitor.start()
        if self.config.mqtt_port is not None and _mqtt is not None:
            _mqtt.open_sessions(self)  # recorded MQTT sessions come back before any listener
        try:
            await self._listen(
                "amqp", "AMQP", self.config.amqp_port, lambda: AMQPServerProtocol(self)
            )
            if self.config.mqtt_port is not None and _mqtt is not None:
                mqtt = _mqtt.MQTTServerProtocol
                await self._listen("mqtt", "MQTT", self.config.mqtt_port, lambda: mqtt(self))
        except ListenError:
            await self.stop()
            raise
        self._status_server = await serve_status(self, data_dir)

    def _open_store(self, data_dir: Path) -> None:
        cfg = self.config
        recover_definitions(self.broker, data_dir / "definitions.json")
        journal = Journal(
            data_dir / "journal",
            fsync=cfg.fsync,
            fsync_interval=cfg.fsync_interval_ms / 1000.0,
            segment_bytes=cfg.segment_size,
        )
        recover_messages(self.broker, journal)
        self.store = JournalStore(journal, asyncio.get_running_loop(), self.broker.alarms)
        self.broker.store = self.store

    async def _listen(
        self, name: str, label: str, port: int, factory: Callable[[], asyncio.Protocol]
    ) -> None:
        host = self.config.bind
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(factory, host, port, backlog=1024, reuse_address=True)
        except OSError as exc:
            raise ListenError(
                f"cannot listen for {label} on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.listeners[name] = (str(sockname[0]), int(sockname[1]))
        log.info("%s listening on %s:%d", label, *self.listeners[name])

    def ready_line(self) -> str:
        parts = " ".join(f"{name}={host}:{port}" for name, (host, port) in self.listeners.items())
        return f"ferrymq ready {parts}"

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, close every client with 320 CONNECTION_FORCED, wait for them to go."""
        if self.monitor is not None:
            self.monitor.stop()
        if self._status_server is not None:
            self._status_server.close()
            self._status_server = None
        for server in self._servers:
            server.close()
        if _mqtt is not None:
            _mqtt.publish_wills(self)  # MQTT wills reach subscribers before anyone is closed
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
        if _mqtt is not None:
            await _mqtt.close_sessions(self)  # MQTT sessions as the connections left them
        if self.store is not None:
            # waits for the writer: everything confirmed is on disk before we exit
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
            self.store = None
        log.info("stopped")
