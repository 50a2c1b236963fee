"""The blocking API: Connection, Session, Producer, Consumer, QueueBrowser, Requestor, Context.

Thin shells over _core (which see): each method either calls a core method that does not wait,
or drives a core operation with run_sync. Threads: one reader thread per connection (the
socket's; with vm:// the broker's loop thread plays that part), one callback thread for the
exception listener and send-completion callbacks, and one dispatcher thread per session that
has message listeners, which calls them one at a time in delivery order, as JMS requires of a
session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ferrymq.client._bodies import BytesMessage, MapMessage, StreamMessage
from ferrymq.client._core import (
    CLOSED,
    CLOSING,
    FAILED,
    OPEN,
    RECONNECTING,
    RETRY_PAUSE,
    AckMode,
    ConnectionSettings,
    CoreConnection,
    ReconnectPolicy,
)
from ferrymq.client._destinations import Destination, Queue, TemporaryQueue, TemporaryTopic, Topic
from ferrymq.client._errors import ConnectionLostError, IllegalStateError, JMSError
from ferrymq.client._message import (
    DEFAULT_PRIORITY,
    DeliveryMode,
    Message,
    ObjectMessage,
    TextMessage,
)
from ferrymq.client._session import CoreSession
from ferrymq.client._sync_endpoints import Consumer, Producer, QueueBrowser, Requestor
from ferrymq.client._transport import Address, SocketTransport, parse_url
from ferrymq.client._vm import VMTransport
from ferrymq.client._waiters import Op, SyncFlavor, run_sync

if TYPE_CHECKING:
    import ssl

    from ferrymq.client._protocol import Engine
__all__ = ["Connection", "Session", "connect"]

log = logging.getLogger("ferrymq.client")
T = TypeVar("T")


class _SyncTransports:
    """How the sync client opens transports (used by CoreConnection.open_op)."""

    def open(
        self,
        engine: Engine,
        address: Address,
        ssl_context: ssl.SSLContext | None,
        create: bool = True,
    ) -> Op[Any]:
        if address.is_vm:
            return VMTransport(engine, address.vm_name, None, create=create)
        transport = SocketTransport(engine, address, ssl_context)
        transport.start()
        return transport
        yield  # a generator, like the asyncio flavour's

    def opened(self, transport: Any) -> None:
        pass


def connect(
    url: str = "vm://localhost",
    *,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    connection_name: str | None = None,
    reconnect: ReconnectPolicy | bool | None = None,
    exception_listener: Callable[[JMSError], Any] | None = None,
    allow_pickle: bool = False,
    prefetch: int = 1000,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Connection:
    """Open a connection (JMS ConnectionFactory.createConnection).

    Args:
        url: amqp://user:password@host:port/vhost, amqps://..., or vm://name for a broker in
            this process (an embedded one is started if none is registered).
        client_id: the JMS client identifier: unique per virtual host, the owner of durable
            subscriptions.
        username, password: override the URL's credentials.
        connection_name: shown by the broker (defaults to the client id).
        reconnect: True or a ReconnectPolicy to reconnect automatically (see ReconnectPolicy).
        exception_listener: called with a JMSError when the connection fails asynchronously.
        allow_pickle: accept ObjectMessages serialized with pickle (trusted senders only).
        prefetch: messages a consumer may hold unacknowledged (basic.qos per consumer).
        timeout: seconds to wait for any broker reply before raising TimeoutError.
        ssl_context: for amqps://.

    Raises:
        ConnectionLostError: the broker cannot be reached.
        AuthenticationError: credentials or virtual host refused.
        InvalidClientIDError: the client id is in use.
    """
    address = parse_url(url)
    if username is not None or password is not None:
        address = Address(
            address.scheme,
            address.host,
            address.port,
            username if username is not None else address.username,
            password if password is not None else address.password,
            address.vhost,
            address.heartbeat,
            address.connect_timeout,
        )
    policy = ReconnectPolicy() if reconnect is True else (reconnect or None)
    settings = ConnectionSettings(
        address,
        client_id=client_id,
        connection_name=connection_name,
        ssl_context=ssl_context,
        reconnect=policy,
        allow_pickle=allow_pickle,
        prefetch=prefetch,
        timeout=timeout,
    )
    flavor = SyncFlavor(timeout)
    core = CoreConnection(flavor, settings, _SyncTransports())
    core.exception_listener = exception_listener
    run_sync(core.open_op(), timeout)
    return Connection(core)


class Connection:
    """A connection to the broker (JMS Connection). Make one with connect().

    No message is delivered before start(); close() closes its sessions first. Use it as a
    context manager to close it however the block ends.
    """

    def __init__(self, core: CoreConnection) -> None:
        self._core = core
        self._flavor: SyncFlavor = core.flavor
        self._sessions: list[Session] = []

    # -- helpers -------------------------------------------------------------------------------

    def _run(self, op: Op[T]) -> T:
        return run_sync(op, self._flavor.timeout)

    def _retrying(self, make_op: Callable[[], Op[T]]) -> T:
        """Run an op; across a reconnect, wait for it and run the op again."""
        core = self._core
        deadline = None
        while True:
            try:
                return run_sync(make_op(), self._flavor.timeout)
            except ConnectionLostError:
                policy = core.settings.reconnect
                if policy is None or core.state in (FAILED, CLOSED, CLOSING):
                    raise
                if deadline is None:
                    deadline = time.monotonic() + policy.max_wait
                self._wait_reconnected(deadline)

    def _wait_reconnected(self, deadline: float) -> None:
        """After a ConnectionLostError: wait until the connection is open again, then retry.

        OPEN right away means the loss is not noticed yet or a channel is being reopened: pause
        so that the caller's retry loop does not spin, and let the deadline bound it.
        """
        core = self._core
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLostError("connection lost; not reconnected within max_wait")
            core.state_signal.wait_until(lambda: core.state != RECONNECTING, remaining)
            if core.state == OPEN:
                time.sleep(RETRY_PAUSE)
                if core.state == OPEN:
                    return
            elif core.state != RECONNECTING:
                core.check_usable()

    # -- JMS Connection ------------------------------------------------------------------------

    @property
    def client_id(self) -> str | None:
        return self._core.client_id

    @property
    def server_properties(self) -> dict[str, Any]:
        """What the broker said about itself (product, version, capabilities)."""
        engine = self._core.engine
        return {} if engine is None else dict(engine.server_properties)

    @property
    def exception_listener(self) -> Callable[[JMSError], Any] | None:
        return self._core.exception_listener

    @exception_listener.setter
    def exception_listener(self, listener: Callable[[JMSError], Any] | None) -> None:
        self._core.exception_listener = listener

    @property
    def is_closed(self) -> bool:
        return self._core.state in (CLOSED, CLOSING)

    @property
    def is_started(self) -> bool:
        return self._core.started

    def start(self) -> None:
        """Start (or restart) delivery of incoming messages."""
        if self._core.state != RECONNECTING:
            self._core.check_usable()
        self._core.start()

    def stop(self) -> None:
        """Pause delivery; returns once running message listeners have returned."""
        core = self._core
        core.stop()
        current = threading.current_thread()
        for session in list(self._sessions):
            if session._dispatcher is current:
                raise IllegalStateError("stop() cannot be called from a message listener")
        for session in list(self._sessions):
            session._core.listener_signal.wait_until(
                lambda s=session: not s._core.in_listener, self._flavor.timeout
            )

    def session(
        self,
        ack_mode: AckMode = AckMode.AUTO,
        *,
        transacted: bool = False,
        prefetch: int | None = None,
    ) -> Session:
        """A new session (JMS createSession); a transacted one ignores ack_mode."""
        core = self._retrying(lambda: self._core.session_op(ack_mode, transacted, prefetch))
        session = Session(self, core)
        self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close sessions (rolling back open transactions) and the connection.

        Like stop(), waits for message listeners that are running to return (unless called
        from one of them).
        """
        current = threading.current_thread()
        sessions = list(self._sessions)
        self._core.stop()
        if all(session._dispatcher is not current for session in sessions):
            for session in sessions:
                session._core.listener_signal.wait_until(
                    lambda s=session: not s._core.in_listener, self._flavor.timeout
                )
        self._run(self._core.close_op())
        for session in sessions:
            session._stop_dispatcher(join=session._dispatcher is not current)
        transport = self._core.transport
        if isinstance(transport, SocketTransport):
            transport.join()
        self._flavor.stop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self._core.settings.address} client_id={self.client_id!r}>"


