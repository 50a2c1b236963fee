"""The JMS model over the engine, written once for both API flavours: the connection.

Theory of operation
-------------------
`CoreConnection` here, `CoreSession` (_session) and `CoreConsumer` (_consumer) hold the state;
the public sync classes (_sync) and asyncio classes (_aio) are thin shells. Anything that
waits on the broker is a generator (an `Op`) that yields what it waits for; the shell drives
it with run_sync or run_async (see _waiters). Anything that does not wait (send without
confirm, acknowledge, taking a buffered message) is a plain method both shells call.

Connection: one control channel for declarations (a failed declaration closes only it; it is
reopened for the next one, and declarations take turns on it), then one channel per session.

Failures: if the connection breaks, every waiter wakes with ConnectionLostError; with a
ReconnectPolicy a background op reconnects with exponential back-off and restores sessions,
temporary queues and consumers (durable subscriptions are queues, so they resume where they
were; what was delivered but not acknowledged is redelivered). Otherwise, or when the policy
gives up, the exception listener is told.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from ferrymq.client._destinations import Destination, Queue, TemporaryQueue, TemporaryTopic
from ferrymq.client._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    IllegalStateError,
    InvalidDestinationError,
    JMSError,
)
from ferrymq.client._protocol import ChannelState, Engine, method
from ferrymq.client._transport import Address
from ferrymq.client._waiters import Op

if TYPE_CHECKING:
    import ssl

    from ferrymq.client._session import CoreSession

__all__ = [
    "RETRY_PAUSE",
    "AckMode",
    "ConnectionSettings",
    "CoreConnection",
    "ReconnectPolicy",
]


DEFAULT_PREFETCH = 1000
RETRY_PAUSE = 0.01  # seconds between retries of a call cut by a connection loss


class AckMode(Enum):
    """JMS acknowledgement modes (a transacted session ignores its mode)."""

    AUTO = "auto"
    CLIENT = "client"
    DUPS_OK = "dups_ok"
    INDIVIDUAL = "individual"


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Automatic reconnection with exponential back-off.

    Args:
        initial_delay: seconds before the first attempt.
        max_delay: cap on the delay between attempts.
        multiplier: growth of the delay after each failed attempt.
        max_attempts: give up (and tell the exception listener) after this many; None: never.
        max_wait: how long a blocked send or session call waits for the reconnect.
    """

    initial_delay: float = 0.05
    max_delay: float = 5.0
    multiplier: float = 2.0
    max_attempts: int | None = None
    max_wait: float = 60.0


@dataclass(slots=True)
class ConnectionSettings:
    """Everything connect() was given."""

    address: Address
    client_id: str | None = None
    connection_name: str | None = None
    ssl_context: ssl.SSLContext | None = None
    reconnect: ReconnectPolicy | None = None
    allow_pickle: bool = False
    prefetch: int = DEFAULT_PREFETCH
    timeout: float = 30.0


# connection states
NEW, OPEN, RECONNECTING, FAILED, CLOSING, CLOSED = range(6)


