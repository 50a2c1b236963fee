"""Sans-IO AMQP 0-9-1 framing: bytes <-> frame objects, for both the server and the client.

Theory of operation
-------------------
`FrameDecoder.feed(data)` appends to a buffer and returns every complete frame in order, parsing
the whole buffer in one pass. A partial frame never raises: its bytes are kept (as a list of
chunks, joined once the frame is complete, so a large frame arriving in many reads is not
copied again and again) until `_need` bytes are there. Frame sizes are checked as soon as the
7-byte frame header is in, so an oversized frame fails before it is buffered.

Frames come out as:

    ProtocolHeader(0, 9, 1)              only first, only if the decoder expects one
    MethodFrame(channel, method)         method is Publish/Deliver/Ack/Nack/Reject (hand-written,
                                         the message path) or a pamqp.commands object (the rest)
    ContentHeader(channel, class_id, body_size, properties)   properties = the raw property
                                         section, kept as received (see properties.py)
    ContentBody(channel, payload)
    Heartbeat(channel)

Assembling method + header + bodies into a message, and checking frame order, is the
connection state machine's job, not the codec's.

Control methods are decoded into pamqp's command classes (`pamqp.commands.Queue.Declare`, ...)
but with our own field decoding, driven by pamqp's per-class field list: pamqp's own unmarshal
accepts truncated short strings silently, uses its own field-table flavour (sorted keys, no
`bytes`, timestamps guessed as milliseconds) and validates names in `__init__`, which is the
state machine's business. Objects are made with `cls.__new__` so no pamqp validation runs on
decode; encoding does not validate either.

Errors (CodecError, reply code for Connection.Close):

    frame-end octet not 0xCE, frame larger than max_frame_size, unknown frame type,
    header/method frame shorter than its fixed part, heartbeat with a payload ..... 501
    method arguments truncated, trailing bytes, bad field table inside them ....... 501
        (not the spec's 502 SYNTAX_ERROR: RabbitMQ answers 501 "cannot decode" from
         rabbit_misc:frame_error in its generated decode_method_fields, and the integration
         tests, which also run against RabbitMQ, expect 501. The class and method ids are
         set all the same.)
    heartbeat on a channel other than 0 ........................................... 505
        (the spec, 4.2.7, says 501; RabbitMQ's rabbit_reader:handle_frame answers
         unexpected_frame, and the integration tests expect 505)
    unknown class/method id ....................................................... 540
        (RabbitMQ's reader crashes on exit({unknown_method_id, ...}) from
         rabbit_framing:lookup_method_name and drops the socket without a Close; we send
         Connection.Close 540 NOT_IMPLEMENTED instead, which tells the client why)

After a CodecError the decoder's state is unspecified; the connection is closing anyway.

Strings: short and long strings decode as UTF-8 with errors="surrogateescape", so any bytes a
hostile client sends decode without raising and encode back to the same bytes (RabbitMQ
rejects malformed UTF-8 in control-method short strings with 501; we leave such policy to the
state machine, which can check with `s.encode("utf-8")`). Encoding a short string over 255
bytes raises EncodeError (a ValueError).

Encoding: `encode_method` takes hand-written and pamqp objects alike. The message-path
encoders (`encode_deliver`, `encode_publish`, ...) build the method frame, the content header
and the body frames in one `b"".join`, splitting the body so every frame, overhead included,
is at most `frame_max` bytes (0 = no limit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from pamqp import commands as _commands

from ferrymq.protocols.amqp.constants import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    BASIC_RETURN,
    CLASS_BASIC,
    FRAME_END,
    FRAME_OVERHEAD,
    PROTOCOL_HEADER,
    ReplyCode,
)
from ferrymq.protocols.amqp.errors import CodecError, EncodeError, ProtocolHeaderMismatch
from ferrymq.protocols.amqp.tables import _table, encode_table

__all__ = [
    "Ack",
    "CodecError",
    "ContentBody",
    "ContentHeader",
    "Deliver",
    "EncodeError",
    "FrameDecoder",
    "Heartbeat",
    "MethodFrame",
    "Nack",
    "ProtocolHeader",
    "ProtocolHeaderMismatch",
    "Publish",
    "Reject",
    "encode_ack",
    "encode_content",
    "encode_deliver",
    "encode_get_ok",
    "encode_heartbeat",
    "encode_method",
    "encode_nack",
    "encode_publish",
    "encode_return",
    "method_ids",
]

# --------------------------------------------------------------------------------------------
# Frame objects. Plain slotted dataclasses, not frozen: a frozen dataclass's __init__ goes
# through object.__setattr__, which triples the cost of the objects made per message.


@dataclass(slots=True)
class ProtocolHeader:
    """The 8-byte protocol header (AMQP 0-9-1 4.2.2)."""

    major: int
    minor: int
    revision: int


@dataclass(slots=True)
class MethodFrame:
    """A method frame; `method` is a fast-path object or a pamqp.commands instance."""

    channel: int
    method: Any


@dataclass(slots=True)
class ContentHeader:
    """A content header frame; `properties` is the raw property section (flags + fields)."""

    channel: int
    class_id: int
    body_size: int
    properties: bytes


@dataclass(slots=True)
class ContentBody:
    """A content body frame."""

    channel: int
    payload: bytes


@dataclass(slots=True)
class Heartbeat:
    """A heartbeat frame (always channel 0 once decoded)."""

    channel: int = 0


# --------------------------------------------------------------------------------------------
# The message-path methods, hand-written. Class attributes mirror pamqp's (`name`, `index`,
# `synchronous`) so a state machine can treat both kinds alike.


@dataclass(slots=True)
class Publish:
    """Basic.Publish (60, 40)."""

    name: ClassVar[str] = "Basic.Publish"
    index: ClassVar[int] = BASIC_PUBLISH
    synchronous: ClassVar[bool] = False

    exchange: str
    routing_key: str
    mandatory: bool = False
    immediate: bool = False


@dataclass(slots=True)
class Deliver:
    """Basic.Deliver (60, 60)."""

    name: ClassVar[str] = "Basic.Deliver"
    index: ClassVar[int] = BASIC_DELIVER
    synchronous: ClassVar[bool] = False

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str


@dataclass(slots=True)
class Ack:
    """Basic.Ack (60, 80); sent by consumers, and by the broker as a publisher confirm."""

    name: ClassVar[str] = "Basic.Ack"
    index: ClassVar[int] = BASIC_ACK
    synchronous: ClassVar[bool] = False

    delivery_tag: int
    multiple: bool = False


@dataclass(slots=True)
class Nack:
    """Basic.Nack (60, 120), RabbitMQ's extension."""

    name: ClassVar[str] = "Basic.Nack"
    index: ClassVar[int] = BASIC_NACK
    synchronous: ClassVar[bool] = False

    delivery_tag: int
    multiple: bool = False
    requeue: bool = True


