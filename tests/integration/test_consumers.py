"""Consumers, prefetch, acknowledgements and returns, as pika users see them on RabbitMQ.

Every expectation was checked against RabbitMQ 3.10 (FERRYMQ_TEST_AMQP_URL set), except the
per-queue consumer timeout: RabbitMQ 3.10 has only the node-wide consumer_timeout, so that test
holds FerryMQ to the later RabbitMQ form (the `x-consumer-timeout` queue argument) on the virtual
clock.

One RabbitMQ subtlety shapes several tests: it answers a passive queue.declare ahead of
deliveries still queued for the queue process, so counts are read only after publisher
confirms (or through basic.get, which is ordered after the publishes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import (
    ChannelClosedByBroker,
    UnroutableError,
)

from tests.helpers import wait_for
from tests.pika_support import (
    EXTERNAL,
    channel_error,
    connect,
    pump_until,
    shared_broker_cleanup,
)

# A broker that stops answering must fail the test, not stall the run for the global 120 s.
pytestmark = pytest.mark.timeout(30)

# Names every test here derives from `name`; deleted again when running against a shared broker.
QUEUE_SUFFIXES = ("q", "q1", "q2")
EXCHANGE_SUFFIXES = ("x",)

_cleanup_shared_broker = shared_broker_cleanup(QUEUE_SUFFIXES, EXCHANGE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a consumer callback saw, kept for assertions."""

    body: bytes
    delivery_tag: int
    redelivered: bool
    consumer_tag: str
    properties: pika.BasicProperties


class Recorder:
    """A consumer callback that records deliveries in arrival order."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def __call__(
        self,
        _ch: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self.deliveries.append(
            Delivery(body, method.delivery_tag, method.redelivered, method.consumer_tag, props)
        )

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for d in self.deliveries]

    def __len__(self) -> int:
        return len(self.deliveries)


def publish(ch: BlockingChannel, queue: str, *bodies: bytes) -> None:
    for body in bodies:
        ch.basic_publish("", queue, body)


def msgs(count: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(count)]


def get(ch: BlockingChannel, queue: str) -> tuple[bytes, bool] | None:
    """basic.get with auto-ack: (body, redelivered), or None on get-empty."""
    method, _props, body = ch.basic_get(queue, auto_ack=True)
    return None if method is None else (body, method.redelivered)


def drain(ch: BlockingChannel, queue: str, limit: int = 100) -> list[tuple[bytes, bool]]:
    """Every ready message of `queue` as (body, redelivered), in order (bounded)."""
    out: list[tuple[bytes, bool]] = []
    for _ in range(limit):
        item = get(ch, queue)
        if item is None:
            break
        out.append(item)
    return out


def settle(conn: BlockingConnection, seconds: float = 0.3) -> None:
    """Give the broker time to send anything it (wrongly) would, before asserting absence."""
    conn.process_data_events(time_limit=seconds)


def counts(conn: BlockingConnection, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) from a passive declare on a fresh channel."""
    method = conn.channel().queue_declare(queue, passive=True).method
    return int(method.message_count), int(method.consumer_count)


def next_message(stream: Iterator[Any], timeout: float = 5.0) -> tuple[Any, Any, bytes]:
    """The next delivery from `BlockingChannel.consume(..., inactivity_timeout=...)`."""
    deadline = time.monotonic() + timeout
    for item in stream:
        if item[0] is not None:
            return item  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no delivery within {timeout}s")


def declare_with_messages(conn: BlockingConnection, queue: str, bodies: list[bytes]) -> None:
    """Declare `queue` and publish `bodies` with confirms, so they are in the queue on return."""
    pub = conn.channel()
    pub.queue_declare(queue)
    pub.confirm_delivery()
    publish(pub, queue, *bodies)
    pub.close()


# ------------------------------------------------------------------ prefetch


