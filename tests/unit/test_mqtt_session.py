"""The server's MQTT state machine over core, driven through bytes with no socket: each test
client encodes packets with the codec, feeds them to an `MQTTConnection`, and decodes what the
connection wrote. Time is the broker's virtual clock, so will delays and session expiry are
tested by moving it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.core.consumer import Consumer
from ferrymq.core.message import Entry
from ferrymq.core.queue_type import QueueType
from ferrymq.protocols.mqtt.broker import MQTTBroker, MQTTSettings
from ferrymq.protocols.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    PacketDecoder,
    Pingreq,
    Pingresp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Suback,
    Subscribe,
    SubscriptionRequest,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)
from ferrymq.protocols.mqtt.connection import MQTTConnection, State
from ferrymq.protocols.mqtt.constants import MQTT_5, MQTT_31, MQTT_311, PropertyId, ReasonCode
from ferrymq.protocols.mqtt.retained import RetainedStore

P = PropertyId


class Wire:
    """The server side's transport: collects what the connection writes."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Client:
    """A client talking to a server connection through bytes."""

    def __init__(self, mqtt: MQTTBroker, version: int = MQTT_311) -> None:
        self.version = version
        self.wire = Wire()
        self.conn = MQTTConnection(mqtt, self.wire, from_loopback=True, peer="test")
        self.decoder = PacketDecoder(version)

    def send(self, *packets: Any) -> list[Any]:
        self.conn.data_received(b"".join(encode(p, self.version) for p in packets))
        return self.received()

    def send_raw(self, data: bytes) -> list[Any]:
        self.conn.data_received(data)
        return self.received()

    def received(self) -> list[Any]:
        data = bytes(self.wire.out)
        self.wire.out.clear()
        return self.decoder.feed(data)

    def connect(self, client_id: str = "c", clean: bool = True, **kw: Any) -> Connack:
        out = self.send(Connect(self.version, client_id, clean, kw.pop("keepalive", 0), **kw))
        assert isinstance(out[0], Connack), out
        return out[0]

    def subscribe(self, *filters: tuple[str, int], pid: int = 1, **props: Any) -> list[Any]:
        reqs = [SubscriptionRequest(f, q) for f, q in filters]
        return self.send(Subscribe(pid, reqs, dict(props)))

    @property
    def closed(self) -> bool:
        return self.wire.closed


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def mqtt(clock: VirtualClock, tmp_path: Path) -> MQTTBroker:
    return MQTTBroker(Broker(clock), data_dir=tmp_path)


def publishes(packets: list[Any]) -> list[Publish]:
    return [p for p in packets if isinstance(p, Publish)]


# -- connect ---------------------------------------------------------------------------------


def test_connect_311_and_31_and_5(mqtt: MQTTBroker) -> None:
    assert Client(mqtt).connect() == Connack(False, 0)
    assert Client(mqtt, MQTT_31).connect("old") == Connack(False, 0)
    ack = Client(mqtt, MQTT_5).connect("")
    assert ack.reason_code == 0
    assert ack.properties[P.ASSIGNED_CLIENT_IDENTIFIER].startswith("ferrymq-")
    assert ack.properties[P.TOPIC_ALIAS_MAXIMUM] == 64


def test_connect_refusals(mqtt: MQTTBroker) -> None:
    c = Client(mqtt)
    assert c.send(Connect(MQTT_311, "", False)) == [Connack(False, 2)]  # MQTT-3.1.3-8
    assert c.closed
    c = Client(mqtt, MQTT_31)
    assert c.send(Connect(MQTT_31, "", True)) == [Connack(False, 2)]
    c = Client(mqtt)
    assert c.send(Connect(MQTT_311, "x", True, 0, None, "guest", b"wrong")) == [Connack(False, 4)]
    c = Client(mqtt, MQTT_5)
    (ack,) = c.send(Connect(MQTT_5, "x", True, 0, None, "nobody", b"pw"))
    assert ack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    c = Client(mqtt, MQTT_5)
    (ack,) = c.send(Connect(MQTT_5, "x", True, 0, None, "novhost:guest", b"guest"))
    assert ack.reason_code == ReasonCode.NOT_AUTHORIZED
    c = Client(mqtt, MQTT_5)
    (ack,) = c.send(Connect(MQTT_5, "x", properties={P.AUTHENTICATION_METHOD: "SCRAM-SHA-1"}))
    assert ack.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD
    c = Client(mqtt, MQTT_5)
    (ack,) = c.send(Connect(MQTT_5, "x", will=Will("bad/#", b"")))
    assert ack.reason_code == ReasonCode.TOPIC_NAME_INVALID
    assert mqtt.broker.connections == 0


