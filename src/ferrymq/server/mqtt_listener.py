"""asyncio glue for MQTT connections: bytes in, bytes out, timers. No protocol logic here.

Same shape as the AMQP listener: output is coalesced into one transport.write per batch. Writes
caused by an MQTT read (a publish delivered to subscribers, the acks) are flushed as soon as
that read has been processed, without waiting for another loop iteration, which keeps latency
low; writes from anywhere else (an AMQP publisher, timers) are flushed on the next iteration
(call_soon), as the AMQP listener does. When a client stops reading and the socket's buffer
passes the high-water mark, the connection is told it is not writable: QoS 1/2 messages wait in
their queues and QoS 0 ones are dropped until it drains. The Keep Alive (MQTT-3.1.2-22: nothing
received for 1.5 x Keep Alive closes the connection) is a property of the socket, so it runs on
the loop's real clock even when the broker core runs on a virtual one; wills and session expiry
are core time and run on the broker's clock.

All connections of a node share one `MQTTBroker` (sessions, retained messages), kept per core
`Broker`. The node creates it at start (`open_sessions`), after the journal's recovery and
before the listeners open: the persistent sessions recorded in `<data_dir>/mqtt_sessions.json`
come back then, offline until their clients connect, and from then on the registry is written
there after each structural change (server/mqtt_sessions_file.py). The retained-message file
lives in the same directory and is rewritten from the loop (`call_soon`) after a batch of
changes.

Graceful shutdown, in the node's order: `publish_wills` (before any connection closes) publishes
the will of every connected client that has no Will Delay Interval, as Mosquitto does on
shutdown: the server closing the connection is a connection ended without DISCONNECT 0x00
(MQTT 5 3.1.2.5), and publishing them all first lets a subscriber that is still connected
receive them. Each connection is then closed (DISCONNECT 0x8B); a will with a delay stays with
its session, recorded on disk. `close_sessions`, once every connection is gone, writes the
final registry (offline times, held wills, QoS 2 identifiers) and the retained file.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from ferrymq.core.broker import Broker
from ferrymq.protocols.mqtt import session_store
from ferrymq.protocols.mqtt.broker import MQTTBroker
from ferrymq.protocols.mqtt.connection import MQTTConnection, State
from ferrymq.server._stream import HANDSHAKE_TIMEOUT, StreamProtocol
from ferrymq.server.mqtt_sessions_file import SessionsFile

if TYPE_CHECKING:
    from ferrymq.server.node import Node

log = logging.getLogger("ferrymq.server")


class _ReadBatch:
    """Protocols written to while an MQTT read is being processed; flushed at its end. One per
    node (so per event loop: tests run several brokers on threads of one process)."""

    __slots__ = ("active", "dirty")

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[MQTTServerProtocol] = []


class _NodeMQTT:
    """What a node's MQTT connections share."""

    __slots__ = ("batch", "mqtt", "sessions_file")

    def __init__(self, mqtt: MQTTBroker, sessions_file: SessionsFile) -> None:
        self.mqtt = mqtt
        self.batch = _ReadBatch()
        self.sessions_file = sessions_file


_nodes: weakref.WeakKeyDictionary[Broker, _NodeMQTT] = weakref.WeakKeyDictionary()


def _shared_state(node: Node) -> _NodeMQTT:
    broker = node.broker
    state = _nodes.get(broker)
    if state is None:
        loop = asyncio.get_running_loop()
        data_dir = Path(node.config.data_dir)
        mqtt = MQTTBroker(broker, data_dir=data_dir, defer=loop.call_soon)
        registry = mqtt.sessions
        sessions_file = SessionsFile(
            data_dir / session_store.FILE_NAME,
            lambda: session_store.snapshot(registry, broker.clock.wall()),
            loop,
        )
        _restore(mqtt, sessions_file)
        dropped = mqtt.drop_orphan_shared_queues()
        if dropped:
            log.info(
                "deleted %d shared-subscription queues no restored session belongs to", dropped
            )
        registry.writer = sessions_file
        sessions_file.request()  # offline times and expiries as of this start
        state = _nodes[broker] = _NodeMQTT(mqtt, sessions_file)
    return state


