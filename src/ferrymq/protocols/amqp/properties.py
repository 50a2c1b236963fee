"""Basic-class content properties: the property section of a content header frame.

The broker keeps this section as raw bytes and passes it through to consumers untouched
(ARCHITECTURE.md, "Core model"); it decodes it only when something needs a property, so
decoding is written for the common case of few flags set: one int test per absent property.

Section layout (AMQP 0-9-1 4.2.6.1): one or more 16-bit flag words, bit 15 first; bit 0 of a
word says another flag word follows. Then the present properties, in flag order. Only the
first word carries Basic's 14 properties; further words are skipped (their properties, which
no peer defines, would follow ours and are ignored).

Short strings decode with errors="surrogateescape", like everywhere in this codec: hostile
bytes never raise, and encode back to themselves. An empty string is a present property (it
travels as a zero-length short string), None an absent one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ferrymq.protocols.amqp.constants import ReplyCode
from ferrymq.protocols.amqp.errors import CodecError, EncodeError
from ferrymq.protocols.amqp.tables import _table, encode_table

__all__ = ["EMPTY_PROPERTIES", "BasicProperties", "decode_properties", "encode_properties"]

#: The property section with no property set.
EMPTY_PROPERTIES: bytes = b"\x00\x00"

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_U8 = struct.Struct(">B")

_CONTENT_TYPE = 0x8000
_CONTENT_ENCODING = 0x4000
_HEADERS = 0x2000
_DELIVERY_MODE = 0x1000
_PRIORITY = 0x0800
_CORRELATION_ID = 0x0400
_REPLY_TO = 0x0200
_EXPIRATION = 0x0100
_MESSAGE_ID = 0x0080
_TIMESTAMP = 0x0040
_TYPE = 0x0020
_USER_ID = 0x0010
_APP_ID = 0x0008
_CLUSTER_ID = 0x0004
_ANY_PROPERTY = 0xFFFC


@dataclass(slots=True)
class BasicProperties:
    """The 14 Basic properties; None means absent.

    `expiration` is a string of milliseconds, as on the wire; `timestamp` is whole seconds.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


def _bad(text: str) -> CodecError:
    return CodecError(ReplyCode.SYNTAX_ERROR, f"content properties: {text}")


def decode_properties(raw: bytes | memoryview) -> BasicProperties:
    """Decode a property section (flag words and present fields).

    Raises:
        CodecError: 502 SYNTAX_ERROR when the section is truncated or has trailing bytes.
    """
    n = len(raw)
    if n < 2:
        raise _bad("missing property flags")
    flags = (raw[0] << 8) | raw[1]
    o = 2
    more = False
    if flags & 1:  # continuation: skip the further flag words
        word = flags
        while word & 1:
            if o + 2 > n:
                raise _bad("truncated property flags")
            word = (raw[o] << 8) | raw[o + 1]
            more = more or bool(word & 0xFFFE)
            o += 2
    props = BasicProperties()
    if not flags & _ANY_PROPERTY:
        if o != n and not more:
            raise _bad("bytes after the last property")
        return props
    try:
        if flags & _CONTENT_TYPE:
            e = o + 1 + raw[o]
            props.content_type = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _CONTENT_ENCODING:
            e = o + 1 + raw[o]
            props.content_encoding = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _HEADERS:
            if o > n:
                raise _bad("truncated")
            props.headers, o = _table(raw, o, n, 0)
        if flags & _DELIVERY_MODE:
            props.delivery_mode = raw[o]
            o += 1
        if flags & _PRIORITY:
            props.priority = raw[o]
            o += 1
        if flags & _CORRELATION_ID:
            e = o + 1 + raw[o]
            props.correlation_id = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _REPLY_TO:
            e = o + 1 + raw[o]
            props.reply_to = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _EXPIRATION:
            e = o + 1 + raw[o]
            props.expiration = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _MESSAGE_ID:
            e = o + 1 + raw[o]
            props.message_id = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _TIMESTAMP:
            props.timestamp = _U64.unpack_from(raw, o)[0]
            o += 8
        if flags & _TYPE:
            e = o + 1 + raw[o]
            props.type = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _USER_ID:
            e = o + 1 + raw[o]
            props.user_id = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _APP_ID:
            e = o + 1 + raw[o]
            props.app_id = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
        if flags & _CLUSTER_ID:
            e = o + 1 + raw[o]
            props.cluster_id = str(raw[o + 1 : e], "utf-8", "surrogateescape")
            o = e
    except (IndexError, struct.error):
        raise _bad("truncated") from None
    # Slicing never raises, so a short string running past the end shows up only here.
    if o > n:
        raise _bad("truncated")
    if o != n and not more:
        raise _bad("bytes after the last property")
    return props


def _shortstr(value: str, name: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise EncodeError(f"property {name} is longer than 255 bytes")
    return _U8.pack(len(raw)) + raw


def _octet(value: int, name: str) -> bytes:
    if not 0 <= value <= 255:
        raise EncodeError(f"property {name} must be 0..255, not {value}")
    return _U8.pack(value)


def encode_properties(props: BasicProperties) -> bytes:
    """Encode `props` as a property section (one flag word, then the present fields).

    Raises:
        EncodeError: a string is longer than 255 UTF-8 bytes or a number is out of range.
    """
    flags = 0
    parts: list[bytes] = [b""]
    append = parts.append
    if props.content_type is not None:
        flags |= _CONTENT_TYPE
        append(_shortstr(props.content_type, "content_type"))
    if props.content_encoding is not None:
        flags |= _CONTENT_ENCODING
        append(_shortstr(props.content_encoding, "content_encoding"))
    if props.headers is not None:
        flags |= _HEADERS
        append(encode_table(props.headers))
    if props.delivery_mode is not None:
        flags |= _DELIVERY_MODE
        append(_octet(props.delivery_mode, "delivery_mode"))
    if props.priority is not None:
        flags |= _PRIORITY
        append(_octet(props.priority, "priority"))
    if props.correlation_id is not None:
        flags |= _CORRELATION_ID
        append(_shortstr(props.correlation_id, "correlation_id"))
    if props.reply_to is not None:
        flags |= _REPLY_TO
        append(_shortstr(props.reply_to, "reply_to"))
    if props.expiration is not None:
        flags |= _EXPIRATION
        append(_shortstr(props.expiration, "expiration"))
    if props.message_id is not None:
        flags |= _MESSAGE_ID
        append(_shortstr(props.message_id, "message_id"))
    if props.timestamp is not None:
        flags |= _TIMESTAMP
        try:
            append(_U64.pack(props.timestamp))
        except struct.error:
            raise EncodeError(f"property timestamp out of range: {props.timestamp}") from None
    if props.type is not None:
        flags |= _TYPE
        append(_shortstr(props.type, "type"))
    if props.user_id is not None:
        flags |= _USER_ID
        append(_shortstr(props.user_id, "user_id"))
    if props.app_id is not None:
        flags |= _APP_ID
        append(_shortstr(props.app_id, "app_id"))
    if props.cluster_id is not None:
        flags |= _CLUSTER_ID
        append(_shortstr(props.cluster_id, "cluster_id"))
    if not flags:
        return EMPTY_PROPERTIES
    parts[0] = _U16.pack(flags)
    return b"".join(parts)


class _PropertyCodec:
    """Core keeps AMQP's encoding as the canonical one (see core.message.PropertyCodec)."""

    def decode(self, raw: bytes) -> BasicProperties:
        return decode_properties(raw)

    def encode(self, properties: BasicProperties) -> bytes:
        return encode_properties(properties)


PROPERTY_CODEC = _PropertyCodec()
