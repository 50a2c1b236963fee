"""Addresses and the two network transports: a socket with a reader thread, and asyncio.

The sync transport writes from the caller's thread (under Engine.lock, so frames keep their
order) and reads on one daemon thread that feeds the engine; that thread also sends heartbeats
and notices missed ones, so a dead peer surfaces as ConnectionLostError instead of a hang.
The asyncio transport is an `asyncio.Protocol` (not streams: one `data_received` parses the
whole buffer) with heartbeats on the loop's timers and write back-pressure through `drain()`.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, unquote, urlsplit

from ferrymq.client._errors import ConnectionLostError, JMSError

if TYPE_CHECKING:
    from ferrymq.client._protocol import Engine

__all__ = ["Address", "AioTransport", "SocketTransport", "parse_url"]

log = logging.getLogger("ferrymq.client")

DEFAULT_HEARTBEAT = 60
DEFAULT_CONNECT_TIMEOUT = 10.0
_RECV_SIZE = 1 << 18
_WRITE_HIGH_WATER = 1 << 20


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed broker URL: amqp://user:pass@host:port/vhost, amqps://..., or vm://name."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = 5672
    username: str = "guest"
    password: str = "guest"
    vhost: str = "/"
    heartbeat: int = DEFAULT_HEARTBEAT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def is_vm(self) -> bool:
        return self.scheme == "vm"

    @property
    def vm_name(self) -> str:
        return self.host

    def __str__(self) -> str:
        if self.is_vm:
            return f"vm://{self.host}"
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{self.vhost}"


def parse_url(url: str) -> Address:
    """Parse a broker URL; query options: heartbeat (seconds), connection_timeout (seconds).

    vm://name reaches the broker registered under `name` in this process (see ferrymq.client.vm),
    starting an embedded one when none is; the name defaults to "localhost".
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        heartbeat = int(query.get("heartbeat", DEFAULT_HEARTBEAT))
        timeout = float(query.get("connection_timeout", DEFAULT_CONNECT_TIMEOUT))
    except ValueError:
        raise JMSError(f"bad option in broker URL {url!r}") from None
    if scheme == "vm":
        return Address("vm", host=parts.hostname or "localhost", heartbeat=0)
    if scheme not in ("amqp", "amqps"):
        raise JMSError(f"unsupported URL scheme {parts.scheme!r}: use amqp://, amqps:// or vm://")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return Address(
        scheme,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (5671 if scheme == "amqps" else 5672),
        username=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        vhost=vhost,
        heartbeat=heartbeat,
        connect_timeout=timeout,
    )


def _connect_socket(address: Address, ssl_context: ssl.SSLContext | None) -> socket.socket:
    try:
        sock = socket.create_connection(
            (address.host, address.port), timeout=address.connect_timeout
        )
    except OSError as exc:
        raise ConnectionLostError(f"cannot connect to {address}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if address.scheme == "amqps":
        context = ssl_context or ssl.create_default_context()
        try:
            sock = context.wrap_socket(sock, server_hostname=address.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ConnectionLostError(f"TLS handshake with {address} failed: {exc}") from None
    sock.settimeout(None)
    return sock


class SocketTransport:
    """A blocking socket: writes from callers, reads on a daemon thread (module docstring)."""

    def __init__(
        self, engine: Engine, address: Address, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.engine = engine
        self.sock = _connect_socket(address, ssl_context)
        self._tls = isinstance(self.sock, ssl.SSLSocket)
        self.last_send = time.monotonic()
        self._closed = False
        self._broken = False
        self._thread = threading.Thread(
            target=self._run, name=f"ferrymq-reader-{address.host}:{address.port}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Send everything (called under Engine.lock)."""
        if self._broken:
            raise ConnectionLostError("connection to the broker lost")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self._broken = True
            self._shutdown()
            raise ConnectionLostError(f"connection to the broker lost: {exc}") from None
        self.last_send = time.monotonic()

    def close(self) -> None:
        """Stop: the reader thread sees the end of the stream and closes the socket."""
        self._closed = True
        self._shutdown()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self) -> None:
        sock = self.sock
        engine = self.engine
        error: BaseException | None = None
        try:
            while not self._closed:
                hb = engine.heartbeat
                if hb and not (self._tls and cast(ssl.SSLSocket, sock).pending()):
                    ready, _, _ = select.select([sock], [], [], hb / 2)
                    if not ready:
                        if not self._heartbeat(hb):
                            error = TimeoutError(f"no heartbeat from the broker in {2 * hb}s")
                            break
                        continue
                data = sock.recv(_RECV_SIZE)
                if not data:
                    break
                engine.feed(data)
                if hb:
                    self._heartbeat(hb)
        except OSError as exc:
            if not self._closed:
                error = exc
        except Exception as exc:  # a bug in dispatch: surface it rather than die silently
            log.exception("FerryMQ client reader failed")
            error = exc
        finally:
            try:
                sock.close()
            except OSError:
                pass
            engine.transport_lost(error)

    def _heartbeat(self, hb: int) -> bool:
        """Send a heartbeat when due; False when the broker has been silent too long."""
        now = time.monotonic()
        if now - self.engine.last_recv > 2 * hb:
            return False
        if now - self.last_send >= hb / 2:
            try:
                self.engine.heartbeat_frame()
            except JMSError:
                return False
        return True


class AioTransport(asyncio.Protocol):
    """The engine's transport on an asyncio loop (module docstring)."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.last_send = loop.time()
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.engine.feed(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        self._wake_drain()
        self.engine.transport_lost(None if self._closing else exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # Transport for the engine
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionLostError("connection to the broker lost")
        transport.write(data)
        self.last_send = self.loop.time()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    @property
    def paused_writing(self) -> bool:
        return self._paused

    async def drain(self) -> None:
        """Wait while the socket's send buffer is over its high-water mark."""
        while self._paused and self.transport is not None:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain

    def start_heartbeat(self) -> None:
        hb = self.engine.heartbeat
        if hb:
            self._timer = self.loop.call_later(hb / 2, self._tick)

    def _tick(self) -> None:
        self._timer = None
        hb = self.engine.heartbeat
        if self.transport is None or not hb:
            return
        now = time.monotonic()
        if now - self.engine.last_recv > 2 * hb:
            self.transport.abort()
            return
        if self.loop.time() - self.last_send >= hb / 2:
            try:
                self.engine.heartbeat_frame()
            except JMSError:
                return
        self._timer = self.loop.call_later(hb / 2, self._tick)


async def open_aio(
    engine: Engine, address: Address, ssl_context: ssl.SSLContext | None
) -> AioTransport:
    """Connect an AioTransport to `address`."""
    loop = asyncio.get_running_loop()
    context: ssl.SSLContext | None = None
    if address.scheme == "amqps":
        context = ssl_context or ssl.create_default_context()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: AioTransport(engine, loop),
                address.host,
                address.port,
                ssl=context,
                server_hostname=address.host if context else None,
            ),
            address.connect_timeout,
        )
    except (TimeoutError, OSError) as exc:
        raise ConnectionLostError(f"cannot connect to {address}: {exc or 'timed out'}") from None
    return protocol
