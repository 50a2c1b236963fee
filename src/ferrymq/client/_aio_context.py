"""The JMS 2.0 simplified API for asyncio: context(), Context, ContextProducer."""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

from ferrymq.client._aio import Connection, Session, connect
from ferrymq.client._aio_endpoints import Consumer, Producer, QueueBrowser
from ferrymq.client._core import AckMode
from ferrymq.client._destinations import Destination, Queue, TemporaryQueue, TemporaryTopic, Topic
from ferrymq.client._kinds import make_message
from ferrymq.client._message import DEFAULT_PRIORITY, DeliveryMode, Message

__all__ = ["Context", "ContextProducer", "context"]


class _Opening:
    def __init__(self, coro: Coroutine[Any, Any, Context]) -> None:
        self._coro = coro
        self._context: Context | None = None

    def __await__(self) -> Generator[Any, None, Context]:
        return self._coro.__await__()

    async def __aenter__(self) -> Context:
        self._context = await self._coro
        return self._context

    async def __aexit__(self, *exc: object) -> None:
        if self._context is not None:
            await self._context.close()


def context(
    url: str = "vm://localhost",
    ack_mode: AckMode = AckMode.AUTO,
    *,
    transacted: bool = False,
    **connect_options: Any,
) -> _Opening:
    """An asyncio JMSContext: await it, or `async with aio.context(url) as ctx`."""

    async def open_context() -> Context:
        connection = await connect(url, **connect_options)
        try:
            session = await connection.session(ack_mode, transacted=transacted)
        except BaseException:
            await connection.close()
            raise
        return Context(connection, session, owns_connection=True)

    return _Opening(open_context())


class ContextProducer:
    """JMSProducer for asyncio: chained setters, `await send(destination, body)`."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._producer = Producer(
            context.session,
            None,
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=DEFAULT_PRIORITY,
            time_to_live=0.0,
            delivery_delay=0.0,
            disable_message_id=False,
            disable_message_timestamp=False,
        )
        self._properties: dict[str, Any] = {}
        self._correlation_id: str | bytes | None = None
        self._reply_to: Destination | None = None
        self._type: str | None = None

    def set_delivery_mode(self, mode: DeliveryMode) -> ContextProducer:
        self._producer.delivery_mode = mode
        return self

    def set_priority(self, priority: int) -> ContextProducer:
        self._producer.priority = priority
        return self

    def set_time_to_live(self, seconds: float) -> ContextProducer:
        self._producer.time_to_live = seconds
        return self

    def set_delivery_delay(self, seconds: float) -> ContextProducer:
        self._producer.delivery_delay = seconds
        return self

    def set_property(self, name: str, value: Any) -> ContextProducer:
        Message().set_property(name, value)
        self._properties[name] = value
        return self

    def set_correlation_id(self, value: str | bytes) -> ContextProducer:
        self._correlation_id = value
        return self

    def set_reply_to(self, destination: Destination) -> ContextProducer:
        self._reply_to = destination
        return self

    def set_type(self, value: str) -> ContextProducer:
        self._type = value
        return self

    async def send(self, destination: Destination, body: Any) -> ContextProducer:
        msg = make_message(body)
        for name, value in self._properties.items():
            if not msg._props_ro:
                msg.set_property(name, value)
        if self._correlation_id is not None:
            msg.correlation_id = self._correlation_id
        if self._reply_to is not None:
            msg.reply_to = self._reply_to
        if self._type is not None:
            msg.type = self._type
        await self._producer.send(msg, destination=destination)
        return self


class Context:
    """asyncio JMSContext (see ferrymq.client.Context)."""

    def __init__(self, connection: Connection, session: Session, *, owns_connection: bool) -> None:
        self.connection = connection
        self.session = session
        self._owns = owns_connection
        self.auto_start = True

    async def create_context(
        self, ack_mode: AckMode = AckMode.AUTO, *, transacted: bool = False
    ) -> Context:
        session = await self.connection.session(ack_mode, transacted=transacted)
        return Context(self.connection, session, owns_connection=False)

    @property
    def client_id(self) -> str | None:
        return self.connection.client_id

    def start(self) -> None:
        self.connection.start()

    async def stop(self) -> None:
        await self.connection.stop()

    def producer(self) -> ContextProducer:
        return ContextProducer(self)

    def _started(self, consumer: Consumer) -> Consumer:
        if self.auto_start:
            self.connection.start()
        return consumer

    async def consumer(
        self, destination: Destination, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        return self._started(await self.session.consumer(destination, selector, no_local=no_local))

    async def durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        return self._started(
            await self.session.durable_consumer(topic, name, selector, no_local=no_local)
        )

    async def shared_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        return self._started(await self.session.shared_consumer(topic, name, selector))

    async def shared_durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        return self._started(await self.session.shared_durable_consumer(topic, name, selector))

    async def unsubscribe(self, name: str) -> None:
        await self.session.unsubscribe(name)

    def browser(self, queue: Queue, selector: str | None = None) -> QueueBrowser:
        return self.session.browser(queue, selector)

    def queue(self, name: str) -> Queue:
        return Queue(name)

    def topic(self, name: str) -> Topic:
        return Topic(name)

    async def temporary_queue(self) -> TemporaryQueue:
        return await self.session.temporary_queue()

    def temporary_topic(self) -> TemporaryTopic:
        return self.session.temporary_topic()

    text_message = staticmethod(Session.text_message)
    bytes_message = staticmethod(Session.bytes_message)
    map_message = staticmethod(Session.map_message)
    stream_message = staticmethod(Session.stream_message)
    object_message = staticmethod(Session.object_message)
    message = staticmethod(Session.message)

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def recover(self) -> None:
        await self.session.recover()

    def acknowledge(self) -> None:
        self.session.acknowledge()

    async def close(self) -> None:
        if self._owns:
            await self.connection.close()
        else:
            await self.session.close()

    async def __aenter__(self) -> Context:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
