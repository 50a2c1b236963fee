"""ferrymq.client, the blocking API, against a live broker over amqp:// and over vm://.

Every test runs twice (the `url` fixture): once through a socket, once through the in-process
pipe into the same broker, which must behave the same.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ferrymq.client import (
    AckMode,
    BytesMessage,
    Connection,
    DeliveryMode,
    IllegalStateError,
    InvalidDestinationError,
    MapMessage,
    Message,
    MessageNotWriteableError,
    ObjectMessage,
    Queue,
    Short,
    StreamMessage,
    TemporaryQueue,
    TextMessage,
    Topic,
    connect,
    context,
    vm,
)
from tests.helpers import wait_for


@pytest.fixture(params=["amqp", "vm"])
def url(request: pytest.FixtureRequest, broker: Any) -> Iterator[str]:
    """The broker's address over the network, or over vm:// into the same broker."""
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


QUIET = 0.1  # how long "nothing more arrives" is watched for


def _drain(consumer: Any, count: int | None = None) -> list[Message]:
    """`count` messages (each within 2 s), then whatever else arrives within QUIET."""
    out = []
    while count is not None and len(out) < count:
        msg = consumer.receive(2)
        if msg is None:
            break
        out.append(msg)
    while (msg := consumer.receive(QUIET)) is not None:
        out.append(msg)
    return out


# -- messages and header fields ----------------------------------------------------------------


