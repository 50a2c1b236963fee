"""Broker-side semantics the JMS model needs, as any AMQP client sees them (pika here)."""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions
import pytest

from tests.helpers import wait_for


def _conn(broker: Any, **props: Any) -> pika.BlockingConnection:
    params = pika.URLParameters(broker.amqp_url)
    if props:
        params.client_properties = props
    return pika.BlockingConnection(params)


def test_x_delay_holds_a_message_until_its_time(clocked_broker: Any) -> None:
    conn = _conn(clocked_broker)
    ch = conn.channel()
    ch.queue_declare("delayed.q")
    ch.confirm_delivery()
    ch.basic_publish("", "delayed.q", b"later", pika.BasicProperties(headers={"x-delay": 60_000}))
    ch.basic_publish("", "delayed.q", b"now")
    assert ch.basic_get("delayed.q", auto_ack=True)[2] == b"now"
    assert ch.basic_get("delayed.q", auto_ack=True)[0] is None
    clocked_broker.clock.advance(59)
    assert ch.queue_declare("delayed.q", passive=True).method.message_count == 0
    clocked_broker.clock.advance(1.5)
    wait_for(lambda: ch.queue_declare("delayed.q", passive=True).method.message_count == 1)
    _method, props, body = ch.basic_get("delayed.q", auto_ack=True)
    assert body == b"later"
    assert props.headers["x-delay"] == 60_000
    conn.close()


def test_x_delay_routes_through_the_exchange_when_due(clocked_broker: Any) -> None:
    conn = _conn(clocked_broker)
    ch = conn.channel()
    ch.queue_declare("delayed.t")
    ch.queue_bind("delayed.t", "amq.topic", "orders.*")
    ch.confirm_delivery()
    ch.basic_publish(
        "amq.topic", "orders.eu", b"o1", pika.BasicProperties(headers={"x-delay": 1000})
    )
    clocked_broker.clock.advance(2)
    wait_for(lambda: ch.queue_declare("delayed.t", passive=True).method.message_count == 1)
    conn.close()


