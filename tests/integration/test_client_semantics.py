"""JMS semantics the broker enforces, seen through ferrymq.client (amqp:// and vm://).

Selectors, message groups, delivery delay and client-id uniqueness live in the broker core;
these tests check that the client expresses them on the wire the way the broker reads them
(x-selector consumer and binding arguments, JMSXGroupID headers, x-delay, client_properties).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ferrymq.client import (
    AckMode,
    Connection,
    DeliveryMode,
    InvalidClientIDError,
    InvalidSelectorError,
    Message,
    Topic,
    connect,
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


@pytest.fixture
def conn(url: str) -> Iterator[Connection]:
    with connect(url) as connection:
        yield connection


def _bodies(consumer: Any, count: int) -> list[Any]:
    out = []
    while len(out) < count and (msg := consumer.receive(2)) is not None:
        out.append(msg.body)
    while (msg := consumer.receive(QUIET)) is not None:
        out.append(msg.body)
    return out


def test_queue_selector_takes_only_matching_messages(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    for i, (region, size) in enumerate([("eu", 5), ("us", 9), ("eu", 1), ("eu", 7)]):
        producer.send(session.text_message(str(i), properties={"region": region, "size": size}))
    big_eu = session.consumer(queue, "region = 'eu' AND size > 3")
    conn.start()
    assert _bodies(big_eu, 2) == ["0", "3"]
    rest = conn.session().consumer(queue)  # non-matching ones stayed for others
    assert _bodies(rest, 2) == ["1", "2"]


def test_selector_on_header_fields(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    producer.send(session.text_message("a", type="Order"), priority=8)
    producer.send(session.text_message("b", type="Invoice"), priority=2)
    producer.send(session.text_message("c", correlation_id="x-1"), priority=5)
    consumer = session.consumer(
        queue, "JMSPriority > 4 AND (JMSType = 'Order' OR JMSCorrelationID LIKE 'x-%')"
    )
    conn.start()
    assert _bodies(consumer, 2) == ["a", "c"]


def test_invalid_selector_is_refused_and_the_session_goes_on(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    with pytest.raises(InvalidSelectorError) as info:
        session.consumer(queue, "region = = 'eu'")
    assert info.value.reply_code == 406
    # the session still works: its channel was reopened
    session.producer(queue).send("still-here")
    consumer = session.consumer(queue)
    conn.start()
    assert consumer.receive_body(2) == "still-here"


def test_topic_subscription_selector_filters_what_it_receives(url: str, name: str) -> None:
    topic = Topic(f"{name}.prices")
    with connect(url, client_id=f"{name}-c") as conn:
        session = conn.session()
        cheap = session.consumer(topic, "price <= 10")
        dear = session.durable_consumer(topic, "dear", "price > 10")
        producer = session.producer(topic)
        for price in (5, 50, 10, 11):
            producer.send(session.text_message(str(price), properties={"price": price}))
        conn.start()
        assert _bodies(cheap, 2) == ["5", "10"]
        assert _bodies(dear, 2) == ["50", "11"]
        dear.close()
        session.unsubscribe("dear")


def test_changing_a_durable_subscription_selector_recreates_it(url: str, name: str) -> None:
    topic = Topic(name)
    with connect(url, client_id=f"{name}-c") as conn:
        session = conn.session()
        sub = session.durable_consumer(topic, "s", "n > 5")
        sub.close()
        session.producer(topic).send(session.text_message("old", properties={"n": 9}))
        sub = session.durable_consumer(topic, "s", "n < 5")  # a new subscription: "old" is gone
        session.producer(topic).send(session.text_message("small", properties={"n": 1}))
        session.producer(topic).send(session.text_message("big", properties={"n": 9}))
        conn.start()
        assert _bodies(sub, 1) == ["small"]


def test_message_groups_stick_to_one_consumer(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue, delivery_mode=DeliveryMode.NON_PERSISTENT)
    a = conn.session().consumer(queue, prefetch=1)
    b = conn.session().consumer(queue, prefetch=1)
    conn.start()
    got: dict[str, set[str]] = {"a": set(), "b": set()}
    for i in range(12):
        msg = session.text_message(str(i))
        msg.group_id = f"g{i % 3}"
        msg.group_seq = i // 3 + 1
        producer.send(msg)
    total = 0
    while total < 12:
        progressed = False
        for label, consumer in (("a", a), ("b", b)):
            msg = consumer.receive(QUIET)
            if msg is not None:
                assert msg.group_id is not None
                got[label].add(msg.group_id)
                total += 1
                progressed = True
        assert progressed, f"only {total} of 12 messages arrived"
    assert not got["a"] & got["b"]  # no group was split between the two
    assert got["a"] | got["b"] == {"g0", "g1", "g2"}


def test_message_group_moves_when_its_consumer_goes(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.CLIENT)
    queue = session.queue(name)
    producer = session.producer(queue)
    first = session.consumer(queue, prefetch=1)
    conn.start()
    msg = session.text_message("1")
    msg.group_id = "orders-42"
    producer.send(msg)
    got = first.receive(2)
    assert got is not None and got.group_id == "orders-42"
    got.acknowledge()
    first.close()
    second = conn.session().consumer(queue)
    msg = session.text_message("2")
    msg.group_id = "orders-42"
    producer.send(msg)
    assert second.receive_body(2) == "2"


def test_delivery_count_grows_with_each_redelivery(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.CLIENT)
    queue = session.queue(name)
    session.producer(queue).send("again")
    consumer = session.consumer(queue)
    conn.start()
    counts = []
    for _ in range(3):
        msg = consumer.receive(2)
        assert msg is not None
        counts.append((msg.redelivered, msg.delivery_count))
        session.recover()
    assert counts == [(False, 1), (True, 2), (True, 3)]


def test_selector_sees_the_delivery_count(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.CLIENT)
    queue = session.queue(name)
    session.producer(queue).send("m")
    first = session.consumer(queue)
    conn.start()
    assert first.receive(2) is not None
    session.close()  # unacknowledged: back to the queue, delivered once
    retried = conn.session().consumer(queue, "JMSXDeliveryCount > 1")
    assert retried.receive_body(2) == "m"


def test_a_client_id_is_held_by_one_connection(url: str) -> None:
    holder = connect(url, client_id="ledger")
    try:
        with pytest.raises(InvalidClientIDError) as info:
            connect(url, client_id="ledger")
        assert "ledger" in info.value.text
    finally:
        holder.close()
    connect(url, client_id="ledger").close()


def test_durable_subscription_identity_is_client_id_and_name(url: str, name: str) -> None:
    topic = Topic(name)
    with connect(url, client_id=f"{name}-1") as c1, connect(url, client_id=f"{name}-2") as c2:
        s1 = c1.session().durable_consumer(topic, "same-name")
        s2 = c2.session().durable_consumer(topic, "same-name")  # another client: its own
        assert s1.queue_name != s2.queue_name
        c1.session().producer(topic).send("both")
        c1.start()
        c2.start()
        assert s1.receive_body(2) == "both"
        assert s2.receive_body(2) == "both"
        s1.close()
        s2.close()
        c1.session().unsubscribe("same-name")
        c2.session().unsubscribe("same-name")


def test_listeners_in_one_session_run_one_at_a_time(conn: Connection, name: str) -> None:
    session = conn.session()
    q1, q2 = session.queue(name + ".1"), session.queue(name + ".2")
    running = 0
    overlaps = 0
    lock = threading.Lock()
    seen: list[str] = []
    done = threading.Event()

    def listener(msg: Message) -> None:
        nonlocal running, overlaps
        with lock:
            running += 1
            overlaps += running > 1
        seen.append(msg.body)
        with lock:
            running -= 1
        if len(seen) == 20:
            done.set()

    session.consumer(q1).message_listener = listener
    session.consumer(q2).message_listener = listener
    producer = conn.session().producer()
    for i in range(10):
        producer.send(f"1:{i}", destination=q1)
        producer.send(f"2:{i}", destination=q2)
    conn.start()
    assert done.wait(5)
    assert overlaps == 0
    assert [b for b in seen if b.startswith("1:")] == [f"1:{i}" for i in range(10)]
