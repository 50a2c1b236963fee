"""Queue declaration, flags and x-arguments, as pika users see them on RabbitMQ.

Every expectation was checked against RabbitMQ 3.10 (FERRYMQ_TEST_AMQP_URL set). Time-based
features have two forms: a short real-time test (runs against RabbitMQ too) and a twin on
FerryMQ's virtual clock with hour-long times, which proves the broker reads its clock rather than
the wall clock. Dead-lettering lives in test_dead_letter.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import NackError

from tests.helpers import wait_for
from tests.pika_support import (
    channel_error,
    connect,
    get_body,
    pump_until,
    queue_exists,
    shared_broker_cleanup,
)
from tests.pika_support import (
    drain_bodies as drain,
)

# A broker that stops answering must fail the test, not stall the run for the global 120 s.
pytestmark = pytest.mark.timeout(30)

# Names every test here derives from `name`; deleted again when running against a shared broker.
QUEUE_SUFFIXES = ("q", "q1", "q2", "q3")
EXCHANGE_SUFFIXES = ("x",)

_cleanup_shared_broker = shared_broker_cleanup(QUEUE_SUFFIXES, EXCHANGE_SUFFIXES)


def ready(conn: BlockingConnection, queue: str) -> int:
    """The ready-message count a passive declare reports."""
    return int(conn.channel().queue_declare(queue, passive=True).method.message_count)


# ------------------------------------------------------------------ declare and flags


def test_server_named_queue(ch: BlockingChannel) -> None:
    first = ch.queue_declare("", exclusive=True).method.queue
    second = ch.queue_declare("", exclusive=True).method.queue
    assert first.startswith("amq.gen-")
    assert second.startswith("amq.gen-")
    assert first != second
    ch.basic_publish("", first, b"m")
    assert drain(ch, first) == [b"m"]
    assert drain(ch, second) == []


def test_empty_queue_name_means_last_declared_on_channel(ch: BlockingChannel, name: str) -> None:
    x = f"{name}.x"
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind("", x)
    ch.basic_publish(x, "", b"bound by empty name")
    assert drain(ch, q) == [b"bound by empty name"]


def test_amq_prefixed_queue_name_is_refused(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(403, "ACCESS_REFUSED", f"amq.{name}", "reserved prefix"):
        ch.queue_declare(f"amq.{name}")


def test_declare_ok_reports_counts(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    first = ch.queue_declare(q, durable=True).method
    assert (first.queue, first.message_count, first.consumer_count) == (q, 0, 0)
    # Confirms make sure the queue holds the messages before it is asked for counts.
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    got: list[bytes] = []
    consumer.basic_consume(q, lambda _c, _m, _p, body: got.append(body))
    pump_until(conn, lambda: len(got) == 1)
    passive = ch.queue_declare(q, passive=True).method
    assert (passive.message_count, passive.consumer_count) == (2, 1)
    again = ch.queue_declare(q, durable=True).method
    assert (again.message_count, again.consumer_count) == (2, 1)


def test_passive_declare_of_missing_queue_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no queue '{name}.q'"):
        ch.queue_declare(f"{name}.q", passive=True)


def test_passive_declare_ignores_flags_and_arguments(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q)
    ch.queue_declare(q, passive=True, durable=True, auto_delete=True, arguments={"x-max-length": 1})


def test_durable_queue_keeps_persistent_flag(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, durable=True)
    ch.basic_publish("", q, b"p", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", q, b"t", pika.BasicProperties(delivery_mode=1))
    _m, props, body = ch.basic_get(q, auto_ack=True)
    assert (body, props.delivery_mode) == (b"p", 2)
    _m, props, body = ch.basic_get(q, auto_ack=True)
    assert (body, props.delivery_mode) == (b"t", 1)


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ({"durable": False}, {"durable": True}, "durable"),
        ({"durable": True}, {"durable": False}, "durable"),
        ({"auto_delete": False}, {"auto_delete": True}, "auto_delete"),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "x-message-ttl",
        ),
        ({"arguments": {"x-message-ttl": 1000}}, {}, "x-message-ttl"),
        ({}, {"arguments": {"x-max-length": 5}}, "x-max-length"),
        (
            {"arguments": {"x-max-priority": 5}},
            {"arguments": {"x-max-priority": 6}},
            "x-max-priority",
        ),
        ({}, {"arguments": {"x-dead-letter-exchange": "dlx"}}, "x-dead-letter-exchange"),
    ],
)
def test_redeclare_with_different_flags_or_arguments_is_406(
    conn: BlockingConnection,
    name: str,
    first: dict[str, Any],
    second: dict[str, Any],
    field: str,
) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, **first)
    ch.basic_publish("", q, b"kept")
    with channel_error(406, "PRECONDITION_FAILED", f"inequivalent arg '{field}'", f"'{q}'"):
        ch.queue_declare(q, **second)
    ch = conn.channel()
    assert ch.queue_declare(q, **first).method.message_count == 1


def test_redeclare_exclusive_queue_as_non_exclusive_is_405(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, exclusive=True)
    with channel_error(405, "RESOURCE_LOCKED", f"'{q}'"):
        ch.queue_declare(q)


def test_redeclare_with_same_arguments_is_fine(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    args = {"x-message-ttl": 60000, "x-max-length": 10, "x-overflow": "reject-publish"}
    ch.queue_declare(q, durable=True, arguments=args)
    ch.queue_declare(q, durable=True, arguments=dict(args))


# ------------------------------------------------------------------ exclusive


@pytest.mark.parametrize(
    "operation", ["declare", "passive", "consume", "get", "purge", "bind", "delete"]
)
def test_exclusive_queue_is_locked_to_its_connection(
    broker: Any, conn: BlockingConnection, name: str, operation: str
) -> None:
    q, x = f"{name}.q", f"{name}.x"
    owner = conn.channel()
    owner.queue_declare(q, exclusive=True)
    owner.exchange_declare(x, "fanout")
    actions: dict[str, Callable[[BlockingChannel], object]] = {
        "declare": lambda c: c.queue_declare(q, exclusive=True),
        "passive": lambda c: c.queue_declare(q, passive=True),
        "consume": lambda c: c.basic_consume(q, lambda *_: None),
        "get": lambda c: c.basic_get(q),
        "purge": lambda c: c.queue_purge(q),
        "bind": lambda c: c.queue_bind(q, x),
        "delete": lambda c: c.queue_delete(q),
    }
    with connect(broker.amqp_url) as other, channel_error(405, "RESOURCE_LOCKED", f"'{q}'"):
        actions[operation](other.channel())
    assert owner.queue_declare(q, passive=True).method.queue == q


def test_other_connection_may_publish_to_exclusive_queue(
    broker: Any, conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    owner = conn.channel()
    owner.queue_declare(q, exclusive=True)
    with connect(broker.amqp_url) as other:
        pub = other.channel()
        pub.confirm_delivery()
        pub.basic_publish("", q, b"from outside")
    assert drain(owner, q) == [b"from outside"]


def test_exclusive_queue_outlives_its_channel_not_its_connection(broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(broker.amqp_url) as observer:
        with connect(broker.amqp_url) as owner:
            ch = owner.channel()
            ch.queue_declare(q, exclusive=True)
            ch.basic_publish("", q, b"m")
            ch.close()
            assert ready(owner, q) == 1
        wait_for(lambda: not queue_exists(observer, q), timeout=5)


# ------------------------------------------------------------------ auto-delete


def test_auto_delete_queue_goes_when_last_consumer_cancels(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    # Never consumed from: it stays.
    assert queue_exists(conn, q)
    tag1 = ch.basic_consume(q, lambda *_: None, auto_ack=True)
    tag2 = ch.basic_consume(q, lambda *_: None, auto_ack=True)
    ch.basic_cancel(tag1)
    assert queue_exists(conn, q)
    ch.basic_cancel(tag2)
    wait_for(lambda: not queue_exists(conn, q), timeout=5)


def test_auto_delete_queue_goes_when_consumer_channel_closes(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_consume(q, lambda *_: None)
    ch.close()
    wait_for(lambda: not queue_exists(conn, q), timeout=5)


# ------------------------------------------------------------------ purge and delete


def test_purge_returns_count_and_spares_unacked(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q)
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    method, _props, body = ch.basic_get(q)
    assert body == b"m0"
    assert ch.queue_purge(q).method.message_count == 4
    assert ch.queue_purge(q).method.message_count == 0
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert drain(ch, q) == [b"m0"]


def test_purge_of_missing_queue_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no queue '{name}.q'"):
        ch.queue_purge(f"{name}.q")


def test_delete_returns_message_count_and_removes_bindings(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    q, x = f"{name}.q", f"{name}.x"
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.basic_publish(x, "", b"1")
    ch.basic_publish(x, "", b"2")
    assert ch.queue_delete(q).method.message_count == 2
    assert not queue_exists(conn, q)
    ch.queue_declare(q)
    ch.basic_publish(x, "", b"binding went with the queue")
    assert drain(ch, q) == []


def test_delete_of_missing_queue_succeeds(ch: BlockingChannel, name: str) -> None:
    """RabbitMQ made queue.delete idempotent: delete-ok with a count of 0."""
    assert ch.queue_delete(f"{name}.q").method.message_count == 0


def test_delete_if_unused_refused_while_consumed(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    consumer = conn.channel()
    consumer.queue_declare(q)
    tag = consumer.basic_consume(q, lambda *_: None)
    ch = conn.channel()
    with channel_error(406, "PRECONDITION_FAILED", f"queue '{q}'", "in use"):
        ch.queue_delete(q, if_unused=True)
    consumer.basic_cancel(tag)
    ch = conn.channel()
    ch.queue_delete(q, if_unused=True)
    assert not queue_exists(conn, q)


def test_delete_if_empty_refused_with_messages(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"m")
    with channel_error(406, "PRECONDITION_FAILED", f"queue '{q}'", "not empty"):
        ch.queue_delete(q, if_empty=True)
    ch = conn.channel()
    assert drain(ch, q) == [b"m"]
    ch.queue_delete(q, if_empty=True)
    assert not queue_exists(conn, q)


# ------------------------------------------------------------------ x-message-ttl, expiration


def test_message_ttl_expires_unconsumed_messages(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 300})
    ch.confirm_delivery()  # the queue holds them before counts are read
    ch.basic_publish("", q, b"short-lived")
    wait_for(lambda: ready(conn, q) == 0, timeout=3)
    assert get_body(ch, q) is None
    ch.basic_publish("", q, b"fresh")
    assert get_body(ch, q) == b"fresh"


def test_message_ttl_zero_only_reaches_waiting_consumers(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 0})
    ch.basic_publish("", q, b"nobody waiting")
    assert get_body(ch, q) is None
    got: list[bytes] = []
    ch.basic_consume(q, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    ch.basic_publish("", q, b"consumer waiting")
    pump_until(conn, lambda: bool(got))
    assert got == [b"consumer waiting"]


def test_per_message_expiration(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"expires", pika.BasicProperties(expiration="300"))
    ch.basic_publish("", q, b"stays", pika.BasicProperties(expiration="60000"))
    time.sleep(0.5)
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"stays"
    assert props.expiration == "60000"
    assert method.message_count == 0


def test_shorter_of_queue_ttl_and_expiration_wins(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 300})
    ch.confirm_delivery()  # the queue holds them before counts are read
    ch.basic_publish("", q, b"queue ttl wins", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", q, b"expiration wins", pika.BasicProperties(expiration="0"))
    wait_for(lambda: ready(conn, q) == 0, timeout=3)
    assert get_body(ch, q) is None


def test_expired_message_behind_a_live_one_is_never_delivered(
    ch: BlockingChannel, name: str
) -> None:
    """Classic queues drop expired messages when they reach the head; they are not delivered."""
    q = f"{name}.q"
    ch.queue_declare(q)
    ch.basic_publish("", q, b"live")
    ch.basic_publish("", q, b"expires", pika.BasicProperties(expiration="200"))
    ch.basic_publish("", q, b"also live")
    time.sleep(0.4)
    assert drain(ch, q) == [b"live", b"also live"]


@pytest.mark.parametrize("expiration", ["-1", "abc"])
def test_invalid_expiration_is_406(conn: BlockingConnection, name: str, expiration: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q)
    with channel_error(406, "PRECONDITION_FAILED", f"invalid expiration '{expiration}'"):
        ch.basic_publish("", q, b"m", pika.BasicProperties(expiration=expiration))
        ch.queue_declare(q, passive=True)
    assert ready(conn, q) == 0


def test_message_ttl_on_virtual_clock(clocked_broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        ch.queue_declare(q, arguments={"x-message-ttl": 3_600_000})
        ch.confirm_delivery()  # the queue holds them before counts are read
        ch.basic_publish("", q, b"an hour")
        ch.basic_publish("", q, b"a day", pika.BasicProperties(expiration="86400000"))
        clocked_broker.clock.advance(3599)
        assert ready(conn, q) == 2
        clocked_broker.clock.advance(2)
        wait_for(lambda: ready(conn, q) == 0, timeout=5)
        assert get_body(ch, q) is None


def test_per_message_expiration_on_virtual_clock(clocked_broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        ch.queue_declare(q)
        ch.confirm_delivery()  # the queue holds them before counts are read
        ch.basic_publish("", q, b"an hour", pika.BasicProperties(expiration="3600000"))
        ch.basic_publish("", q, b"a day", pika.BasicProperties(expiration="86400000"))
        clocked_broker.clock.advance(3601)
        wait_for(lambda: ready(conn, q) == 1, timeout=5)
        assert drain(ch, q) == [b"a day"]


# ------------------------------------------------------------------ x-expires


def test_unused_queue_expires(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-expires": 300})
    ch.basic_publish("", q, b"messages do not keep it alive")
    # Polled slowly: on RabbitMQ a passive declare counts as a use and renews the lease.
    wait_for(lambda: not queue_exists(conn, q), timeout=3, interval=0.5)


def test_passive_declare_renews_the_expires_lease(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    conn.channel().queue_declare(q, arguments={"x-expires": 400})
    for _ in range(6):
        time.sleep(0.15)
        assert queue_exists(conn, q)
    wait_for(lambda: not queue_exists(conn, q), timeout=3, interval=0.6)


def test_queue_with_consumer_does_not_expire(conn: BlockingConnection, name: str) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-expires": 200})
    tag = ch.basic_consume(q, lambda *_: None)
    conn.process_data_events(time_limit=0.5)
    assert queue_exists(conn, q)
    ch.basic_cancel(tag)
    wait_for(lambda: not queue_exists(conn, q), timeout=3, interval=0.5)


def test_queue_expires_on_virtual_clock(clocked_broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(clocked_broker.amqp_url) as conn:
        conn.channel().queue_declare(q, arguments={"x-expires": 3_600_000})
        clocked_broker.clock.advance(3000)
        # As on RabbitMQ, a passive declare is a use: each one renews the lease.
        assert queue_exists(conn, q)
        clocked_broker.clock.advance(3000)
        assert queue_exists(conn, q)
        clocked_broker.clock.advance(3601)
        wait_for(lambda: not queue_exists(conn, q), timeout=5, interval=0.5)


def test_queue_expires_on_virtual_clock_without_probes(clocked_broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(clocked_broker.amqp_url) as conn:
        conn.channel().queue_declare(q, arguments={"x-expires": 3_600_000})
        clocked_broker.clock.advance(3601)
        wait_for(lambda: not queue_exists(conn, q), timeout=5, interval=0.5)


# ------------------------------------------------------------------ max length, overflow


def test_max_length_drops_oldest(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.message_count) == (b"m3", 1)
    assert drain(ch, q) == [b"m4"]


def test_max_length_drop_head_explicit(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "drop-head"})
    ch.basic_publish("", q, b"old")
    ch.basic_publish("", q, b"new")
    assert drain(ch, q) == [b"new"]


def test_max_length_counts_only_ready_messages(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length": 1})
    ch.basic_publish("", q, b"unacked")
    method, _props, _body = ch.basic_get(q)
    ch.basic_publish("", q, b"ready")
    ch.basic_ack(method.delivery_tag)
    assert drain(ch, q) == [b"ready"]


def test_max_length_zero_keeps_nothing(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length": 0})
    ch.basic_publish("", q, b"m")
    assert drain(ch, q) == []


def test_max_length_bytes_counts_body_bytes(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    props = pika.BasicProperties(headers={"big": "x" * 200})  # headers do not count
    for body in (b"aaaaa", b"bbbbb", b"ccccc"):
        ch.basic_publish("", q, body, props)
    assert drain(ch, q) == [b"bbbbb", b"ccccc"]


def test_max_length_bytes_drops_an_oversized_message(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    ch.basic_publish("", q, b"small")
    ch.basic_publish("", q, b"x" * 11)
    assert drain(ch, q) == []


def test_reject_publish_with_confirms_nacks(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"m1")
    ch.basic_publish("", q, b"m2")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"m3")
    assert drain(ch, q) == [b"m1", b"m2"]
    # Room again: publishes are accepted.
    ch.basic_publish("", q, b"m4")
    assert drain(ch, q) == [b"m4"]


def test_reject_publish_without_confirms_drops_silently(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    # basic.get is ordered after the publishes on this channel (a passive declare is not:
    # RabbitMQ answers it ahead of queued deliveries), so this sees all three.
    assert drain(ch, q) == [b"m0"]
    assert ch.is_open


def test_reject_publish_bytes(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-length-bytes": 8, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"12345")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"67890")
    ch.basic_publish("", q, b"123")
    assert drain(ch, q) == [b"12345", b"123"]


def test_reject_publish_to_one_of_two_queues_still_nacks(ch: BlockingChannel, name: str) -> None:
    """A confirm is positive only if every queue the message was routed to took it."""
    x, full, roomy = f"{name}.x", f"{name}.q1", f"{name}.q2"
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    ch.queue_declare(roomy)
    ch.queue_bind(full, x)
    ch.queue_bind(roomy, x)
    ch.confirm_delivery()
    with pytest.raises(NackError):
        ch.basic_publish(x, "", b"m")
    assert drain(ch, roomy) == [b"m"]
    assert drain(ch, full) == []


# ------------------------------------------------------------------ x-max-priority


def test_priority_queue_orders_by_priority_then_fifo(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    for body, priority in [
        (b"p1", 1),
        (b"p5a", 5),
        (b"none", None),
        (b"p10", 10),
        (b"p5b", 5),
        (b"p0", 0),
        (b"p5c", 5),
    ]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=priority))
    assert drain(ch, q) == [b"p10", b"p5a", b"p5b", b"p5c", b"p1", b"none", b"p0"]


def test_priority_above_max_counts_as_max(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    ch.basic_publish("", q, b"at max", pika.BasicProperties(priority=5))
    ch.basic_publish("", q, b"above max", pika.BasicProperties(priority=200))
    ch.basic_publish("", q, b"below max", pika.BasicProperties(priority=4))
    ch.basic_publish("", q, b"also above", pika.BasicProperties(priority=9))
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"at max"
    assert drain(ch, q) == [b"above max", b"also above", b"below max"]
    assert props.priority == 5
    assert method.message_count == 3


def test_priority_is_kept_on_delivery(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    ch.basic_publish("", q, b"m", pika.BasicProperties(priority=200))
    _m, props, _body = ch.basic_get(q, auto_ack=True)
    assert props.priority == 200


def test_queue_without_max_priority_is_fifo(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q)
    ch.basic_publish("", q, b"low", pika.BasicProperties(priority=1))
    ch.basic_publish("", q, b"high", pika.BasicProperties(priority=9))
    assert drain(ch, q) == [b"low", b"high"]


def test_requeued_message_keeps_its_priority_place(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-max-priority": 3})
    ch.basic_publish("", q, b"high", pika.BasicProperties(priority=3))
    ch.basic_publish("", q, b"low", pika.BasicProperties(priority=1))
    method, _props, body = ch.basic_get(q)
    assert body == b"high"
    ch.basic_publish("", q, b"mid", pika.BasicProperties(priority=2))
    ch.basic_nack(method.delivery_tag, requeue=True)
    assert drain(ch, q) == [b"high", b"mid", b"low"]


# ------------------------------------------------------------------ single active consumer


def test_single_active_consumer(broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(broker.amqp_url) as c1, connect(broker.amqp_url) as c2:
        ch1, ch2 = c1.channel(), c2.channel()
        ch1.queue_declare(q, arguments={"x-single-active-consumer": True})
        got1: list[bytes] = []
        got2: list[bytes] = []
        tag1 = ch1.basic_consume(q, lambda _c, _m, _p, b: got1.append(b), auto_ack=True)
        ch2.basic_consume(q, lambda _c, _m, _p, b: got2.append(b), auto_ack=True)
        assert ch1.queue_declare(q, passive=True).method.consumer_count == 2
        for i in range(4):
            ch1.basic_publish("", q, f"a{i}".encode())
        pump_until(c1, lambda: len(got1) == 4)
        c2.process_data_events(time_limit=0.2)
        assert got2 == []
        ch1.basic_cancel(tag1)
        for i in range(3):
            ch1.basic_publish("", q, f"b{i}".encode())
        pump_until(c2, lambda: len(got2) == 3)
        assert got1 == [b"a0", b"a1", b"a2", b"a3"]
        assert got2 == [b"b0", b"b1", b"b2"]


def test_single_active_consumer_hands_over_on_connection_close(broker: Any, name: str) -> None:
    q = f"{name}.q"
    with connect(broker.amqp_url) as c2:
        ch2 = c2.channel()
        ch2.queue_declare(q, arguments={"x-single-active-consumer": True})
        got2: list[bytes] = []
        with connect(broker.amqp_url) as c1:
            ch1 = c1.channel()
            ch1.basic_qos(prefetch_count=10)
            got1: list[bytes] = []
            ch1.basic_consume(q, lambda _c, _m, _p, b: got1.append(b))
            ch2.basic_consume(q, lambda _c, _m, _p, b: got2.append(b), auto_ack=True)
            for i in range(3):
                ch2.basic_publish("", q, f"m{i}".encode())
            pump_until(c1, lambda: len(got1) == 3)
            c2.process_data_events(time_limit=0.2)
            assert got2 == []
        # The unacked messages of the departed active consumer go to its successor, in order.
        pump_until(c2, lambda: len(got2) == 3)
        assert got2 == [b"m0", b"m1", b"m2"]


# ------------------------------------------------------------------ argument validation


def test_unknown_x_argument_is_accepted_and_ignored(ch: BlockingChannel, name: str) -> None:
    """RabbitMQ 3.10 accepts unknown arguments and leaves them out of equivalence checks."""
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-no-such-argument": 1, "plain": "value"})
    ch.queue_declare(q, arguments={"x-no-such-argument": 2})
    ch.queue_declare(q)
    ch.basic_publish("", q, b"works")
    assert drain(ch, q) == [b"works"]


@pytest.mark.parametrize(
    ("argument", "value", "detail"),
    [
        ("x-max-length", "ten", "x-max-length"),
        ("x-max-length", -1, "value_negative"),
        ("x-max-length-bytes", "x", "x-max-length-bytes"),
        ("x-max-length-bytes", -1, "value_negative"),
        ("x-overflow", "bogus", "x-overflow"),
        ("x-overflow", 1, "x-overflow"),
        ("x-message-ttl", -1, "value_negative"),
        ("x-message-ttl", "10", "x-message-ttl"),
        ("x-expires", 0, "value_zero"),
        ("x-expires", -5, "value_negative"),
        ("x-max-priority", 256, "max_value_exceeded"),
        ("x-max-priority", -1, "value_negative"),
        ("x-dead-letter-exchange", 1, "x-dead-letter-exchange"),
        ("x-dead-letter-routing-key", 2, "x-dead-letter-routing-key"),
        ("x-single-active-consumer", "yes", "x-single-active-consumer"),
        ("x-single-active-consumer", 1, "x-single-active-consumer"),
        ("x-queue-type", "bogus", "x-queue-type"),
    ],
)
def test_ill_typed_argument_is_406(
    conn: BlockingConnection, name: str, argument: str, value: object, detail: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    with channel_error(406, "PRECONDITION_FAILED", f"'{argument}'", f"'{q}'", detail):
        ch.queue_declare(q, arguments={argument: value})
    assert not queue_exists(conn, q)


def test_dead_letter_routing_key_without_exchange_is_406(
    conn: BlockingConnection, name: str
) -> None:
    q = f"{name}.q"
    ch = conn.channel()
    with channel_error(406, "PRECONDITION_FAILED", "'x-dead-letter-routing-key'"):
        ch.queue_declare(q, arguments={"x-dead-letter-routing-key": "k"})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("x-message-ttl", 0),
        ("x-max-priority", 0),
        ("x-max-priority", 255),
        ("x-max-length", 0),
        ("x-max-length", 2**40),
        ("x-queue-type", "classic"),
        ("x-overflow", "reject-publish-dlx"),
    ],
)
def test_boundary_argument_values_are_accepted(
    ch: BlockingChannel, name: str, argument: str, value: object
) -> None:
    q = f"{name}.q"
    assert ch.queue_declare(q, arguments={argument: value}).method.queue == q