def test_redelivered_messages_carry_x_delivery_count(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("count.q", exclusive=True)
    ch.basic_publish("", "count.q", b"m", pika.BasicProperties(headers={"keep": "me"}))
    counts: list[Any] = []

    def on_message(c: Any, method: Any, props: Any, body: bytes) -> None:
        counts.append((props.headers or {}).get("x-delivery-count"))
        assert (props.headers or {}).get("keep") == "me"
        c.basic_nack(method.delivery_tag, requeue=len(counts) < 3)

    ch.basic_consume("count.q", on_message, arguments={"x-delivery-count": True})
    wait_for(lambda: (conn.process_data_events(time_limit=0.05), len(counts) == 3)[1])
    assert counts == [None, 1, 2]
    conn.close()


def test_plain_consumers_of_classic_queues_see_no_delivery_count(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("count.plain", exclusive=True)
    ch.basic_publish("", "count.plain", b"m")
    method, _props, _ = ch.basic_get("count.plain")
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, props, _ = ch.basic_get("count.plain", auto_ack=True)
    assert method.redelivered is True
    assert props.headers is None  # as RabbitMQ's classic queues
    conn.close()


def test_a_client_id_is_used_by_one_connection_at_a_time(broker: Any) -> None:
    first = _conn(broker, client_id="billing")
    # refused at connection.open with 530, which pika reports as ProbableAccessDeniedError
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        _conn(broker, client_id="billing")
    assert "(530)" in str(info.value)
    assert "client id 'billing' is already in use" in str(info.value)
    other = _conn(broker, client_id="shipping")  # another id is fine
    other.close()
    first.close()
    again = _conn(broker, client_id="billing")  # released when the holder closed
    again.close()


def _drain(ch: Any, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_consumer_selector_takes_only_matching_messages(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("sel.q", exclusive=True)
    for region, size in (("eu", 5), ("us", 9), ("eu", 1), ("eu", 7)):
        ch.basic_publish(
            "",
            "sel.q",
            f"{region}{size}".encode(),
            pika.BasicProperties(headers={"region": region, "size": size}),
        )
    got: list[bytes] = []
    ch.basic_consume(
        "sel.q",
        lambda c, m, p, b: got.append(b),
        auto_ack=True,
        arguments={"x-selector": "region = 'eu' AND size > 3"},
    )
    wait_for(lambda: (conn.process_data_events(time_limit=0.05), len(got) == 2)[1])
    assert got == [b"eu5", b"eu7"]
    other = conn.channel()
    assert sorted(_drain(other, "sel.q")) == [b"eu1", b"us9"]  # the rest stayed for others
    conn.close()


def test_invalid_selector_is_refused_with_406(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("sel.bad", exclusive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume("sel.bad", lambda *a: None, arguments={"x-selector": "region = "})
    assert info.value.reply_code == 406
    assert "invalid selector" in info.value.reply_text
    conn.close()


def test_binding_selector_filters_a_topic_subscription(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("sub.cheap", exclusive=True)
    ch.queue_bind("sub.cheap", "amq.topic", "prices.#", arguments={"x-selector": "price < 10"})
    ch.confirm_delivery()
    for price in (5, 50, 7):
        ch.basic_publish(
            "amq.topic",
            "prices.eu",
            str(price).encode(),
            pika.BasicProperties(headers={"price": price}),
        )
    ch.basic_publish("amq.topic", "other.eu", b"3", pika.BasicProperties(headers={"price": 3}))
    assert _drain(ch, "sub.cheap") == [b"5", b"7"]
    conn.close()


def test_message_groups_stick_to_one_consumer_and_move_when_it_goes(broker: Any) -> None:
    conn = _conn(broker)
    setup = conn.channel()
    setup.queue_declare("groups.q", exclusive=True)
    a, b = conn.channel(), conn.channel()
    got: dict[str, list[str]] = {"a": [], "b": []}
    tag_a = a.basic_consume(
        "groups.q", lambda c, m, p, body: got["a"].append(body.decode()), auto_ack=True
    )
    b.basic_consume("groups.q", lambda c, m, p, body: got["b"].append(body.decode()), auto_ack=True)
    for i in range(12):
        group = "g1" if i % 2 else "g2"
        setup.basic_publish(
            "",
            "groups.q",
            f"{group}-{i}".encode(),
            pika.BasicProperties(headers={"JMSXGroupID": group}),
        )
    wait_for(
        lambda: (conn.process_data_events(time_limit=0.05), len(got["a"]) + len(got["b"]) == 12)[1]
    )
    for bodies in got.values():
        assert len({body.split("-")[0] for body in bodies}) <= 1, got  # one group per consumer
    # the consumer of a group goes: its group moves to the remaining consumer
    a.basic_cancel(tag_a)
    before = len(got["b"])
    for i in range(4):
        setup.basic_publish(
            "", "groups.q", f"g1-x{i}".encode(), pika.BasicProperties(headers={"JMSXGroupID": "g1"})
        )
        setup.basic_publish(
            "", "groups.q", f"g2-x{i}".encode(), pika.BasicProperties(headers={"JMSXGroupID": "g2"})
        )
    wait_for(lambda: (conn.process_data_events(time_limit=0.05), len(got["b"]) == before + 8)[1])
    conn.close()


def test_browse_sees_messages_without_taking_them(broker: Any) -> None:
    conn = _conn(broker)
    ch = conn.channel()
    ch.queue_declare("browse.q", exclusive=True)
    for i in range(5):
        ch.basic_publish("", "browse.q", b"m%d" % i, pika.BasicProperties(headers={"n": i}))
    seen: list[bytes] = []
    cancelled: list[str] = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(
        "browse.q",
        lambda c, m, p, b: seen.append(b),
        auto_ack=True,
        arguments={"x-browse": True, "x-selector": "n >= 2"},
    )
    wait_for(lambda: (conn.process_data_events(time_limit=0.05), bool(cancelled))[1])
    assert seen == [b"m2", b"m3", b"m4"]
    assert cancelled == [tag]
    assert ch.queue_declare("browse.q", passive=True).method.message_count == 5
    conn.close()
