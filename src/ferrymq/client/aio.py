"""The asyncio flavour of ferrymq.client: the same classes, awaited.

    from ferrymq.client import aio

    async with aio.connect("amqp://guest:guest@localhost/", client_id="billing") as conn:
        session = await conn.session()
        orders = session.queue("orders")
        producer = await session.producer(orders)
        await producer.send(session.text_message("hi"))
        consumer = await session.consumer(orders)
        conn.start()
        msg = await consumer.receive(timeout=1.0)

Everything that talks to the broker is a coroutine; making destinations and messages, start(),
acknowledge() and the like are plain calls, as they only write or change local state. One
connection belongs to the event loop it was opened on. Message listeners may be plain
functions or coroutine functions; each session calls its listeners one at a time from a task.
"""

from __future__ import annotations

from ferrymq.client._aio import Connection, Session, connect
from ferrymq.client._aio_context import Context, ContextProducer, context
from ferrymq.client._aio_endpoints import Consumer, Producer, QueueBrowser, Requestor

__all__ = [
    "Connection",
    "Consumer",
    "Context",
    "ContextProducer",
    "Producer",
    "QueueBrowser",
    "Requestor",
    "Session",
    "connect",
    "context",
]
