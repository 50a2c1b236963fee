"""MQTT application messages in core, and their mapping to and from AMQP 0-9-1 properties.

An MQTT publish becomes an `MQTTMessage`: a core `Message` (so queues, routing, TTL and AMQP
consumers treat it like any other) that also keeps what MQTT subscribers need, already encoded:
the topic as it appears on the wire, the MQTT 5 properties that are forwarded unaltered, the
publish QoS and retain flag, and the publishing client id (for No Local). A delivery to an MQTT
subscriber then costs a few byte concatenations, and a QoS 0 publish delivered to many
subscribers of the same protocol level is encoded once (`wire_v4`, `wire_v5`).

The canonical properties (ARCHITECTURE.md, "Core model") are AMQP basic properties; the mapping
is RabbitMQ's mc_mqtt (convert_to mc_amqpl / convert_from mc_amqpl):

    MQTT                          AMQP 0-9-1
    QoS 0 / QoS 1, 2              delivery-mode 1 / 2 (persistent)
    Content Type                  content-type (if ASCII and at most 255 bytes)
    Correlation Data              correlation-id (if UTF-8 and at most 255 bytes), else header
                                  x-correlation-id
    Response Topic                header x-reply-to-topic, as a routing key (`/` -> `.`)
    User Property                 headers (long strings; first value of a repeated name wins)
    Message Expiry Interval       expiration (milliseconds)

A message published over AMQP is seen by MQTT subscribers through `view_of` (the reverse
mapping, computed once per message and shared by consecutive deliveries of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferrymq.core.message import Message
from ferrymq.protocols.amqp.properties import (
    EMPTY_PROPERTIES,
    PROPERTY_CODEC,
    BasicProperties,
    encode_properties,
)
from ferrymq.protocols.mqtt.constants import PropertyId
from ferrymq.protocols.mqtt.properties import Properties, encode_property_body
from ferrymq.protocols.mqtt.topics import (
    plain_topic,
    routing_key_to_topic,
    topic_name_error,
    topic_to_routing_key,
)
from ferrymq.protocols.mqtt.wire import U16, U32, varint

#: Properties a server forwards unaltered (3.3.2.3): everything but the expiry (rewritten to
#: the time left), the Topic Alias (per connection) and Subscription Identifiers (per
#: subscriber).
FORWARDED = (
    PropertyId.PAYLOAD_FORMAT_INDICATOR,
    PropertyId.CONTENT_TYPE,
    PropertyId.RESPONSE_TOPIC,
    PropertyId.CORRELATION_DATA,
    PropertyId.USER_PROPERTY,
)

_RAW_QOS0 = encode_properties(BasicProperties(delivery_mode=1))
_RAW_QOS1 = encode_properties(BasicProperties(delivery_mode=2))
# A QoS 2 publish says so in a header (RabbitMQ's MQTT plugin name): AMQP's delivery mode only
# tells QoS 0 from QoS 1+, and a QoS 2 message read back from the journal after a restart must
# still be delivered at QoS 2 to a QoS 2 subscription.
PUBLISH_QOS_HEADER = "x-mqtt-publish-qos"
_RAW_QOS2 = encode_properties(BasicProperties(delivery_mode=2, headers={PUBLISH_QOS_HEADER: 2}))


class MQTTMessage(Message):
    """A message published over MQTT (or a will, or a retained copy). See the module docstring.

    `for_subscription` is set on the copy of a retained message queued for one new
    subscription (3.3.1.3: sent with RETAIN 1, to that subscription only).
    """

    __slots__ = (
        "expiry_interval",
        "for_subscription",
        "mqtt_props",
        "origin",
        "plain",
        "props_v5",
        "qos",
        "retain",
        "topic",
        "topic_part",
        "wire_v4",
        "wire_v5",
    )

    def __init__(
        self,
        exchange: str,
        topic: str,
        body: bytes,
        qos: int,
        *,
        retain: bool = False,
        props: Properties | None = None,
        origin: str | None = None,
        routing_key: str | None = None,
        topic_part: bytes | None = None,
        plain: bool | None = None,
    ) -> None:
        expiry = props.get(PropertyId.MESSAGE_EXPIRY_INTERVAL) if props else None
        if props:
            raw = amqp_properties(qos, props)
        else:
            raw = _RAW_QOS0 if not qos else _RAW_QOS1 if qos == 1 else _RAW_QOS2
        Message.__init__(
            self,
            exchange,
            topic_to_routing_key(topic) if routing_key is None else routing_key,
            raw,
            body,
            PROPERTY_CODEC,
            persistent=qos > 0,
            ttl=None if expiry is None else float(expiry),
        )
        self.topic = topic
        if topic_part is None:
            encoded = topic.encode("utf-8")
            topic_part = U16(len(encoded)) + encoded
        self.topic_part = topic_part
        self.qos = qos
        self.retain = retain
        self.mqtt_props = props
        self.props_v5 = forwarded_property_body(props) if props else b""
        self.expiry_interval = expiry
        self.origin = origin
        self.plain = plain_topic(topic) if plain is None else plain
        self.for_subscription: Any = None
        self.wire_v4: bytes | None = None
        self.wire_v5: bytes | None = None

    def retained_copy(self, subscription: Any, expiry_left: int | None) -> MQTTMessage:
        """The copy queued for one new subscription: RETAIN 1 (MQTT-3.3.1-8), and the expiry
        interval it has left (MQTT-3.3.2-6)."""
        props = self.mqtt_props
        if expiry_left is not None and props is not None:
            props = dict(props)
            props[PropertyId.MESSAGE_EXPIRY_INTERVAL] = expiry_left
        copy = MQTTMessage(
            self.exchange,
            self.topic,
            self.body,
            self.qos,
            retain=True,
            props=props,
            origin=None,
            routing_key=self.routing_key,
            topic_part=self.topic_part,
        )
        copy.for_subscription = subscription
        # Enqueued straight into one session's queue, not through routing and the store: the
        # retained store is where this message is durable.
        copy.persistent = False
        return copy


class ForeignView:
    """What an MQTT subscriber needs of a message published over another protocol."""

    __slots__ = (
        "body",
        "expiry_interval",
        "for_subscription",
        "id",
        "origin",
        "plain",
        "props_v5",
        "qos",
        "retain",
        "topic",
        "topic_part",
        "ttl",
        "wire_v4",
        "wire_v5",
    )

    def __init__(self, message: Message, topic: str) -> None:
        self.id = message.id
        self.body = message.body
        self.topic = topic
        encoded = topic.encode("utf-8")
        self.topic_part = U16(len(encoded)) + encoded
        self.retain = False
        self.origin: str | None = None
        self.plain = plain_topic(topic)
        self.for_subscription = None
        self.ttl = message.ttl
        self.expiry_interval = None if message.ttl is None else int(message.ttl)
        self.wire_v4: bytes | None = None
        self.wire_v5: bytes | None = None
        raw = message.raw_properties
        if raw == EMPTY_PROPERTIES:
            self.qos = 0
            self.props_v5 = b""
            return
        props = message.properties
        self.qos = 0
        if props.delivery_mode == 2:
            self.qos = 2 if (props.headers or {}).get(PUBLISH_QOS_HEADER) == 2 else 1
        self.props_v5 = encode_property_body(mqtt_properties(props))


# (message id, view): the deliveries of one message to many subscribers share its view. One
# tuple, replaced whole, so brokers on other threads of the process (tests) never see a mix.
_last_view: tuple[int, ForeignView | None] = (0, None)


def view_of(message: Message) -> MQTTMessage | ForeignView | None:
    """The MQTT face of a message; None if its routing key is not a valid topic name."""
    global _last_view
    if type(message) is MQTTMessage:
        return message
    cached = _last_view
    if cached[0] == message.id:
        return cached[1]
    topic = routing_key_to_topic(message.routing_key)
    view = None if topic_name_error(topic) else ForeignView(message, topic)
    _last_view = (message.id, view)
    return view


# -- MQTT 5 properties -> AMQP -----------------------------------------------------------------


def forwarded_property_body(props: Properties) -> bytes:
    """The encoded properties forwarded to every subscriber (no length prefix)."""
    kept: Properties = {pid: props[pid] for pid in FORWARDED if pid in props}
    return encode_property_body(kept) if kept else b""


def _shortstr_ok(value: str) -> bool:
    return len(value.encode("utf-8")) <= 255


def amqp_properties(qos: int, props: Properties) -> bytes:
    """Encoded AMQP basic properties for an MQTT publish with MQTT 5 properties."""
    bp = BasicProperties(delivery_mode=2 if qos else 1)
    content_type = props.get(PropertyId.CONTENT_TYPE)
    if content_type is not None and content_type.isascii() and _shortstr_ok(content_type):
        bp.content_type = content_type
    headers: dict[str, Any] = {}
    for name, value in props.get(PropertyId.USER_PROPERTY, ()):
        if name not in headers and len(name.encode("utf-8")) <= 255:
            headers[name] = value
    if qos == 2:
        headers[PUBLISH_QOS_HEADER] = 2
    response_topic = props.get(PropertyId.RESPONSE_TOPIC)
    if response_topic is not None:
        headers["x-reply-to-topic"] = topic_to_routing_key(response_topic)
    correlation = props.get(PropertyId.CORRELATION_DATA)
    if correlation is not None:
        try:
            text = correlation.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and _shortstr_ok(text):
            bp.correlation_id = text
        else:
            headers["x-correlation-id"] = correlation
    if headers:
        bp.headers = dict(sorted(headers.items()))  # RabbitMQ sorts field tables by key
    expiry = props.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
    if expiry is not None:
        bp.expiration = str(expiry * 1000)
    return encode_properties(bp)


# -- AMQP -> MQTT 5 properties -----------------------------------------------------------------


def _utf8_string(value: Any) -> str | None:
    """A header value as an MQTT UTF-8 string, or None if it has no such form (mc_mqtt)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 (surrogate-escaped)
            return None
        return None if "\x00" in value else value
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if value is None:
        return ""
    return None  # tables, arrays, byte arrays, decimals


