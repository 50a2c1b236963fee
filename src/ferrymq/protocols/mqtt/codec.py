"""Sans-IO MQTT codec: bytes <-> packets, for 3.1, 3.1.1 and 5.0, both directions.

Theory of operation. `PacketDecoder.feed(data)` parses every whole packet in the buffer in one
pass and keeps the tail. The fixed header (2.1) is checked first: the type, the flag bits that
2.1.3 fixes for every type but PUBLISH, and the Remaining Length against the maximum packet size
we announced, so an oversized packet is refused before its body is buffered. While a large
packet arrives in pieces the pieces are kept in a list and joined once, not re-copied per read.

The protocol level decides the layout (MQTT 5 adds reason codes and properties to most
packets), so the decoder carries `version`: CONNECT describes itself, and the server sets
`version` from it before the next packet is parsed. PUBLISH is the hot path: it is decoded
inline in the feed loop, its topic validated as UTF-8 through a small per-connection cache, and
it is a plain `__slots__` class rather than a frozen dataclass to keep construction cheap.

Encoders return bytes. Packet-level rules that need connection state (topic aliases, receive
maximum, which properties a client may send) are the connection's; this module enforces the
rules visible in one packet. Spec references are to MQTT 5.0 unless marked 3.1.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ferrymq.protocols.mqtt.constants import (
    DISCONNECT_REASONS,
    MAX_PACKET_SIZE,
    MQTT_5,
    MQTT_31,
    MQTT_311,
    PUBACK_REASONS,
    PUBREL_REASONS,
    PacketType,
    ReasonCode,
)
from ferrymq.protocols.mqtt.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    ProtocolViolation,
    RemoteProtocolError,
)
from ferrymq.protocols.mqtt.properties import (
    NO_PROPERTIES,
    Properties,
    decode_properties,
    encode_properties,
)
from ferrymq.protocols.mqtt.wire import (
    U16,
    binary,
    check_utf8,
    read_binary,
    read_u16,
    read_utf8,
    utf8,
    varint,
)

__all__ = [
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "PacketDecoder",
    "Pingreq",
    "Pingresp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "Suback",
    "Subscribe",
    "SubscriptionRequest",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "encode",
    "encode_publish",
]


class UnsupportedProtocolVersion(RemoteProtocolError):
    """CONNECT with a protocol level we do not speak (3.1.2.2); answered with CONNACK."""

    def __init__(self, level: int) -> None:
        super().__init__(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, f"unsupported protocol level {level}"
        )
        self.level = level


# -- packets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connect:
    protocol_level: int
    client_id: str
    clean_start: bool = True
    keepalive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason_code: int  # the 3.x return code, or the 5.0 reason code
    properties: Properties = field(default_factory=dict)


class Publish:
    """An application message on the wire (3.3). A plain slotted class: it is per message."""

    __slots__ = ("dup", "packet_id", "payload", "properties", "qos", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int = 0,
        properties: Properties | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.properties = properties

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publish):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in Publish.__slots__)

    def __repr__(self) -> str:
        return (
            f"Publish(topic={self.topic!r}, payload={self.payload[:32]!r}, qos={self.qos}, "
            f"retain={self.retain}, dup={self.dup}, packet_id={self.packet_id}, "
            f"properties={self.properties!r})"
        )


class _Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7): per message, so a plain slotted class."""

    __slots__ = ("packet_id", "properties", "reason_code")

    def __init__(
        self, packet_id: int, reason_code: int = 0, properties: Properties | None = None
    ) -> None:
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.properties: Properties = {} if properties is None else properties

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Ack)
        return (self.packet_id, self.reason_code, self.properties) == (
            other.packet_id,
            other.reason_code,
            other.properties,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(packet_id={self.packet_id}, "
            f"reason_code={self.reason_code}, properties={self.properties!r})"
        )


class PubAck(_Ack):
    __slots__ = ()


class PubRec(_Ack):
    __slots__ = ()


class PubRel(_Ack):
    __slots__ = ()


class PubComp(_Ack):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """One topic filter of a SUBSCRIBE and its options (3.8.3.1)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[SubscriptionRequest]
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  # empty in 3.x
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Auth:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


Packet = (
    Connect
    | Connack
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)

_ACK_CLASSES: dict[int, type[_Ack]] = {
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
}

# The fixed-header flags 2.1.3 requires for each type (PUBLISH's are free).
_FIXED_FLAGS = {t: 0 for t in PacketType}
_FIXED_FLAGS[PacketType.PUBREL] = 2
_FIXED_FLAGS[PacketType.SUBSCRIBE] = 2
_FIXED_FLAGS[PacketType.UNSUBSCRIBE] = 2
del _FIXED_FLAGS[PacketType.PUBLISH]
_FIXED_FLAGS_BY_INT = {int(k): v for k, v in _FIXED_FLAGS.items()}

_TOPIC_CACHE_MAX = 1024


# -- decoding --------------------------------------------------------------------------------


class PacketDecoder:
    """Bytes in, packets out. See the module docstring.

    Args:
        version: the protocol level of the connection (0 until CONNECT is parsed).
        max_packet_size: the largest whole packet accepted; larger ones raise `PacketTooLarge`.
    """

    __slots__ = ("_chunks", "_have", "_need", "_topics", "max_packet_size", "version")

    def __init__(self, version: int = 0, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0
        self._topics: dict[bytes, str] | None = None

    def feed(self, data: bytes) -> list[Any]:
        """Parse every whole packet now available; keep the rest for the next call.

        Raises:
            RemoteProtocolError: the stream is malformed. The whole packets parsed before the
                bad one are on the exception's `packets`; the decoder is unusable afterwards.
        """
        chunks = self._chunks
        if chunks:
            chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(chunks)
            chunks.clear()
            self._have = self._need = 0
        out: list[Any] = []
        append = out.append
        n = len(data)
        o = 0
        topics = self._topics
        version = self.version
        limit = self.max_packet_size
        try:
            while o < n:
                start = o
                if n - o < 2:
                    break
                first = data[o]
                # Remaining Length (2.1.4), inlined for the common one- and two-byte cases.
                b = data[o + 1]
                if b < 0x80:
                    length = b
                    o += 2
                else:
                    length, o = _long_length(data, o + 1, n)
                    if o < 0:  # the length itself is still incomplete
                        o = start
                        break
                end = o + length
                if end - start > limit:
                    raise PacketTooLarge(end - start, limit)
                if end > n:
                    if first >> 4 != 3:
                        _check_fixed_flags(first)  # refuse a bad header before the body
                    self._need = end - start
                    o = start
                    break
                ptype = first >> 4
                if ptype == 3:
                    qos = (first >> 1) & 3
                    if qos == 3:
                        raise MalformedPacket("PUBLISH with QoS 3 (MQTT-3.3.1-4)")
                    if not qos and first & 8:
                        raise MalformedPacket("PUBLISH with QoS 0 and DUP set (MQTT-3.3.1-2)")
                    if o + 2 > end:
                        raise MalformedPacket("truncated PUBLISH topic")
                    te = o + 2 + ((data[o] << 8) | data[o + 1])
                    if te > end:
                        raise MalformedPacket("PUBLISH topic runs past the end of the packet")
                    raw = data[o + 2 : te]
                    if topics is None:
                        topics = self._topics = {}
                    topic = topics.get(raw)
                    if topic is None:
                        topic = check_utf8(raw, "topic name")
                        if len(topics) >= _TOPIC_CACHE_MAX:
                            topics.clear()
                        topics[raw] = topic
                    o = te
                    pid = 0
                    if qos:
                        if o + 2 > end:
                            raise MalformedPacket("truncated PUBLISH packet identifier")
                        pid = (data[o] << 8) | data[o + 1]
                        if not pid:
                            raise MalformedPacket("PUBLISH packet identifier 0 (MQTT-2.2.1-3)")
                        o += 2
                    props = None
                    if version == MQTT_5:
                        if o < end and data[o] == 0:
                            o += 1
                        else:
                            props, o = decode_properties(data, o, end, PacketType.PUBLISH)
                            if not props:
                                props = None
                    append(
                        Publish(
                            topic,
                            data[o:end],
                            qos,
                            bool(first & 1),
                            bool(first & 8),
                            pid,
                            props,
                        )
                    )
                else:
                    _check_fixed_flags(first)
                    if ptype == 1:
                        packet = _decode_connect(data, o, end)
                        self.version = version = packet.protocol_level
                    else:
                        packet = _DECODERS[ptype](data, o, end, version)
                    append(packet)
                o = end
        except RemoteProtocolError as exc:
            exc.packets = out
            raise
        if o < n:
            rest = data[o:] if o else data
            if not self._need:
                self._need = len(rest) + 1  # the header itself is incomplete
            chunks.append(rest)
            self._have = len(rest)
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return self._have


def _check_fixed_flags(first: int) -> None:
    ptype = first >> 4
    if ptype == 0:
        raise MalformedPacket("packet type 0 is reserved (2.1.2)")
    if ptype != 3 and _FIXED_FLAGS_BY_INT[ptype] != first & 0x0F:
        raise MalformedPacket(
            f"{PacketType(ptype).name} with reserved flag bits 0x{first & 0x0F:X} (MQTT-2.1.3-1)"
        )


def _long_length(data: bytes, o: int, n: int) -> tuple[int, int]:
    """A Remaining Length of two to four bytes; (-1, -1) when more bytes are needed."""
    value = 0
    shift = 0
    for _ in range(4):
        if o >= n:
            return -1, -1
        b = data[o]
        o += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, o
        shift += 7
    raise MalformedPacket("Remaining Length longer than four bytes (1.5.5)")


def _decode_connect(data: bytes, o: int, end: int) -> Connect:
    name_raw, o = read_binary(data, o, end)
    if name_raw not in (b"MQTT", b"MQIsdp"):
        raise ProtocolViolation(f"unknown protocol name {name_raw[:16]!r} (MQTT-3.1.2-1)")
    if o >= end:
        raise MalformedPacket("truncated CONNECT")
    level = data[o]
    o += 1
    supported = level == MQTT_31 if name_raw == b"MQIsdp" else level in (MQTT_311, MQTT_5)
    if not supported:
        raise UnsupportedProtocolVersion(level)
    if o + 3 > end:
        raise MalformedPacket("truncated CONNECT")
    flags = data[o]
    keepalive = (data[o + 1] << 8) | data[o + 2]
    o += 3
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set (MQTT-3.1.2-3)")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise MalformedPacket("Will QoS 3 (MQTT-3.1.2-12)")
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("Will QoS or Will Retain set without the Will Flag (MQTT-3.1.2-11)")
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if has_password and not has_username and level != MQTT_5:
        raise MalformedPacket("password without a user name (3.1.1 MQTT-3.1.2-22)")
    props: Properties = {}
    if level == MQTT_5:
        props, o = decode_properties(data, o, end, PacketType.CONNECT)
    client_id, o = read_utf8(data, o, end, "client identifier")
    will = None
    if will_flag:
        will_props: Properties = {}
        if level == MQTT_5:
            will_props, o = decode_properties(data, o, end, "WILL")
        will_topic, o = read_utf8(data, o, end, "will topic")
        will_payload, o = read_binary(data, o, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if has_username:
        username, o = read_utf8(data, o, end, "user name")
    if has_password:
        password, o = read_binary(data, o, end)
    if o != end:
        raise MalformedPacket("bytes after the end of CONNECT")
    return Connect(level, client_id, bool(flags & 0x02), keepalive, will, username, password, props)


def _decode_connack(data: bytes, o: int, end: int, version: int) -> Connack:
    if o + 2 > end:
        raise MalformedPacket("truncated CONNACK")
    ack_flags = data[o]
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flags set (MQTT-3.2.2-1)")
    code = data[o + 1]
    o += 2
    props: Properties = {}
    if version == MQTT_5:
        props, o = decode_properties(data, o, end, PacketType.CONNACK)
    if o != end:
        raise MalformedPacket("bytes after the end of CONNACK")
    return Connack(bool(ack_flags & 1), code, props)


def _decode_ack(ptype: int) -> Any:
    cls = _ACK_CLASSES[ptype]
    allowed = PUBACK_REASONS if ptype in (PacketType.PUBACK, PacketType.PUBREC) else PUBREL_REASONS

    def decode(data: bytes, o: int, end: int, version: int) -> _Ack:
        if end - o == 2:  # the usual case in every version
            pid = (data[o] << 8) | data[o + 1]
            if not pid:
                raise MalformedPacket("packet identifier 0 (MQTT-2.2.1-3)")
            return cls(pid)  # 3.4.2.1: no reason code means 0x00
        pid, o = read_u16(data, o, end)
        if not pid:
            raise MalformedPacket("packet identifier 0 (MQTT-2.2.1-3)")
        if version != MQTT_5:
            raise MalformedPacket(f"{cls.__name__} longer than 2 bytes")
        reason = data[o]
        if reason not in allowed:
            raise ProtocolViolation(f"reason code 0x{reason:02X} is not one {cls.__name__} has")
        o += 1
        props: Properties = {}
        if o < end:
            props, o = decode_properties(data, o, end, ptype)
        if o != end:
            raise MalformedPacket(f"bytes after the end of {cls.__name__}")
        return cls(pid, reason, props)

    return decode


def _decode_subscribe(data: bytes, o: int, end: int, version: int) -> Subscribe:
    pid, o = read_u16(data, o, end)
    if not pid:
        raise MalformedPacket("packet identifier 0 (MQTT-2.2.1-3)")
    props: Properties = {}
    if version == MQTT_5:
        props, o = decode_properties(data, o, end, PacketType.SUBSCRIBE)
    subs: list[SubscriptionRequest] = []
    while o < end:
        topic_filter, o = read_utf8(data, o, end, "topic filter")
        if o >= end:
            raise MalformedPacket("SUBSCRIBE topic filter without options")
        opts = data[o]
        o += 1
        qos = opts & 3
        if qos == 3:
            raise MalformedPacket("SUBSCRIBE with QoS 3 (MQTT-3-8.3-4)")
        if version == MQTT_5:
            if opts & 0xC0:
                raise MalformedPacket("SUBSCRIBE options reserved bits set (MQTT-3.8.3-5)")
            retain_handling = (opts >> 4) & 3
            if retain_handling == 3:
                raise ProtocolViolation("Retain Handling 3 is reserved (3.8.3.1)")
            subs.append(
                SubscriptionRequest(
                    topic_filter, qos, bool(opts & 4), bool(opts & 8), retain_handling
                )
            )
        else:
            if opts & 0xFC:
                raise MalformedPacket("SUBSCRIBE requested QoS reserved bits set (3.1.1 3.8.3)")
            subs.append(SubscriptionRequest(topic_filter, qos))
    if not subs:
        raise ProtocolViolation("SUBSCRIBE without a topic filter (MQTT-3.8.3-2)")
    return Subscribe(pid, subs, props)


def _decode_suback(data: bytes, o: int, end: int, version: int) -> Suback:
    pid, o = read_u16(data, o, end)
    props: Properties = {}
    if version == MQTT_5:
        props, o = decode_properties(data, o, end, PacketType.SUBACK)
    return Suback(pid, list(data[o:end]), props)


def _decode_unsubscribe(data: bytes, o: int, end: int, version: int) -> Unsubscribe:
    pid, o = read_u16(data, o, end)
    if not pid:
        raise MalformedPacket("packet identifier 0 (MQTT-2.2.1-3)")
    props: Properties = {}
    if version == MQTT_5:
        props, o = decode_properties(data, o, end, PacketType.UNSUBSCRIBE)
    filters: list[str] = []
    while o < end:
        topic_filter, o = read_utf8(data, o, end, "topic filter")
        filters.append(topic_filter)
    if not filters:
        raise ProtocolViolation("UNSUBSCRIBE without a topic filter (MQTT-3.10.3-2)")
    return Unsubscribe(pid, filters, props)


def _decode_unsuback(data: bytes, o: int, end: int, version: int) -> Unsuback:
    pid, o = read_u16(data, o, end)
    if version != MQTT_5:
        if o != end:
            raise MalformedPacket("UNSUBACK longer than 2 bytes")
        return Unsuback(pid)
    props, o = decode_properties(data, o, end, PacketType.UNSUBACK)
    return Unsuback(pid, list(data[o:end]), props)


def _decode_empty(cls: type) -> Any:
    def decode(data: bytes, o: int, end: int, version: int) -> Any:
        if o != end:
            raise MalformedPacket(f"{cls.__name__} with a non-zero Remaining Length")
        return cls()

    return decode


def _decode_disconnect(data: bytes, o: int, end: int, version: int) -> Disconnect:
    if version != MQTT_5:
        if o != end:
            raise MalformedPacket("DISCONNECT with a non-zero Remaining Length (3.1.1 3.14)")
        return Disconnect()
    if o == end:
        return Disconnect()
    reason = data[o]
    if reason not in DISCONNECT_REASONS:
        raise ProtocolViolation(f"reason code 0x{reason:02X} is not one DISCONNECT has")
    o += 1
    props: Properties = {}
    if o < end:
        props, o = decode_properties(data, o, end, PacketType.DISCONNECT)
    if o != end:
        raise MalformedPacket("bytes after the end of DISCONNECT")
    return Disconnect(reason, props)


def _decode_auth(data: bytes, o: int, end: int, version: int) -> Auth:
    if version != MQTT_5:
        raise MalformedPacket("packet type 15 is reserved before MQTT 5 (3.1.1 2.2.1)")
    if o == end:
        return Auth()
    reason = data[o]
    o += 1
    props: Properties = {}
    if o < end:
        props, o = decode_properties(data, o, end, PacketType.AUTH)
    if o != end:
        raise MalformedPacket("bytes after the end of AUTH")
    return Auth(reason, props)


def _not_here(data: bytes, o: int, end: int, version: int) -> Any:
    raise MalformedPacket("CONNECT decoded out of place")  # pragma: no cover


_DECODERS: dict[int, Any] = {
    PacketType.CONNECT: _not_here,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBACK: _decode_ack(PacketType.PUBACK),
    PacketType.PUBREC: _decode_ack(PacketType.PUBREC),
    PacketType.PUBREL: _decode_ack(PacketType.PUBREL),
    PacketType.PUBCOMP: _decode_ack(PacketType.PUBCOMP),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _decode_empty(Pingreq),
    PacketType.PINGRESP: _decode_empty(Pingresp),
    PacketType.DISCONNECT: _decode_disconnect,
    PacketType.AUTH: _decode_auth,
}
_DECODERS = {int(k): v for k, v in _DECODERS.items()}


# -- encoding ----------------------------------------------------------------------------------


def _packet(first: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((first, n)) + body
    return bytes((first,)) + varint(n) + body


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def encode_publish(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties: bytes | None = None,
) -> bytes:
    """A PUBLISH; `properties` is an encoded property section (MQTT 5 only, else None)."""
    if qos not in (0, 1, 2):
        raise LocalProtocolError(f"QoS {qos}")
    if qos and not 0 < packet_id <= 0xFFFF:
        raise LocalProtocolError(f"PUBLISH QoS {qos} needs a packet identifier")
    raw = topic.encode("utf-8") if isinstance(topic, str) else topic
    parts = [U16(len(raw)), raw]
    if qos:
        parts.append(U16(packet_id))
    if properties is not None:
        parts.append(properties)
    parts.append(payload)
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    return _packet(first, b"".join(parts))


def encode_ack(
    ptype: int, packet_id: int, version: int, reason: int = 0, props: Properties | None = None
) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (3.4-3.7), in its shortest form."""
    first = (ptype << 4) | (2 if ptype == PacketType.PUBREL else 0)
    if version != MQTT_5 or (not reason and not props):
        return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
    body = U16(packet_id) + bytes((reason,))
    if props:
        body += encode_properties(props)
    return _packet(first, body)


def _encode_connect(p: Connect, version: int) -> bytes:
    level = p.protocol_level
    name = b"MQIsdp" if level == MQTT_31 else b"MQTT"
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        flags |= 0x40
    parts = [binary(name), bytes((level, flags)), U16(p.keepalive)]
    if level == MQTT_5:
        parts.append(encode_properties(p.properties))
    parts.append(utf8(p.client_id))
    if will is not None:
        if level == MQTT_5:
            parts.append(encode_properties(will.properties))
        parts.append(utf8(will.topic))
        parts.append(binary(will.payload))
    if p.username is not None:
        parts.append(utf8(p.username))
    if p.password is not None:
        parts.append(binary(p.password))
    return _packet(0x10, b"".join(parts))


def _encode_connack(p: Connack, version: int) -> bytes:
    body = bytes((1 if p.session_present else 0, p.reason_code))
    if version == MQTT_5:
        body += encode_properties(p.properties)
    return _packet(0x20, body)


def _encode_publish(p: Publish, version: int) -> bytes:
    props = encode_properties(p.properties) if version == MQTT_5 else None
    return encode_publish(p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, props)


def _encode_ack_packet(ptype: int) -> Any:
    def enc(p: _Ack, version: int) -> bytes:
        return encode_ack(ptype, p.packet_id, version, p.reason_code, p.properties)

    return enc


def _encode_subscribe(p: Subscribe, version: int) -> bytes:
    parts = [U16(p.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(p.properties))
    for s in p.subscriptions:
        parts.append(utf8(s.topic_filter))
        opts = s.qos
        if version == MQTT_5:
            opts |= (
                (4 if s.no_local else 0)
                | (8 if s.retain_as_published else 0)
                | (s.retain_handling << 4)
            )
        parts.append(bytes((opts,)))
    return _packet(0x82, b"".join(parts))


def _encode_suback(p: Suback, version: int) -> bytes:
    props = encode_properties(p.properties) if version == MQTT_5 else b""
    return _packet(0x90, U16(p.packet_id) + props + bytes(p.reason_codes))


def _encode_unsubscribe(p: Unsubscribe, version: int) -> bytes:
    parts = [U16(p.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(p.properties))
    parts.extend(utf8(f) for f in p.topic_filters)
    return _packet(0xA2, b"".join(parts))


def _encode_unsuback(p: Unsuback, version: int) -> bytes:
    if version != MQTT_5:
        return _packet(0xB0, U16(p.packet_id))
    return _packet(0xB0, U16(p.packet_id) + encode_properties(p.properties) + bytes(p.reason_codes))


def _encode_disconnect(p: Disconnect, version: int) -> bytes:
    if version != MQTT_5 or (not p.reason_code and not p.properties):
        return b"\xe0\x00"
    body = bytes((p.reason_code,))
    if p.properties:
        body += encode_properties(p.properties)
    return _packet(0xE0, body)


def _encode_auth(p: Auth, version: int) -> bytes:
    if version != MQTT_5:
        raise LocalProtocolError("AUTH exists only in MQTT 5")
    if not p.reason_code and not p.properties:
        return b"\xf0\x00"
    return _packet(0xF0, bytes((p.reason_code,)) + encode_properties(p.properties))


_ENCODERS: dict[type, Any] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    PubAck: _encode_ack_packet(PacketType.PUBACK),
    PubRec: _encode_ack_packet(PacketType.PUBREC),
    PubRel: _encode_ack_packet(PacketType.PUBREL),
    PubComp: _encode_ack_packet(PacketType.PUBCOMP),
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: lambda p, v: PINGREQ,
    Pingresp: lambda p, v: PINGRESP,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Any, version: int = MQTT_311) -> bytes:
    """Encode any packet for a connection speaking protocol level `version`.

    Raises:
        LocalProtocolError: the packet cannot be encoded (a field out of range).
    """
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise LocalProtocolError(f"not an MQTT packet: {packet!r}")
    data: bytes = encoder(packet, version)
    return data


__all__ += ["NO_PROPERTIES", "PINGREQ", "PINGRESP", "encode_ack"]
