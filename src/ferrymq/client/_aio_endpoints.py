"""The asyncio producer, consumer, queue browser and requestor (see ferrymq.client.aio)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ferrymq.client._consumer import CoreConsumer
from ferrymq.client._core import CLOSED, CLOSING, FAILED
from ferrymq.client._destinations import Destination, Queue, TemporaryQueue
from ferrymq.client._errors import ConnectionClosedError, ConnectionLostError, IllegalStateError
from ferrymq.client._kinds import make_message
from ferrymq.client._message import DeliveryMode, Message

if TYPE_CHECKING:
    from ferrymq.client._aio import Session

__all__ = ["Consumer", "Producer", "QueueBrowser", "Requestor"]

MessageListener = Callable[[Message], Any]


class Producer:
    """An asyncio producer (see ferrymq.client.Producer)."""

    def __init__(
        self,
        session: Session,
        destination: Destination | None,
        *,
        delivery_mode: DeliveryMode,
        priority: int,
        time_to_live: float,
        delivery_delay: float,
        disable_message_id: bool,
        disable_message_timestamp: bool,
    ) -> None:
        self.session = session
        self.destination = destination
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.time_to_live = time_to_live
        self.delivery_delay = delivery_delay
        self.disable_message_id = disable_message_id
        self.disable_message_timestamp = disable_message_timestamp
        self.closed = False

    async def _publish(
        self,
        message: Message | Any,
        destination: Destination | None,
        delivery_mode: DeliveryMode | None,
        priority: int | None,
        time_to_live: float | None,
        delivery_delay: float | None,
    ) -> tuple[Message, asyncio.Future[Any] | None]:
        if self.closed:
            raise ConnectionClosedError("the producer is closed")
        target = destination if destination is not None else self.destination
        if target is None:
            raise IllegalStateError("this producer has no destination: pass destination=")
        if destination is not None and self.destination is not None:
            raise IllegalStateError("this producer sends to its own destination only")
        msg = make_message(message)
        conn = self.session.connection
        core_conn = conn._core
        if core_conn.needs_declare(target):
            await conn._retrying(lambda: core_conn.ensure_destination_op(target))
        mode = self.delivery_mode if delivery_mode is None else delivery_mode
        pending = self.session._core.send(
            target,
            msg,
            int(mode),
            self.priority if priority is None else priority,
            self.time_to_live if time_to_live is None else time_to_live,
            self.delivery_delay if delivery_delay is None else delivery_delay,
            self.disable_message_id,
            self.disable_message_timestamp,
            mode == DeliveryMode.PERSISTENT,
        )
        transport = core_conn.transport
        if transport is not None and transport.paused_writing:
            await transport.drain()
        return msg, pending

    async def send(
        self,
        message: Message | Any,
        *,
        destination: Destination | None = None,
        delivery_mode: DeliveryMode | None = None,
        priority: int | None = None,
        time_to_live: float | None = None,
        delivery_delay: float | None = None,
    ) -> Message:
        """Send (see ferrymq.client.Producer.send); a PERSISTENT send awaits the confirm."""
        conn = self.session.connection
        deadline = None
        while True:
            try:
                msg, pending = await self._publish(
                    message, destination, delivery_mode, priority, time_to_live, delivery_delay
                )
                if pending is not None:
                    await asyncio.wait_for(pending, conn._flavor.timeout)
                return msg
            except ConnectionLostError:
                policy = conn._core.settings.reconnect
                if policy is None or conn._core.state in (FAILED, CLOSED, CLOSING):
                    raise
                if deadline is None:
                    deadline = time.monotonic() + policy.max_wait
                await conn._wait_reconnected(deadline)

    async def send_async(
        self,
        message: Message | Any,
        callback: Callable[[Message, BaseException | None], Any] | None = None,
        *,
        destination: Destination | None = None,
        delivery_mode: DeliveryMode | None = None,
        priority: int | None = None,
        time_to_live: float | None = None,
        delivery_delay: float | None = None,
    ) -> asyncio.Future[Message]:
        """Send and return at once with a future for the broker's confirmation."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        msg, pending = await self._publish(
            message, destination, delivery_mode, priority, time_to_live, delivery_delay
        )
        flavor = self.session.connection._flavor

        def completed(p: asyncio.Future[Any] | None) -> None:
            error = None
            if p is not None:
                error = p.exception() if not p.cancelled() else asyncio.CancelledError()
            if not future.done():
                if error is None:
                    future.set_result(msg)
                else:
                    future.set_exception(error)
            if callback is not None:
                flavor.call_soon(callback, msg, error)

        if pending is None:
            completed(None)
        else:
            pending.add_done_callback(completed)
        return future

    def close(self) -> None:
        self.closed = True