@dataclass(slots=True)
class Reject:
    """Basic.Reject (60, 90)."""

    name: ClassVar[str] = "Basic.Reject"
    index: ClassVar[int] = BASIC_REJECT
    synchronous: ClassVar[bool] = False

    delivery_tag: int
    requeue: bool = True


def method_ids(method: Any) -> tuple[int, int]:
    """(class_id, method_id) of a fast-path or pamqp method object, e.g. for Channel.Close."""
    index: int = method.index
    return index >> 16, index & 0xFFFF


# --------------------------------------------------------------------------------------------
# Structs

_FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_CONTENT_FIELDS = struct.Struct(">HHQ")  # class id, weight, body size
_ACK = struct.Struct(">BHIIQB")  # frame head, index, delivery tag, bits
_ACK_FRAME_END = b"\xce"
# Method frame head + index + first short-string length.
_METHOD_HEAD_LEN8 = struct.Struct(">BHIIB")
# Method frame head + index + reserved short (ticket) + exchange length (Basic.Publish).
_PUBLISH_HEAD = struct.Struct(">BHIIHB")
# Method frame head + index + delivery tag + redelivered + exchange length (Basic.GetOk).
_GET_OK_HEAD = struct.Struct(">BHIIQBB")
# Method frame head + index + reply code + reply text length (Basic.Return).
_RETURN_HEAD = struct.Struct(">BHIIHB")
_DELIVER_MID = struct.Struct(">QBB")  # delivery tag, redelivered, exchange length
# Frame end of the method frame, then the content header frame up to its properties.
_HEADER_AFTER_METHOD = struct.Struct(">BBHIHHQ")
# Frame end of the previous frame, then a body frame's head.
_BODY_AFTER = struct.Struct(">BBHI")
_LEN8 = tuple(bytes((i,)) for i in range(256))  # single-byte lengths without a pack call
_END = b"\xce"
_HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


