"""ferrymq.client.aio, the asyncio API, against a live broker over amqp:// and vm://."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ferrymq.client import (
    AckMode,
    ConnectionLostError,
    DeliveryMode,
    IllegalStateError,
    InvalidSelectorError,
    JMSError,
    MapMessage,
    Message,
    ReconnectPolicy,
    TextMessage,
    Topic,
    TransactionRolledBackError,
    aio,
    vm,
)

QUIET = 0.1


@pytest.fixture(params=["amqp", "vm"])
def url(request: pytest.FixtureRequest, broker: Any) -> Iterator[str]:
    if request.param == "amqp":
        yield broker.amqp_url
        return
    if not hasattr(broker, "loop"):
        pytest.skip("vm:// needs the in-process broker")
    name = f"test-{uuid.uuid4().hex[:8]}"
    vm.register(name, broker.broker, broker.loop)
    yield f"vm://{name}"
    vm.unregister(name)


async def _bodies(consumer: aio.Consumer, count: int) -> list[Any]:
    out = []
    while len(out) < count and (msg := await consumer.receive(2)) is not None:
        out.append(msg.body)
    while (msg := await consumer.receive(QUIET)) is not None:
        out.append(msg.body)
    return out


async def test_send_and_receive(url: str, name: str) -> None:
    async with aio.connect(url, client_id=f"{name}-c") as conn:
        assert conn.client_id == f"{name}-c"
        session = await conn.session()
        queue = session.queue(name)
        producer = await session.producer(queue)
        sent = await producer.send(
            session.text_message("hi", properties={"region": "eu", "size": 5}),
            priority=7,
            time_to_live=30.0,
        )
        await producer.send(session.map_message({"k": 1}, properties={"k": 1}))
        consumer = await session.consumer(queue, "size > 3 OR k = 1")
        assert await consumer.receive(QUIET) is None  # not started
        conn.start()
        msg = await consumer.receive(2)
        assert isinstance(msg, TextMessage) and msg.text == "hi"
        assert msg.message_id == sent.message_id and msg.priority == 7
        assert msg.properties["region"] == "eu" and not msg.redelivered
        as_map = await consumer.receive(2)
        assert isinstance(as_map, MapMessage) and as_map.body == {"k": 1}


async def test_async_iteration_ends_when_the_consumer_closes(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        session = await conn.session()
        queue = session.queue(name)
        producer = await session.producer(queue, delivery_mode=DeliveryMode.NON_PERSISTENT)
        for i in range(5):
            await producer.send(str(i))
        consumer = await session.consumer(queue)
        conn.start()
        seen = []
        async for msg in consumer:
            seen.append(msg.body)
            if len(seen) == 3:
                await consumer.close()
        assert seen == ["0", "1", "2"]
        rest = await session.consumer(queue)
        assert await _bodies(rest, 2) == ["3", "4"]


async def test_coroutine_listener_and_redelivery_after_it_raises(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        session = await conn.session(AckMode.AUTO)
        queue = session.queue(name)
        seen: list[tuple[str, bool, int]] = []
        done = asyncio.Event()

        async def listener(msg: Message) -> None:
            await asyncio.sleep(0)
            seen.append((msg.body, msg.redelivered, msg.delivery_count))
            if len(seen) == 1:
                raise RuntimeError("first attempt fails")
            done.set()

        consumer = await session.consumer(queue)
        consumer.message_listener = listener
        producer = await (await conn.session()).producer(queue)
        await producer.send("a")
        await asyncio.sleep(QUIET)
        assert seen == []
        conn.start()
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [("a", False, 1), ("a", True, 2)]
        with pytest.raises(IllegalStateError):
            await consumer.receive(0)
        await conn.stop()


async def test_transactions(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        tx = await conn.session(transacted=True)
        queue = tx.queue(name)
        producer = await tx.producer(queue)
        await producer.send("dropped")
        await tx.rollback()
        await producer.send("kept")
        await tx.commit()
        consumer = await tx.consumer(queue)
        conn.start()
        got = await consumer.receive(2)
        assert got is not None and got.body == "kept"
        await tx.rollback()
        again = await consumer.receive(2)
        assert again is not None and again.redelivered
        await tx.commit()
        await tx.close()
        check = await (await conn.session()).consumer(queue)
        assert await check.receive(QUIET) is None


async def test_client_acknowledge_and_recover(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        session = await conn.session(AckMode.CLIENT)
        queue = session.queue(name)
        producer = await session.producer(queue)
        for i in range(3):
            await producer.send(str(i))
        consumer = await session.consumer(queue)
        conn.start()
        first = await consumer.receive(2)
        second = await consumer.receive(2)
        assert first is not None and second is not None
        second.acknowledge()  # both
        third = await consumer.receive(2)
        assert third is not None and third.body == "2"
        await session.recover()
        again = await consumer.receive(2)
        assert again is not None and again.body == "2" and again.redelivered
        session.acknowledge()
        await session.close()
        check = await (await conn.session()).consumer(queue)
        assert await check.receive(QUIET) is None


async def test_invalid_selector(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        session = await conn.session()
        with pytest.raises(InvalidSelectorError):
            await session.consumer(session.queue(name), "a LIKE")
        producer = await session.producer(session.queue(name))
        await producer.send("ok")


async def test_subscriptions(url: str, name: str) -> None:
    topic = Topic(name)
    async with aio.connect(url, client_id=f"{name}-c") as conn:
        session = await conn.session()
        durable = await session.durable_consumer(topic, "d")
        shared = await session.shared_consumer(topic, "s")
        local = await session.consumer(topic, no_local=True)
        producer = await session.producer(topic)
        await producer.send("one")
        conn.start()
        assert await _bodies(durable, 1) == ["one"]
        assert await _bodies(shared, 1) == ["one"]
        assert await local.receive(QUIET) is None
        await durable.close()
        await producer.send("two")
        durable = await session.durable_consumer(topic, "d")
        assert await _bodies(durable, 1) == ["two"]
        await durable.close()
        await session.unsubscribe("d")


async def test_requestor_and_browser(url: str, name: str) -> None:
    async with aio.connect(url) as server_conn, aio.connect(url) as client_conn:
        server = await server_conn.session()
        requests = await server.consumer(server.queue(name))
        replier = await server.producer()

        async def answer(msg: Message) -> None:
            reply = server.text_message(str(msg.body)[::-1])
            reply.correlation_id = msg.correlation_id
            assert msg.reply_to is not None
            await replier.send(reply, destination=msg.reply_to)

        requests.message_listener = answer
        server_conn.start()
        client = await client_conn.session()
        client_conn.start()
        requestor = await client.requestor(client.queue(name))
        replies = await asyncio.gather(
            *(requestor.request(word, timeout=5) for word in ("abc", "xyz", "123"))
        )
        assert [r.body for r in replies if r is not None] == ["cba", "zyx", "321"]
        await requestor.close()

        queue = client.queue(name + ".browsed")
        producer = await client.producer(queue)
        for i in range(3):
            await producer.send(str(i))
        browser = client.browser(queue)
        assert [m.body async for m in browser] == ["0", "1", "2"]
        assert [m.body for m in await browser.messages()] == ["0", "1", "2"]


async def test_send_async_futures(url: str, name: str) -> None:
    async with aio.connect(url) as conn:
        session = await conn.session()
        producer = await session.producer(session.queue(name))
        done: list[str] = []
        futures = [
            await producer.send_async(str(i), lambda m, e: done.append(m.body)) for i in range(10)
        ]
        results = await asyncio.gather(*futures)
        assert [m.body for m in results] == [str(i) for i in range(10)]
        await asyncio.sleep(0)
        assert done == [str(i) for i in range(10)]


async def test_context(url: str, name: str) -> None:
    async with aio.context(url) as ctx:
        queue = ctx.queue(name)
        producer = ctx.producer().set_property("n", 1).set_priority(2)
        await producer.send(queue, "a")
        await producer.send(queue, b"b")
        consumer = await ctx.consumer(queue)
        assert await consumer.receive_body(2) == "a"
        assert await consumer.receive_body(2) == b"b"
        other = await ctx.create_context(transacted=True)
        await other.producer().send(queue, "tx")
        assert await consumer.receive(QUIET) is None
        await other.commit()
        assert await consumer.receive_body(2) == "tx"
        await other.close()


async def test_reconnect_and_exception_listener(url: str, broker: Any, name: str) -> None:
    if not hasattr(broker, "loop"):
        pytest.skip("breaks connections from inside the in-process broker")
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.2, max_wait=10)
    async with aio.connect(url, reconnect=policy) as conn:
        session = await conn.session()
        queue = session.queue(name)
        producer = await session.producer(queue)
        consumer = await session.consumer(queue)
        conn.start()
        await producer.send("before")
        assert await consumer.receive_body(2) == "before"
        _break(broker, conn)
        await producer.send("after")
        assert await consumer.receive_body(5) == "after"
    errors: list[JMSError] = []
    async with aio.connect(url, exception_listener=errors.append) as conn:
        session = await conn.session()
        tx = await conn.session(transacted=True)
        tx_producer = await tx.producer(session.queue(name))
        await tx_producer.send("in-flight")
        consumer = await session.consumer(session.queue(name))
        conn.start()
        _break(broker, conn)
        with pytest.raises(ConnectionLostError):
            await consumer.receive(5)
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert errors and isinstance(errors[0], ConnectionLostError)
        with pytest.raises((ConnectionLostError, TransactionRolledBackError)):
            await tx.commit()


def _break(broker: Any, conn: aio.Connection) -> None:
    transport = conn._core.transport
    if isinstance(transport, vm.VMTransport):
        server = transport._conn
        assert server is not None
        broker.call(server.shutdown)
        return
    broker.call(lambda: [p.transport.abort() for p in list(broker.node.connections) if p.transport])
