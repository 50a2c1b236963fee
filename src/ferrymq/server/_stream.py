"""The asyncio plumbing every protocol listener shares: coalesced output, back-pressure, close.

A listener's protocol class adds only what is its own (which state machine it drives, its
handshake and liveness timers). Output written while the loop runs one callback is joined into
one transport.write on the next iteration; a socket past its high-water mark tells the
connection it is not writable until it drains.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ferrymq.server.node import Node

WRITE_HIGH_WATER = 4 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class StreamProtocol(asyncio.Protocol):
    """Base for listener protocols; subclasses set `conn` (with set_writable) in connection_made."""

    __slots__ = ("_closing", "_flush_handle", "_out", "loop", "node", "transport")

    conn: Any

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False

    def _attach(self, transport: asyncio.BaseTransport) -> tuple[str, bool]:
        """Take the transport; returns the peer as host:port and whether it is loopback."""
        # uvloop's transports do not subclass asyncio.Transport; they implement its interface
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername") or ("?", 0)
        host = str(peer[0])
        self.node.connections.add(self)
        return f"{host}:{peer[1]}", is_loopback(host)

    def _detach(self) -> None:
        self.node.connections.discard(self)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.set_writable(False)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.set_writable(True)

    # -- the transport a connection writes to ------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._out.append(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out = self._out
        if not out or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.transport.write(data)
        self._flushed()

    def _flushed(self) -> None:
        """Hook: output just went to the socket."""

    def close(self) -> None:
        if self._closing or self.transport is None:
            return
        self._flush()
        self._closing = True
        self.transport.close()

    def close_later(self, seconds: float) -> None:
        self.loop.call_later(seconds, self.close)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
