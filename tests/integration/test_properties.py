"""Basic properties and header field tables survive the broker exactly as published.

FerryMQ keeps a message's content-header bytes as received and hands them to consumers unchanged,
so every property and every field-table type a client can encode must come back equal. These
expectations were checked against RabbitMQ (FERRYMQ_TEST_AMQP_URL).
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel


@pytest.fixture
def conn(broker: Any) -> Iterator[pika.BlockingConnection]:
    """One pika connection to the broker under test, closed even when the test fails."""
    params = pika.URLParameters(broker.amqp_url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    c = pika.BlockingConnection(params)
    try:
        yield c
    finally:
        if c.is_open:
            c.close()


def consume_n(
    ch: BlockingChannel, queue: str, n: int, timeout: float = 5.0
) -> list[tuple[Any, pika.BasicProperties, bytes]]:
    """Receive n messages through basic.consume, as a consumer sees them.

    All n are taken before cancelling, because pika drops auto-acked messages still buffered in
    its generator when the consumer is cancelled.
    """
    got: list[tuple[Any, pika.BasicProperties, bytes]] = []
    for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        assert method is not None, f"only {len(got)} of {n} messages on {queue} in {timeout}s"
        got.append((method, props, body))
        if len(got) == n:
            break
    ch.cancel()
    return got


def consume_one(
    ch: BlockingChannel, queue: str, timeout: float = 5.0
) -> tuple[Any, pika.BasicProperties, bytes]:
    """Receive one message through basic.consume."""
    return consume_n(ch, queue, 1, timeout)[0]


ALL_PROPERTIES: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"k": "v"},
    "delivery_mode": 2,
    "priority": 7,
    "correlation_id": "corr-\u00e9-42",
    "reply_to": "some.reply.queue",
    "expiration": "60000",
    "message_id": "m" * 255,  # a short string at its maximum length
    "timestamp": 1_700_000_000,
    "type": "order.created",
    "user_id": "guest",  # must equal the authenticated user
    "app_id": "ferrymq-tests",
    "cluster_id": "cluster-7",
}


def test_every_basic_property_round_trips(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"payload", pika.BasicProperties(**ALL_PROPERTIES))

    method, props, body = consume_one(ch, q)

    assert body == b"payload"
    assert method.redelivered is False
    assert method.routing_key == q
    for field, value in ALL_PROPERTIES.items():
        assert getattr(props, field) == value, field


def test_durable_queue_keeps_properties(conn: pika.BlockingConnection, name: str) -> None:
    """A persistent message in a durable queue may take the store path; nothing may change."""
    ch = conn.channel()
    q = f"{name}.durable"
    ch.queue_declare(q, durable=True)
    try:
        ch.basic_publish("", q, b"stored", pika.BasicProperties(**ALL_PROPERTIES))
        _, props, body = consume_one(ch, q)
        assert body == b"stored"
        for field, value in ALL_PROPERTIES.items():
            assert getattr(props, field) == value, field
    finally:
        ch.queue_delete(q)


def test_absent_properties_stay_absent(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"", pika.BasicProperties())

    _, props, body = consume_one(ch, q)

    assert body == b""
    for field in ALL_PROPERTIES:
        assert getattr(props, field) is None, field


def test_basic_get_sees_the_same_properties(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(**ALL_PROPERTIES))

    method, props, body = None, None, None
    for _ in range(250):  # basic.get may race the publish; poll, bounded
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method is not None:
            break
        conn.sleep(0.02)

    assert method is not None
    assert body == b"x"
    assert method.message_count == 0
    assert props is not None
    for field, value in ALL_PROPERTIES.items():
        assert getattr(props, field) == value, field


# Every field-table value type pika can encode: t, I, l, D, S, x, A, F, V, T.
PIKA_HEADERS: dict[str, Any] = {
    "bool-true": True,
    "bool-false": False,
    "int-zero": 0,
    "int-small": 7,
    "int-neg": -1,
    "int-16": 32_768,
    "int32-max": 2**31 - 1,
    "int32-min": -(2**31),
    "int64-above-32": 2**31,
    "int64-below-32": -(2**31) - 1,
    "int64-max": 2**63 - 1,
    "int64-min": -(2**63),
    "decimal-frac": decimal.Decimal("3.14"),
    "decimal-neg": decimal.Decimal("-12345.678"),
    "decimal-int": decimal.Decimal("42"),
    "str": "h\u00e9llo \u2713",
    "str-empty": "",
    "bytes": b"\x00\x01\xfe\xff",
    "bytes-empty": b"",
    "list": [1, "a", True, None, [2, 3], {"in": "list"}],
    "list-empty": [],
    "nested": {"a": {"b": {"c": 1, "d": "deep"}}, "e": [1]},
    "table-empty": {},
    "none": None,
    "datetime": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "k" * 255: "longest key",
}


def test_pika_header_types_round_trip(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"h", pika.BasicProperties(headers=PIKA_HEADERS))

    _, props, _ = consume_one(ch, q)

    assert props.headers == PIKA_HEADERS
    # Equality alone would accept 1 == True or 1.0 == 1; check the types too (pika decodes a
    # 64-bit int as its int subclass `long`).
    for key, value in PIKA_HEADERS.items():
        got = props.headers[key]
        assert isinstance(got, type(value)), key
        assert isinstance(got, bool) == isinstance(value, bool), key


def test_empty_and_large_header_tables(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    big = {f"h{i:04d}": i for i in range(2000)}
    ch.basic_publish("", q, b"1", pika.BasicProperties(headers={}))
    ch.basic_publish("", q, b"2", pika.BasicProperties(headers=big))

    (_, p1, b1), (_, p2, b2) = consume_n(ch, q, 2)

    assert (b1, p1.headers) == (b"1", {})
    assert (b2, p2.headers) == (b"2", big)


def test_user_id_must_match_authenticated_user(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="mallory"))

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, passive=True)  # the close arrives before the next sync reply

    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith("PRECONDITION_FAILED")
    assert "mallory" in exc.value.reply_text
    assert "guest" in exc.value.reply_text
    # Only the channel died; the refused message was not enqueued.
    ch2 = conn.channel()
    assert ch2.queue_declare(q, passive=True).method.message_count == 0


# Types only pamqp (aio-pika's codec) encodes: b, s, u, i and f. pika would truncate a float on
# decode, so these are read back with aio-pika too.
PAMQP_HEADERS: dict[str, Any] = {
    "int8": -5,
    "int8-max": 127,
    "int16": -300,
    "uint16": 40_000,
    "int32": -70_000,
    "uint32": 3_000_000_000,
    "int64": 2**40,
    "float": 1.5,
    "float-neg": -0.25,
    "decimal": decimal.Decimal("2.5"),
    "str": "s",
    "bytearray": bytearray(b"\x00\xff"),
    "bool": True,
    "none": None,
    "list": [1, 300, 1.5, "x"],
    "table": {"inner": -1},
    "datetime": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
}


async def test_pamqp_header_types_round_trip(broker: Any, name: str) -> None:
    conn = await aio_pika.connect(broker.amqp_url, timeout=5)
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(f"{name}.q", exclusive=True)
        await ch.default_exchange.publish(
            aio_pika.Message(b"p", headers=PAMQP_HEADERS), routing_key=q.name
        )
        msg = await q.get(timeout=5)
        await msg.ack()
    finally:
        await asyncio.wait_for(conn.close(), 5)

    got = dict(msg.headers)
    assert got == PAMQP_HEADERS
    for key, value in PAMQP_HEADERS.items():
        assert isinstance(got[key], type(value)), key
        assert isinstance(got[key], bool) == isinstance(value, bool), key
