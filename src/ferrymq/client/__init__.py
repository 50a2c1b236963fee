"""ferrymq.client: the JMS 2.0 programming model for Python, over AMQP 0-9-1 and vm://.

    from ferrymq.client import connect, AckMode

    with connect("amqp://guest:guest@localhost:5672/", client_id="billing") as conn:
        session = conn.session(AckMode.CLIENT)
        orders = session.queue("orders")
        session.producer(orders).send(session.text_message("hi", properties={"size": 5}))
        consumer = session.consumer(orders, selector="size > 3")
        conn.start()
        msg = consumer.receive(timeout=1.0)
        msg.acknowledge()

The asyncio flavour is ferrymq.client.aio, with the same classes awaited; vm:// and the
in-process broker registry are in ferrymq.client.vm. docs/client.md is the guide.
"""

from __future__ import annotations

from ferrymq.client import aio, vm
from ferrymq.client._bodies import BytesMessage, MapMessage, StreamMessage
from ferrymq.client._core import AckMode, ReconnectPolicy
from ferrymq.client._destinations import Destination, Queue, TemporaryQueue, TemporaryTopic, Topic
from ferrymq.client._errors import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionLostError,
    IllegalStateError,
    InvalidClientIDError,
    InvalidDestinationError,
    InvalidSelectorError,
    JMSError,
    MessageEOFError,
    MessageFormatError,
    MessageNotReadableError,
    MessageNotWriteableError,
    ResourceAllocationError,
    SendRefusedError,
    TransactionRolledBackError,
)
from ferrymq.client._kinds import make_message
from ferrymq.client._message import DeliveryMode, Message, ObjectMessage, TextMessage
from ferrymq.client._properties import Byte, Double, Float, Int, Long, Short
from ferrymq.client._sync import Connection, Session, connect
from ferrymq.client._sync_context import Context, ContextProducer, context
from ferrymq.client._sync_endpoints import Consumer, Producer, QueueBrowser, Requestor

__all__ = [
    "AckMode",
    "AuthenticationError",
    "Byte",
    "BytesMessage",
    "Connection",
    "ConnectionClosedError",
    "ConnectionLostError",
    "Consumer",
    "Context",
    "ContextProducer",
    "DeliveryMode",
    "Destination",
    "Double",
    "Float",
    "IllegalStateError",
    "Int",
    "InvalidClientIDError",
    "InvalidDestinationError",
    "InvalidSelectorError",
    "JMSError",
    "Long",
    "MapMessage",
    "Message",
    "MessageEOFError",
    "MessageFormatError",
    "MessageNotReadableError",
    "MessageNotWriteableError",
    "ObjectMessage",
    "Producer",
    "Queue",
    "QueueBrowser",
    "ReconnectPolicy",
    "Requestor",
    "ResourceAllocationError",
    "SendRefusedError",
    "Session",
    "Short",
    "StreamMessage",
    "TemporaryQueue",
    "TemporaryTopic",
    "TextMessage",
    "Topic",
    "TransactionRolledBackError",
    "aio",
    "connect",
    "context",
    "make_message",
    "vm",
]