def test_every_message_kind_round_trips(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    consumer = session.consumer(queue)
    sent = [
        session.text_message("héllo", properties={"region": "eu", "size": 5}),
        session.bytes_message(b"\x00\x01raw"),
        session.map_message({"a": 1, "b": "two", "c": 2.5, "d": True, "e": b"\xff", "f": Short(3)}),
        session.stream_message([1, "x", 2.0, False, b"\x01"]),
        session.object_message({"order": 42, "lines": [1, 2]}),
        session.message(properties={"only": "headers"}),
    ]
    for msg in sent:
        producer.send(msg)
    conn.start()
    got = [consumer.receive(2) for _ in sent]
    assert isinstance(got[0], TextMessage) and got[0].text == "héllo"
    assert got[0].properties == {"region": "eu", "size": 5}
    assert isinstance(got[1], BytesMessage) and got[1].body == b"\x00\x01raw"
    assert got[1].read_bytes(1) == b"\x00"
    assert isinstance(got[2], MapMessage)
    assert got[2].body == {"a": 1, "b": "two", "c": 2.5, "d": True, "e": b"\xff", "f": 3}
    assert got[2].get_int("f") == 3 and got[2].get_string("a") == "1"
    assert isinstance(got[3], StreamMessage) and got[3].body == [1, "x", 2.0, False, b"\x01"]
    assert got[3].read_long() == 1 and got[3].read_string() == "x"
    assert isinstance(got[4], ObjectMessage) and got[4].object == {"order": 42, "lines": [1, 2]}
    assert type(got[5]) is Message and got[5].properties == {"only": "headers"}
    for s, r in zip(sent, got, strict=True):
        assert r is not None
        assert r.message_id == s.message_id and r.message_id.startswith("ID:")
        assert r.destination == queue
        assert r.delivery_mode is DeliveryMode.PERSISTENT
        assert r.redelivered is False and r.delivery_count == 1


def test_header_fields_travel(conn: Connection, name: str) -> None:
    session = conn.session()
    queue, replies = session.queue(name), session.queue(name + ".replies")
    msg = session.text_message("x", correlation_id="corr-1", reply_to=replies, type="Order")
    msg.group_id = "g1"
    msg.group_seq = 3
    before = time.time()
    session.producer(queue).send(
        msg, delivery_mode=DeliveryMode.NON_PERSISTENT, priority=7, time_to_live=60.0
    )
    assert msg.timestamp is not None and before - 1 <= msg.timestamp <= time.time()
    assert msg.expiration == pytest.approx(msg.timestamp + 60.0)
    consumer = session.consumer(queue)
    conn.start()
    got = consumer.receive(2)
    assert got is not None
    assert got.correlation_id == "corr-1" and got.reply_to == replies and got.type == "Order"
    assert got.priority == 7 and got.delivery_mode is DeliveryMode.NON_PERSISTENT
    assert got.group_id == "g1" and got.group_seq == 3
    assert got.get_property("JMSXGroupID") == "g1"
    assert got.timestamp == int(msg.timestamp)
    assert got.expiration == pytest.approx(got.timestamp + 60.0)
    # a bytes correlation id keeps its octets
    raw = session.bytes_message(b"", correlation_id=b"\xfe\x00id")
    session.producer(queue).send(raw)
    again = consumer.receive(2)
    assert again is not None and again.correlation_id_bytes == b"\xfe\x00id"


def test_received_messages_are_read_only_until_cleared(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    session.producer(queue).send(session.text_message("x", properties={"k": 1}))
    consumer = session.consumer(queue)
    conn.start()
    got = consumer.receive(2)
    assert isinstance(got, TextMessage)
    with pytest.raises(MessageNotWriteableError):
        got.set_property("k", 2)
    with pytest.raises(MessageNotWriteableError):
        got.text = "changed"
    got.clear_properties()
    got.set_property("k", 2)
    got.clear_body()
    got.text = "changed"
    session.producer(queue).send(got)  # a received message can be sent on
    again = consumer.receive(2)
    assert isinstance(again, TextMessage) and again.text == "changed"
    assert again.properties == {"k": 2}


# -- connection --------------------------------------------------------------------------------


def test_no_delivery_before_start_and_stop_pauses(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    consumer = session.consumer(queue)
    producer.send("one")
    assert consumer.receive(QUIET) is None
    assert consumer.receive_no_wait() is None
    conn.start()
    assert consumer.receive_body(2) == "one"
    conn.stop()
    producer.send("two")
    assert consumer.receive(QUIET) is None
    conn.start()
    assert consumer.receive_body(2) == "two"


def test_receive_blocks_until_a_message_comes(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    consumer = session.consumer(queue)
    conn.start()
    other = conn.session()
    timer = threading.Timer(0.2, lambda: other.producer(queue).send("late"))
    timer.start()
    started = time.monotonic()
    assert consumer.receive_body(5) == "late"
    assert time.monotonic() - started >= 0.15
    timer.join()


def test_closing_a_consumer_ends_iteration_and_requeues_its_buffer(
    conn: Connection, name: str
) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    for i in range(5):
        producer.send(str(i))
    first = session.consumer(queue, prefetch=10)
    conn.start()
    wait_for(lambda: len(first._core.buffer) == 5)
    seen = []
    for msg in first:
        seen.append(msg.body)
        if len(seen) == 2:
            first.close()
    assert seen == ["0", "1"]
    second = session.consumer(queue)
    assert [m.body for m in _drain(second, 3)] == ["2", "3", "4"]


def test_client_id_is_sent_and_unique(url: str) -> None:
    with connect(url, client_id="billing") as first:
        assert first.client_id == "billing"
        from ferrymq.client import InvalidClientIDError

        with pytest.raises(InvalidClientIDError):
            connect(url, client_id="billing")
        with connect(url, client_id="shipping"):
            pass
    with connect(url, client_id="billing"):
        pass


def test_closed_objects_refuse_work(url: str, name: str) -> None:
    conn = connect(url)
    session = conn.session()
    queue = session.queue(name)
    consumer = session.consumer(queue)
    producer = session.producer(queue)
    session.close()
    with pytest.raises(IllegalStateError):
        producer.send("x")
    assert consumer.receive(0.1) is None
    conn.close()
    with pytest.raises(IllegalStateError):
        conn.session()
    conn.close()  # closing twice is fine


# -- acknowledgement modes ---------------------------------------------------------------------


def test_auto_acknowledge_acks_on_receive(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.AUTO)
    queue = session.queue(name)
    session.producer(queue).send("a")
    consumer = session.consumer(queue)
    conn.start()
    assert consumer.receive_body(2) == "a"
    session.close()
    again = conn.session()
    assert again.consumer(queue).receive(QUIET) is None


def test_client_acknowledge_acks_everything_consumed_in_the_session(
    conn: Connection, name: str
) -> None:
    session = conn.session(AckMode.CLIENT)
    q1, q2 = session.queue(name + ".1"), session.queue(name + ".2")
    for q in (q1, q2):
        for i in range(3):
            session.producer(q).send(f"{q.name}:{i}")
    c1, c2 = session.consumer(q1), session.consumer(q2)
    conn.start()
    a = c1.receive(2)
    b = c2.receive(2)
    c = c1.receive(2)
    assert a is not None and b is not None and c is not None
    b.acknowledge()  # acknowledges a, b and c: everything this session consumed
    session.close()
    check = conn.session()
    left1 = [m.body for m in _drain(check.consumer(q1), 1)]
    left2 = [m.body for m in _drain(check.consumer(q2), 2)]
    assert left1 == [f"{q1.name}:2"]
    assert left2 == [f"{q2.name}:1", f"{q2.name}:2"]


def test_client_acknowledge_unacknowledged_messages_come_back(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.CLIENT)
    queue = session.queue(name)
    session.producer(queue).send("once")
    consumer = session.consumer(queue)
    conn.start()
    first = consumer.receive(2)
    assert first is not None and not first.redelivered
    session.recover()
    again = consumer.receive(2)
    assert again is not None and again.body == "once"
    assert again.redelivered and again.delivery_count == 2
    again.acknowledge()
    session.close()
    assert conn.session().consumer(queue).receive(QUIET) is None


def test_individual_acknowledge_acks_one(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.INDIVIDUAL)
    queue = session.queue(name)
    for i in range(3):
        session.producer(queue).send(str(i))
    consumer = session.consumer(queue)
    conn.start()
    msgs = [consumer.receive(2) for _ in range(3)]
    assert all(m is not None for m in msgs)
    msgs[1].acknowledge()  # type: ignore[union-attr]
    msgs[1].acknowledge()  # type: ignore[union-attr]  # twice is harmless
    session.close()
    assert sorted(m.body for m in _drain(conn.session().consumer(queue), 2)) == ["0", "2"]


def test_dups_ok_acknowledges_lazily_but_surely(conn: Connection, name: str) -> None:
    session = conn.session(AckMode.DUPS_OK, prefetch=10)
    queue = session.queue(name)
    producer = session.producer(queue, delivery_mode=DeliveryMode.NON_PERSISTENT)
    for i in range(25):
        producer.send(str(i))
    consumer = session.consumer(queue)
    conn.start()
    assert [m.body for m in _drain(consumer, 25)] == [str(i) for i in range(25)]
    session.close()
    assert conn.session().consumer(queue).receive(QUIET) is None


def test_listener_gets_messages_and_a_raising_listener_gets_a_redelivery(
    conn: Connection, name: str
) -> None:
    session = conn.session(AckMode.AUTO)
    queue = session.queue(name)
    seen: list[tuple[str, bool, int]] = []
    done = threading.Event()

    def listener(msg: Message) -> None:
        seen.append((msg.body, msg.redelivered, msg.delivery_count))
        if len(seen) == 1:
            raise RuntimeError("first attempt fails")
        if len(seen) == 3:
            done.set()

    consumer = session.consumer(queue)
    consumer.message_listener = listener
    producer = conn.session().producer(queue)
    producer.send("a")
    producer.send("b")
    time.sleep(QUIET)
    assert seen == []  # not started
    conn.start()
    assert done.wait(5)
    assert seen[0] == ("a", False, 1)
    assert sorted(seen[1:]) == [("a", True, 2), ("b", False, 1)]
    with pytest.raises(IllegalStateError):
        consumer.receive(0.1)
    conn.stop()
    session.close()
    assert conn.session().consumer(queue).receive(QUIET) is None


# -- transactions ------------------------------------------------------------------------------


def test_transaction_commit_and_rollback_cover_sends_and_receives(
    conn: Connection, name: str
) -> None:
    tx = conn.session(transacted=True)
    queue = tx.queue(name)
    producer = tx.producer(queue)
    producer.send("rolled-back")
    tx.rollback()
    producer.send("committed")
    watcher = conn.session()
    watch = watcher.consumer(queue)
    conn.start()
    assert watch.receive(QUIET) is None  # not before commit
    tx.commit()
    assert watch.receive_body(2) == "committed"
    watch.close()
    producer.send("take-me")
    tx.commit()
    consumer = tx.consumer(queue)
    got = consumer.receive(2)
    assert got is not None and got.body == "take-me" and not got.redelivered
    tx.rollback()  # the receive is undone: redelivered
    again = consumer.receive(2)
    assert again is not None and again.body == "take-me" and again.redelivered
    tx.commit()
    tx.close()
    assert conn.session().consumer(queue).receive(QUIET) is None


def test_closing_a_transacted_session_rolls_back(conn: Connection, name: str) -> None:
    tx = conn.session(transacted=True)
    queue = tx.queue(name)
    tx.producer(queue).send("never")
    tx.close()
    conn.start()
    assert conn.session().consumer(queue).receive(QUIET) is None


# -- producer options --------------------------------------------------------------------------


def test_priority_orders_delivery_on_a_priority_queue(url: str, broker: Any, name: str) -> None:
    import pika

    if url.startswith("amqp"):
        params = pika.URLParameters(url)
        pc = pika.BlockingConnection(params)
        pc.channel().queue_declare(name, durable=True, arguments={"x-max-priority": 9})
        pc.close()
    else:
        from ferrymq.core.vhost import VHost

        def declare() -> None:
            vhost: VHost = broker.broker.vhosts["/"]
            vhost.declare_queue(name, owner=None, durable=True, arguments={"x-max-priority": 9})

        broker.call(declare)
    with connect(url) as conn:
        session = conn.session()
        producer = session.producer(session.queue(name))
        for prio in (1, 9, 4):
            producer.send(str(prio), priority=prio)
        consumer = session.consumer(session.queue(name))
        conn.start()
        assert [m.body for m in _drain(consumer, 3)] == ["9", "4", "1"]


def test_time_to_live_expires_messages(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue, time_to_live=0.05)
    producer.send("short-lived")
    producer.send("kept", time_to_live=0)
    time.sleep(0.1)
    consumer = session.consumer(queue)
    conn.start()
    assert [m.body for m in _drain(consumer, 1)] == ["kept"]


def test_delivery_delay_holds_a_message(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue, delivery_delay=0.3)
    msg = producer.send("later")
    assert msg.delivery_time == pytest.approx(msg.timestamp + 0.3)  # type: ignore[operator]
    producer.send("now", delivery_delay=0)
    consumer = session.consumer(queue)
    conn.start()
    assert consumer.receive_body(2) == "now"
    assert consumer.receive(QUIET) is None
    got = consumer.receive(3)
    assert got is not None and got.body == "later"


def test_disabled_message_id_and_timestamp(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue, disable_message_id=True, disable_message_timestamp=True)
    sent = producer.send("bare")
    assert sent.message_id is None and sent.timestamp is None
    consumer = session.consumer(queue)
    conn.start()
    got = consumer.receive(2)
    assert got is not None and got.message_id is None and got.timestamp is None


def test_send_async_completes_with_a_callback(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    called: list[tuple[str, BaseException | None]] = []
    done = threading.Event()

    def on_complete(msg: Message, error: BaseException | None) -> None:
        called.append((msg.body, error))
        if len(called) == 20:
            done.set()

    futures = [producer.send_async(str(i), on_complete) for i in range(20)]
    assert [f.result(5).body for f in futures] == [str(i) for i in range(20)]
    assert done.wait(5)
    assert [c[0] for c in called] == [str(i) for i in range(20)]
    assert all(c[1] is None for c in called)


def test_anonymous_producer_names_the_destination(conn: Connection, name: str) -> None:
    session = conn.session()
    producer = session.producer()
    producer.send("to-a", destination=session.queue(name + ".a"))
    producer.send("to-b", destination=session.queue(name + ".b"))
    with pytest.raises(IllegalStateError):
        producer.send("nowhere")
    conn.start()
    assert session.consumer(session.queue(name + ".b")).receive_body(2) == "to-b"


# -- topics and subscriptions ------------------------------------------------------------------


def test_topic_subscribers_each_get_a_copy(conn: Connection, name: str) -> None:
    session = conn.session()
    topic = session.topic(f"{name}.prices")
    s1 = session.consumer(topic)
    s2 = session.consumer(Topic(f"{name}.*"))  # AMQP topic wildcards
    session.producer(topic).send("p1")
    session.producer(Topic(f"{name}.other")).send("o1")
    conn.start()
    assert [m.body for m in _drain(s1, 1)] == ["p1"]
    got = _drain(s2, 2)
    assert sorted(m.body for m in got) == ["o1", "p1"]
    assert {m.destination for m in got} == {topic, Topic(f"{name}.other")}
    s1.close()
    session.producer(topic).send("p2")  # nobody else subscribes to exactly this: s2 does
    assert [m.body for m in _drain(s2, 1)] == ["p2"]


def test_durable_subscription_survives_client_restart(url: str, name: str) -> None:
    topic = Topic(f"{name}.events")
    with connect(url, client_id=f"{name}-c") as conn:
        session = conn.session()
        sub = session.durable_consumer(topic, "audit")
        session.producer(topic).send("while-subscribed")
        conn.start()
        assert sub.receive_body(2) == "while-subscribed"
        sub.close()
        session.producer(topic).send("while-away")  # kept for the subscription
    with connect(url) as other:
        other.session().producer(topic).send("also-while-away")
    with connect(url, client_id=f"{name}-c") as conn:
        session = conn.session()
        sub = session.durable_consumer(topic, "audit")
        conn.start()
        assert [m.body for m in _drain(sub, 2)] == ["while-away", "also-while-away"]
        with pytest.raises(IllegalStateError):
            session.unsubscribe("audit")  # still active
        sub.close()
        session.unsubscribe("audit")
        with pytest.raises(InvalidDestinationError):
            session.unsubscribe("audit")


def test_unshared_durable_subscription_has_one_consumer_and_needs_a_client_id(
    url: str, name: str
) -> None:
    topic = Topic(name)
    with connect(url) as anonymous, pytest.raises(IllegalStateError):
        anonymous.session().durable_consumer(topic, "sub")
    with connect(url, client_id=f"{name}-c") as conn:
        session = conn.session()
        session.durable_consumer(topic, "sub")
        with pytest.raises(IllegalStateError):
            conn.session().durable_consumer(topic, "sub")
        # the session that failed is still usable
        session.producer(topic).send("x")


def test_shared_subscription_spreads_messages(url: str, name: str) -> None:
    topic = Topic(name)
    with connect(url) as c1, connect(url) as c2:
        s1, s2 = c1.session(), c2.session()
        a = s1.shared_consumer(topic, "workers")
        b = s2.shared_consumer(topic, "workers")
        plain = s1.consumer(topic)
        producer = s1.producer(topic, delivery_mode=DeliveryMode.NON_PERSISTENT)
        for i in range(10):
            producer.send(str(i))
        c1.start()
        c2.start()
        got_a = _drain(a, 1)
        got_b = _drain(b, 10 - len(got_a))
        assert sorted(int(m.body) for m in got_a + got_b) == list(range(10))
        assert got_a and got_b  # both members got some
        assert len(_drain(plain, 10)) == 10  # another subscription gets its own copy


def test_shared_durable_subscription_keeps_messages(url: str, name: str) -> None:
    topic = Topic(name)
    with connect(url) as conn:
        session = conn.session()
        member = session.shared_durable_consumer(topic, "ledger")
        member.close()
        session.producer(topic).send("kept")
    with connect(url) as conn:
        session = conn.session()
        member = session.shared_durable_consumer(topic, "ledger")
        conn.start()
        assert member.receive_body(2) == "kept"
        member.close()
        session.unsubscribe("ledger")


def test_no_local_skips_messages_from_the_same_connection(url: str, name: str) -> None:
    topic = Topic(name)
    with connect(url) as conn, connect(url) as other:
        session = conn.session()
        own = session.consumer(topic, no_local=True)
        everything = session.consumer(topic)
        session.producer(topic).send("mine")
        other.session().producer(topic).send("theirs")
        conn.start()
        assert [m.body for m in _drain(own, 1)] == ["theirs"]
        assert sorted(m.body for m in _drain(everything, 2)) == ["mine", "theirs"]


# -- temporary destinations, request/reply, browsing -------------------------------------------


def test_request_reply_with_a_temporary_queue(url: str, name: str) -> None:
    service = Queue(name)
    with connect(url) as server_conn, connect(url) as client_conn:
        server = server_conn.session()
        requests = server.consumer(service)
        replier = server.producer()

        def answer(msg: Message) -> None:
            reply = server.text_message(msg.body.upper())
            reply.correlation_id = msg.correlation_id or msg.message_id
            assert msg.reply_to is not None
            replier.send(reply, destination=msg.reply_to)

        requests.message_listener = answer
        server_conn.start()
        client = client_conn.session()
        client_conn.start()
        with client.requestor(service) as requestor:
            assert isinstance(requestor.reply_queue, TemporaryQueue)
            for word in ("ping", "pong"):
                reply = requestor.request(word, timeout=5)
                assert reply is not None and reply.body == word.upper()


def test_temporary_queue_lives_with_its_connection(url: str) -> None:
    with connect(url) as conn:
        session = conn.session()
        tmp = session.temporary_queue()
        session.producer(tmp).send("x")
        consumer = session.consumer(tmp)
        conn.start()
        assert consumer.receive_body(2) == "x"
        with pytest.raises(IllegalStateError):
            tmp.delete()  # a consumer still uses it
        consumer.close()
        tmp.delete()
        topic = session.temporary_topic()
        sub = session.consumer(topic)
        session.producer(topic).send("t")
        assert sub.receive_body(2) == "t"


def test_queue_browser_looks_without_taking(conn: Connection, name: str) -> None:
    session = conn.session()
    queue = session.queue(name)
    producer = session.producer(queue)
    for i, region in enumerate(["eu", "us", "eu"]):
        producer.send(session.text_message(str(i), properties={"region": region}))
    browser = session.browser(queue)
    assert [m.body for m in browser] == ["0", "1", "2"]
    assert [m.body for m in browser] == ["0", "1", "2"]  # a fresh snapshot each time
    assert [m.body for m in session.browser(queue, "region = 'eu'")] == ["0", "2"]
    consumer = session.consumer(queue)
    conn.start()
    assert [m.body for m in _drain(consumer, 3)] == ["0", "1", "2"]
    with pytest.raises(InvalidDestinationError):
        list(session.browser(Queue(name + ".missing")))


# -- JMS 2.0 simplified API --------------------------------------------------------------------


def test_context_sends_and_receives_bodies(url: str, name: str) -> None:
    with context(url, client_id=f"{name}-ctx") as ctx:
        queue = ctx.queue(name)
        ctx.producer().set_priority(6).set_property("kind", "greeting").send(queue, "hello")
        ctx.producer().send(queue, {"n": 1}).send(queue, b"raw")
        consumer = ctx.consumer(queue)  # starts the connection
        first = consumer.receive(2)
        assert first is not None and first.body == "hello" and first.priority == 6
        assert first.properties["kind"] == "greeting"
        assert consumer.receive_body(2) == {"n": 1}
        assert consumer.receive_body(2) == b"raw"
        consumer.close()
        with ctx.create_context(AckMode.CLIENT) as other:
            other.producer().send(queue, "from-other")
            got = other.consumer(queue).receive(2)
            assert got is not None and got.body == "from-other"
            other.acknowledge()
