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

All connections of a node share one `MQTTBroker` (sessions, retained messages), created with the
first connection and kept per core `Broker`; its retained-message file lives in the node's
data directory and is rewritten from the loop (`call_soon`) after a batch of changes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from ferrymq.core.broker import Broker
from ferrymq.protocols.mqtt.broker import MQTTBroker
from ferrymq.protocols.mqtt.connection import MQTTConnection, State
from ferrymq.server._stream import HANDSHAKE_TIMEOUT, StreamProtocol

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


_nodes: weakref.WeakKeyDictionary[Broker, tuple[MQTTBroker, _ReadBatch]] = (
    weakref.WeakKeyDictionary()
)


def _shared_state(node: Node) -> tuple[MQTTBroker, _ReadBatch]:
    broker = node.broker
    state = _nodes.get(broker)
    if state is None:
        loop = asyncio.get_running_loop()
        mqtt = MQTTBroker(broker, data_dir=Path(node.config.data_dir), defer=loop.call_soon)
        state = _nodes[broker] = (mqtt, _ReadBatch())
    return state


def mqtt_broker_for(node: Node) -> MQTTBroker:
    """The node's shared MQTT state, created on first use."""
    return _shared_state(node)[0]


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
        mqtt, self._batch = _shared_state(self.node)
        self.conn = MQTTConnection(mqtt, self, from_loopback=loopback, peer=peer)
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
