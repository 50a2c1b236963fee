"""aio-pika (aiormq + pamqp) against the broker: robust connections, iterators, RPC, QoS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.patterns import RPC, JsonRPC


@pytest.fixture
async def conn(broker: Any) -> AsyncIterator[AbstractRobustConnection]:
    c = await aio_pika.connect_robust(broker.amqp_url, timeout=5)
    try:
        yield c
    finally:
        await asyncio.wait_for(c.close(), 5)


async def test_declare_publish_consume_ack(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel()
    x = await ch.declare_exchange(f"{name}.x", aio_pika.ExchangeType.DIRECT, auto_delete=True)
    q = await ch.declare_queue(f"{name}.q", exclusive=True)
    await q.bind(x, "rk")
    for i in range(10):
        await x.publish(
            aio_pika.Message(
                str(i).encode(),
                content_type="text/plain",
                correlation_id=f"c{i}",
                headers={"n": i},
            ),
            routing_key="rk",
        )

    got: list[AbstractIncomingMessage] = []
    async with asyncio.timeout(10), q.iterator() as it:
        async for msg in it:
            async with msg.process():  # acks on leaving the block
                got.append(msg)
            if len(got) == 10:
                break

    assert [m.body for m in got] == [str(i).encode() for i in range(10)]
    assert [m.correlation_id for m in got] == [f"c{i}" for i in range(10)]
    assert [m.headers["n"] for m in got] == list(range(10))
    assert {m.content_type for m in got} == {"text/plain"}
    assert {m.exchange for m in got} == {f"{name}.x"}
    assert {m.routing_key for m in got} == {"rk"}
    check = await ch.declare_queue(f"{name}.q", passive=True)
    assert check.declaration_result.message_count == 0
    assert check.declaration_result.consumer_count == 0


async def test_reject_requeue_marks_redelivered(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel()
    q = await ch.declare_queue(f"{name}.q", exclusive=True)
    await ch.default_exchange.publish(aio_pika.Message(b"again"), routing_key=q.name)

    first = await q.get(timeout=5)
    assert first.redelivered is False
    await first.reject(requeue=True)
    second = await q.get(timeout=5)
    assert second.body == b"again"
    assert second.redelivered is True
    await second.ack()
    assert await q.get(fail=False, timeout=5) is None


async def test_rpc_pattern(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel()
    rpc = await RPC.create(ch)

    async def multiply(*, x: int, y: int) -> int:
        return x * y

    await rpc.register(f"{name}.multiply", multiply, auto_delete=True)
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *(rpc.proxy.__getattr__(f"{name}.multiply")(x=i, y=3) for i in range(20))
        )
        one = await rpc.call(f"{name}.multiply", kwargs={"x": 6, "y": 7})
    assert results == [i * 3 for i in range(20)]
    assert one == 42
    await rpc.close()


async def test_json_rpc_pattern(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel()
    rpc = await JsonRPC.create(ch)

    async def echo(*, value: Any) -> Any:
        return {"echo": value}

    await rpc.register(f"{name}.echo", echo, auto_delete=True)
    async with asyncio.timeout(10):
        got = await rpc.call(f"{name}.echo", kwargs={"value": [1, "two", None]})
    assert got == {"echo": [1, "two", None]}
    await rpc.close()


async def test_qos_prefetch_limits_unacked(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=2)
    q = await ch.declare_queue(f"{name}.q", exclusive=True)
    for i in range(6):
        await ch.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=q.name)

    held: list[AbstractIncomingMessage] = []
    arrived = asyncio.Event()

    async def on_message(msg: AbstractIncomingMessage) -> None:
        held.append(msg)
        arrived.set()

    await q.consume(on_message)
    async with asyncio.timeout(5):
        while len(held) < 2:
            arrived.clear()
            await arrived.wait()
    await asyncio.sleep(0.3)  # give the broker a chance to over-deliver
    assert [m.body for m in held] == [b"0", b"1"]

    await held[0].ack()
    async with asyncio.timeout(5):
        while len(held) < 3:
            arrived.clear()
            await arrived.wait()
    await asyncio.sleep(0.2)
    assert len(held) == 3
    assert held[2].body == b"2"

    for m in held[1:]:
        await m.ack()
    async with asyncio.timeout(5):
        while len(held) < 6:
            arrived.clear()
            await arrived.wait()
            for m in held:
                if not m.processed:
                    await m.ack()
    assert [m.body for m in held] == [str(i).encode() for i in range(6)]


async def test_publisher_confirms_and_returns(conn: AbstractRobustConnection, name: str) -> None:
    ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
    q = await ch.declare_queue(f"{name}.q", exclusive=True)
    confirm = await ch.default_exchange.publish(aio_pika.Message(b"ok"), routing_key=q.name)
    assert isinstance(confirm, aiormq.spec.Basic.Ack)

    direct = await ch.get_exchange("amq.direct")
    with pytest.raises(aio_pika.exceptions.DeliveryError) as exc:
        await direct.publish(
            aio_pika.Message(b"lost"), routing_key=f"{name}.nobody", mandatory=True
        )
    assert exc.value.message is not None
    assert exc.value.message.body == b"lost"


async def test_channel_error_leaves_connection_usable(
    conn: AbstractRobustConnection, name: str
) -> None:
    ch = await conn.channel()
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as exc:
        await ch.declare_queue(f"{name}.missing", passive=True)
    assert "NOT_FOUND" in str(exc.value)

    ch2 = await conn.channel()
    q = await ch2.declare_queue(f"{name}.q", exclusive=True)
    await ch2.default_exchange.publish(aio_pika.Message(b"fine"), routing_key=q.name)
    msg = await q.get(timeout=5)
    assert msg.body == b"fine"
    await msg.ack()
    assert not conn.is_closed


async def test_robust_channel_restores_declarations_after_channel_close(
    conn: AbstractRobustConnection, name: str
) -> None:
    """A robust channel closed by a channel error reopens and keeps consuming."""
    ch = await conn.channel()
    q = await ch.declare_queue(f"{name}.q", exclusive=True)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(msg: AbstractIncomingMessage) -> None:
        await received.put(msg.body)
        await msg.ack()

    await q.consume(on_message)
    await ch.default_exchange.publish(aio_pika.Message(b"before"), routing_key=q.name)
    assert await asyncio.wait_for(received.get(), 5) == b"before"

    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await ch.declare_queue(f"{name}.missing", passive=True)  # 404 closes the channel

    async with asyncio.timeout(10):
        while True:  # the robust channel reopens in the background
            try:
                await ch.default_exchange.publish(aio_pika.Message(b"after"), routing_key=q.name)
                break
            except (aio_pika.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError):
                await asyncio.sleep(0.05)
        assert await received.get() == b"after"