class Session:
    """A single-threaded context for producing and consuming (JMS Session)."""

    def __init__(self, connection: Connection, core: CoreSession) -> None:
        self.connection = connection
        self._core = core
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_lock = threading.Lock()

    @property
    def ack_mode(self) -> AckMode:
        return self._core.ack_mode

    @property
    def transacted(self) -> bool:
        return self._core.transacted

    @property
    def is_closed(self) -> bool:
        return self._core.closed

    # destinations and messages: plain data, nothing on the wire
    @staticmethod
    def queue(name: str) -> Queue:
        return Queue(name)

    @staticmethod
    def topic(name: str) -> Topic:
        return Topic(name)

    @staticmethod
    def message(**fields: Any) -> Message:
        return Message(**fields)

    @staticmethod
    def text_message(text: str | None = None, **fields: Any) -> TextMessage:
        return TextMessage(text, **fields)

    @staticmethod
    def bytes_message(body: bytes | None = None, **fields: Any) -> BytesMessage:
        return BytesMessage(body, **fields)

    @staticmethod
    def map_message(values: Mapping[str, Any] | None = None, **fields: Any) -> MapMessage:
        return MapMessage(values, **fields)

    @staticmethod
    def stream_message(items: list[Any] | None = None, **fields: Any) -> StreamMessage:
        return StreamMessage(items, **fields)

    @staticmethod
    def object_message(
        obj: Any = None, *, serializer: str = "json", **fields: Any
    ) -> ObjectMessage:
        return ObjectMessage(obj, serializer=serializer, **fields)

    def temporary_queue(self) -> TemporaryQueue:
        """A queue deleted when the connection closes; consumers only from this connection."""
        conn = self.connection
        return conn._retrying(lambda: conn._core.temporary_queue_op(self._delete_temporary))

    def temporary_topic(self) -> TemporaryTopic:
        return self.connection._core.temporary_topic(self._delete_temporary)

    def _delete_temporary(self, destination: Destination) -> None:
        self.connection._run(self.connection._core.delete_temporary_op(destination))

    # producers and consumers
    def producer(
        self,
        destination: Destination | None = None,
        *,
        delivery_mode: DeliveryMode = DeliveryMode.PERSISTENT,
        priority: int = DEFAULT_PRIORITY,
        time_to_live: float = 0.0,
        delivery_delay: float = 0.0,
        disable_message_id: bool = False,
        disable_message_timestamp: bool = False,
    ) -> Producer:
        """A producer for `destination`, or for any (None: name it in each send)."""
        if destination is not None and self.connection._core.needs_declare(destination):
            conn = self.connection
            conn._retrying(lambda: conn._core.ensure_destination_op(destination))
        return Producer(
            self,
            destination,
            delivery_mode=delivery_mode,
            priority=priority,
            time_to_live=time_to_live,
            delivery_delay=delivery_delay,
            disable_message_id=disable_message_id,
            disable_message_timestamp=disable_message_timestamp,
        )

    def _consumer(self, destination: Destination, **options: Any) -> Consumer:
        conn = self.connection
        core = conn._retrying(lambda: self._core.consumer_op(destination, **options))
        return Consumer(self, core)

    def consumer(
        self,
        destination: Destination,
        selector: str | None = None,
        *,
        no_local: bool = False,
        prefetch: int | None = None,
    ) -> Consumer:
        """A consumer of a queue, or a non-durable subscription to a topic.

        Raises:
            InvalidSelectorError: the broker refused the selector.
        """
        return self._consumer(destination, selector=selector, no_local=no_local, prefetch=prefetch)

    def durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        """A durable subscription `name` of this client id (kept while nobody consumes)."""
        return self._consumer(
            topic, selector=selector, no_local=no_local, subscription=name, durable=True
        )

    def shared_consumer(self, topic: Topic, name: str, selector: str | None = None) -> Consumer:
        """A consumer on the shared non-durable subscription `name` (JMS 2.0)."""
        return self._consumer(topic, selector=selector, subscription=name, shared=True)

    def shared_durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        """A consumer on the shared durable subscription `name` (JMS 2.0)."""
        return self._consumer(
            topic, selector=selector, subscription=name, durable=True, shared=True
        )

    def unsubscribe(self, name: str) -> None:
        """Delete the durable subscription `name` (it must have no active consumer)."""
        self.connection._retrying(lambda: self._core.unsubscribe_op(name))

    def browser(self, queue: Queue, selector: str | None = None) -> QueueBrowser:
        """Look at a queue's messages without consuming them."""
        if not isinstance(queue, Queue):
            raise IllegalStateError("only queues can be browsed")
        return QueueBrowser(self, queue, selector)

    def requestor(self, destination: Destination) -> Requestor:
        """Request/reply over a temporary queue (JMS QueueRequestor)."""
        return Requestor(self, destination)

    # acknowledgement and transactions
    def acknowledge(self) -> None:
        """Acknowledge every message this session consumed (JMS 2.0 JMSContext.acknowledge)."""
        self._core.acknowledge_all()

    def commit(self) -> None:
        """Commit the sends and receives of the transaction so far."""
        self.connection._run(self._core.commit_op())

    def rollback(self) -> None:
        """Discard the transaction's sends; its received messages will be redelivered."""
        self.connection._run(self._core.rollback_op())

    def recover(self) -> None:
        """Redeliver every unacknowledged message, starting with the oldest."""
        self.connection._run(self._core.recover_op())

    # message listeners
    def _ensure_dispatcher(self) -> None:
        with self._dispatcher_lock:
            if self._dispatcher is None or not self._dispatcher.is_alive():
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="ferrymq-session-listener", daemon=True
                )
                self._dispatcher.start()

    def _dispatch(self) -> None:
        core = self._core
        conn = core.conn
        signal = core.listener_signal
        queue = core.listener_queue

        def ready() -> bool:
            return (
                core.closed
                or conn.state in (CLOSED, CLOSING)
                or (conn.started and bool(core.listener_queue))
            )

        while True:
            signal.wait_until(ready, None)
            if core.closed or conn.state in (CLOSED, CLOSING):
                return
            queue = core.listener_queue
            try:
                consumer, msg = queue.popleft()
            except IndexError:
                continue
            listener = consumer.listener
            if listener is None or consumer.closed:
                consumer.buffer.append(msg)
                continue
            core.in_listener = True
            try:
                core.consumed_by_listener(msg)
                failed = False
                try:
                    listener(msg)
                except Exception:
                    failed = True
                    log.exception(
                        "message listener %r raised; the message is redelivered", listener
                    )
                core.listener_done(msg, failed)
            except JMSError:
                log.exception("acknowledging after a message listener failed")
            finally:
                core.in_listener = False
                signal.notify()

    def _stop_dispatcher(self, join: bool) -> None:
        """Wake the dispatcher so it sees the session or connection closed, and wait for it."""
        self._core.listener_signal.notify()
        thread = self._dispatcher
        if join and thread is not None and thread is not threading.current_thread():
            if self._core.closed or self.connection._core.state in (CLOSED, CLOSING):
                thread.join(5)

    def close(self) -> None:
        """Close the session: consumers stop, an open transaction rolls back, unacknowledged
        messages are redelivered."""
        self.connection._run(self._core.close_op())
        self._stop_dispatcher(join=True)
        if self in self.connection._sessions:
            self.connection._sessions.remove(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