# --------------------------------------------------------------------------------------------
# Control methods: pamqp command classes, with our field codec driven by pamqp's field lists.

_SHORTSTR, _LONGSTR, _OCTET, _SHORT, _LONG, _LONGLONG, _TABLE, _BITS = range(8)
_KINDS = {
    "shortstr": _SHORTSTR,
    "longstr": _LONGSTR,
    "octet": _OCTET,
    "short": _SHORT,
    "long": _LONG,
    "longlong": _LONGLONG,
    "timestamp": _LONGLONG,
    "table": _TABLE,
}
_Plan = tuple[tuple[int, Any], ...]


def _compile(cls: Any) -> _Plan:
    """Turn pamqp's field list into (kind, name) steps; runs of bits share octets of 8."""
    plan: list[tuple[int, Any]] = []
    bits: list[str] | None = None
    for name in cls.__slots__:
        kind = cls.amqp_type(name)
        if kind == "bit":
            if bits is None or len(bits) == 8:
                bits = []
                plan.append((_BITS, bits))
            bits.append(name)
        else:
            bits = None
            plan.append((_KINDS[kind], name))
    return tuple((k, tuple(v) if k == _BITS else v) for k, v in plan)


_PAMQP: dict[int, tuple[Any, _Plan]] = {
    index: (cls, _compile(cls)) for index, cls in _commands.INDEX_MAPPING.items()
}


def _decode_pamqp(index: int, payload: bytes) -> Any:
    entry = _PAMQP.get(index)
    if entry is None:
        raise CodecError(
            ReplyCode.NOT_IMPLEMENTED,
            f"unknown method {index >> 16}.{index & 0xFFFF}",
            index >> 16,
            index & 0xFFFF,
        )
    cls, plan = entry
    method = cls.__new__(cls)
    o = 0
    n = len(payload)
    try:
        for kind, name in plan:
            if kind == _SHORTSTR:
                e = o + 1 + payload[o]
                setattr(method, name, str(payload[o + 1 : e], "utf-8", "surrogateescape"))
                o = e
            elif kind == _BITS:
                octet = payload[o]
                o += 1
                for i, bit_name in enumerate(name):
                    setattr(method, bit_name, bool(octet >> i & 1))
            elif kind == _SHORT:
                setattr(method, name, _U16.unpack_from(payload, o)[0])
                o += 2
            elif kind == _TABLE:
                value, o = _table(payload, o, n, 0)
                setattr(method, name, value)
            elif kind == _LONG:
                setattr(method, name, _U32.unpack_from(payload, o)[0])
                o += 4
            elif kind == _LONGLONG:
                setattr(method, name, _U64.unpack_from(payload, o)[0])
                o += 8
            elif kind == _OCTET:
                setattr(method, name, payload[o])
                o += 1
            else:  # _LONGSTR
                e = o + 4 + _U32.unpack_from(payload, o)[0]
                setattr(method, name, str(payload[o + 4 : e], "utf-8", "surrogateescape"))
                o = e
    except (IndexError, struct.error):
        o = n + 1
    except CodecError as exc:  # a bad field table inside the arguments
        raise _bad_arguments(index, exc.text) from None
    if o != n:
        raise _bad_arguments(index, "truncated arguments" if o > n else "trailing bytes")
    return method