class Consumer:
    """An asyncio consumer: `await receive()`, a listener, or `async for`."""

    def __init__(self, session: Session, core: CoreConsumer) -> None:
        self.session = session
        self._core = core

    @property
    def destination(self) -> Destination:
        return self._core.destination

    @property
    def selector(self) -> str | None:
        return self._core.selector

    @property
    def queue_name(self) -> str | None:
        return self._core.queue_name

    @property
    def is_closed(self) -> bool:
        return self._core.closed

    async def receive(self, timeout: float | None = None) -> Message | None:
        core = self._core
        if core.listener is not None:
            raise IllegalStateError("this consumer has a message listener")
        conn = core.session.conn
        if conn.started:
            msg = core.take()
            if msg is not None:
                return msg
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if core.closed:
                if core.error is not None and not core.session.closed:
                    raise core.error
                return None
            state = conn.state
            if state == FAILED:
                raise conn.error or ConnectionLostError("connection lost")
            if state in (CLOSED, CLOSING) or core.session.closed:
                return None
            if conn.started:
                msg = core.take()
                if msg is not None:
                    return msg
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await core.signal.wait_until(core.ready, remaining)

    async def receive_no_wait(self) -> Message | None:
        return await self.receive(0)

    async def receive_body(self, timeout: float | None = None) -> Any:
        msg = await self.receive(timeout)
        return None if msg is None else msg.body

    @property
    def message_listener(self) -> MessageListener | None:
        return self._core.listener

    @message_listener.setter
    def message_listener(self, listener: MessageListener | None) -> None:
        self.set_message_listener(listener)

    def set_message_listener(self, listener: MessageListener | None) -> None:
        """Have `listener(message)` (a function or a coroutine function) called per message."""
        core = self._core
        session = core.session
        core.listener = listener
        if listener is not None:
            while core.buffer:
                session.listener_queue.append((core, core.buffer.popleft()))
            self.session._ensure_dispatcher()
            session.listener_signal.notify()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            msg = await self.receive()
            if msg is None:
                return
            yield msg

    async def close(self) -> None:
        await self.session.connection._run(self._core.close_op())

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class QueueBrowser:
    """An asyncio queue browser: `await browser.messages()` or `async for`."""

    def __init__(
        self, session: Session, queue: Queue, selector: str | None, limit: int = 10_000
    ) -> None:
        self.session = session
        self.queue = queue
        self.selector = selector
        self.limit = limit

    async def messages(self) -> list[Message]:
        return await self.session.connection._retrying(
            lambda: self.session._core.browse_op(self.queue, self.selector, self.limit)
        )

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        for msg in await self.messages():
            yield msg

    def close(self) -> None:
        pass


class Requestor:
    """asyncio request/reply (see ferrymq.client.Requestor); safe for concurrent tasks."""

    def __init__(self, session: Session, destination: Destination) -> None:
        self.session = session
        self.destination = destination
        self.reply_queue: TemporaryQueue | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._lock = asyncio.Lock()
        self._early: dict[str, Message] = {}

    async def _open(self) -> None:
        self.reply_queue = await self.session.temporary_queue()
        self._consumer = await self.session.consumer(self.reply_queue)
        self._producer = await self.session.producer(self.destination)

    async def request(
        self, message: Message | Any, timeout: float | None = None, **send_options: Any
    ) -> Message | None:
        assert self._producer is not None and self._consumer is not None
        msg = make_message(message)
        msg.reply_to = self.reply_queue
        send_options.setdefault("delivery_mode", DeliveryMode.NON_PERSISTENT)
        # AMQP RPC servers copy the correlation id, JMS ones often answer with the message id:
        # a reply matching either is ours
        if msg.correlation_id is None:
            msg.correlation_id = uuid.uuid4().hex
        sent = await self._producer.send(msg, **send_options)
        wanted = {key for key in (msg.correlation_id, sent.message_id) if key is not None}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            async with self._lock:
                for key in wanted:
                    early = self._early.pop(key, None)
                    if early is not None:
                        return early
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                reply = await self._consumer.receive(remaining)
                if reply is None:
                    return None
                if reply.correlation_id in wanted:
                    return reply
                if reply.correlation_id is not None and len(self._early) < 1000:
                    self._early[reply.correlation_id] = reply

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
        if self.reply_queue is not None:
            await self.reply_queue.delete()

    async def __aenter__(self) -> Requestor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