def test_prefetch_per_consumer_limits_unacked(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(5))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump_until(conn, lambda: len(rec) == 2)
    settle(conn)
    assert rec.bodies == [b"m0", b"m1"]
    ch.basic_ack(rec.deliveries[0].delivery_tag)
    pump_until(conn, lambda: len(rec) == 3)
    settle(conn)
    assert rec.bodies == [b"m0", b"m1", b"m2"]
    # Acking several at once frees that many slots.
    ch.basic_ack(rec.deliveries[2].delivery_tag, multiple=True)
    pump_until(conn, lambda: len(rec) == 5)
    assert rec.bodies == msgs(5)


def test_prefetch_applies_to_consumers_started_after_qos(
    conn: BlockingConnection, name: str
) -> None:
    q1, q2 = f"{name}.q1", f"{name}.q2"
    declare_with_messages(conn, q1, msgs(5, "a"))
    declare_with_messages(conn, q2, msgs(5, "b"))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3)
    first = Recorder()
    ch.basic_consume(q1, first)
    ch.basic_qos(prefetch_count=1)
    second = Recorder()
    ch.basic_consume(q2, second)
    pump_until(conn, lambda: len(first) == 3 and len(second) == 1)
    settle(conn)
    assert first.bodies == [b"a0", b"a1", b"a2"]
    assert second.bodies == [b"b0"]


def test_prefetch_global_is_shared_by_the_channel(conn: BlockingConnection, name: str) -> None:
    q1, q2 = f"{name}.q1", f"{name}.q2"
    declare_with_messages(conn, q1, msgs(5, "a"))
    declare_with_messages(conn, q2, msgs(5, "b"))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3, global_qos=True)
    first, second = Recorder(), Recorder()
    ch.basic_consume(q1, first)
    ch.basic_consume(q2, second)
    pump_until(conn, lambda: len(first) + len(second) == 3)
    settle(conn)
    assert len(first) + len(second) == 3
    ch.basic_ack(0, multiple=True)
    pump_until(conn, lambda: len(first) + len(second) == 6)
    settle(conn)
    assert len(first) + len(second) == 6


def test_prefetch_per_consumer_and_global_both_apply(conn: BlockingConnection, name: str) -> None:
    """RabbitMQ's documented combination: per-consumer limit first, then the channel's.

    (The order matters on RabbitMQ: a later basic.qos with global=False lifts the channel limit.)
    """
    q1, q2 = f"{name}.q1", f"{name}.q2"
    declare_with_messages(conn, q1, msgs(5, "a"))
    declare_with_messages(conn, q2, msgs(5, "b"))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    first, second = Recorder(), Recorder()
    ch.basic_consume(q1, first)
    ch.basic_consume(q2, second)
    pump_until(conn, lambda: len(first) + len(second) == 3)
    settle(conn)
    assert (len(first), len(second)) == (2, 1)


def test_prefetch_zero_is_unlimited(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(50))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=0)
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump_until(conn, lambda: len(rec) == 50)
    assert rec.bodies == msgs(50)


def test_prefetch_does_not_limit_auto_ack(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(10))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    rec = Recorder()
    ch.basic_consume(q, rec, auto_ack=True)
    pump_until(conn, lambda: len(rec) == 10)
    assert rec.bodies == msgs(10)


# ------------------------------------------------------------------ distribution