def _restore(mqtt: MQTTBroker, sessions_file: SessionsFile) -> None:
    try:
        data = sessions_file.read()
    except OSError as exc:
        log.error("cannot read MQTT sessions from %s: %s", sessions_file.path, exc)
        return
    if data is None:
        return
    try:
        records = session_store.decode_file(data)
    except session_store.SessionFileError as exc:
        bad = sessions_file.set_aside()
        log.error(
            "%s is unreadable (%s); moved to %s, starting with no MQTT sessions",
            sessions_file.path,
            exc,
            bad,
        )
        return
    session_store.restore(mqtt, records)


def mqtt_broker_for(node: Node) -> MQTTBroker:
    """The node's shared MQTT state, created on first use."""
    return _shared_state(node).mqtt


def mqtt_status(node: Node) -> dict[str, int] | None:
    """MQTT figures for `ferrymq status`; None before the MQTT state exists."""
    state = _nodes.get(node.broker)
    if state is None:
        return None
    sessions = list(state.mqtt.sessions)
    return {
        "sessions": len(sessions),
        "online": sum(1 for s in sessions if s.conn is not None),
        "persistent": sum(1 for s in sessions if s.persistent),
        "session_file_writes": state.sessions_file.writes,
    }


def open_sessions(node: Node) -> None:
    """Create the node's MQTT state and restore its recorded sessions (before listening)."""
    _shared_state(node)


def publish_wills(node: Node) -> None:
    """The broker is shutting down: publish connected clients' undelayed wills now, before any
    connection closes (see the module docstring)."""
    for protocol in list(node.connections):
        if isinstance(protocol, MQTTServerProtocol) and protocol.conn is not None:
            protocol.conn.publish_will_for_shutdown()


async def close_sessions(node: Node) -> None:
    """Every connection is gone: write the final session registry and retained messages."""
    state = _nodes.get(node.broker)
    if state is None:
        return
    await asyncio.sleep(0)  # aborted transports report connection_lost on the next iteration
    state.mqtt.retained.flush()
    registry = state.mqtt.sessions
    registry.final = True  # the records now name each unacknowledged PUBLISH's identifier
    for session in registry:
        session.record_cache = None
    await state.sessions_file.close()


class MQTTServerProtocol(StreamProtocol):
    __slots__ = ("_batch", "_dirty", "_last_recv", "_timer", "conn")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.conn: MQTTConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_recv = 0.0
        self._dirty = False
        self._batch: _ReadBatch | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer, loopback = self._attach(transport)
        state = _shared_state(self.node)
        self._batch = state.batch
        self.conn = MQTTConnection(state.mqtt, self, from_loopback=loopback, peer=peer)
        self._last_recv = self.loop.time()
        self._timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_deadline)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        waiting = conn.state == State.CONNECT_WAIT
        batch = self._batch
        assert batch is not None
        if batch.active:  # re-entered (cannot happen with asyncio, but stay correct)
            conn.data_received(data)
        else:
            batch.active = True
            try:
                conn.data_received(data)
            finally:
                batch.active = False
                dirty = batch.dirty
                if dirty:
                    batch.dirty = []
                    for protocol in dirty:
                        protocol._dirty = False
                        protocol._flush()
        if waiting and conn.state == State.CONNECTED:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if conn.keepalive:
                self._last_recv = self.loop.time()
                self._schedule_keepalive(conn.keepalive * 1.5)
        elif conn.keepalive:
            self._last_recv = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.conn is not None:
            self.conn.connection_lost()

    # -- the Transport the connection writes to ----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._out.append(data)
        if self._flush_handle is None and not self._dirty:
            batch = self._batch
            if batch is not None and batch.active:
                self._dirty = True
                batch.dirty.append(self)
            else:
                self._flush_handle = self.loop.call_soon(self._flush)

    # -- timers ------------------------------------------------------------------------------------

    def _handshake_deadline(self) -> None:
        self._timer = None
        conn = self.conn
        if conn is None or self._closing:
            return
        if conn.state == State.CONNECT_WAIT:
            log.info("closing %s: no CONNECT in %.0fs", conn.peer, HANDSHAKE_TIMEOUT)
            self.close()

    def _schedule_keepalive(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._keepalive_check)

    def _keepalive_check(self) -> None:
        self._timer = None
        conn = self.conn
        if conn is None or self._closing or conn.state != State.CONNECTED:
            return
        limit = conn.keepalive * 1.5
        idle = self.loop.time() - self._last_recv
        if idle >= limit:
            log.info("closing %s: keep alive of %ds expired", conn.peer, conn.keepalive)
            conn.keepalive_expired()
            return
        self._schedule_keepalive(limit - idle)
