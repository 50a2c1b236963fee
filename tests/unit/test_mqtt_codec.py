"""The MQTT codec: round trips for every packet in 3.1.1 and 5.0, and the malformed cases the
spec names, decoded exactly as a peer would send them (byte strings written out by hand)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.protocols.mqtt.codec import (
    Auth,
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
    UnsupportedProtocolVersion,
    Will,
    encode,
)
from ferrymq.protocols.mqtt.constants import MQTT_5, MQTT_31, MQTT_311, PropertyId, ReasonCode
from ferrymq.protocols.mqtt.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    ProtocolViolation,
    RemoteProtocolError,
)
from ferrymq.protocols.mqtt.properties import decode_properties, encode_properties
from ferrymq.protocols.mqtt.wire import read_varint, varint

P = PropertyId


def roundtrip(packet: Any, version: int) -> Any:
    data = encode(packet, version)
    decoder = PacketDecoder(version)
    out = decoder.feed(data)
    assert len(out) == 1, out
    return out[0]


PACKETS_311 = [
    Connect(MQTT_311, "client-1", True, 30),
    Connect(
        MQTT_311,
        "c",
        False,
        0,
        Will("will/topic", b"bye", 1, True),
        "user",
        b"pass\x00word",
    ),
    Connack(True, 0),
    Connack(False, 5),
    Publish("a/b", b"payload"),
    Publish("a/b", b"", 1, True, True, 7),
    Publish("\u00e9t\u00e9/\u2603", b"x" * 300, 2, False, False, 65535),
    PubAck(1),
    PubRec(2),
    PubRel(3),
    PubComp(65535),
    Subscribe(10, [SubscriptionRequest("a/+", 1), SubscriptionRequest("#", 2)]),
    Suback(10, [0, 1, 2, 0x80]),
    Unsubscribe(11, ["a/+", "b"]),
    Unsuback(11),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]

PACKETS_5 = [
    Connect(
        MQTT_5,
        "",
        True,
        60,
        Will(
            "w",
            b"gone",
            2,
            False,
            {P.WILL_DELAY_INTERVAL: 5, P.MESSAGE_EXPIRY_INTERVAL: 100, P.CONTENT_TYPE: "t/p"},
        ),
        None,
        b"secret",
        {
            P.SESSION_EXPIRY_INTERVAL: 3600,
            P.RECEIVE_MAXIMUM: 10,
            P.MAXIMUM_PACKET_SIZE: 1000,
            P.TOPIC_ALIAS_MAXIMUM: 5,
            P.USER_PROPERTY: [("k", "v"), ("k", "v2")],
        },
    ),
    Connack(
        True,
        0,
        {
            P.ASSIGNED_CLIENT_IDENTIFIER: "gen-1",
            P.SERVER_KEEP_ALIVE: 30,
            P.TOPIC_ALIAS_MAXIMUM: 64,
            P.MAXIMUM_QOS: 1,
            P.RETAIN_AVAILABLE: 0,
        },
    ),
    Connack(False, ReasonCode.NOT_AUTHORIZED, {P.REASON_STRING: "no"}),
    Publish("a", b"p", 0, False, False, 0, None),
    Publish(
        "",
        b"p",
        1,
        True,
        False,
        9,
        {
            P.TOPIC_ALIAS: 3,
            P.PAYLOAD_FORMAT_INDICATOR: 1,
            P.MESSAGE_EXPIRY_INTERVAL: 60,
            P.RESPONSE_TOPIC: "reply/here",
            P.CORRELATION_DATA: b"\x00\x01\xff",
            P.SUBSCRIPTION_IDENTIFIER: [1, 268_435_455],
            P.USER_PROPERTY: [("a", "1"), ("b", "")],
        },
    ),
    PubAck(1),
    PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS),
    PubRec(2, ReasonCode.QUOTA_EXCEEDED, {P.REASON_STRING: "full"}),
    PubRel(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
    PubComp(4),
    Subscribe(
        5,
        [
            SubscriptionRequest("a/#", 2, True, True, 2),
            SubscriptionRequest("$share/g/x/+", 1, False, False, 1),
        ],
        {P.SUBSCRIPTION_IDENTIFIER: [42]},
    ),
    Suback(5, [2, ReasonCode.TOPIC_FILTER_INVALID], {P.REASON_STRING: "r"}),
    Unsubscribe(6, ["a/#"], {P.USER_PROPERTY: [("x", "y")]}),
    Unsuback(6, [0, ReasonCode.NO_SUBSCRIPTION_EXISTED]),
    Pingreq(),
    Pingresp(),
    Disconnect(),
    Disconnect(ReasonCode.DISCONNECT_WITH_WILL, {P.SESSION_EXPIRY_INTERVAL: 0}),
    Auth(ReasonCode.CONTINUE_AUTHENTICATION, {P.AUTHENTICATION_METHOD: "SCRAM"}),
]


@pytest.mark.parametrize("packet", PACKETS_311, ids=lambda p: type(p).__name__)
def test_roundtrip_311(packet: Any) -> None:
    assert roundtrip(packet, MQTT_311) == packet


@pytest.mark.parametrize("packet", PACKETS_5, ids=lambda p: type(p).__name__)
def test_roundtrip_5(packet: Any) -> None:
    assert roundtrip(packet, MQTT_5) == packet


def test_mqtt31_connect_uses_mqisdp() -> None:
    data = encode(Connect(MQTT_31, "old-client", True, 10), MQTT_31)
    assert data[2:10] == b"\x00\x06MQIsdp"
    assert PacketDecoder().feed(data)[0].protocol_level == MQTT_31


def test_known_bytes() -> None:
    """Encodings checked against the examples of the spec and what Mosquitto sends."""
    assert encode(Pingreq()) == b"\xc0\x00"
    assert encode(PubAck(10)) == b"\x40\x02\x00\x0a"
    assert encode(PubRel(10)) == b"\x62\x02\x00\x0a"  # 2.1.3: PUBREL flags 0010
    assert encode(Publish("a/b", b"hi", 1, False, False, 1)) == b"\x32\x09\x00\x03a/b\x00\x01hi"
    assert encode(Publish("a", b"", 0), MQTT_5) == b"\x30\x04\x00\x01a\x00"
    assert encode(Subscribe(1, [SubscriptionRequest("a", 1)])) == b"\x82\x06\x00\x01\x00\x01a\x01"
    assert encode(Connack(False, 0), MQTT_5) == b"\x20\x03\x00\x00\x00"


def test_feed_byte_by_byte_and_many_per_read() -> None:
    stream = b"".join(encode(p, MQTT_5) for p in PACKETS_5[1:])
    decoder = PacketDecoder(MQTT_5)
    got: list[Any] = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i : i + 1]))
    assert got == PACKETS_5[1:]
    assert PacketDecoder(MQTT_5).feed(stream) == PACKETS_5[1:]


def test_large_packet_in_pieces_is_joined_once() -> None:
    big = Publish("t", b"x" * 1_000_000, 1, False, False, 1)
    data = encode(big)
    decoder = PacketDecoder(MQTT_311)
    got: list[Any] = []
    for i in range(0, len(data), 65536):
        got.extend(decoder.feed(data[i : i + 65536]))
    assert got == [big]
    assert decoder.buffered == 0


def test_connect_sets_the_version_for_the_rest_of_the_buffer() -> None:
    data = encode(Connect(MQTT_5, "c"), MQTT_5) + encode(Publish("a", b"x"), MQTT_5)
    decoder = PacketDecoder()
    packets = decoder.feed(data)
    assert packets[1] == Publish("a", b"x")
    assert decoder.version == MQTT_5


def test_varint_boundaries() -> None:
    for n, raw in [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (268435455, b"\xff\xff\xff\x7f"),
    ]:
        assert varint(n) == raw
        assert read_varint(raw, 0, len(raw)) == (n, len(raw))
    with pytest.raises(LocalProtocolError):
        varint(268435456)
    with pytest.raises(MalformedPacket):
        read_varint(b"\xff\xff\xff\xff\x01", 0, 5)


# -- malformed input -------------------------------------------------------------------------

MALFORMED_311 = {
    "reserved type 0": b"\x00\x00",
    "AUTH before 5.0": b"\xf0\x00",
    "PUBREL flags 0000": b"\x60\x02\x00\x01",
    "SUBSCRIBE flags 0000": b"\x80\x06\x00\x01\x00\x01a\x00",
    "PINGREQ flags": b"\xc1\x00",
    "PUBLISH QoS 3": b"\x36\x05\x00\x01a\x00\x01",
    "PUBLISH QoS 0 with DUP": b"\x38\x03\x00\x01a",
    "PUBLISH packet id 0": b"\x32\x05\x00\x01a\x00\x00",
    "PUBLISH topic past end": b"\x30\x03\x00\x05a",
    "PUBLISH topic invalid UTF-8": b"\x30\x04\x00\x02\xc3\x28",
    "PUBLISH topic surrogate": b"\x30\x05\x00\x03\xed\xa0\x80",
    "PUBLISH topic NUL": b"\x30\x04\x00\x02a\x00",
    "remaining length 5 bytes": b"\x30\xff\xff\xff\xff\x01",
    "PINGREQ with a body": b"\xc0\x01\x00",
    "SUBSCRIBE reserved QoS bits": b"\x82\x06\x00\x01\x00\x01a\x04",
    "SUBSCRIBE QoS 3": b"\x82\x06\x00\x01\x00\x01a\x03",
    "SUBSCRIBE filter without options": b"\x82\x05\x00\x01\x00\x01a",
    "PUBACK 3 bytes in 3.1.1": b"\x40\x03\x00\x01\x00",
    "DISCONNECT with a body in 3.1.1": b"\xe0\x01\x00",
}


@pytest.mark.parametrize("data", MALFORMED_311.values(), ids=MALFORMED_311.keys())
def test_malformed_311(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        PacketDecoder(MQTT_311).feed(data)


def test_subscribe_without_filters_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolViolation):
        PacketDecoder(MQTT_311).feed(b"\x82\x02\x00\x01")
    with pytest.raises(ProtocolViolation):
        PacketDecoder(MQTT_311).feed(b"\xa2\x02\x00\x01")


def _connect_bytes(body: bytes) -> bytes:
    return bytes((0x10, len(body))) + body


def test_connect_rules() -> None:
    ok = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    assert PacketDecoder().feed(_connect_bytes(ok))[0].client_id == "c"
    with pytest.raises(MalformedPacket, match="reserved flag"):
        PacketDecoder().feed(_connect_bytes(b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c"))
    with pytest.raises(MalformedPacket, match="Will QoS 3"):
        PacketDecoder().feed(_connect_bytes(b"\x00\x04MQTT\x04\x1e\x00\x3c\x00\x01c"))
    with pytest.raises(MalformedPacket, match="without the Will Flag"):
        PacketDecoder().feed(_connect_bytes(b"\x00\x04MQTT\x04\x22\x00\x3c\x00\x01c"))
    with pytest.raises(MalformedPacket, match="password without a user name"):
        PacketDecoder().feed(_connect_bytes(b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x01c\x00\x01p"))
    with pytest.raises(MalformedPacket, match="after the end"):
        PacketDecoder().feed(_connect_bytes(ok + b"\x00"))
    with pytest.raises(ProtocolViolation, match="protocol name"):
        PacketDecoder().feed(_connect_bytes(b"\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c"))
    for level in (2, 6, 0xFF):
        with pytest.raises(UnsupportedProtocolVersion) as info:
            PacketDecoder().feed(
                _connect_bytes(b"\x00\x04MQTT" + bytes((level,)) + b"\x02\x00\x3c\x00\x01c")
            )
        assert info.value.level == level
    with pytest.raises(UnsupportedProtocolVersion):  # MQIsdp is 3.1 only
        PacketDecoder().feed(_connect_bytes(b"\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01c"))


def test_malformed_5() -> None:
    cases = {
        # property length runs past the packet
        b"\x30\x05\x00\x01a\x05\x01": MalformedPacket,
        # unknown property 0x7f
        b"\x30\x06\x00\x01a\x02\x7f\x00": MalformedPacket,
        # Topic Alias twice
        b"\x30\x0a\x00\x01a\x06\x23\x00\x01\x23\x00\x02": ProtocolViolation,
        # Session Expiry Interval in PUBLISH
        b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01": ProtocolViolation,
        # Payload Format Indicator 2
        b"\x30\x06\x00\x01a\x02\x01\x02": ProtocolViolation,
        # Subscription Identifier 0
        b"\x30\x06\x00\x01a\x02\x0b\x00": ProtocolViolation,
        # SUBSCRIBE options reserved bits
        b"\x82\x07\x00\x01\x00\x00\x01a\x40": MalformedPacket,
        # SUBSCRIBE retain handling 3
        b"\x82\x07\x00\x01\x00\x00\x01a\x30": ProtocolViolation,
        # user property value truncated
        b"\xe0\x07\x00\x05\x26\x00\x01k\x00": MalformedPacket,
    }
    for data, error in cases.items():
        with pytest.raises(error):
            PacketDecoder(MQTT_5).feed(data)


def test_packets_before_a_bad_one_are_kept_on_the_error() -> None:
    good = encode(Publish("a", b"1")) + encode(Pingreq())
    with pytest.raises(RemoteProtocolError) as info:
        PacketDecoder(MQTT_311).feed(good + b"\x00\x00")
    assert info.value.packets == [Publish("a", b"1"), Pingreq()]


def test_packet_too_large_is_refused_from_the_header() -> None:
    decoder = PacketDecoder(MQTT_311, max_packet_size=100)
    decoder.feed(encode(Publish("a", b"x" * 90)))
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(b"\x30\xe8\x07")  # header of a 1000-byte body; no body sent yet
    assert info.value.reason == ReasonCode.PACKET_TOO_LARGE


def test_property_sections() -> None:
    props = {P.USER_PROPERTY: [("a", "b"), ("a", "c")], P.REASON_STRING: "why"}
    raw = encode_properties(props)
    assert decode_properties(raw, 0, len(raw), 4)[0] == props
    assert encode_properties({}) == b"\x00"


# -- property-based ----------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
_topic = _text.filter(lambda t: bool(t) and "+" not in t and "#" not in t)


@st.composite
def publishes(draw: Any, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    props = None
    if version == MQTT_5 and draw(st.booleans()):
        props = {}
        if draw(st.booleans()):
            props[P.USER_PROPERTY] = draw(st.lists(st.tuples(_text, _text), min_size=1, max_size=3))
        if draw(st.booleans()):
            props[P.MESSAGE_EXPIRY_INTERVAL] = draw(st.integers(0, 2**32 - 1))
        if draw(st.booleans()):
            props[P.CORRELATION_DATA] = draw(st.binary(max_size=20))
        if draw(st.booleans()):
            props[P.SUBSCRIPTION_IDENTIFIER] = draw(
                st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3)
            )
        props = props or None
    return Publish(
        draw(_topic),
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(st.integers(1, 65535)) if qos else 0,
        props,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(publishes(MQTT_5), min_size=1, max_size=5), st.integers(1, 50))
def test_publish_stream_roundtrip_5(packets: list[Publish], chunk: int) -> None:
    data = b"".join(encode(p, MQTT_5) for p in packets)
    decoder = PacketDecoder(MQTT_5)
    got: list[Any] = []
    for i in range(0, len(data), chunk):
        got.extend(decoder.feed(data[i : i + chunk]))
    assert got == packets


@settings(max_examples=150, deadline=None)
@given(publishes(MQTT_311))
def test_publish_roundtrip_311(packet: Publish) -> None:
    assert roundtrip(packet, MQTT_311) == packet


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([MQTT_311, MQTT_5]))
def test_garbage_never_raises_anything_but_protocol_errors(data: bytes, version: int) -> None:
    try:
        PacketDecoder(version).feed(data)
    except RemoteProtocolError:
        pass