class CoreConnection:
    """See the module docstring."""

    def __init__(self, flavor: Any, settings: ConnectionSettings, transports: Any) -> None:
        self.flavor = flavor
        self.settings = settings
        self._transports = transports  # (flavor-specific) how to open a transport
        self.engine: Engine | None = None
        self.transport: Any = None
        self.control: ChannelState | None = None
        self.sessions: list[CoreSession] = []
        self.started = False
        self.state = NEW
        self.error: JMSError | None = None
        self.exception_listener: Callable[[JMSError], Any] | None = None
        self.id = uuid.uuid4().hex[:16]
        self.origin = settings.client_id or self.id
        self._msg_ids = itertools.count(1)
        self._tags = itertools.count(1)
        self.declared: set[str] = set()
        self.temporaries: dict[str, Destination] = {}
        self.no_local = 0
        self.epoch = 0
        self.state_signal = flavor.signal()
        self._ctl_lock = threading.Lock()
        self._ctl_busy = False
        self._ctl_waiters: deque[Any] = deque()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def client_id(self) -> str | None:
        return self.settings.client_id

    def open_op(self) -> Op[None]:
        """Connect, log in, open the control channel."""
        settings = self.settings
        address = settings.address
        engine = Engine(self.flavor.pending, lambda error: None)
        engine.on_lost = partial(self._lost, engine)
        # a reconnect must not start a fresh embedded broker where the old one went away
        transport = yield from self._transports.open(
            engine, address, settings.ssl_context, self.state != RECONNECTING
        )
        try:
            yield engine.begin(
                transport,
                username=address.username,
                password=address.password,
                vhost=address.vhost,
                client_properties=Engine.client_properties(
                    settings.client_id, settings.connection_name
                ),
                heartbeat=address.heartbeat,
            )
            self._transports.opened(transport)
            chan, opened = engine.open_channel()
            yield opened
        except BaseException:
            engine._closing = True
            transport.close()
            raise
        self.engine = engine
        self.transport = transport
        self.control = chan
        if self.state != RECONNECTING:  # a reconnect opens only when every session is back
            self.state = OPEN
        self.error = None

    def _lost(self, engine: Engine, error: JMSError) -> None:
        """The engine died (reader context)."""
        if engine is not self.engine or self.state in (CLOSING, CLOSED):
            return
        for session in list(self.sessions):
            session.connection_lost(error)
        if self.settings.reconnect is None or self.state not in (OPEN, RECONNECTING):
            self._failed(error)
        elif self.state == OPEN:
            self.state = RECONNECTING
            self.flavor.spawn(self._reconnect_op(), "ferrymq-reconnect")
        # else: the reconnect op running now sees its calls fail and tries again
        self.state_signal.notify()

    def _failed(self, error: JMSError) -> None:
        self.state = FAILED
        self.error = error
        for session in list(self.sessions):
            session.wake_all()
        listener = self.exception_listener
        if listener is not None:
            self.flavor.call_soon(listener, error)

    def _reconnect_op(self) -> Op[None]:
        policy = self.settings.reconnect
        assert policy is not None
        delay = policy.initial_delay
        attempt = 0
        while self.state == RECONNECTING:
            yield self.flavor.sleep(delay)
            if self.state != RECONNECTING:
                return
            attempt += 1
            try:
                yield from self.open_op()
                self.declared.clear()
                for name, dest in list(self.temporaries.items()):
                    if isinstance(dest, TemporaryQueue):
                        yield from self.declare_queue_op(
                            name, durable=False, exclusive=True, for_consumer=True
                        )
                for session in list(self.sessions):
                    yield from session.restore_op()
            except (JMSError, TimeoutError, OSError) as exc:
                engine = self.engine
                if engine is not None and engine.alive:
                    engine._closing = True
                    engine.transport_lost(None)
                if policy.max_attempts is not None and attempt >= policy.max_attempts:
                    error = ConnectionLostError(
                        f"reconnect gave up after {attempt} attempts: {exc}"
                    )
                    self._failed(error)
                    self.state_signal.notify()
                    return
                delay = min(delay * policy.multiplier, policy.max_delay)
                continue
            self.epoch += 1
            self.state = OPEN
            for session in list(self.sessions):
                session.wake_all()
            self.state_signal.notify()
            return

    def check_usable(self) -> None:
        """Raise unless the connection can take a call now (RECONNECTING: caller may wait)."""
        state = self.state
        if state == OPEN:
            return
        if state in (CLOSING, CLOSED):
            raise ConnectionClosedError("the connection is closed")
        if state == FAILED:
            raise self.error or ConnectionLostError("connection lost")
        if state == RECONNECTING:
            raise ConnectionLostError("connection lost; reconnecting")
        raise IllegalStateError("the connection is not open")

    def start(self) -> None:
        self.started = True
        for session in list(self.sessions):
            session.wake_all()

    def stop(self) -> None:
        self.started = False

    def close_op(self) -> Op[None]:
        if self.state in (CLOSING, CLOSED):
            return
        was_open = self.state == OPEN
        self.state = CLOSING
        self.started = False
        for session in list(self.sessions):
            with contextlib.suppress(JMSError, TimeoutError):
                yield from session.close_op(from_connection=True)
        engine = self.engine
        if engine is not None and engine.alive and was_open:
            with contextlib.suppress(JMSError, TimeoutError):
                yield engine.close()
        if engine is not None:
            engine._closing = True
            engine.transport_lost(None)
        self.state = CLOSED
        self.state_signal.notify()

    # -- the control channel -------------------------------------------------------------------

    def _ctl_acquire(self) -> Any:
        pending = self.flavor.pending()
        with self._ctl_lock:
            if not self._ctl_busy:
                self._ctl_busy = True
                pending.set_result(None)
            else:
                self._ctl_waiters.append(pending)
        return pending

    def _ctl_release(self) -> None:
        with self._ctl_lock:
            while self._ctl_waiters:
                waiter = self._ctl_waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
            self._ctl_busy = False

    def control_op(self, calls: list[tuple[Any, tuple[type, ...]]]) -> Op[list[Any]]:
        """Pipeline methods on the control channel; the replies, or the first error."""
        acquired = self._ctl_acquire()
        try:
            yield acquired
        except BaseException:
            if not _abandon(acquired):
                self._ctl_release()  # it was ours after all: pass it on
            raise
        try:
            engine = self.engine
            if engine is None or not engine.alive:
                raise self.error or ConnectionLostError("connection lost")
            chan = self.control
            if chan is None or not chan.open:
                chan, opened = engine.open_channel()
                yield opened
                self.control = chan
            pendings = [engine.call(chan, m, replies) for m, replies in calls]
            results = []
            for pending in pendings:
                results.append((yield pending))
            return results
        finally:
            self._ctl_release()

    def declare_queue_op(
        self,
        name: str,
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        for_consumer: bool = False,
        passive_on_conflict: bool = True,
    ) -> Op[str]:
        """Declare a queue; if it exists with other settings, use it as it is (passive)."""
        declare = method(
            spec.Queue.Declare,
            queue=name,
            passive=False,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            nowait=False,
            arguments=arguments or {},
        )
        try:
            (ok,) = yield from self.control_op([(declare, (spec.Queue.DeclareOk,))])
        except JMSError as exc:
            if exc.reply_code == 406 and passive_on_conflict:
                passive = method(spec.Queue.Declare, queue=name, passive=True, arguments={})
                (ok,) = yield from self.control_op([(passive, (spec.Queue.DeclareOk,))])
            elif exc.reply_code == 405 and not for_consumer:
                return name  # another connection's exclusive queue: sending to it is fine
            else:
                raise
        queue: str = ok.queue
        self.declared.add(queue)
        return queue

    def ensure_destination_op(self, destination: Destination) -> Op[None]:
        """Make sure a queue a producer sends to exists (a topic needs nothing)."""
        if not isinstance(destination, Queue):
            return
        name = destination.name
        if name in self.declared or name.startswith("amq.") or name in self.temporaries:
            return
        yield from self.declare_queue_op(name)

    def needs_declare(self, destination: Destination) -> bool:
        return (
            isinstance(destination, Queue)
            and destination.name not in self.declared
            and not destination.name.startswith("amq.")
            and destination.name not in self.temporaries
        )

    def delete_queue_op(self, name: str, *, if_unused: bool = False) -> Op[int]:
        delete = method(
            spec.Queue.Delete, queue=name, if_unused=if_unused, if_empty=False, nowait=False
        )
        (ok,) = yield from self.control_op([(delete, (spec.Queue.DeleteOk,))])
        self.declared.discard(name)
        count: int = ok.message_count
        return count

    def queue_exists_op(self, name: str) -> Op[bool]:
        passive = method(spec.Queue.Declare, queue=name, passive=True, arguments={})
        try:
            yield from self.control_op([(passive, (spec.Queue.DeclareOk,))])
        except InvalidDestinationError:
            return False
        return True

    # -- temporary destinations ----------------------------------------------------------------

    def temporary_queue_op(self, deleter: Callable[[TemporaryQueue], Any]) -> Op[TemporaryQueue]:
        name = f"jms.tmp.{self.id}.{next(self._tags)}"
        yield from self.declare_queue_op(
            name, durable=False, exclusive=True, for_consumer=True, passive_on_conflict=False
        )
        holder: list[TemporaryQueue] = []
        tmp = TemporaryQueue(name, _deleter=lambda: deleter(holder[0]))
        holder.append(tmp)
        self.temporaries[name] = tmp
        return tmp

    def temporary_topic(self, deleter: Callable[[TemporaryTopic], Any]) -> TemporaryTopic:
        name = f"jms.tmp-topic.{self.id}.{next(self._tags)}"
        holder: list[TemporaryTopic] = []
        tmp = TemporaryTopic(name, _deleter=lambda: deleter(holder[0]))
        holder.append(tmp)
        self.temporaries[name] = tmp
        return tmp

    def delete_temporary_op(self, destination: Destination) -> Op[None]:
        if self.temporaries.pop(destination.name, None) is None:
            return
        if isinstance(destination, TemporaryQueue) and self.state == OPEN:
            for session in self.sessions:
                for consumer in session.consumers.values():
                    if consumer.queue_name == destination.name and not consumer.closed:
                        raise IllegalStateError("a consumer still uses this temporary queue")
            yield from self.delete_queue_op(destination.name)

    # -- sessions ------------------------------------------------------------------------------

    def session_op(
        self, ack_mode: AckMode, transacted: bool, prefetch: int | None
    ) -> Op[CoreSession]:
        from ferrymq.client._session import CoreSession

        self.check_usable()
        session = CoreSession(self, ack_mode, transacted, prefetch or self.settings.prefetch)
        yield from session.open_op()
        self.sessions.append(session)
        return session

    def next_message_id(self) -> str:
        return f"ID:{self.id}-{next(self._msg_ids)}"

    def next_tag(self) -> str:
        return f"jms.{self.id}.{next(self._tags)}"


def _abandon(pending: Any) -> bool:
    """Stop waiting on `pending`; False if it had already succeeded (the waiter owns it)."""
    if hasattr(pending, "cancel"):  # an asyncio future
        if pending.cancel():
            return True
        return bool(pending.cancelled() or pending.exception() is not None)
    pending.set_exception(TimeoutError("gave up waiting"))  # a SyncPending: no-op if done
    return pending.exception() is not None
