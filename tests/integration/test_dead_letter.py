"""Dead-lettering, with the exact headers RabbitMQ writes, as pika users see them.

Every expectation was checked against RabbitMQ 3.10 (FERRYMQ_TEST_AMQP_URL set). RabbitMQ 3.13
added `x-last-death-*` headers; a broker may add those, nothing else. `x-delivery-limit` is a
quorum-queue argument on RabbitMQ (3.10 refuses it on classic queues), so its test is
FerryMQ-only, on the virtual clock. Each timed feature also has a virtual-clock twin with
hour-long times.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker, NackError

from tests.helpers import wait_for
from tests.pika_support import (
    EXTERNAL,
    connect,
    shared_broker_cleanup,
)

# A broker that stops answering must fail the test, not stall the run for the global 120 s.
pytestmark = pytest.mark.timeout(30)

# Names every test here derives from `name`; deleted again when running against a shared broker.
QUEUE_SUFFIXES = ("q", "q2", "dlq", "dlq2")
EXCHANGE_SUFFIXES = ("x", "dlx")

_cleanup_shared_broker = shared_broker_cleanup(QUEUE_SUFFIXES, EXCHANGE_SUFFIXES)

# Headers newer RabbitMQ versions add next to x-first-death-*; allowed, not required.
LAST_DEATH = {"x-last-death-reason", "x-last-death-queue", "x-last-death-exchange"}
X_DEATH_KEYS = {"count", "reason", "queue", "time", "exchange", "routing-keys"}

Message = tuple[Any, pika.BasicProperties, bytes]


def setup_dlq(ch: BlockingChannel, name: str, **queue_args: Any) -> tuple[str, str]:
    """A fanout DLX `{name}.dlx` feeding `{name}.dlq`, and `{name}.q` dead-lettering to it."""
    q, dlx, dlq = f"{name}.q", f"{name}.dlx", f"{name}.dlq"
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx, **queue_args})
    return q, dlq


def await_message(ch: BlockingChannel, queue: str, timeout: float = 5.0) -> Message:
    """Poll basic.get (auto-ack) until a message arrives; dead-lettering is asynchronous."""
    found: list[Message] = []

    def poll() -> bool:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            found.append((method, props, body))
        return bool(found)

    wait_for(poll, timeout=timeout)
    return found[0]


def no_message(ch: BlockingChannel, queue: str, wait: float = 0.3) -> bool:
    """True if nothing shows up in `queue` within `wait` seconds."""
    time.sleep(wait)
    method, _props, _body = ch.basic_get(queue, auto_ack=True)
    return method is None


def reject_next(ch: BlockingChannel, queue: str, *, requeue: bool = False) -> bytes:
    method, _props, body = ch.basic_get(queue)
    assert method is not None, f"{queue} is empty"
    ch.basic_reject(method.delivery_tag, requeue=requeue)
    return bytes(body)


def assert_death(
    entry: dict[str, Any],
    *,
    count: int,
    reason: str,
    queue: str,
    exchange: str,
    routing_keys: list[str],
    original_expiration: str | None = None,
) -> None:
    """One x-death entry, field for field, as RabbitMQ writes it."""
    keys = set(X_DEATH_KEYS)
    if original_expiration is not None:
        keys.add("original-expiration")
        assert entry["original-expiration"] == original_expiration
    assert set(entry) == keys, entry
    assert entry["count"] == count
    assert entry["reason"] == reason
    assert entry["queue"] == queue
    assert entry["exchange"] == exchange
    assert entry["routing-keys"] == routing_keys
    assert isinstance(entry["time"], dt.datetime)
    now = dt.datetime.now(dt.UTC)
    assert abs((now - entry["time"]).total_seconds()) < 60


def assert_first_death(headers: dict[str, Any], *, reason: str, queue: str, exchange: str) -> None:
    assert headers["x-first-death-reason"] == reason
    assert headers["x-first-death-queue"] == queue
    assert headers["x-first-death-exchange"] == exchange


def death_headers(headers: dict[str, Any]) -> set[str]:
    """The broker-written header names, minus the optional x-last-death-* ones."""
    return {k for k in headers if k.startswith("x-")} - LAST_DEATH


# ------------------------------------------------------------------ rejected


def test_reject_dead_letters_with_exact_headers(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name)
    props = pika.BasicProperties(
        content_type="text/plain",
        correlation_id="corr",
        message_id="mid",
        delivery_mode=2,
        headers={"app": "kept"},
    )
    ch.basic_publish("", q, b"poison", props)
    assert reject_next(ch, q) == b"poison"
    method, got, body = await_message(ch, dlq)
    assert body == b"poison"
    # Delivered via the DLX, keeping the original routing key.
    assert (method.exchange, method.routing_key) == (f"{name}.dlx", q)
    assert (got.content_type, got.correlation_id, got.message_id) == ("text/plain", "corr", "mid")
    assert got.delivery_mode == 2
    headers = got.headers
    assert headers["app"] == "kept"
    assert death_headers(headers) == {
        "x-death",
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
    }
    [entry] = headers["x-death"]
    assert_death(entry, count=1, reason="rejected", queue=q, exchange="", routing_keys=[q])
    assert_first_death(headers, reason="rejected", queue=q, exchange="")


def test_nack_without_requeue_dead_letters(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name)
    for body in (b"a", b"b", b"c"):
        ch.basic_publish("", q, body)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    first = await_message(ch, dlq)
    second = await_message(ch, dlq)
    assert [first[2], second[2]] == [b"a", b"b"]
    for _method, props, _body in (first, second):
        assert props.headers["x-death"][0]["reason"] == "rejected"
    assert no_message(ch, dlq, 0.1)


def test_requeue_does_not_dead_letter(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name)
    ch.basic_publish("", q, b"m")
    reject_next(ch, q, requeue=True)
    assert no_message(ch, dlq)
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.redelivered, props.headers) == (b"m", True, None)


def test_dead_letter_routing_key_override(ch: BlockingChannel, name: str) -> None:
    x, q, dlx, dlq = f"{name}.x", f"{name}.q", f"{name}.dlx", f"{name}.dlq"
    ch.exchange_declare(x, "direct")
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx, routing_key="dead")
    ch.queue_declare(
        q, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"}
    )
    ch.queue_bind(q, x, routing_key="live")
    ch.basic_publish(x, "live", b"m")
    reject_next(ch, q)
    method, props, _body = await_message(ch, dlq)
    assert (method.exchange, method.routing_key) == (dlx, "dead")
    [entry] = props.headers["x-death"]
    assert_death(entry, count=1, reason="rejected", queue=q, exchange=x, routing_keys=["live"])
    assert_first_death(props.headers, reason="rejected", queue=q, exchange=x)


def test_default_exchange_as_dead_letter_exchange(ch: BlockingChannel, name: str) -> None:
    q, dlq = f"{name}.q", f"{name}.dlq"
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"m")
    reject_next(ch, q)
    method, props, body = await_message(ch, dlq)
    assert (body, method.exchange, method.routing_key) == (b"m", "", dlq)
    assert props.headers["x-death"][0]["routing-keys"] == [q]


def test_topic_dead_letter_exchange_routes_on_original_key(ch: BlockingChannel, name: str) -> None:
    x, q, dlx, dlq, dlq2 = (f"{name}.{s}" for s in ("x", "q", "dlx", "dlq", "dlq2"))
    ch.exchange_declare(x, "topic")
    ch.exchange_declare(dlx, "topic")
    ch.queue_declare(dlq)
    ch.queue_declare(dlq2)
    ch.queue_bind(dlq, dlx, routing_key="orders.*")
    ch.queue_bind(dlq2, dlx, routing_key="payments.#")
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_bind(q, x, routing_key="#")
    ch.basic_publish(x, "orders.eu", b"order")
    ch.basic_publish(x, "payments.eu.card", b"payment")
    reject_next(ch, q)
    reject_next(ch, q)
    assert await_message(ch, dlq)[2] == b"order"
    assert await_message(ch, dlq2)[2] == b"payment"


def test_dead_lettering_removes_expiration(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name)
    ch.basic_publish("", q, b"m", pika.BasicProperties(expiration="60000"))
    reject_next(ch, q)
    _method, props, _body = await_message(ch, dlq)
    assert props.expiration is None
    [entry] = props.headers["x-death"]
    assert_death(
        entry,
        count=1,
        reason="rejected",
        queue=q,
        exchange="",
        routing_keys=[q],
        original_expiration="60000",
    )


def test_missing_dead_letter_exchange_drops_message(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": f"{name}.dlx"})
    ch.basic_publish("", q, b"m")
    reject_next(ch, q)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": f"{name}.dlx"})
    assert ch.is_open
    assert ch.basic_get(q)[0] is None


def test_delete_and_purge_do_not_dead_letter(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"purged")
    assert ch.queue_purge(q).method.message_count == 1
    ch.basic_publish("", q, b"deleted")
    assert ch.queue_delete(q).method.message_count == 1
    assert no_message(ch, dlq)


# ------------------------------------------------------------------ repeated deaths


def test_repeated_dead_lettering_counts_per_queue_and_reason(
    ch: BlockingChannel, name: str
) -> None:
    q, q2 = f"{name}.q", f"{name}.q2"
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q2})
    ch.queue_declare(q2, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
    ch.basic_publish("", q, b"bouncer")
    reject_next(ch, q)  # q -> q2
    await_message_then_reject(ch, q2)  # q2 -> q
    await_message_then_reject(ch, q)  # q -> q2 again
    _method, props, body = await_message(ch, q2)
    assert body == b"bouncer"
    deaths = props.headers["x-death"]
    # Most recent first; one entry per (queue, reason), its count bumped.
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (q, "rejected", 2),
        (q2, "rejected", 1),
    ]
    assert_death(deaths[0], count=2, reason="rejected", queue=q, exchange="", routing_keys=[q])
    assert_death(deaths[1], count=1, reason="rejected", queue=q2, exchange="", routing_keys=[q2])
    assert_first_death(props.headers, reason="rejected", queue=q, exchange="")


def await_message_then_reject(ch: BlockingChannel, queue: str) -> None:
    """Wait for a dead-lettered message to land in `queue`, then reject it on."""
    found: list[int] = []

    def poll() -> bool:
        method, _props, _body = ch.basic_get(queue)
        if method is not None:
            found.append(method.delivery_tag)
        return bool(found)

    wait_for(poll, timeout=5)
    ch.basic_reject(found[0], requeue=False)


def test_first_death_headers_survive_a_second_death(ch: BlockingChannel, name: str) -> None:
    q, q2, dlq = f"{name}.q", f"{name}.q2", f"{name}.dlq"
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q2})
    ch.queue_declare(
        q2,
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    ch.basic_publish("", q, b"m")
    reject_next(ch, q)  # rejected from q, then expires in q2
    _method, props, _body = await_message(ch, dlq)
    deaths = props.headers["x-death"]
    assert [(d["queue"], d["reason"]) for d in deaths] == [(q2, "expired"), (q, "rejected")]
    assert_first_death(props.headers, reason="rejected", queue=q, exchange="")


def test_expiry_cycle_is_broken(ch: BlockingChannel, name: str) -> None:
    """A message that expires back into the queue it expired from is dropped, not looped."""
    q = f"{name}.q"
    ch.queue_declare(
        q,
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": q,
        },
    )
    ch.basic_publish("", q, b"m")
    time.sleep(0.5)
    assert ch.basic_get(q)[0] is None


def test_rejection_cycle_is_allowed(ch: BlockingChannel, name: str) -> None:
    """A cycle with a client rejection in it is not broken: the client asked for it."""
    q = f"{name}.q"
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
    ch.basic_publish("", q, b"m")
    for _ in range(3):
        await_message_then_reject(ch, q)
    _method, props, _body = await_message(ch, q)
    [entry] = props.headers["x-death"]
    assert (entry["reason"], entry["count"]) == ("rejected", 3)


# ------------------------------------------------------------------ expired


def test_queue_ttl_dead_letters_as_expired(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-message-ttl": 200})
    ch.basic_publish("", q, b"stale", pika.BasicProperties(message_id="s"))
    method, props, body = await_message(ch, dlq)
    assert (body, props.message_id) == (b"stale", "s")
    assert (method.exchange, method.routing_key) == (f"{name}.dlx", q)
    [entry] = props.headers["x-death"]
    assert_death(entry, count=1, reason="expired", queue=q, exchange="", routing_keys=[q])
    assert_first_death(props.headers, reason="expired", queue=q, exchange="")
    assert ch.basic_get(q)[0] is None


def test_per_message_expiration_dead_letters_with_original_expiration(
    ch: BlockingChannel, name: str
) -> None:
    q, dlq = setup_dlq(ch, name)
    ch.basic_publish("", q, b"stale", pika.BasicProperties(expiration="200"))
    _method, props, body = await_message(ch, dlq)
    assert body == b"stale"
    assert props.expiration is None
    [entry] = props.headers["x-death"]
    assert_death(
        entry,
        count=1,
        reason="expired",
        queue=q,
        exchange="",
        routing_keys=[q],
        original_expiration="200",
    )


def test_expired_messages_dead_letter_in_order(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-message-ttl": 150})
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    bodies = [await_message(ch, dlq)[2] for _ in range(5)]
    assert bodies == [b"m0", b"m1", b"m2", b"m3", b"m4"]


def test_ttl_dead_letter_on_virtual_clock(clocked_broker: Any, name: str) -> None:
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        q, dlq = setup_dlq(ch, name, **{"x-message-ttl": 3_600_000})
        ch.confirm_delivery()
        ch.basic_publish("", q, b"an hour")
        ch.basic_publish("", q, b"a minute", pika.BasicProperties(expiration="60000"))
        clocked_broker.clock.advance(59)
        assert no_message(ch, dlq, 0.2)
        clocked_broker.clock.advance(3542)
        # RabbitMQ's classic queues let the later-expiring head go first; either order is fine.
        dead = {m[2]: m[1] for m in (await_message(ch, dlq), await_message(ch, dlq))}
        assert set(dead) == {b"an hour", b"a minute"}
        assert dead[b"a minute"].headers["x-death"][0]["original-expiration"] == "60000"
        assert all(p.headers["x-death"][0]["reason"] == "expired" for p in dead.values())


# ------------------------------------------------------------------ maxlen


def test_drop_head_dead_letters_as_maxlen(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-max-length": 2})
    for i in range(4):
        ch.basic_publish("", q, f"m{i}".encode())
    dropped = [await_message(ch, dlq) for _ in range(2)]
    assert [m[2] for m in dropped] == [b"m0", b"m1"]
    [entry] = dropped[0][1].headers["x-death"]
    assert_death(entry, count=1, reason="maxlen", queue=q, exchange="", routing_keys=[q])
    assert_first_death(dropped[0][1].headers, reason="maxlen", queue=q, exchange="")
    assert [ch.basic_get(q, auto_ack=True)[2] for _ in range(2)] == [b"m2", b"m3"]


def test_max_length_bytes_dead_letters_as_maxlen(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-max-length-bytes": 6})
    ch.basic_publish("", q, b"aaa")
    ch.basic_publish("", q, b"bbb")
    ch.basic_publish("", q, b"ccc")
    _method, props, body = await_message(ch, dlq)
    assert body == b"aaa"
    assert props.headers["x-death"][0]["reason"] == "maxlen"


def test_reject_publish_dlx_dead_letters_refused_messages(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"accepted")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"refused")
    _method, props, body = await_message(ch, dlq)
    assert body == b"refused"
    [entry] = props.headers["x-death"]
    assert_death(entry, count=1, reason="maxlen", queue=q, exchange="", routing_keys=[q])
    assert ch.basic_get(q, auto_ack=True)[2] == b"accepted"


def test_reject_publish_does_not_dead_letter(ch: BlockingChannel, name: str) -> None:
    q, dlq = setup_dlq(ch, name, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"accepted")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"refused")
    assert no_message(ch, dlq)
    assert ch.basic_get(q, auto_ack=True)[2] == b"accepted"


# ------------------------------------------------------------------ delivery limit (FerryMQ)


def test_delivery_limit_dead_letters_after_n_redeliveries(clocked_broker: Any, name: str) -> None:
    """`x-delivery-limit` as RabbitMQ quorum queues define it, on FerryMQ's classic queues.

    With a limit of 2 a message may be returned twice; returned a third time it is
    dead-lettered with reason `delivery_limit` instead of requeued.
    """
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        q, dlq = setup_dlq(ch, name, **{"x-delivery-limit": 2})
        ch.confirm_delivery()
        ch.basic_publish("", q, b"poison")
        ch.basic_publish("", q, b"fine")
        seen: list[tuple[bytes, bool]] = []
        for _ in range(3):
            method, _props, body = ch.basic_get(q)
            assert body == b"poison"
            seen.append((body, method.redelivered))
            ch.basic_nack(method.delivery_tag, requeue=True)
        assert seen == [(b"poison", False), (b"poison", True), (b"poison", True)]
        _method, props, body = await_message(ch, dlq)
        assert body == b"poison"
        [entry] = props.headers["x-death"]
        assert_death(
            entry, count=1, reason="delivery_limit", queue=q, exchange="", routing_keys=[q]
        )
        assert_first_death(props.headers, reason="delivery_limit", queue=q, exchange="")
        assert ch.basic_get(q, auto_ack=True)[2] == b"fine"


def test_delivery_limit_counts_consumer_redeliveries(clocked_broker: Any, name: str) -> None:
    with connect(clocked_broker.amqp_url) as conn:
        ch = conn.channel()
        q, dlq = setup_dlq(ch, name, **{"x-delivery-limit": 1})
        ch.basic_qos(prefetch_count=1)
        deliveries: list[bool] = []

        def nack(
            c: BlockingChannel, m: pika.spec.Basic.Deliver, _p: pika.BasicProperties, _b: bytes
        ) -> None:
            deliveries.append(m.redelivered)
            c.basic_nack(m.delivery_tag, requeue=True)

        ch.basic_consume(q, nack)
        ch.basic_publish("", q, b"poison")
        deadline = time.monotonic() + 5
        while len(deliveries) < 2 and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.02)
        conn.process_data_events(time_limit=0.3)
        assert deliveries == [False, True]
        other = conn.channel()
        _method, props, _body = await_message(other, dlq)
        assert props.headers["x-death"][0]["reason"] == "delivery_limit"


@pytest.mark.skipif(EXTERNAL, reason="RabbitMQ 3.10 refuses x-delivery-limit on classic queues")
def test_delivery_limit_argument_is_validated(broker: Any, name: str) -> None:
    with connect(broker.amqp_url) as conn:
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.queue_declare(f"{name}.q", arguments={"x-delivery-limit": -1})
        assert info.value.reply_code == 406
        assert "x-delivery-limit" in info.value.reply_text
