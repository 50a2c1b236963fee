"""vm://: a connection to a broker in the same process, with no socket.

Design choice. The client's engine speaks AMQP 0-9-1 bytes through an in-memory pipe into the
broker's own server-side state machine (protocols.amqp.connection.AMQPConnection), rather than
calling core (vhost.publish, a DeliverySink) directly. Both would work; the pipe was chosen
because it guarantees the very semantics the network gives: selectors, transactions,
publisher confirms, consumer cancellation, exclusive queues, client-id checks and every error
code are the broker's own code paths, and each broker-side feature (x-selector, x-delay,
message groups) reaches vm:// the day it reaches amqp:// with nothing written twice. The cost
is encoding and decoding frames that never leave memory, which the codec does at well over a
hundred thousand messages a second, and no syscall is made.

Threads. The broker's core runs on its own asyncio loop and is not thread-safe, so client
writes are queued and handed to that loop with one call_soon_threadsafe per batch (the flag
`_scheduled` coalesces them). The broker's output comes back on the broker's thread: the sync
client feeds its engine right there (that thread is its reader context; nothing slow runs in
it), the asyncio client reschedules the feed onto its own loop.

Brokers are found by name: `register(name, broker, loop)` makes an in-process broker reachable
as vm://name; connecting to a name nobody registered starts an embedded broker (memory only,
no listeners, no persistence) on a daemon thread and registers it, as ActiveMQ's
vm://localhost does. `shutdown(name)` stops an embedded broker.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ferrymq.client._errors import ConnectionLostError

if TYPE_CHECKING:
    from ferrymq.client._protocol import Engine
    from ferrymq.core.broker import Broker
    from ferrymq.core.settings import Settings
    from ferrymq.protocols.amqp.connection import AMQPConnection

__all__ = ["EmbeddedBroker", "VMTransport", "lookup", "register", "shutdown", "unregister"]

_registry: dict[str, tuple[Broker, asyncio.AbstractEventLoop]] = {}
_embedded: dict[str, EmbeddedBroker] = {}
_pipes: dict[str, set[VMTransport]] = {}  # open connections, by broker name
_registry_lock = threading.Lock()
_ids = itertools.count(1)
_THROTTLE_BYTES = 8 << 20


def register(name: str, broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
    """Make `broker`, whose core runs on `loop`, reachable as vm://name."""
    with _registry_lock:
        _registry[name] = (broker, loop)


def unregister(name: str) -> None:
    with _registry_lock:
        _registry.pop(name, None)


def lookup(name: str, *, create: bool = True) -> tuple[Broker, asyncio.AbstractEventLoop]:
    """The broker registered as `name`, starting an embedded one if there is none."""
    with _registry_lock:
        found = _registry.get(name)
        if found is not None and not found[1].is_closed():
            return found
        if not create:
            raise ConnectionLostError(f"no in-process broker is registered as vm://{name}")
        embedded = EmbeddedBroker(name)
        _embedded[name] = embedded
        _registry[name] = (embedded.broker, embedded.loop)
        return embedded.broker, embedded.loop


def shutdown(name: str = "localhost") -> None:
    """Stop the embedded broker vm://name started; its connections are lost."""
    with _registry_lock:
        embedded = _embedded.pop(name, None)
        if embedded is not None:
            _registry.pop(name, None)
        pipes = list(_pipes.pop(name, ()))
    if embedded is not None:
        embedded.stop()
        for pipe in pipes:
            pipe.broker_closed()


class EmbeddedBroker:
    """A broker core on its own loop thread: memory only, no listeners."""

    def __init__(self, name: str, settings: Settings | None = None) -> None:
        from ferrymq.core.broker import Broker
        from ferrymq.core.clock import LoopClock

        self.name = name
        self.loop = asyncio.new_event_loop()
        self.broker = Broker(LoopClock(self.loop), settings)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"ferrymq-vm-{name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        def halt() -> None:
            for vhost in self.broker.vhosts.values():
                for queue in list(vhost.queues.values()):
                    vhost.queue_unused(queue)
            self.loop.stop()

        self.loop.call_soon_threadsafe(halt)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class _BrokerEnd:
    """The server-side Transport an AMQPConnection writes to (runs on the broker's loop)."""

    def __init__(self, pipe: VMTransport) -> None:
        self.pipe = pipe

    def write(self, data: bytes) -> None:
        self.pipe.to_client(data)

    def close(self) -> None:
        self.pipe.broker_closed()

    def close_later(self, seconds: float) -> None:
        self.pipe.loop.call_later(seconds, self.close)

    def pause_reading(self) -> None:
        """Flow control (memory alarm): the client's writes wait in the pipe meanwhile."""
        self.pipe.paused = True

    def resume_reading(self) -> None:
        self.pipe.paused = False
        self.pipe.loop.call_soon(self.pipe.flush)