def _bad_arguments(index: int, text: str) -> CodecError:
    class_id, method_id = index >> 16, index & 0xFFFF
    entry = _PAMQP.get(index)
    name = entry[0].name if entry else f"{class_id}.{method_id}"
    return CodecError(ReplyCode.FRAME_ERROR, f"cannot decode {name}: {text}", class_id, method_id)


def _str_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise EncodeError(f"expected a string, not {type(value).__name__}")


def _encode_pamqp(method: Any) -> bytes:
    """Payload (method index + arguments) of a pamqp command; None fields encode as zero."""
    index = getattr(method, "index", None)
    entry = _PAMQP.get(index) if isinstance(index, int) else None
    if entry is None or not isinstance(method, entry[0]):
        raise EncodeError(f"not an AMQP method: {method!r:.80}")
    parts = [_U32.pack(index)]
    append = parts.append
    for kind, name in entry[1]:
        if kind == _BITS:
            octet = 0
            for i, bit_name in enumerate(name):
                if getattr(method, bit_name, False):
                    octet |= 1 << i
            append(_LEN8[octet])
            continue
        value = getattr(method, name, None)
        try:
            if kind == _SHORTSTR:
                raw = _str_bytes(value)
                append(_LEN8[len(raw)] if len(raw) < 256 else _too_long(name, raw))
                append(raw)
            elif kind == _TABLE:
                append(encode_table(value))
            elif kind == _LONGSTR:
                raw = _str_bytes(value)
                append(_U32.pack(len(raw)))
                append(raw)
            elif kind == _SHORT:
                append(_U16.pack(value or 0))
            elif kind == _LONG:
                append(_U32.pack(value or 0))
            elif kind == _LONGLONG:
                append(_U64.pack(value or 0))
            else:  # _OCTET
                append(_U8.pack(value or 0))
        except struct.error:
            raise EncodeError(f"{method.name}.{name} out of range: {value!r}") from None
    return b"".join(parts)


def _too_long(name: str, raw: bytes) -> bytes:
    raise EncodeError(f"{name} is {len(raw)} bytes; a short string holds at most 255")


# --------------------------------------------------------------------------------------------
# Fast-path decoders: (buf, offset after the method index, offset of the frame-end octet).
# They read straight from the receive buffer; IndexError / struct.error mean truncation, and a
# final offset other than `end` means the arguments ran past or stopped short of the payload.


# Basic.Publish's exchange and routing key, decoded, keyed by their raw bytes (length octets
# included). Publishers repeat the same few names, and a dict hit is cheaper than two decodes;
# the cache is cleared when full so unique names (RPC replies) cannot grow it.
_NAMES: dict[bytes, tuple[str, str]] = {}


def _names(buf: bytes, o: int, e: int, f: int) -> tuple[str, str]:
    names = (
        buf[o + 1 : e].decode("utf-8", "surrogateescape"),
        buf[e + 1 : f].decode("utf-8", "surrogateescape"),
    )
    if len(_NAMES) >= 1024:
        _NAMES.clear()
    _NAMES[buf[o:f]] = names
    return names


def _decode_deliver(buf: bytes, o: int, end: int) -> Deliver:
    e = o + 1 + buf[o]
    consumer_tag = buf[o + 1 : e].decode("utf-8", "surrogateescape")
    delivery_tag, bits, exlen = _DELIVER_MID.unpack_from(buf, e)
    o = e + 10
    e = o + exlen
    exchange = buf[o:e].decode("utf-8", "surrogateescape")
    o = e + 1 + buf[e]
    routing_key = buf[e + 1 : o].decode("utf-8", "surrogateescape")
    if o != end:
        raise IndexError
    return Deliver(consumer_tag, delivery_tag, bits & 1 != 0, exchange, routing_key)


def _decode_ack(buf: bytes, o: int, end: int) -> Ack:
    if o + 9 != end:
        raise IndexError
    return Ack(_U64.unpack_from(buf, o)[0], buf[o + 8] & 1 != 0)


def _decode_nack(buf: bytes, o: int, end: int) -> Nack:
    if o + 9 != end:
        raise IndexError
    bits = buf[o + 8]
    return Nack(_U64.unpack_from(buf, o)[0], bits & 1 != 0, bits & 2 != 0)