def test_unsupported_protocol_level(mqtt: MQTTBroker) -> None:
    c = Client(mqtt)
    c.conn.data_received(b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01c")
    assert c.closed
    assert bytes(c.wire.out) == b"\x20\x03\x00\x84\x00"  # 5.0 CONNACK: 0x84
    c = Client(mqtt)
    c.conn.data_received(b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c")
    assert bytes(c.wire.out) == b"\x20\x02\x00\x01"  # 3.1.1 CONNACK: unacceptable version


def test_first_packet_must_be_connect(mqtt: MQTTBroker) -> None:
    c = Client(mqtt)
    assert c.send(Pingreq()) == []
    assert c.closed


def test_second_connect_is_a_protocol_error(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect()
    (d,) = c.send(Connect(MQTT_5, "c"))
    assert d == Disconnect(ReasonCode.PROTOCOL_ERROR, d.properties)
    assert "second CONNECT" in d.properties[P.REASON_STRING]
    assert c.closed


def test_ping(mqtt: MQTTBroker) -> None:
    c = Client(mqtt)
    c.connect()
    assert c.send(Pingreq()) == [Pingresp()]


def test_server_keepalive_caps_the_client(clock: VirtualClock) -> None:
    mqtt = MQTTBroker(Broker(clock), MQTTSettings(max_keepalive=30))
    c = Client(mqtt, MQTT_5)
    ack = c.connect(keepalive=0)
    assert ack.properties[P.SERVER_KEEP_ALIVE] == 30
    assert c.conn.keepalive == 30


# -- publish / subscribe ---------------------------------------------------------------------


def test_qos_is_the_minimum_of_publish_and_subscription(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("sub")
    (ack,) = sub.subscribe(("q0/#", 0), ("q1/#", 1), ("q2/#", 2))
    assert ack == Suback(1, [0, 1, 2])
    pub = Client(mqtt)
    pub.connect("pub")
    seen = []
    pid = 1
    for prefix, granted in (("q0", 0), ("q1", 1), ("q2", 2)):
        for qos in (0, 1, 2):
            pid += 1
            out = pub.send(Publish(f"{prefix}/x", b"m", qos, False, False, pid if qos else 0))
            if qos == 1:
                assert out == [PubAck(pid)]
            elif qos == 2:
                assert out == [PubRec(pid)]
                assert pub.send(PubRel(pid)) == [PubComp(pid)]
            (delivered,) = publishes(sub.received())
            seen.append((granted, qos, delivered.qos))
            if delivered.qos == 1:
                sub.send(PubAck(delivered.packet_id))
            elif delivered.qos == 2:
                assert sub.send(PubRec(delivered.packet_id)) == [PubRel(delivered.packet_id)]
                assert sub.send(PubComp(delivered.packet_id)) == []
    assert all(got == min(granted, qos) for granted, qos, got in seen)


def test_qos2_incoming_is_exactly_once(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("sub")
    sub.subscribe(("t", 0))
    pub = Client(mqtt)
    pub.connect("pub")
    assert pub.send(Publish("t", b"once", 2, False, False, 7)) == [PubRec(7)]
    assert len(publishes(sub.received())) == 1
    # the publisher did not see PUBREC and sends again with DUP: not routed again (4.3.3)
    assert pub.send(Publish("t", b"once", 2, False, True, 7)) == [PubRec(7)]
    assert publishes(sub.received()) == []
    assert pub.send(PubRel(7)) == [PubComp(7)]
    assert pub.send(PubRel(7)) == [PubComp(7)]  # unknown now: 3.1.1 just completes
    # after PUBCOMP the id is free again and a new message with it is routed
    assert pub.send(Publish("t", b"again", 2, False, False, 7)) == [PubRec(7)]
    assert [p.payload for p in publishes(sub.received())] == [b"again"]


def test_qos2_outgoing_state_survives_reconnect(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s2", clean=False)
    sub.subscribe(("t", 2))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("t", b"a", 2, False, False, 1), PubRel(1))
    (first,) = publishes(sub.received())
    assert first.qos == 2
    assert sub.send(PubRec(first.packet_id)) == [PubRel(first.packet_id)]
    sub.conn.connection_lost()
    sub2 = Client(mqtt)
    assert sub2.connect("s2", clean=False).session_present
    assert sub2.received() == []
    # MQTT-4.4.0-1: PUBREL is sent again after reconnecting
    sub2 = Client(mqtt)
    sub2.conn.data_received(encode(Connect(MQTT_311, "s2", False)))
    out = sub2.received()
    assert out == [Connack(True, 0), PubRel(first.packet_id)]
    assert sub2.send(PubComp(first.packet_id)) == []
    assert not mqtt.sessions.get("/", "s2").inflight  # type: ignore[union-attr]


def test_qos1_unacked_is_resent_with_dup_after_reconnect(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s", clean=False)
    sub.subscribe(("t", 1))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(*(Publish("t", str(i).encode(), 1, False, False, i + 1) for i in range(3)))
    got = publishes(sub.received())
    assert [p.payload for p in got] == [b"0", b"1", b"2"]
    sub.send(PubAck(got[0].packet_id))
    sub.conn.connection_lost()
    pub.send(Publish("t", b"3", 1, False, False, 9))  # queued while offline
    sub2 = Client(mqtt)
    sub2.conn.data_received(encode(Connect(MQTT_311, "s", False)))
    out = sub2.received()
    assert out[0] == Connack(True, 0)
    again = publishes(out)
    assert [(p.payload, p.dup, p.packet_id) for p in again[:2]] == [
        (b"1", True, got[1].packet_id),
        (b"2", True, got[2].packet_id),
    ]
    assert [(p.payload, p.dup) for p in again[2:]] == [(b"3", False)]


def test_clean_session_discards_state(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s", clean=False)
    sub.subscribe(("t", 1))
    sub.conn.connection_lost()
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("t", b"kept", 1, False, False, 1))
    sub = Client(mqtt)
    assert not sub.connect("s", clean=True).session_present
    assert publishes(sub.received()) == []
    assert "mqtt-subscription-sqos1" not in mqtt.broker.vhosts["/"].queues
    sub.conn.connection_lost()
    assert mqtt.sessions.get("/", "s") is None


def test_qos0_not_queued_for_offline_session(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s", clean=False)
    sub.subscribe(("t0", 0), ("t1", 1))
    sub.conn.connection_lost()
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("t0", b"lost"), Publish("t1", b"kept", 1, False, False, 1))
    sub = Client(mqtt)
    sub.conn.data_received(encode(Connect(MQTT_311, "s", False)))
    assert [p.payload for p in publishes(sub.received())] == [b"kept"]
    pub.send(Publish("t0", b"live"))
    assert [p.payload for p in publishes(sub.received())] == [b"live"]


def test_session_takeover(mqtt: MQTTBroker) -> None:
    first = Client(mqtt, MQTT_5)
    first.connect("same", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    first.subscribe(("t", 1))
    second = Client(mqtt, MQTT_5)
    ack = second.connect("same", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    assert ack.session_present
    (d,) = first.received()
    assert d.reason_code == ReasonCode.SESSION_TAKEN_OVER
    assert first.closed
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("t", b"to-second", 1, False, False, 1))
    assert [p.payload for p in publishes(second.received())] == [b"to-second"]
    assert mqtt.broker.connections == 2


def test_unsubscribe(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s")
    sub.subscribe(("a/+", 1), ("a/b", 0))
    out = sub.send(Unsubscribe(2, ["a/+", "nope", "bad/#/x"]))
    assert out == [
        Unsuback(
            2,
            [0, ReasonCode.NO_SUBSCRIPTION_EXISTED, ReasonCode.TOPIC_FILTER_INVALID],
        )
    ]
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("a/b", b"x"), Publish("a/c", b"y"))
    assert [p.payload for p in publishes(sub.received())] == [b"x"]


def test_invalid_filters_get_failure_codes(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s")
    (ack,) = sub.subscribe(("a/#/b", 1), ("ok", 1), ("$share//x", 1))
    assert ack.reason_codes == [0x80, 1, 0x80]
    sub5 = Client(mqtt, MQTT_5)
    sub5.connect("s5")
    (ack,) = sub5.subscribe(("a+", 0))
    assert ack.reason_codes == [ReasonCode.TOPIC_FILTER_INVALID]


def test_overlapping_subscriptions_v5(mqtt: MQTTBroker) -> None:
    """One copy per queue; Subscription Identifiers of every matching subscription."""
    sub = Client(mqtt, MQTT_5)
    sub.connect("s")
    sub.send(Subscribe(1, [SubscriptionRequest("a/#", 1)], {P.SUBSCRIPTION_IDENTIFIER: [5]}))
    sub.send(Subscribe(2, [SubscriptionRequest("a/+", 2)], {P.SUBSCRIPTION_IDENTIFIER: [9]}))
    sub.send(Subscribe(3, [SubscriptionRequest("+/b", 2)]))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("a/b", b"x", 2, False, False, 1))
    (p,) = publishes(sub.received())
    assert p.qos == 2
    assert sorted(p.properties[P.SUBSCRIPTION_IDENTIFIER]) == [5, 9]


def test_dollar_topics_and_dots(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s")
    sub.subscribe(("#", 0), ("+/x", 0))
    sub2 = Client(mqtt)
    sub2.connect("s2")
    sub2.subscribe(("$SYS/#", 0), ("a/b", 0))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("$SYS/x", b"sys"), Publish("a.b", b"dotted"), Publish("a/b", b"slash"))
    got = [(p.topic, p.payload) for p in publishes(sub.received())]
    assert got == [("a.b", b"dotted"), ("a/b", b"slash")]
    got2 = [(p.topic, p.payload) for p in publishes(sub2.received())]
    assert got2 == [("$SYS/x", b"sys"), ("a/b", b"slash")]


def test_no_local_and_retain_as_published(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("me")
    c.send(
        Subscribe(
            1,
            [
                SubscriptionRequest("nl", 0, no_local=True),
                SubscriptionRequest("rap", 0, retain_as_published=True),
                SubscriptionRequest("plain", 0),
            ],
        )
    )
    out = c.send(
        Publish("nl", b"mine"), Publish("rap", b"r", 0, True), Publish("plain", b"p", 0, True)
    )
    got = [(p.topic, p.retain) for p in publishes(out)]
    assert got == [("rap", True), ("plain", False)]


def test_retained_messages(mqtt: MQTTBroker) -> None:
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(
        Publish("r/a", b"A", 1, True, False, 1),
        Publish("r/b", b"B", 0, True),
        Publish("r/b", b"B2", 0, True),  # replaces
        Publish("r/c", b"C", 0, True),
        Publish("r/c", b"", 0, True),  # clears
        Publish("$SYS/r", b"S", 0, True),
    )
    sub = Client(mqtt)
    sub.connect("s")
    out = sub.subscribe(("r/+", 1))
    assert isinstance(out[0], Suback)  # MQTT-3.8.4-? SUBACK before the retained messages
    got = sorted((p.topic, p.payload, p.retain, p.qos) for p in publishes(out))
    assert got == [("r/a", b"A", True, 1), ("r/b", b"B2", True, 0)]
    assert publishes(sub.subscribe(("#", 0), pid=2)) != []
    assert all(p.topic != "$SYS/r" for p in publishes(sub.subscribe(("#", 0), pid=3)))
    # a live publish with RETAIN is forwarded with RETAIN 0 to existing subscribers
    for p in publishes(out):
        if p.qos:
            sub.send(PubAck(p.packet_id))
    pub.send(Publish("r/a", b"A2", 0, True))
    assert [(p.payload, p.retain) for p in publishes(sub.received())] == [(b"A2", False)] * 2


def test_retain_handling(mqtt: MQTTBroker) -> None:
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("rh", b"R", 0, True))
    sub = Client(mqtt, MQTT_5)
    sub.connect("s")

    def subscribe(rh: int, pid: int) -> list[Publish]:
        return publishes(
            sub.send(Subscribe(pid, [SubscriptionRequest("rh", 0, retain_handling=rh)]))
        )

    assert len(subscribe(1, 1)) == 1  # new subscription: sent
    assert len(subscribe(1, 2)) == 0  # existing: not sent
    assert len(subscribe(0, 3)) == 1  # always
    assert len(subscribe(2, 4)) == 0  # never


def test_retained_are_durable(clock: VirtualClock, tmp_path: Path) -> None:
    mqtt = MQTTBroker(Broker(clock), data_dir=tmp_path)
    pub = Client(mqtt, MQTT_5)
    pub.connect("p")
    pub.send(
        Publish("d/1", b"one", 0, True, properties={P.CONTENT_TYPE: "text/plain"}),
        Publish("d/2", b"two", 1, True, False, 1, {P.MESSAGE_EXPIRY_INTERVAL: 100}),
        Publish("d/3", b"three", 0, True, properties={P.MESSAGE_EXPIRY_INTERVAL: 5}),
    )
    clock.advance(10)  # d/3 expires
    store = RetainedStore(clock, "amq.topic", tmp_path / "mqtt_retained.bin")
    assert sorted(m.topic for m, _ in store.match("/", "d/#")) == ["d/1", "d/2"]
    m1 = store.get("/", "d/1")
    assert m1 is not None and m1.mqtt_props == {P.CONTENT_TYPE: "text/plain"}
    ((m2, left),) = store.match("/", "d/2")
    assert m2.qos == 1 and left is not None and 85 <= left <= 90


def test_retained_file_with_a_torn_tail(clock: VirtualClock, tmp_path: Path) -> None:
    store = RetainedStore(clock, "amq.topic", tmp_path / "r.bin")
    mqtt = MQTTBroker(Broker(clock))
    mqtt.retained = store
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("a", b"1", 0, True), Publish("b", b"2", 0, True))
    data = (tmp_path / "r.bin").read_bytes()
    (tmp_path / "r.bin").write_bytes(data[:-3])
    again = RetainedStore(clock, "amq.topic", tmp_path / "r.bin")
    assert len(again) == 1


# -- wills -----------------------------------------------------------------------------------


def test_will_on_abnormal_close_not_on_disconnect(mqtt: MQTTBroker) -> None:
    watcher = Client(mqtt)
    watcher.connect("w")
    watcher.subscribe(("wills/#", 0))
    a = Client(mqtt)
    a.connect("a", will=Will("wills/a", b"a died"))
    a.conn.connection_lost()
    assert [p.payload for p in publishes(watcher.received())] == [b"a died"]
    b = Client(mqtt)
    b.connect("b", will=Will("wills/b", b"b died", 0, True))
    b.send(Disconnect())
    assert publishes(watcher.received()) == []
    assert b.closed
    c = Client(mqtt, MQTT_5)
    c.connect("c", will=Will("wills/c", b"c asked"))
    c.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    assert [p.payload for p in publishes(watcher.received())] == [b"c asked"]


def test_will_delay_and_session_resumption(mqtt: MQTTBroker, clock: VirtualClock) -> None:
    watcher = Client(mqtt)
    watcher.connect("w")
    watcher.subscribe(("wills/#", 0))
    props = {P.SESSION_EXPIRY_INTERVAL: 100}
    will = Will("wills/d", b"late", 0, False, {P.WILL_DELAY_INTERVAL: 10})
    d = Client(mqtt, MQTT_5)
    d.connect("d", clean=False, will=will, properties=props)
    d.conn.connection_lost()
    clock.advance(5)
    assert publishes(watcher.received()) == []
    # reconnecting within the delay cancels the will (MQTT-3.1.3-9)
    d2 = Client(mqtt, MQTT_5)
    assert d2.connect("d", clean=False, will=will, properties=props).session_present
    clock.advance(20)
    assert publishes(watcher.received()) == []
    d2.conn.connection_lost()
    clock.advance(9)
    assert publishes(watcher.received()) == []
    clock.advance(2)
    assert [p.payload for p in publishes(watcher.received())] == [b"late"]


def test_will_is_published_when_the_session_ends_first(
    mqtt: MQTTBroker, clock: VirtualClock
) -> None:
    watcher = Client(mqtt)
    watcher.connect("w")
    watcher.subscribe(("wills/#", 0))
    e = Client(mqtt, MQTT_5)
    e.connect(
        "e",
        clean=False,
        will=Will("wills/e", b"expired", 0, False, {P.WILL_DELAY_INTERVAL: 60}),
        properties={P.SESSION_EXPIRY_INTERVAL: 5},
    )
    e.subscribe(("x", 1))
    e.conn.connection_lost()
    assert "mqtt-subscription-eqos1" in mqtt.broker.vhosts["/"].queues
    clock.advance(6)
    assert [p.payload for p in publishes(watcher.received())] == [b"expired"]
    assert "mqtt-subscription-eqos1" not in mqtt.broker.vhosts["/"].queues
    assert mqtt.sessions.get("/", "e") is None


def test_session_expiry_set_at_disconnect(mqtt: MQTTBroker, clock: VirtualClock) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("x", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 10})
    c.send(Disconnect(0, {P.SESSION_EXPIRY_INTERVAL: 0}))
    assert mqtt.sessions.get("/", "x") is None
    c = Client(mqtt, MQTT_5)
    c.connect("y")  # expiry 0 at CONNECT: a non-zero value at DISCONNECT is an error
    (d,) = c.send(Disconnect(0, {P.SESSION_EXPIRY_INTERVAL: 10}))
    assert d.reason_code == ReasonCode.PROTOCOL_ERROR


# -- MQTT 5 specifics ----------------------------------------------------------------------------


def test_topic_alias_from_client(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s")
    sub.subscribe(("long/topic/name", 0))
    pub = Client(mqtt, MQTT_5)
    pub.connect("p")
    pub.send(
        Publish("long/topic/name", b"1", properties={P.TOPIC_ALIAS: 1}),
        Publish("", b"2", properties={P.TOPIC_ALIAS: 1}),
    )
    assert [(p.topic, p.payload) for p in publishes(sub.received())] == [
        ("long/topic/name", b"1"),
        ("long/topic/name", b"2"),
    ]
    (d,) = pub.send(Publish("", b"3", properties={P.TOPIC_ALIAS: 2}))
    assert d.reason_code == ReasonCode.PROTOCOL_ERROR
    pub = Client(mqtt, MQTT_5)
    pub.connect("p2")
    (d,) = pub.send(Publish("t", b"", properties={P.TOPIC_ALIAS: 65}))
    assert d.reason_code == ReasonCode.TOPIC_ALIAS_INVALID


def test_topic_alias_to_client(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s", properties={P.TOPIC_ALIAS_MAXIMUM: 1})
    sub.subscribe(("t/#", 0))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("t/one", b"1"), Publish("t/one", b"2"), Publish("t/two", b"3"))
    pub.send(Publish("t/one", b"4"))
    got = publishes(sub.received())
    # at the client's maximum the alias is reused (LRU), the topic name sent with it
    assert [(p.topic, (p.properties or {}).get(P.TOPIC_ALIAS)) for p in got] == [
        ("t/one", 1),
        ("", 1),
        ("t/two", 1),
        ("t/one", 1),
    ]


def test_request_response_properties_pass_through(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s")
    sub.subscribe(("req", 0))
    pub = Client(mqtt, MQTT_5)
    pub.connect("p")
    props = {
        P.RESPONSE_TOPIC: "resp/p",
        P.CORRELATION_DATA: b"\x01\x02",
        P.CONTENT_TYPE: "application/json",
        P.PAYLOAD_FORMAT_INDICATOR: 1,
        P.USER_PROPERTY: [("a", "1"), ("a", "2")],
    }
    pub.send(Publish("req", b"{}", properties=dict(props)))
    (p,) = publishes(sub.received())
    assert p.properties == props


def test_message_expiry(mqtt: MQTTBroker, clock: VirtualClock) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 100})
    sub.subscribe(("t", 1))
    sub.conn.connection_lost()
    pub = Client(mqtt, MQTT_5)
    pub.connect("p")
    pub.send(
        Publish("t", b"short", 1, False, False, 1, {P.MESSAGE_EXPIRY_INTERVAL: 5}),
        Publish("t", b"long", 1, False, False, 2, {P.MESSAGE_EXPIRY_INTERVAL: 50}),
    )
    clock.advance(10)
    sub = Client(mqtt, MQTT_5)
    sub.conn.data_received(
        encode(Connect(MQTT_5, "s", False, properties={P.SESSION_EXPIRY_INTERVAL: 100}), MQTT_5)
    )
    (p,) = publishes(sub.received())
    assert p.payload == b"long"
    assert p.properties[P.MESSAGE_EXPIRY_INTERVAL] == 40  # MQTT-3.3.2-6: the time left


def test_receive_maximum_limits_inflight(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s", properties={P.RECEIVE_MAXIMUM: 2})
    sub.subscribe(("t", 1))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(*(Publish("t", str(i).encode(), 1, False, False, i + 1) for i in range(5)))
    got = publishes(sub.received())
    assert [p.payload for p in got] == [b"0", b"1"]
    got2 = publishes(sub.send(PubAck(got[0].packet_id)))
    assert [p.payload for p in got2] == [b"2"]
    got3 = publishes(sub.send(PubAck(got[1].packet_id), PubAck(got2[0].packet_id)))
    assert [p.payload for p in got3] == [b"3", b"4"]


def test_maximum_packet_size_of_the_client(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt, MQTT_5)
    sub.connect("s", properties={P.MAXIMUM_PACKET_SIZE: 50})
    sub.subscribe(("t", 1))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(
        Publish("t", b"x" * 100, 1, False, False, 1), Publish("t", b"small", 1, False, False, 2)
    )
    assert [p.payload for p in publishes(sub.received())] == [b"small"]  # MQTT-3.1.2-25
    assert not mqtt.broker.vhosts["/"].queues["mqtt-subscription-sqos1"].message_count


def test_oversized_packet_from_client(clock: VirtualClock) -> None:
    mqtt = MQTTBroker(Broker(clock), MQTTSettings(max_packet_size=1000))
    c = Client(mqtt, MQTT_5)
    ack = c.connect("big")
    assert ack.properties[P.MAXIMUM_PACKET_SIZE] == 1000
    (d,) = c.send(Publish("t", b"x" * 2000))
    assert d.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert c.closed


def test_shared_subscriptions_spread_load(mqtt: MQTTBroker) -> None:
    members = []
    for i in range(3):
        m = Client(mqtt, MQTT_5)
        m.connect(f"m{i}")
        (ack,) = m.subscribe(("$share/g/jobs/+", 1))
        assert ack.reason_codes == [1]
        members.append(m)
    other = Client(mqtt)
    other.connect("other")
    other.subscribe(("jobs/+", 0))
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(*(Publish("jobs/x", str(i).encode(), 1, False, False, i + 1) for i in range(9)))
    counts = []
    for m in members:
        got = publishes(m.received())
        counts.append(len(got))
        m.send(*(PubAck(p.packet_id) for p in got))
    assert sum(counts) == 9 and all(c == 3 for c in counts)
    assert len(publishes(other.received())) == 9
    # a member that leaves without acking: its in-flight messages go to the others (4.8.2)
    pub.send(Publish("jobs/y", b"last", 1, False, False, 20))
    holder = next(m for m in members if publishes(m.received()))
    holder.conn.connection_lost()
    rest = [publishes(m.received()) for m in members if m is not holder]
    assert [p.payload for got in rest for p in got] == [b"last"]
    for m in members:
        m.conn.connection_lost()
    assert not any(n.startswith("mqtt-shared-") for n in mqtt.broker.vhosts["/"].queues)


def test_shared_subscription_rules(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("c")
    (d,) = c.send(Subscribe(1, [SubscriptionRequest("$share/g/t", 0, no_local=True)]))
    assert d.reason_code == ReasonCode.PROTOCOL_ERROR


def test_invalid_topic_name_disconnects(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("c")
    (d,) = c.send(Publish("a/+", b""))
    assert d.reason_code == ReasonCode.TOPIC_NAME_INVALID
    c = Client(mqtt)
    c.connect("c3")
    assert c.send(Publish("a/#", b"")) == [] and c.closed


def test_payload_format_invalid(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("c")
    out = c.send(Publish("t", b"\xff", 1, False, False, 1, {P.PAYLOAD_FORMAT_INDICATOR: 1}))
    assert out == [PubAck(1, ReasonCode.PAYLOAD_FORMAT_INVALID)]
    (d,) = c.send(Publish("t", b"\xff", 0, False, False, 0, {P.PAYLOAD_FORMAT_INDICATOR: 1}))
    assert d.reason_code == ReasonCode.PAYLOAD_FORMAT_INVALID


def test_no_matching_subscribers_reason(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("c")
    assert c.send(Publish("nobody", b"", 1, False, False, 1)) == [
        PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS)
    ]


def test_packets_before_a_malformed_one_still_count(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s")
    sub.subscribe(("t", 0))
    c = Client(mqtt)
    c.connect("c")
    c.send_raw(encode(Publish("t", b"ok")) + b"\x36\x00")
    assert c.closed
    assert [p.payload for p in publishes(sub.received())] == [b"ok"]


def test_deleting_a_subscription_queue_disconnects(mqtt: MQTTBroker) -> None:
    c = Client(mqtt, MQTT_5)
    c.connect("c", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    c.subscribe(("t", 1))
    vhost = mqtt.broker.vhosts["/"]
    vhost.delete_queue("mqtt-subscription-cqos1", owner=object())
    (d,) = c.received()
    assert d.reason_code == ReasonCode.ADMINISTRATIVE_ACTION


def test_resubscribing_after_a_recovered_queue(mqtt: MQTTBroker) -> None:
    """A durable QoS 1 queue left from an earlier run is adopted with its subscriptions."""
    c = Client(mqtt, MQTT_5)
    c.connect("r", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    c.send(Subscribe(1, [SubscriptionRequest("x/+", 2)], {P.SUBSCRIPTION_IDENTIFIER: [3]}))
    c.conn.connection_lost()
    mqtt.sessions.remove(mqtt.sessions.get("/", "r"))  # type: ignore[arg-type]
    pub = Client(mqtt)
    pub.connect("p")
    pub.send(Publish("x/1", b"while away", 1, False, False, 1))
    c = Client(mqtt, MQTT_5)
    c.conn.data_received(
        encode(Connect(MQTT_5, "r", False, properties={P.SESSION_EXPIRY_INTERVAL: 600}), MQTT_5)
    )
    out = c.received()
    assert out[0].session_present
    (p,) = publishes(out)
    assert p.payload == b"while away" and p.properties[P.SUBSCRIPTION_IDENTIFIER] == [3]


def test_alarm_pauses_publishers(mqtt: MQTTBroker) -> None:
    alarms = getattr(mqtt.broker, "alarms", None)
    if alarms is None:
        pytest.skip("core has no resource alarms")
    c = Client(mqtt)
    c.connect("c")
    c.send(Publish("t", b"x"))
    alarms.set("memory")
    assert c.wire.paused
    alarms.clear("memory")
    assert not c.wire.paused


class _Sink:
    """An AMQP-like consumer standing in for another protocol."""

    def __init__(self) -> None:
        self.got: list[Entry] = []

    def has_credit(self) -> bool:
        return True

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        self.got.append(entry)

    def consumer_cancelled(self, consumer: Consumer) -> None:
        pass


def test_mqtt_messages_on_amqp_queues(mqtt: MQTTBroker) -> None:
    vhost = mqtt.broker.vhosts["/"]
    owner = object()
    vhost.declare_queue("amqp-q", owner=owner)
    vhost.bind_queue("amqp-q", "amq.topic", "sensors.*", None, owner=owner)
    sink = _Sink()
    vhost.queue("amqp-q").add_consumer(Consumer("ct", sink, no_ack=True))
    pub = Client(mqtt, MQTT_5)
    pub.connect("p")
    pub.send(
        Publish(
            "sensors/t1",
            b"21.5",
            1,
            False,
            False,
            1,
            {
                P.USER_PROPERTY: [("unit", "C"), ("unit", "F")],
                P.CONTENT_TYPE: "text/plain",
                P.CORRELATION_DATA: b"abc",
                P.RESPONSE_TOPIC: "replies/p",
                P.MESSAGE_EXPIRY_INTERVAL: 30,
            },
        )
    )
    (entry,) = sink.got
    m = entry.message
    assert (m.exchange, m.routing_key, m.body, m.persistent) == (
        "amq.topic",
        "sensors.t1",
        b"21.5",
        True,
    )
    props = m.properties
    assert props.delivery_mode == 2
    assert props.content_type == "text/plain"
    assert props.correlation_id == "abc"
    assert props.expiration == "30000"
    assert props.headers == {"unit": "C", "x-reply-to-topic": "replies.p"}
    assert state_of(pub) == State.CONNECTED


def state_of(c: Client) -> int:
    return c.conn.state


def test_inflight_limit_for_3x_clients(clock: VirtualClock) -> None:
    mqtt = MQTTBroker(Broker(clock), MQTTSettings(max_inflight=2))
    sub = Client(mqtt)
    sub.connect("s")
    sub.subscribe(("t", 2))
    pub = Client(mqtt)
    pub.connect("p")
    for i in range(4):
        pub.send(Publish("t", b"%d" % i, 2, False, False, i + 1), PubRel(i + 1))
    got = publishes(sub.received())
    assert [(p.payload, p.qos) for p in got] == [(b"0", 2), (b"1", 2)]
    # a QoS 2 delivery holds its slot until PUBCOMP, not just PUBREC (4.9)
    assert sub.send(PubRec(got[0].packet_id)) == [PubRel(got[0].packet_id)]
    assert publishes(sub.received()) == []
    assert [p.payload for p in publishes(sub.send(PubComp(got[0].packet_id)))] == [b"2"]


def test_backed_up_subscriber_drops_qos0_keeps_qos1(mqtt: MQTTBroker) -> None:
    sub = Client(mqtt)
    sub.connect("s")
    sub.subscribe(("t0", 0), ("t1", 1))
    pub = Client(mqtt)
    pub.connect("p")
    sub.conn.set_writable(False)
    pub.send(Publish("t0", b"dropped"), Publish("t1", b"held", 1, False, False, 1))
    assert publishes(sub.received()) == []
    sub.conn.set_writable(True)
    assert [p.payload for p in publishes(sub.received())] == [b"held"]
    session = mqtt.sessions.get("/", "s")
    assert session is not None and session.dropped == 1