class VMTransport:
    """The client end of the pipe (module docstring).

    Args:
        engine: the client engine fed with the broker's output.
        name: the registered broker name.
        client_loop: None for the sync client (fed on the broker's thread), else the loop the
            asyncio client runs on.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        client_loop: asyncio.AbstractEventLoop | None,
        *,
        create: bool = True,
    ) -> None:
        self.engine = engine
        self.broker, self.loop = lookup(name, create=create)
        self.client_loop = client_loop
        self.name = name
        self.paused = False
        self._lock = threading.Condition()
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._scheduled = False
        self._in: list[Any] = []
        self._in_scheduled = False
        self._conn: AMQPConnection | None = None
        self._closed = False  # the client closed its end
        self._lost = False  # the broker closed its end
        self._id = next(_ids)
        self._broker_thread = 0
        with _registry_lock:
            _pipes.setdefault(name, set()).add(self)
        self._call(self._attach)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the broker's loop is closed: the broker is gone
            self._lost = True
            raise ConnectionLostError(f"the in-process broker vm://{self.name} stopped") from None

    def _attach(self) -> None:
        from ferrymq.protocols.amqp.connection import AMQPConnection

        self._broker_thread = threading.get_ident()
        self._conn = AMQPConnection(
            self.broker, _BrokerEnd(self), from_loopback=True, peer=f"vm://{self.name}#{self._id}"
        )

    # -- client side ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed or self._lost:
            raise ConnectionLostError(f"connection to vm://{self.name} lost")
        with self._lock:
            self._out.append(data)
            self._out_bytes += len(data)
            if self._scheduled:
                return
            self._scheduled = True
        self._call(self.flush)

    def throttle(self) -> None:
        """Block the (sync) caller while the broker is far behind; never under Engine.lock."""
        if self._out_bytes < _THROTTLE_BYTES:
            return
        if threading.get_ident() == self._broker_thread:
            return
        with self._lock:
            while self._out_bytes >= _THROTTLE_BYTES and not (self._lost or self._closed):
                self._lock.wait(0.5)

    @property
    def backlog(self) -> int:
        """Bytes written by the client that the broker has not read yet."""
        return self._out_bytes

    def _forget(self) -> None:
        with _registry_lock:
            pipes = _pipes.get(self.name)
            if pipes is not None:
                pipes.discard(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._forget()
        try:
            self.loop.call_soon_threadsafe(self._detach)
        except RuntimeError:
            pass

    def _detach(self) -> None:
        self.flush()
        conn = self._conn
        if conn is not None:
            conn.connection_lost()
        self._deliver(None)

    # -- broker side (the broker's loop thread) ------------------------------------------------

    def flush(self) -> None:
        if self.paused:
            with self._lock:
                self._scheduled = False
                if self._out:
                    self._scheduled = True
                    self.loop.call_later(0.05, self.flush)
            return
        with self._lock:
            out, self._out = self._out, []
            self._out_bytes = 0
            self._scheduled = False
            self._lock.notify_all()
        conn = self._conn
        if conn is None or not out:
            return
        conn.data_received(out[0] if len(out) == 1 else b"".join(out))

    def to_client(self, data: bytes) -> None:
        self._deliver(data)

    def broker_closed(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._forget()
        with self._lock:
            self._lock.notify_all()
        self._deliver(None)

    def _deliver(self, data: bytes | None) -> None:
        """Hand broker output (None: end of stream) to the engine's reader context."""
        if self.client_loop is None:
            if data is None:
                self.engine.transport_lost(None)
            else:
                self.engine.feed(data)
            return
        with self._lock:
            self._in.append(data)
            if self._in_scheduled:
                return
            self._in_scheduled = True
        try:
            self.client_loop.call_soon_threadsafe(self._feed_client)
        except RuntimeError:  # the client's loop is gone
            pass

    def _feed_client(self) -> None:
        with self._lock:
            items, self._in = self._in, []
            self._in_scheduled = False
        engine = self.engine
        chunk: list[bytes] = []
        for item in items:
            if item is None:
                if chunk:
                    engine.feed(b"".join(chunk))
                    chunk = []
                engine.transport_lost(None)
            else:
                chunk.append(item)
        if chunk:
            engine.feed(chunk[0] if len(chunk) == 1 else b"".join(chunk))

    async def drain(self) -> None:
        """Asyncio back-pressure: yield while the broker is far behind."""
        while self._out_bytes >= _THROTTLE_BYTES and not (self._lost or self._closed):
            await asyncio.sleep(0.001)

    @property
    def paused_writing(self) -> bool:
        return self._out_bytes >= _THROTTLE_BYTES