def _decode_reject(buf: bytes, o: int, end: int) -> Reject:
    if o + 9 != end:
        raise IndexError
    return Reject(_U64.unpack_from(buf, o)[0], buf[o + 8] & 1 != 0)


_FAST_DECODERS: dict[int, Any] = {
    BASIC_DELIVER: _decode_deliver,
    BASIC_ACK: _decode_ack,
    BASIC_NACK: _decode_nack,
    BASIC_REJECT: _decode_reject,
}


# --------------------------------------------------------------------------------------------
# The decoder


def _frame_error(text: str) -> CodecError:
    return CodecError(ReplyCode.FRAME_ERROR, text)


class FrameDecoder:
    """Incremental frame decoder for one connection (either side).

    Args:
        expect_protocol_header: True on the server side: the first 8 bytes must be
            `PROTOCOL_HEADER` (yielding `ProtocolHeader(0, 9, 1)`), else
            `ProtocolHeaderMismatch` is raised.
        max_frame_size: largest accepted frame, 8 octets of overhead included; the connection
            lowers or raises it after Connection.Tune. 0 means no limit.
    """

    __slots__ = ("_chunks", "_expect_header", "_have", "_need", "max_frame_size")

    def __init__(self, *, expect_protocol_header: bool, max_frame_size: int = 131072) -> None:
        self._expect_header = expect_protocol_header
        self.max_frame_size = max_frame_size
        self._chunks: list[bytes] = []  # an incomplete frame, as received
        self._have = 0  # bytes in _chunks
        self._need = 0  # bytes needed before parsing is worth trying again

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add received bytes; return every frame they complete, in order.

        Raises:
            ProtocolHeaderMismatch: the stream does not start with the AMQP 0-9-1 header.
            CodecError: the peer broke the framing (see the module docstring for codes).
        """
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = data
        n = len(buf)
        pos = 0
        frames: list[Any] = []
        if self._expect_header:
            if n < 8:
                self._keep(buf, 0, 8)
                return frames
            if buf[:8] != PROTOCOL_HEADER:
                raise ProtocolHeaderMismatch(buf[:8])
            self._expect_header = False
            frames.append(ProtocolHeader(0, 9, 1))
            pos = 8
        max_payload = self.max_frame_size - FRAME_OVERHEAD if self.max_frame_size > 0 else 1 << 32
        # Globals and attributes bound to locals: this loop runs three times per message.
        append = frames.append
        unpack_header = _FRAME_HEADER.unpack_from
        unpack_u32 = _U32.unpack_from
        unpack_content = _CONTENT_FIELDS.unpack_from
        cached_names = _NAMES.get
        method_frame, publish = MethodFrame, Publish
        content_header, content_body = ContentHeader, ContentBody
        while n - pos >= 7:
            frame_type, channel, size = unpack_header(buf, pos)
            if size > max_payload:
                raise self._oversize(buf, pos, size)
            end = pos + 7 + size  # offset of the frame-end octet
            if end >= n:
                self._keep(buf, pos, 8 + size)
                return frames
            if buf[end] != 0xCE:  # FRAME_END
                raise _frame_error(f"frame end octet is {buf[end]:#04x}, not 0xce")
            start = pos + 7
            if frame_type == 1:
                if size < 4:
                    raise _frame_error(f"method frame of {size} bytes has no method id")
                index = unpack_u32(buf, start)[0]
                if index == 0x003C0028:  # Basic.Publish, inlined: the hottest path
                    try:
                        o = start + 6  # after the method index and reserved-1 (ticket)
                        e = o + 1 + buf[o]
                        f = e + 1 + buf[e]
                        names = cached_names(buf[o:f])
                        if names is None:
                            names = _names(buf, o, e, f)
                        exchange, routing_key = names
                        bits = buf[f]
                        o = f
                    except IndexError:
                        bits = o = -1
                    if o + 1 != end:
                        raise _bad_arguments(index, "truncated arguments")
                    method: Any = publish(exchange, routing_key, bits & 1 != 0, bits & 2 != 0)
                else:
                    decode = _FAST_DECODERS.get(index)
                    if decode is None:
                        method = _decode_pamqp(index, buf[start + 4 : end])
                    else:
                        try:
                            method = decode(buf, start + 4, end)
                        except (IndexError, struct.error):
                            raise _bad_arguments(index, "truncated arguments") from None
                append(method_frame(channel, method))
            elif frame_type == 3:
                append(content_body(channel, buf[start:end]))
            elif frame_type == 2:
                if size < 14:
                    raise _frame_error(f"content header frame of {size} bytes is truncated")
                class_id, _weight, body_size = unpack_content(buf, start)
                append(content_header(channel, class_id, body_size, buf[start + 12 : end]))
            elif frame_type == 8:
                if channel != 0:  # RabbitMQ's code, not the 501 of AMQP 0-9-1 4.2.7
                    raise CodecError(
                        ReplyCode.UNEXPECTED_FRAME, f"heartbeat frame on channel {channel}"
                    )
                if size:
                    raise _frame_error(f"heartbeat frame with a {size}-byte payload")
                append(Heartbeat(0))
            else:
                raise self._unknown_type(buf, pos, frame_type)
            pos = end + 1
        if pos < n:
            self._keep(buf, pos, 8)
        else:
            self._have = 0
        return frames

    def _keep(self, buf: bytes, pos: int, need: int) -> None:
        """Hold back the incomplete tail of `buf` from `pos`; parse again at `need` bytes."""
        rest = buf[pos:] if pos else buf
        self._chunks = [rest]
        self._have = len(rest)
        self._need = need

    def _oversize(self, buf: bytes, pos: int, size: int) -> CodecError:
        if buf[pos : pos + 4] == b"AMQP":  # a server refusing our protocol header
            return ProtocolHeaderMismatch(buf[pos : pos + 8])
        return _frame_error(
            f"frame of {size + FRAME_OVERHEAD} bytes exceeds the maximum of "
            f"{self.max_frame_size} bytes"
        )

    def _unknown_type(self, buf: bytes, pos: int, frame_type: int) -> CodecError:
        if buf[pos : pos + 4] == b"AMQP":
            return ProtocolHeaderMismatch(buf[pos : pos + 8])
        return _frame_error(f"unknown frame type {frame_type}")


# --------------------------------------------------------------------------------------------
# Encoding


def _shortstr(value: str, what: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise EncodeError(f"{what} is {len(raw)} bytes; a short string holds at most 255")
    return raw


def _encode_publish_args(m: Publish) -> bytes:
    ex = _shortstr(m.exchange, "exchange")
    rk = _shortstr(m.routing_key, "routing_key")
    return b"".join(
        (
            b"\x00\x3c\x00\x28\x00\x00",
            _LEN8[len(ex)],
            ex,
            _LEN8[len(rk)],
            rk,
            _LEN8[bool(m.mandatory) | bool(m.immediate) << 1],
        )
    )


def _encode_deliver_args(m: Deliver) -> bytes:
    ct = _shortstr(m.consumer_tag, "consumer_tag")
    ex = _shortstr(m.exchange, "exchange")
    rk = _shortstr(m.routing_key, "routing_key")
    return b"".join(
        (
            b"\x00\x3c\x00\x3c",
            _LEN8[len(ct)],
            ct,
            _DELIVER_MID.pack(m.delivery_tag, bool(m.redelivered), len(ex)),
            ex,
            _LEN8[len(rk)],
            rk,
        )
    )


def _encode_ack_args(m: Ack) -> bytes:
    return _U32.pack(BASIC_ACK) + _U64.pack(m.delivery_tag) + _LEN8[bool(m.multiple)]


def _encode_nack_args(m: Nack) -> bytes:
    bits = bool(m.multiple) | bool(m.requeue) << 1
    return _U32.pack(BASIC_NACK) + _U64.pack(m.delivery_tag) + _LEN8[bits]


def _encode_reject_args(m: Reject) -> bytes:
    return _U32.pack(BASIC_REJECT) + _U64.pack(m.delivery_tag) + _LEN8[bool(m.requeue)]


_FAST_ENCODERS: dict[type, Any] = {
    Publish: _encode_publish_args,
    Deliver: _encode_deliver_args,
    Ack: _encode_ack_args,
    Nack: _encode_nack_args,
    Reject: _encode_reject_args,
}


def encode_method(channel: int, method: Any) -> bytes:
    """A complete method frame for a fast-path object or a pamqp command.

    Raises:
        EncodeError: a field does not fit its wire type, or `method` is not a method.
    """
    fast = _FAST_ENCODERS.get(type(method))
    try:
        payload = fast(method) if fast is not None else _encode_pamqp(method)
        return _FRAME_HEADER.pack(1, channel, len(payload)) + payload + _END
    except struct.error as exc:
        raise EncodeError(f"cannot encode {method!r:.80}: {exc}") from None


def encode_heartbeat() -> bytes:
    """A heartbeat frame (channel 0)."""
    return _HEARTBEAT


def _check_header_fits(properties: bytes, frame_max: int) -> None:
    if frame_max and len(properties) + 12 + FRAME_OVERHEAD > frame_max:
        raise EncodeError(
            f"content header of {len(properties) + 12 + FRAME_OVERHEAD} bytes exceeds "
            f"frame_max {frame_max}"
        )


def _add_body(parts: list[bytes], channel: int, body: bytes, frame_max: int) -> None:
    """Append the frame end of the content header and the body frames."""
    size = len(body)
    if not size:
        parts.append(_END)
        return
    chunk = frame_max - FRAME_OVERHEAD if frame_max else size
    if chunk <= 0:
        raise EncodeError(f"frame_max {frame_max} leaves no room for a body")
    if size <= chunk:
        parts += (_BODY_AFTER.pack(FRAME_END, 3, channel, size), body, _END)
        return
    view = memoryview(body)
    append = parts.append
    for offset in range(0, size, chunk):
        piece = view[offset : offset + chunk]
        append(_BODY_AFTER.pack(FRAME_END, 3, channel, len(piece)))
        append(piece)  # type: ignore[arg-type]  # join takes any buffer
    append(_END)


def encode_content(
    channel: int, properties: bytes, body: bytes, frame_max: int, class_id: int = CLASS_BASIC
) -> bytes:
    """A content header frame then body frames, each at most `frame_max` bytes in total.

    An empty body gives no body frame. `properties` is a raw property section.
    """
    _check_header_fits(properties, frame_max)
    parts = [
        _FRAME_HEADER.pack(2, channel, 12 + len(properties)),
        _CONTENT_FIELDS.pack(class_id, 0, len(body)),
        properties,
    ]
    _add_body(parts, channel, body, frame_max)
    return b"".join(parts)


def encode_deliver(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.Deliver + content header + body frames: the broker's hot path, one join."""
    ct = consumer_tag.encode("utf-8", "surrogateescape")
    ex = exchange.encode("utf-8", "surrogateescape")
    rk = routing_key.encode("utf-8", "surrogateescape")
    size = len(body)
    plen = len(properties)
    if frame_max and plen + 20 > frame_max:
        _check_header_fits(properties, frame_max)
    try:
        parts = [
            _METHOD_HEAD_LEN8.pack(
                1, channel, 16 + len(ct) + len(ex) + len(rk), BASIC_DELIVER, len(ct)
            ),
            ct,
            _DELIVER_MID.pack(delivery_tag, redelivered, len(ex)),
            ex,
            _LEN8[len(rk)],
            rk,
            _HEADER_AFTER_METHOD.pack(FRAME_END, 2, channel, 12 + plen, CLASS_BASIC, 0, size),
            properties,
        ]
    except (struct.error, IndexError):
        raise _encode_failure("Basic.Deliver", consumer_tag, exchange, routing_key) from None
    if size and (not frame_max or size <= frame_max - FRAME_OVERHEAD):
        parts += (_BODY_AFTER.pack(FRAME_END, 3, channel, size), body, _END)
    else:
        _add_body(parts, channel, body, frame_max)
    return b"".join(parts)


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.GetOk + content header + body frames."""
    ex = exchange.encode("utf-8", "surrogateescape")
    rk = routing_key.encode("utf-8", "surrogateescape")
    _check_header_fits(properties, frame_max)
    try:
        parts = [
            _GET_OK_HEAD.pack(
                1, channel, 19 + len(ex) + len(rk), BASIC_GET_OK, delivery_tag, redelivered, len(ex)
            ),
            ex,
            _LEN8[len(rk)],
            rk,
            _U32.pack(message_count),
            _HEADER_AFTER_METHOD.pack(
                FRAME_END, 2, channel, 12 + len(properties), CLASS_BASIC, 0, len(body)
            ),
            properties,
        ]
    except (struct.error, IndexError):
        raise _encode_failure("Basic.GetOk", "", exchange, routing_key) from None
    _add_body(parts, channel, body, frame_max)
    return b"".join(parts)


def encode_return(
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.Return + content header + body frames."""
    text = reply_text.encode("utf-8", "surrogateescape")
    ex = exchange.encode("utf-8", "surrogateescape")
    rk = routing_key.encode("utf-8", "surrogateescape")
    _check_header_fits(properties, frame_max)
    try:
        parts = [
            _RETURN_HEAD.pack(
                1, channel, 9 + len(text) + len(ex) + len(rk), BASIC_RETURN, reply_code, len(text)
            ),
            text,
            _LEN8[len(ex)],
            ex,
            _LEN8[len(rk)],
            rk,
            _HEADER_AFTER_METHOD.pack(
                FRAME_END, 2, channel, 12 + len(properties), CLASS_BASIC, 0, len(body)
            ),
            properties,
        ]
    except (struct.error, IndexError):
        raise _encode_failure("Basic.Return", reply_text, exchange, routing_key) from None
    _add_body(parts, channel, body, frame_max)
    return b"".join(parts)


