"""The JMS 2.0 simplified API, blocking: context(), Context, ContextProducer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferrymq.client._core import AckMode
from ferrymq.client._destinations import Destination, Queue, TemporaryQueue, TemporaryTopic, Topic
from ferrymq.client._errors import JMSError
from ferrymq.client._kinds import make_message
from ferrymq.client._message import DeliveryMode, Message
from ferrymq.client._sync import Connection, Session, connect
from ferrymq.client._sync_endpoints import Consumer, QueueBrowser

__all__ = ["Context", "ContextProducer", "context"]


def context(
    url: str = "vm://localhost",
    ack_mode: AckMode = AckMode.AUTO,
    *,
    transacted: bool = False,
    **connect_options: Any,
) -> Context:
    """A JMSContext: a connection and one session, started when a consumer is made."""
    connection = connect(url, **connect_options)
    try:
        session = connection.session(ack_mode, transacted=transacted)
    except BaseException:
        connection.close()
        raise
    return Context(connection, session, owns_connection=True)


class ContextProducer:
    """JMSProducer: settings by chained setters, send(destination, body)."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._producer = context.session.producer(None)
        self._properties: dict[str, Any] = {}
        self._correlation_id: str | bytes | None = None
        self._reply_to: Destination | None = None
        self._type: str | None = None
        self._async: Callable[[Message, BaseException | None], Any] | None = None

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

    def set_disable_message_id(self, value: bool) -> ContextProducer:
        self._producer.disable_message_id = value
        return self

    def set_disable_message_timestamp(self, value: bool) -> ContextProducer:
        self._producer.disable_message_timestamp = value
        return self

    def set_property(self, name: str, value: Any) -> ContextProducer:
        Message().set_property(name, value)  # validate now
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

    def set_async(
        self, callback: Callable[[Message, BaseException | None], Any] | None
    ) -> ContextProducer:
        """Send asynchronously from now on, calling `callback(message, error)` on completion."""
        self._async = callback
        return self

    def send(self, destination: Destination, body: Any) -> ContextProducer:
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
        if self._async is not None:
            self._producer.send_async(msg, self._async, destination=destination)
        else:
            self._producer.send(msg, destination=destination)
        return self


class Context:
    """JMSContext (JMS 2.0 simplified API): one connection, one session.

    Made by context(); create_context() gives another context on the same connection.
    Consumers start the connection (auto-start), so messages flow as soon as one exists.
    """

    def __init__(self, connection: Connection, session: Session, *, owns_connection: bool) -> None:
        self.connection = connection
        self.session = session
        self._owns = owns_connection
        self.auto_start = True

    def create_context(
        self, ack_mode: AckMode = AckMode.AUTO, *, transacted: bool = False
    ) -> Context:
        return Context(
            self.connection,
            self.connection.session(ack_mode, transacted=transacted),
            owns_connection=False,
        )

    @property
    def client_id(self) -> str | None:
        return self.connection.client_id

    @property
    def exception_listener(self) -> Callable[[JMSError], Any] | None:
        return self.connection.exception_listener

    @exception_listener.setter
    def exception_listener(self, listener: Callable[[JMSError], Any] | None) -> None:
        self.connection.exception_listener = listener

    def start(self) -> None:
        self.connection.start()

    def stop(self) -> None:
        self.connection.stop()

    def producer(self) -> ContextProducer:
        return ContextProducer(self)

    def _started(self, consumer: Consumer) -> Consumer:
        if self.auto_start:
            self.connection.start()
        return consumer

    def consumer(
        self, destination: Destination, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        return self._started(self.session.consumer(destination, selector, no_local=no_local))

    def durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None, *, no_local: bool = False
    ) -> Consumer:
        return self._started(
            self.session.durable_consumer(topic, name, selector, no_local=no_local)
        )

    def shared_consumer(self, topic: Topic, name: str, selector: str | None = None) -> Consumer:
        return self._started(self.session.shared_consumer(topic, name, selector))

    def shared_durable_consumer(
        self, topic: Topic, name: str, selector: str | None = None
    ) -> Consumer:
        return self._started(self.session.shared_durable_consumer(topic, name, selector))

    def unsubscribe(self, name: str) -> None:
        self.session.unsubscribe(name)

    def browser(self, queue: Queue, selector: str | None = None) -> QueueBrowser:
        return self.session.browser(queue, selector)

    def queue(self, name: str) -> Queue:
        return Queue(name)

    def topic(self, name: str) -> Topic:
        return Topic(name)

    def temporary_queue(self) -> TemporaryQueue:
        return self.session.temporary_queue()

    def temporary_topic(self) -> TemporaryTopic:
        return self.session.temporary_topic()

    text_message = staticmethod(Session.text_message)
    bytes_message = staticmethod(Session.bytes_message)
    map_message = staticmethod(Session.map_message)
    stream_message = staticmethod(Session.stream_message)
    object_message = staticmethod(Session.object_message)
    message = staticmethod(Session.message)

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    def recover(self) -> None:
        self.session.recover()

    def acknowledge(self) -> None:
        self.session.acknowledge()

    def close(self) -> None:
        if self._owns:
            self.connection.close()
        else:
            self.session.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