def mqtt_properties(props: Any) -> Properties:
    """MQTT 5 properties for a message published with AMQP basic properties `props`."""
    out: Properties = {}
    if props.content_type is not None:
        ct = _utf8_string(props.content_type)
        if ct is not None:
            out[PropertyId.CONTENT_TYPE] = ct
    headers: Mapping[str, Any] = props.headers or {}
    user: list[tuple[str, str]] = []
    correlation: bytes | None = None
    if props.correlation_id is not None:
        correlation = props.correlation_id.encode("utf-8", "surrogateescape")
    for name, value in headers.items():
        if name == PUBLISH_QOS_HEADER:
            continue  # ours (QoS 2 across a restart), not the publisher's user property
        if name == "x-reply-to-topic" and isinstance(value, str):
            topic = routing_key_to_topic(value)
            if topic_name_error(topic) is None:
                out[PropertyId.RESPONSE_TOPIC] = topic
            continue
        if name == "x-correlation-id" and correlation is None:
            if isinstance(value, bytes):
                correlation = value
                continue
            if isinstance(value, str):
                correlation = value.encode("utf-8", "surrogateescape")
                continue
        text = _utf8_string(value)
        if text is not None and _utf8_string(name) is not None:
            user.append((name, text))
    if correlation is not None:
        out[PropertyId.CORRELATION_DATA] = correlation
    if user:
        out[PropertyId.USER_PROPERTY] = user
    return out