def encode_publish(
    channel: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    properties: bytes,
    body: bytes,
    frame_max: int,
    immediate: bool = False,
) -> bytes:
    """Basic.Publish + content header + body frames (the client's hot path)."""
    ex = exchange.encode("utf-8", "surrogateescape")
    rk = routing_key.encode("utf-8", "surrogateescape")
    _check_header_fits(properties, frame_max)
    try:
        parts = [
            _PUBLISH_HEAD.pack(1, channel, 9 + len(ex) + len(rk), BASIC_PUBLISH, 0, len(ex)),
            ex,
            _LEN8[len(rk)],
            rk,
            _LEN8[bool(mandatory) | bool(immediate) << 1],
            _HEADER_AFTER_METHOD.pack(
                FRAME_END, 2, channel, 12 + len(properties), CLASS_BASIC, 0, len(body)
            ),
            properties,
        ]
    except (struct.error, IndexError):
        raise _encode_failure("Basic.Publish", "", exchange, routing_key) from None
    _add_body(parts, channel, body, frame_max)
    return b"".join(parts)


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A Basic.Ack frame (consumer ack, or publisher confirm from the broker)."""
    try:
        return _ACK.pack(1, channel, 13, BASIC_ACK, delivery_tag, bool(multiple)) + _END
    except struct.error:
        raise EncodeError(f"delivery tag out of range: {delivery_tag}") from None


def encode_nack(channel: int, delivery_tag: int, multiple: bool, requeue: bool = True) -> bytes:
    """A Basic.Nack frame."""
    bits = bool(multiple) | bool(requeue) << 1
    try:
        return _ACK.pack(1, channel, 13, BASIC_NACK, delivery_tag, bits) + _END
    except struct.error:
        raise EncodeError(f"delivery tag out of range: {delivery_tag}") from None


def _encode_failure(what: str, *strings: str) -> EncodeError:
    for s in strings:
        if len(s.encode("utf-8", "surrogateescape")) > 255:
            return EncodeError(f"{what}: {s[:40]!r}... is longer than a short string (255 bytes)")
    return EncodeError(f"{what}: a numeric field is out of range")
