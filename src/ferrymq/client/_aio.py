"""The asyncio connection and session (see ferrymq.client.aio)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ferrymq.client._aio_endpoints import Consumer, Producer, QueueBrowser, Requestor
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
from ferrymq.client._transport import Address, AioTransport, open_aio, parse_url
from ferrymq.client._vm import VMTransport
from ferrymq.client._waiters import AioFlavor, Op, run_async

if TYPE_CHECKING:
    import ssl

    from ferrymq.client._protocol import Engine
__all__ = ["Connection", "Session", "connect"]

log = logging.getLogger("ferrymq.client")
T = TypeVar("T")


class _AioTransports:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def open(
        self,
        engine: Engine,
        address: Address,
        ssl_context: ssl.SSLContext | None,
        create: bool = True,
    ) -> Op[Any]:
        if address.is_vm:
            return VMTransport(engine, address.vm_name, self.loop, create=create)
        transport = yield asyncio.ensure_future(open_aio(engine, address, ssl_context))
        return transport

    def opened(self, transport: Any) -> None:
        if isinstance(transport, AioTransport):
            transport.start_heartbeat()


class _Connecting:
    """What aio.connect() returns: await it, or use it as `async with`."""

    def __init__(self, coro: Coroutine[Any, Any, Connection]) -> None:
        self._coro = coro
        self._conn: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._coro.__await__()

    async def __aenter__(self) -> Connection:
        self._conn = await self._coro
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()


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
) -> _Connecting:
    """Open a connection on the running loop; arguments as ferrymq.client.connect."""

    async def open_connection() -> Connection:
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
        loop = asyncio.get_running_loop()
        flavor = AioFlavor(loop, timeout)
        core = CoreConnection(flavor, settings, _AioTransports(loop))
        core.exception_listener = exception_listener
        await run_async(core.open_op(), timeout)
        return Connection(core)

    return _Connecting(open_connection())


class Connection:
    """An asyncio connection (see ferrymq.client.Connection)."""

    def __init__(self, core: CoreConnection) -> None:
        self._core = core
        self._flavor: AioFlavor = core.flavor
        self._sessions: list[Session] = []

    async def _run(self, op: Op[T]) -> T:
        return await run_async(op, self._flavor.timeout)

    async def _retrying(self, make_op: Callable[[], Op[T]]) -> T:
        core = self._core
        deadline = None
        while True:
            try:
                return await run_async(make_op(), self._flavor.timeout)
            except ConnectionLostError:
                policy = core.settings.reconnect
                if policy is None or core.state in (FAILED, CLOSED, CLOSING):
                    raise
                if deadline is None:
                    deadline = time.monotonic() + policy.max_wait
                await self._wait_reconnected(deadline)

    async def _wait_reconnected(self, deadline: float) -> None:
        """After a ConnectionLostError: wait until the connection is open again, then retry.

        OPEN right away means the loss is not noticed yet or a channel is being reopened: pause
        so that the caller's retry loop does not spin, and let the deadline bound it.
        """
        core = self._core
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLostError("connection lost; not reconnected within max_wait")
            await core.state_signal.wait_until(lambda: core.state != RECONNECTING, remaining)
            if core.state == OPEN:
                await asyncio.sleep(RETRY_PAUSE)
                if core.state == OPEN:
                    return
            elif core.state != RECONNECTING:
                core.check_usable()

    @property
    def client_id(self) -> str | None:
        return self._core.client_id

    @property
    def server_properties(self) -> dict[str, Any]:
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
        if self._core.state != RECONNECTING:
            self._core.check_usable()
        self._core.start()

    async def stop(self) -> None:
        """Pause delivery; returns once running message listeners have returned."""
        current = asyncio.current_task()
        if any(session._dispatcher is current for session in self._sessions):
            raise IllegalStateError("stop() cannot be called from a message listener")
        self._core.stop()
        for session in list(self._sessions):
            await session._core.listener_signal.wait_until(
                lambda s=session: not s._core.in_listener, self._flavor.timeout
            )

    async def session(
        self,
        ack_mode: AckMode = AckMode.AUTO,
        *,
        transacted: bool = False,
        prefetch: int | None = None,
    ) -> Session:
        core = await self._retrying(lambda: self._core.session_op(ack_mode, transacted, prefetch))
        session = Session(self, core)
        self._sessions.append(session)
        return session

    async def close(self) -> None:
        """Close sessions and the connection, after running listeners return."""
        current = asyncio.current_task()
        sessions = list(self._sessions)
        self._core.stop()
        if all(session._dispatcher is not current for session in sessions):
            for session in sessions:
                await session._core.listener_signal.wait_until(
                    lambda s=session: not s._core.in_listener, self._flavor.timeout
                )
        for session in sessions:
            session._stop_dispatcher()
        await self._run(self._core.close_op())
        for session in list(self._sessions):
            await session._join_dispatcher()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Session:
    """An asyncio session (see ferrymq.client.Session)."""

    def __init__(self, connection: Connection, core: CoreSession) -> None:
        self.connection = connection
        self._core = core
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def ack_mode(self) -> AckMode:
        return self._core.ack_mode

    @property
    def transacted(self) -> bool:
        return self._core.transacted

    @property
    def is_closed(self) -> bool:
        return self._core.closed

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

    async def temporary_queue(self) -> TemporaryQueue:
        conn = self.connection
        return await conn._retrying(lambda: conn._core.temporary_queue_op(self._delete_temporary))

    def temporary_topic(self) -> TemporaryTopic:
        return self.connection._core.temporary_topic(self._delete_temporary)

    def _delete_temporary(self, destination: Destination) -> Awaitable[None]:
        return self.connection._run(self.connection._core.delete_temporary_op(destination))

    async def producer(
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
        if destination is not None and self.connection._core.needs_declare(destination):
            conn = self.connection
            await conn._retrying(lambda: conn._core.ensure_destination_op(destination))
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

    async def _consumer(self, destination: Destination, **options: Any) -> Consumer:
        core = await self.connection._retrying(
            lambda: self._core.consumer_op(destination, **options)
        )
        return Consumer(self, core)

    async def consumer(
        self,
        destination: Destination,
        selector: str | None = None,
        *,
        no_local: bool = False,
        prefetch: int | None = None,
    ) -> Consumer:
        return await self._consumer(
            destination, selector=selector, no_local=no_local, prefetch=prefetch
        )

    async def durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        return await self._consumer(
            topic, selector=selector, no_local=no_local, subscription=name, durable=True
        )

    async def shared_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        return await self._consumer(topic, selector=selector, subscription=name, shared=True)

    async def shared_durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        return await self._consumer(
            topic, selector=selector, subscription=name, durable=True, shared=True
        )

    async def unsubscribe(self, name: str) -> None:
        await self.connection._retrying(lambda: self._core.unsubscribe_op(name))

    def browser(self, queue: Queue, selector: str | None = None) -> QueueBrowser:
        if not isinstance(queue, Queue):
            raise IllegalStateError("only queues can be browsed")
        return QueueBrowser(self, queue, selector)

    async def requestor(self, destination: Destination) -> Requestor:
        requestor = Requestor(self, destination)
        await requestor._open()
        return requestor

    def acknowledge(self) -> None:
        self._core.acknowledge_all()

    async def commit(self) -> None:
        await self.connection._run(self._core.commit_op())

    async def rollback(self) -> None:
        await self.connection._run(self._core.rollback_op())

    async def recover(self) -> None:
        await self.connection._run(self._core.recover_op())

    # listeners
    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="ferrymq-session-listener"
            )

    async def _dispatch(self) -> None:
        core = self._core
        conn = core.conn

        def ready() -> bool:
            return (
                core.closed
                or conn.state in (CLOSED, CLOSING)
                or (conn.started and bool(core.listener_queue))
            )

        while True:
            await core.listener_signal.wait_until(ready, None)
            if core.closed or conn.state in (CLOSED, CLOSING):
                return
            try:
                consumer, msg = core.listener_queue.popleft()
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
                    result = listener(msg)
                    if asyncio.iscoroutine(result):
                        await result
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
                core.listener_signal.notify()

    def _stop_dispatcher(self) -> None:
        self._core.listener_signal.notify()

    async def _join_dispatcher(self) -> None:
        task = self._dispatcher
        if task is not None and task is not asyncio.current_task():
            self._core.listener_signal.notify()
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def close(self) -> None:
        await self.connection._run(self._core.close_op())
        await self._join_dispatcher()
        if self in self.connection._sessions:
            self.connection._sessions.remove(self)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