# -- PUBLISH packets for deliveries ------------------------------------------------------------


def publish_packet(
    mq: MQTTMessage | ForeignView,
    version: int,
    qos: int,
    retain: bool,
    packet_id: int,
    dup: bool,
    sub_ids: list[int] | None,
    expiry: int | None,
    alias: int,
    alias_known: bool,
) -> bytes:
    """Encode one delivery of `mq` (3.3). `alias`/`alias_known`: outgoing Topic Alias state."""
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    topic_part = b"\x00\x00" if alias_known else mq.topic_part
    pid = U16(packet_id) if qos else b""
    if version == 5:
        extra = b""
        if expiry is not None:
            extra = b"\x02" + U32(expiry)
        if alias:
            extra += b"\x23" + U16(alias)
        body = extra + mq.props_v5
        if sub_ids:
            body += b"".join(b"\x0b" + varint(i) for i in sub_ids)
        props = bytes((len(body),)) if len(body) < 0x80 else varint(len(body))
        length = len(topic_part) + len(pid) + len(props) + len(body) + len(mq.body)
        head = bytes((first, length)) if length < 0x80 else bytes((first,)) + varint(length)
        return b"".join((head, topic_part, pid, props, body, mq.body))
    length = len(topic_part) + len(pid) + len(mq.body)
    head = bytes((first, length)) if length < 0x80 else bytes((first,)) + varint(length)
    return b"".join((head, topic_part, pid, mq.body))
