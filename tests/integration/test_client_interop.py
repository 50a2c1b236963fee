"""ferrymq.client and pika on the same broker: each reads what the other sent.

The JMS mapping (header fields onto AMQP properties, properties onto headers, the message
kind onto content-type) is what a pika program sees, and a pika program's messages arrive
as the natural JMS message kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from ferrymq.client import (
    Byte,
    BytesMessage,
    Connection,
    DeliveryMode,
    Float,
    Long,
    MapMessage,
    ObjectMessage,
    Queue,
    Short,
    TextMessage,
    Topic,
    connect,
)
from ferrymq.protocols.amqp.tables import decode_table


@pytest.fixture
def conn(broker: Any) -> Iterator[Connection]:
    with connect(broker.amqp_url) as connection:
        yield connection


@pytest.fixture
def channel(broker: Any) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield connection.channel()
    connection.close()


def _get(channel: Any, queue: str) -> tuple[Any, Any, bytes]:
    for _ in range(100):
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        channel.connection.sleep(0.02)
    raise AssertionError(f"nothing arrived on {queue}")


def test_pika_reads_what_the_client_sent(conn: Connection, channel: Any, name: str) -> None:
    session = conn.session()
    msg = session.text_message(
        "héllo",
        properties={
            "region": "eu",
            "size": 5,
            "big": 2**40,
            "ratio": 0.5,
            "flag": True,
            "b": Byte(-3),
            "s": Short(300),
            "l": Long(7),
            "f": Float(1.5),
        },
        correlation_id="corr-7",
        reply_to=Queue(name + ".replies"),
        type="Greeting",
    )
    session.producer(session.queue(name)).send(msg, priority=7, time_to_live=30.0)
    method, props, body = _get(channel, name)
    assert body == "héllo".encode()
    assert props.content_type == "text/plain"
    assert props.delivery_mode == 2
    assert props.priority == 7
    assert props.correlation_id == "corr-7"
    assert props.reply_to == name + ".replies"
    assert props.type == "Greeting"
    assert props.expiration == "30000"
    assert props.message_id == msg.message_id
    assert props.timestamp == int(msg.timestamp)  # type: ignore[arg-type]
    headers = dict(props.headers)
    # pika 1.x's table decoder truncates float and double values to integers (it wraps them
    # in long()); the bytes are right: our decoder reads them back exactly
    assert (headers.pop("ratio"), headers.pop("f")) == (0, 1)
    assert headers == {
        "region": "eu",
        "size": 5,
        "big": 2**40,
        "flag": True,
        "b": -3,
        "s": 300,
        "l": 7,
    }
    session.producer(session.queue(name)).send(msg)
    consumer = session.consumer(session.queue(name))
    conn.start()
    again = consumer.receive(2)
    assert again is not None
    assert again.properties["ratio"] == 0.5 and again.properties["f"] == 1.5
    assert again.property_type("f") == "float" and again.property_type("s") == "short"
    assert method.routing_key == name and method.exchange == ""


def test_pika_reads_bytes_map_and_object_messages(
    conn: Connection, channel: Any, name: str
) -> None:
    session = conn.session()
    producer = session.producer(session.queue(name), delivery_mode=DeliveryMode.NON_PERSISTENT)
    producer.send(session.bytes_message(b"\x00\xff"))
    producer.send(session.map_message({"n": 1, "s": "x"}))
    producer.send(session.object_message({"order": 1}))
    _, props, body = _get(channel, name)
    assert (props.content_type, body, props.delivery_mode) == (
        "application/octet-stream",
        b"\x00\xff",
        1,
    )
    _, props, body = _get(channel, name)
    assert props.content_type == "application/x-jms-map"
    assert decode_table(body)[0] == {"n": 1, "s": "x"}
    _, props, body = _get(channel, name)
    assert props.content_type == "application/json" and body == b'{"order":1}'


def test_client_reads_what_pika_sent(conn: Connection, channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True)
    channel.basic_publish(
        "",
        name,
        "grüß".encode(),
        pika.BasicProperties(
            content_type="text/plain; charset=utf-8",
            headers={"region": "us", "n": 3, "x-death-like": [1, 2]},
            correlation_id="c-1",
            reply_to="answers",
            message_id="pika-1",
            timestamp=1_700_000_000,
            priority=3,
            type="Note",
            delivery_mode=2,
        ),
    )
    channel.basic_publish("", name, b"\x01\x02")  # no content type: a BytesMessage
    channel.basic_publish(
        "", name, b'{"a": [1, 2]}', pika.BasicProperties(content_type="application/json")
    )
    session = conn.session()
    consumer = session.consumer(session.queue(name))
    conn.start()
    text = consumer.receive(2)
    assert isinstance(text, TextMessage) and text.text == "grüß"
    assert text.properties == {"region": "us", "n": 3, "x-death-like": [1, 2]}
    assert text.get_int_property("n") == 3 and text.get_string_property("n") == "3"
    assert text.correlation_id == "c-1" and text.reply_to == Queue("answers")
    assert text.message_id == "pika-1" and text.timestamp == 1_700_000_000
    assert text.priority == 3 and text.type == "Note" and text.persistent
    assert text.destination == Queue(name)
    raw = consumer.receive(2)
    assert isinstance(raw, BytesMessage) and raw.body == b"\x01\x02"
    assert raw.priority == 4 and not raw.persistent  # JMS defaults for absent properties
    obj = consumer.receive(2)
    assert isinstance(obj, ObjectMessage) and obj.object == {"a": [1, 2]}


def test_a_map_message_from_pika(conn: Connection, channel: Any, name: str) -> None:
    from ferrymq.protocols.amqp.tables import encode_table

    channel.queue_declare(name, durable=True)
    table = encode_table({"qty": 2, "sku": "A-1"})
    channel.basic_publish(
        "", name, table, pika.BasicProperties(content_type="application/x-jms-map")
    )
    session = conn.session()
    consumer = session.consumer(session.queue(name))
    conn.start()
    got = consumer.receive(2)
    assert (
        isinstance(got, MapMessage) and got.get_int("qty") == 2 and got.get_string("sku") == "A-1"
    )


def test_a_pika_subscriber_on_a_jms_topic(conn: Connection, channel: Any, name: str) -> None:
    result = channel.queue_declare("", exclusive=True)
    channel.queue_bind(result.method.queue, "amq.topic", f"{name}.#")
    session = conn.session()
    session.producer(Topic(f"{name}.eu")).send("tick")
    method, _props, body = _get(channel, result.method.queue)
    assert body == b"tick" and method.exchange == "amq.topic" and method.routing_key == f"{name}.eu"


def test_pika_consumer_with_a_selector_reads_client_properties(
    conn: Connection, channel: Any, name: str
) -> None:
    session = conn.session()
    producer = session.producer(session.queue(name))
    for i, region in enumerate(["us", "eu", "us"]):
        producer.send(session.text_message(str(i), properties={"region": region}))
    got: list[bytes] = []
    channel.basic_consume(
        name,
        lambda ch, m, p, body: (got.append(body), ch.basic_ack(m.delivery_tag)),
        arguments={"x-selector": "region = 'us'"},
    )
    deadline = 0
    while len(got) < 2 and deadline < 100:
        channel.connection.process_data_events(0.02)
        deadline += 1
    assert got == [b"0", b"2"]


def test_requestor_against_a_pika_rpc_server(broker: Any, name: str) -> None:
    ready = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = connection.channel()
        ch.queue_declare(name, durable=True)
        ready.set()
        while not stop.is_set():
            method, props, body = ch.basic_get(name, auto_ack=True)
            if method is None:
                connection.sleep(0.01)
                continue
            ch.basic_publish(
                "",
                props.reply_to,
                body[::-1],
                pika.BasicProperties(correlation_id=props.correlation_id),
            )
        connection.close()

    server = threading.Thread(target=serve)
    server.start()
    try:
        assert ready.wait(5)
        with connect(broker.amqp_url) as conn:
            session = conn.session()
            conn.start()
            requestor = session.requestor(Queue(name))
            reply = requestor.request("stressed", timeout=5)
            assert reply is not None and reply.body == b"desserts"
            assert isinstance(reply, BytesMessage)
    finally:
        stop.set()
        server.join(5)


def test_client_answers_a_pika_direct_reply_to(conn: Connection, broker: Any, name: str) -> None:
    session = conn.session()
    requests = session.consumer(session.queue(name))
    replier = session.producer()

    def answer(msg: Any) -> None:
        reply = session.text_message(msg.body.upper() if isinstance(msg.body, str) else "?")
        reply.correlation_id = msg.correlation_id
        replier.send(reply, destination=msg.reply_to)

    requests.message_listener = answer
    conn.start()
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = connection.channel()
    replies: list[tuple[str, bytes]] = []
    ch.basic_consume(
        "amq.rabbitmq.reply-to",
        lambda c, m, p, body: replies.append((p.correlation_id, body)),
        auto_ack=True,
    )
    ch.basic_publish(
        "",
        name,
        b"hi",
        pika.BasicProperties(
            reply_to="amq.rabbitmq.reply-to", correlation_id="r1", content_type="text/plain"
        ),
    )
    for _ in range(100):
        if replies:
            break
        connection.process_data_events(0.02)
    connection.close()
    assert replies == [("r1", b"HI")]
