"""aiomqtt against a live FerryMQ, and MQTT meeting AMQP (pika) on the same core: topic
`a/b` is routing key `a.b` on amq.topic both ways, MQTT 5 properties map onto AMQP properties
and headers (docs/mqtt.md)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def channel(broker: Any) -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        yield conn.channel()
    finally:
        conn.close()


class Sub:
    """A paho subscriber (3.1.1 or 5.0) collecting messages."""

    def __init__(
        self,
        port: int,
        topic: str,
        qos: int = 1,
        version: Any = mqtt.MQTTv5,
        client_id: str = "",
        clean: bool | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, clean_session=clean
        )
        done = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *a: done.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert done.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- aiomqtt -----------------------------------------------------------------------------------


async def test_aiomqtt_pubsub_v311_and_v5(port: int) -> None:
    for version in (aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5):
        async with (
            aiomqtt.Client("127.0.0.1", port, protocol=version, identifier="aio-sub") as sub,
            aiomqtt.Client("127.0.0.1", port, protocol=version, identifier="aio-pub") as pub,
        ):
            await sub.subscribe("aio/+/temp", qos=1)
            for i in range(5):
                await pub.publish(f"aio/room{i}/temp", f"{20 + i}".encode(), qos=1)
            got = []
            async with asyncio.timeout(5):
                async for message in sub.messages:
                    got.append((str(message.topic), message.payload, message.qos))
                    if len(got) == 5:
                        break
            assert got == [(f"aio/room{i}/temp", f"{20 + i}".encode(), 1) for i in range(5)]
            assert message.topic.matches("aio/+/temp")


async def test_aiomqtt_will_and_retained(port: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="aio-watch") as watcher:
        await watcher.subscribe("aio/status/#", qos=1)
        will = aiomqtt.Will("aio/status/dev", b"offline", qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", port, identifier="aio-dev", will=will) as dev:
            await dev.publish("aio/status/dev", b"online", qos=1, retain=True)
        async with asyncio.timeout(5):
            first = await anext(aiter(watcher.messages))
        assert first.payload == b"online"  # a clean DISCONNECT: no will
        # a device that loses its connection: the will goes out, retained
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b"\x00\x04MQTT\x04\x26\x00\x00\x00\x03dev\x00\x0eaio/status/dev\x00\x07offline"
        writer.write(bytes((0x10, len(body))) + body)
        assert await reader.readexactly(4) == b"\x20\x02\x00\x00"
        writer.transport.abort()
        async with asyncio.timeout(5):
            second = await anext(aiter(watcher.messages))
        assert second.payload == b"offline"
    async with aiomqtt.Client("127.0.0.1", port, identifier="aio-late") as late:
        await late.subscribe("aio/status/#")
        async with asyncio.timeout(5):
            message = await anext(aiter(late.messages))
        assert (message.payload, message.retain) == (b"offline", True)


# -- MQTT <-> AMQP -----------------------------------------------------------------------------


def test_mqtt_publish_reaches_amqp_queue(port: int, channel: Any) -> None:
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, "amq.topic", "home.*.temperature")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="x-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("unit", "celsius"), ("sensor", "t1")]
        props.ContentType = "text/plain"
        props.CorrelationData = b"corr-7"
        props.ResponseTopic = "home/replies"
        props.MessageExpiryInterval = 60
        pub.publish("home/kitchen/temperature", b"21.5", 1, properties=props).wait_for_publish(5)
        pub.publish("home/kitchen/humidity", b"40", 0).wait_for_publish(5)
        method, header, body = None, None, None
        for _ in range(50):
            method, header, body = channel.basic_get(q, auto_ack=True)
            if method is not None:
                break
            channel.connection.sleep(0.05)
        assert method is not None
        assert (method.exchange, method.routing_key, body) == (
            "amq.topic",
            "home.kitchen.temperature",
            b"21.5",
        )
        assert header.delivery_mode == 2
        assert header.content_type == "text/plain"
        assert header.correlation_id == "corr-7"
        assert header.expiration == "60000"
        assert header.headers == {
            "sensor": "t1",
            "unit": "celsius",
            "x-reply-to-topic": "home.replies",
        }
        assert channel.basic_get(q, auto_ack=True)[0] is None  # humidity was not bound
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_amqp_publish_reaches_mqtt_subscribers(port: int, channel: Any) -> None:
    exact = Sub(port, "plant/line1/status", 1, mqtt.MQTTv311)
    wild = Sub(port, "plant/+/status", 1)
    try:
        channel.basic_publish(
            "amq.topic",
            "plant.line1.status",
            b"running",
            pika.BasicProperties(
                delivery_mode=2,
                content_type="text/plain",
                correlation_id="c-1",
                headers={"x-reply-to-topic": "plant.replies", "shift": "night", "n": 3},
                expiration="30000",
            ),
        )
        m = exact.messages.get(timeout=5)
        assert (m.topic, m.payload, m.qos) == ("plant/line1/status", b"running", 1)
        w = wild.messages.get(timeout=5)
        assert (w.topic, w.payload, w.qos) == ("plant/line1/status", b"running", 1)
        p = w.properties
        assert p.ContentType == "text/plain"
        assert p.CorrelationData == b"c-1"
        assert p.ResponseTopic == "plant/replies"
        assert sorted(p.UserProperty) == [("n", "3"), ("shift", "night")]
        assert 25 <= p.MessageExpiryInterval <= 30
        channel.basic_publish("amq.topic", "plant.line2.status", b"transient")
        t = wild.messages.get(timeout=5)
        assert (t.topic, t.qos) == ("plant/line2/status", 0)  # delivery mode 1: QoS 0
    finally:
        exact.close()
        wild.close()


def test_mqtt_subscriptions_are_queues_amqp_can_see(port: int, channel: Any) -> None:
    """As in RabbitMQ: a persistent session's QoS 1 queue is durable and visible; a clean
    session's queues are exclusive to it."""
    sub = Sub(port, "seen/#", 1, mqtt.MQTTv311, client_id="seen-1", clean=False)
    try:
        ok = channel.queue_declare("mqtt-subscription-seen-1qos1", passive=True)
        assert ok.method.consumer_count == 1
    finally:
        sub.close()
    clean = Sub(port, "seen/#", 1, mqtt.MQTTv311, client_id="seen-2")
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            channel.queue_declare("mqtt-subscription-seen-2qos1", passive=True)
        assert info.value.reply_code == 405
    finally:
        clean.close()


def test_rpc_from_amqp_to_an_mqtt_responder(port: int, channel: Any) -> None:
    """An AMQP client asks, an MQTT 5 device answers on the Response Topic."""
    reply_q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(reply_q, "amq.topic", "rpc.replies.amqp")
    responder = Sub(port, "rpc/device", 1)
    try:
        channel.basic_publish(
            "amq.topic",
            "rpc.device",
            b"ping",
            pika.BasicProperties(
                correlation_id="42", headers={"x-reply-to-topic": "rpc.replies.amqp"}
            ),
        )
        request = responder.messages.get(timeout=5)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = request.properties.CorrelationData
        responder.client.publish(
            request.properties.ResponseTopic, b"pong", 1, properties=props
        ).wait_for_publish(5)
        for _ in range(50):
            method, header, body = channel.basic_get(reply_q, auto_ack=True)
            if method is not None:
                break
            channel.connection.sleep(0.05)
        assert body == b"pong" and header.correlation_id == "42"
    finally:
        responder.close()
