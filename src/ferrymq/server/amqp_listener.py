"""asyncio glue for AMQP connections: bytes in, bytes out, timers. No protocol logic here.

Output from one loop iteration is coalesced into a single transport.write (a publish batch may
produce thousands of deliveries for one consumer socket). When a client stops reading and the
socket's buffer passes the high-water mark, the connection is told it is not writable and its
consumers stop taking messages until the buffer drains. Heartbeat deadlines are read from the
broker's clock, like every other deadline, so a test on a virtual clock can expire a silent peer
without waiting (the in-process test broker proposes no heartbeat on a virtual clock, so that
clients which heartbeat in real time survive the test's clock jumps).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ferrymq.core.clock import TimerHandle
from ferrymq.protocols.amqp.codec import encode_heartbeat
from ferrymq.protocols.amqp.connection import S_OPEN, AMQPConnection
from ferrymq.server._stream import HANDSHAKE_TIMEOUT, StreamProtocol

if TYPE_CHECKING:
    from ferrymq.server.node import Node

log = logging.getLogger("ferrymq.server")


class AMQPServerProtocol(StreamProtocol):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.conn: AMQPConnection | None = None
        self._timer: TimerHandle | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._last_recv = 0.0
        self._last_send = 0.0
        self._heartbeating = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer, loopback = self._attach(transport)
        self.conn = AMQPConnection(self.node.broker, self, from_loopback=loopback, peer=peer)
        self.clock = self.node.broker.clock
        self._last_recv = self._last_send = self.clock.now()
        self._handshake_timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_deadline)

    def data_received(self, data: bytes) -> None:
        self._last_recv = self.clock.now()
        conn = self.conn
        assert conn is not None
        conn.data_received(data)
        if not self._heartbeating and conn.state == S_OPEN:
            self._heartbeating = True
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
            self._schedule_heartbeat()

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()
        for timer in (self._timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._handshake_timer = None
        if self.conn is not None:
            self.conn.connection_lost()

    def _flushed(self) -> None:
        self._last_send = self.clock.now()

    # -- timers ------------------------------------------------------------------------------------

    def _handshake_deadline(self) -> None:
        self._handshake_timer = None
        conn = self.conn
        if conn is None or self._closing:
            return
        if conn.state != S_OPEN:
            log.info("closing %s: handshake not completed in %.0fs", conn.peer, HANDSHAKE_TIMEOUT)
            self.close()

    def _schedule_heartbeat(self) -> None:
        assert self.conn is not None
        interval = self.conn.heartbeat
        if interval > 0:
            self._timer = self.clock.call_at(self.clock.now() + interval / 2, self._heartbeat)

    def _heartbeat(self) -> None:
        self._timer = None
        conn = self.conn
        if conn is None or self._closing or self.transport is None:
            return
        now = self.clock.now()
        interval = conn.heartbeat
        if now - self._last_recv > 2 * interval:
            log.warning(
                "closing %s: missed heartbeats from client, timeout: %ss", conn.peer, interval
            )
            self._closing = True
            self.transport.abort()
            return
        if now - self._last_send >= interval / 2 and not self._out:
            self.transport.write(encode_heartbeat())
            self._last_send = now
        self._schedule_heartbeat()