def test_round_robin_between_consumers(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    first, second = Recorder(), Recorder()
    ch.basic_consume(q, first, auto_ack=True)
    ch.basic_consume(q, second, auto_ack=True)
    publish(ch, q, *msgs(6))
    pump_until(conn, lambda: len(first) + len(second) == 6)
    assert {tuple(first.bodies), tuple(second.bodies)} == {
        (b"m0", b"m2", b"m4"),
        (b"m1", b"m3", b"m5"),
    }


def test_round_robin_with_prefetch_one_skips_busy_consumer(
    broker: Any, conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch1 = conn.channel()
    ch1.queue_declare(q)
    ch1.basic_qos(prefetch_count=1)
    busy = Recorder()
    ch1.basic_consume(q, busy)
    with connect(broker.amqp_url) as conn2:
        ch2 = conn2.channel()
        ch2.basic_qos(prefetch_count=1)
        free = Recorder()

        def ack_and_record(
            c: BlockingChannel,
            m: pika.spec.Basic.Deliver,
            p: pika.BasicProperties,
            b: bytes,
        ) -> None:
            free(c, m, p, b)
            c.basic_ack(m.delivery_tag)

        ch2.basic_consume(q, ack_and_record)
        pub = conn.channel()
        pub.confirm_delivery()
        publish(pub, q, *msgs(5))
        pump_until(conn2, lambda: len(free) == 4)
        settle(conn)
        assert len(busy) == 1
        assert sorted(busy.bodies + free.bodies) == msgs(5)


def test_exclusive_consumer_refuses_others(
    broker: Any, conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    tag = ch.basic_consume(q, Recorder(), exclusive=True)
    with connect(broker.amqp_url) as other:
        with channel_error(403, "ACCESS_REFUSED", f"queue '{q}'", "exclusive use"):
            other.channel().basic_consume(q, Recorder())
        ch.basic_cancel(tag)
        # Once the exclusive consumer is gone, anyone may consume.
        other.channel().basic_consume(q, Recorder())


def test_exclusive_consume_refused_when_queue_has_consumers(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_consume(q, Recorder())
    with channel_error(403, "ACCESS_REFUSED", f"queue '{q}'", "exclusive use"):
        conn.channel().basic_consume(q, Recorder(), exclusive=True)


def test_consumer_priority(broker: Any, conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    low_ch = conn.channel()
    low_ch.queue_declare(q)
    low_ch.basic_qos(prefetch_count=1)
    low = Recorder()
    low_ch.basic_consume(q, low, arguments={"x-priority": 1})
    high_ch = conn.channel()
    high_ch.basic_qos(prefetch_count=2)
    high = Recorder()
    high_ch.basic_consume(q, high, arguments={"x-priority": 10})
    pub = conn.channel()
    pub.confirm_delivery()
    publish(pub, q, *msgs(4))
    # The high-priority consumer takes all it can; only its overflow goes to the low one.
    pump_until(conn, lambda: len(high) == 2 and len(low) == 1)
    settle(conn)
    assert high.bodies == [b"m0", b"m1"]
    assert low.bodies == [b"m2"]
    high_ch.basic_ack(0, multiple=True)
    pump_until(conn, lambda: len(high) == 3)
    assert high.bodies[2] == b"m3"
    assert len(low) == 1


def test_consumer_priority_with_auto_ack_takes_everything(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    low, high = Recorder(), Recorder()
    ch.basic_consume(q, low, auto_ack=True)
    ch.basic_consume(q, high, auto_ack=True, arguments={"x-priority": 5})
    publish(ch, q, *msgs(6))
    pump_until(conn, lambda: len(high) == 6)
    settle(conn, 0.2)
    assert low.bodies == []


# ------------------------------------------------------------------ ack, nack, reject


def test_ack_multiple(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(4))
    ch = conn.channel()
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(4)]
    ch.basic_ack(tags[2], multiple=True)
    ch.close()
    ch = conn.channel()
    assert drain(ch, q) == [(b"m3", True)]


def test_ack_zero_multiple_acks_everything(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(3))
    ch = conn.channel()
    for _ in range(3):
        ch.basic_get(q)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert counts(conn, q) == (0, 0)


def test_nack_multiple_requeues_in_original_order(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(4))
    ch = conn.channel()
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[2], multiple=True, requeue=True)
    assert drain(ch, q) == [(b"m0", True), (b"m1", True), (b"m2", True), (b"m3", False)]


def test_nack_without_requeue_drops(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(3))
    ch = conn.channel()
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]
    ch.basic_nack(tags[1], multiple=True, requeue=False)
    assert drain(ch, q) == [(b"m2", False)]
    ch.close()
    assert counts(conn, q) == (0, 0)


def test_reject_requeue_puts_message_back_at_the_head(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(3))
    ch = conn.channel()
    method, _props, body = ch.basic_get(q)
    assert (body, method.redelivered) == (b"m0", False)
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert drain(ch, q) == [(b"m0", True), (b"m1", False), (b"m2", False)]


def test_reject_without_requeue_drops(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(2))
    ch = conn.channel()
    method, _props, _body = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert drain(ch, q) == [(b"m1", False)]


def test_requeue_order_after_nacks_in_any_order(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(5))
    ch = conn.channel()
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(4)]
    for i in (2, 0, 3, 1):
        ch.basic_nack(tags[i], requeue=True)
    assert [body for body, _ in drain(ch, q)] == msgs(5)


def test_redelivered_flag_on_consumer(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(2))
    ch = conn.channel()
    rec = Recorder()

    def nack_first_delivery(
        c: BlockingChannel, m: pika.spec.Basic.Deliver, p: pika.BasicProperties, b: bytes
    ) -> None:
        rec(c, m, p, b)
        if m.redelivered:
            c.basic_ack(m.delivery_tag)
        else:
            c.basic_nack(m.delivery_tag, requeue=True)

    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(q, nack_first_delivery)
    pump_until(conn, lambda: len(rec) == 4)
    assert [(d.body, d.redelivered) for d in rec.deliveries] == [
        (b"m0", False),
        (b"m0", True),
        (b"m1", False),
        (b"m1", True),
    ]
    assert [d.delivery_tag for d in rec.deliveries] == [1, 2, 3, 4]


def test_unknown_delivery_tag_is_406(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    with channel_error(406, "PRECONDITION_FAILED", "unknown delivery tag 42"):
        ch.basic_ack(42)
        ch.queue_declare(q, passive=True)


def test_double_ack_is_406(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(1))
    ch = conn.channel()
    method, _props, _body = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    with channel_error(406, "PRECONDITION_FAILED", f"unknown delivery tag {method.delivery_tag}"):
        ch.basic_ack(method.delivery_tag)
        ch.queue_declare(q, passive=True)


def test_ack_of_auto_acked_delivery_is_406(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(1))
    ch = conn.channel()
    method, _props, _body = ch.basic_get(q, auto_ack=True)
    with channel_error(406, "PRECONDITION_FAILED", "unknown delivery tag"):
        ch.basic_ack(method.delivery_tag)
        ch.queue_declare(q, passive=True)


def test_delivery_tags_are_per_channel(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(4))
    ch1, ch2 = conn.channel(), conn.channel()
    assert [ch1.basic_get(q)[0].delivery_tag for _ in range(2)] == [1, 2]
    assert [ch2.basic_get(q)[0].delivery_tag for _ in range(2)] == [1, 2]
    ch1.basic_ack(2, multiple=True)
    ch2.basic_reject(1, requeue=True)
    ch2.close()
    assert drain(ch1, q) == [(b"m2", True), (b"m3", True)]


# ------------------------------------------------------------------ requeue on close


def test_unacked_requeued_in_order_when_channel_closes(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(6))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3)
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump_until(conn, lambda: len(rec) == 3)
    ch.basic_ack(rec.deliveries[1].delivery_tag)
    pump_until(conn, lambda: len(rec) == 4)  # the freed slot takes m3
    ch.close()
    assert drain(conn.channel(), q) == [
        (b"m0", True),
        (b"m2", True),
        (b"m3", True),
        (b"m4", False),
        (b"m5", False),
    ]


def test_unacked_requeued_in_order_when_connection_closes(broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(broker.amqp_url) as observer:
        declare_with_messages(observer, q, msgs(4))
        with connect(broker.amqp_url) as doomed:
            ch = doomed.channel()
            ch.basic_qos(prefetch_count=2)
            rec = Recorder()
            ch.basic_consume(q, rec)
            pump_until(doomed, lambda: len(rec) == 2)
        ch = observer.channel()
        # Requeue happens as the broker notices the connection is gone.
        wait_for(lambda: counts(observer, q) == (4, 0), timeout=5)
        assert drain(ch, q) == [(b"m0", True), (b"m1", True), (b"m2", False), (b"m3", False)]


def test_unacked_get_requeued_when_channel_closes(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(3))
    ch = conn.channel()
    ch.basic_get(q)
    ch.basic_get(q)
    ch.close()
    assert drain(conn.channel(), q) == [(b"m0", True), (b"m1", True), (b"m2", False)]


def test_requeued_message_goes_to_another_consumer(broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(broker.amqp_url) as survivor:
        ch = survivor.channel()
        ch.queue_declare(q)
        ch.basic_qos(prefetch_count=1)
        with connect(broker.amqp_url) as doomed:
            dch = doomed.channel()
            dch.basic_qos(prefetch_count=1)
            first = Recorder()
            dch.basic_consume(q, first)
            pub = doomed.channel()
            pub.confirm_delivery()
            publish(pub, q, b"only")
            pump_until(doomed, lambda: len(first) == 1)
            second = Recorder()
            ch.basic_consume(q, second)
            settle(survivor, 0.2)
            assert second.bodies == []
        pump_until(survivor, lambda: len(second) == 1)
        assert (second.deliveries[0].body, second.deliveries[0].redelivered) == (b"only", True)


# ------------------------------------------------------------------ basic.get, recover


def test_basic_get_reports_remaining_count(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(3))
    ch = conn.channel()
    remaining = []
    for _ in range(3):
        method, _props, _body = ch.basic_get(q, auto_ack=True)
        remaining.append(method.message_count)
        assert method.exchange == ""
        assert method.routing_key == q
    assert remaining == [2, 1, 0]
    assert ch.basic_get(q) == (None, None, None)


def test_basic_get_on_missing_queue_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no queue '{name}.q'"):
        ch.basic_get(f"{name}.q")


def test_basic_recover_requeue_redelivers(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(2))
    ch = conn.channel()
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump_until(conn, lambda: len(rec) == 2)
    ch.basic_recover(requeue=True)
    pump_until(conn, lambda: len(rec) == 4)
    assert [(d.body, d.redelivered) for d in rec.deliveries] == [
        (b"m0", False),
        (b"m1", False),
        (b"m0", True),
        (b"m1", True),
    ]
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert counts(conn, q) == (0, 0)


# ------------------------------------------------------------------ mandatory and returns


def test_mandatory_unroutable_is_returned_intact(conn: BlockingConnection, name: str) -> None:
    x = f"{name}.x"
    ch = conn.channel()
    ch.exchange_declare(x, "direct")
    returned: list[tuple[pika.spec.Basic.Return, pika.BasicProperties, bytes]] = []
    ch.add_on_return_callback(lambda _c, m, p, b: returned.append((m, p, b)))
    props = pika.BasicProperties(
        content_type="application/json",
        correlation_id="c-1",
        message_id="m-1",
        headers={"h": "v", "n": 7},
        delivery_mode=2,
        priority=3,
        reply_to="replies",
        type="kind",
        app_id="app",
        timestamp=1_700_000_000,
    )
    body = b'{"payload": "\x00\xff binary too"}'
    ch.basic_publish(x, "nowhere", body, props, mandatory=True)
    ch.basic_publish(x, "nowhere", b"not mandatory")
    pump_until(conn, lambda: bool(returned))
    settle(conn, 0.2)
    assert len(returned) == 1
    method, got, got_body = returned[0]
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key) == (x, "nowhere")
    assert got_body == body
    for field in (
        "content_type",
        "correlation_id",
        "message_id",
        "headers",
        "delivery_mode",
        "priority",
        "reply_to",
        "type",
        "app_id",
        "timestamp",
    ):
        assert getattr(got, field) == getattr(props, field), field


def test_mandatory_to_default_exchange_missing_queue(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    returned: list[tuple[int, str, str, bytes]] = []
    ch.add_on_return_callback(
        lambda _c, m, _p, b: returned.append((m.reply_code, m.exchange, m.routing_key, b))
    )
    ch.basic_publish("", f"{name}.q", b"m", mandatory=True)
    pump_until(conn, lambda: bool(returned))
    assert returned == [(312, "", f"{name}.q", b"m")]


def test_mandatory_with_confirms_raises_unroutable(conn: BlockingConnection, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch = conn.channel()
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="here")
    ch.confirm_delivery()
    with pytest.raises(UnroutableError) as info:
        ch.basic_publish(
            x, "nowhere", b"lost", pika.BasicProperties(message_id="id-9"), mandatory=True
        )
    [message] = info.value.messages
    assert message.body == b"lost"
    assert message.properties.message_id == "id-9"
    assert message.method.reply_code == 312
    # A routable mandatory publish is simply confirmed.
    ch.basic_publish(x, "here", b"kept", mandatory=True)
    assert drain(ch, q) == [(b"kept", False)]


# ------------------------------------------------------------------ cancel


def test_basic_cancel_stops_deliveries(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    rec = Recorder()
    tag = ch.basic_consume(q, rec, auto_ack=True)
    assert counts(conn, q) == (0, 1)
    publish(ch, q, b"before")
    pump_until(conn, lambda: len(rec) == 1)
    ch.basic_cancel(tag)
    assert ch.consumer_tags == []
    assert counts(conn, q) == (0, 0)
    publish(ch, q, b"after")
    settle(conn, 0.2)
    assert rec.bodies == [b"before"]
    assert drain(ch, q) == [(b"after", False)]


def test_cancel_keeps_unacked_until_settled(conn: BlockingConnection, name: str) -> None:
    """Cancelling a consumer does not requeue what it holds: the channel still owns it."""
    q = f"{name}.q"
    declare_with_messages(conn, q, msgs(2))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    rec = Recorder()
    tag = ch.basic_consume(q, rec)
    pump_until(conn, lambda: len(rec) == 1)
    ch.basic_cancel(tag)
    other = conn.channel()
    assert drain(other, q) == [(b"m1", False)]
    ch.basic_ack(rec.deliveries[0].delivery_tag)
    ch.close()
    assert drain(other, q) == []


def test_broker_cancels_consumer_when_queue_is_deleted(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    cancels: list[str] = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame.method.consumer_tag))
    rec = Recorder()
    tag = ch.basic_consume(q, rec)
    publish(ch, q, b"held")
    pump_until(conn, lambda: len(rec) == 1)
    conn.channel().queue_delete(q)
    pump_until(conn, lambda: bool(cancels))
    assert cancels == [tag]
    assert ch.consumer_tags == []
    # The channel survives, and a delivery from the deleted queue can still be acked.
    ch.basic_ack(rec.deliveries[0].delivery_tag)
    ch.queue_declare(f"{name}.q1")
    assert ch.is_open
    # Publishing to the deleted queue's name delivers nothing to the cancelled consumer.
    publish(ch, q, b"to nowhere")
    settle(conn, 0.2)
    assert rec.bodies == [b"held"]


def test_consume_from_missing_queue_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no queue '{name}.q'"):
        ch.basic_consume(f"{name}.q", Recorder())


def test_consumer_tag_chosen_by_client_is_used(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    rec = Recorder()
    assert ch.basic_consume(q, rec, consumer_tag=f"{name}-tag", auto_ack=True) == f"{name}-tag"
    publish(ch, q, b"m")
    pump_until(conn, lambda: len(rec) == 1)
    assert rec.deliveries[0].consumer_tag == f"{name}-tag"


# ------------------------------------------------------------------ scale


@pytest.mark.timeout(60)
def test_thousand_queues_on_one_channel(conn: BlockingConnection, name: str) -> None:
    """About 2.5 s on RabbitMQ 3.10 here (queue declares dominate)."""
    ch = conn.channel()
    queues = [f"{name}.many.{i}" for i in range(1000)]
    for q in queues:
        # Exclusive, so they go with the connection even on a shared broker.
        ch.queue_declare(q, exclusive=True)
    for i, q in enumerate(queues):
        ch.basic_publish("", q, str(i).encode())
    for i, q in enumerate(queues):
        method, _props, body = ch.basic_get(q, auto_ack=True)
        assert body == str(i).encode()
        assert method.message_count == 0


# ------------------------------------------------------------------ consumer timeout (FerryMQ)


def test_consumer_timeout_closes_channel_and_requeues(clocked_broker: Any, name: str) -> None:
    """`x-consumer-timeout` (ms) as RabbitMQ 3.12+ documents it; 3.10 only has it node-wide.

    The broker closes the late consumer's channel with 406 and RabbitMQ's wording, and the
    message is requeued and redelivered to another consumer.
    """
    q = f"{name}.q"
    url = clocked_broker.amqp_url
    with connect(url) as late_conn, connect(url) as other_conn:
        late = late_conn.channel()
        late.queue_declare(q, arguments={"x-consumer-timeout": 60_000})
        late.basic_qos(prefetch_count=1)
        pub = other_conn.channel()
        pub.confirm_delivery()
        publish(pub, q, b"slow")
        stream = late.consume(q, inactivity_timeout=0.05)
        assert next_message(stream)[2] == b"slow"
        other = other_conn.channel()
        other.basic_qos(prefetch_count=1)
        rec = Recorder()
        other.basic_consume(q, rec)
        clocked_broker.clock.advance(59)
        settle(other_conn, 0.2)
        assert late.is_open
        assert rec.bodies == []
        clocked_broker.clock.advance(2)
        deadline = time.monotonic() + 5
        with pytest.raises(ChannelClosedByBroker) as info:
            for _ in stream:
                assert time.monotonic() < deadline, "channel not closed by the consumer timeout"
        assert info.value.reply_code == 406
        assert info.value.reply_text == (
            f"PRECONDITION_FAILED - delivery acknowledgement on channel {late.channel_number} "
            "timed out. Timeout value used: 60000 ms. This timeout value can be configured, "
            "see consumers doc guide to learn more"
        )
        pump_until(other_conn, lambda: len(rec) == 1)
        assert (rec.deliveries[0].body, rec.deliveries[0].redelivered) == (b"slow", True)
        assert late_conn.is_open


def test_consumer_timeout_spares_acked_and_auto_ack(clocked_broker: Any, name: str) -> None:
    q, q1 = f"{name}.q", f"{name}.q1"
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        ch.queue_declare(q, arguments={"x-consumer-timeout": 60_000})
        ch.queue_declare(q1, arguments={"x-consumer-timeout": 60_000})
        manual, auto = Recorder(), Recorder()
        ch.basic_consume(q, manual)
        ch.basic_consume(q1, auto, auto_ack=True)
        publish(ch, q, b"acked in time")
        publish(ch, q1, b"auto")
        pump_until(conn, lambda: len(manual) == 1 and len(auto) == 1)
        clocked_broker.clock.advance(30)
        ch.basic_ack(manual.deliveries[0].delivery_tag)
        ch.queue_declare(q, passive=True)
        clocked_broker.clock.advance(3600)
        settle(conn, 0.3)
        assert ch.is_open
        ch.queue_declare(q, passive=True)


@pytest.mark.skipif(EXTERNAL, reason="x-consumer-timeout is not a queue argument in RabbitMQ 3.10")
def test_consumer_timeout_real_time(broker: Any, name: str) -> None:
    """The same rule on the real clock, with a short timeout (FerryMQ only)."""
    q = f"{name}.q"
    with connect(broker.amqp_url) as conn:
        ch = conn.channel()
        ch.queue_declare(q, arguments={"x-consumer-timeout": 300})
        ch.confirm_delivery()
        publish(ch, q, b"m")
        stream = ch.consume(q, inactivity_timeout=0.05)
        assert next_message(stream)[2] == b"m"
        deadline = time.monotonic() + 5
        with pytest.raises(ChannelClosedByBroker) as info:
            for _ in stream:
                assert time.monotonic() < deadline, "channel not closed by the consumer timeout"
        assert info.value.reply_code == 406
        assert "Timeout value used: 300 ms" in info.value.reply_text
        assert drain(conn.channel(), q) == [(b"m", True)]
