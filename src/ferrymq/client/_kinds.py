"""Which message kind: from a received content-type, or from a JMS 2.0 body.

A received message's kind comes from its content-type (see _message for the table), peeked at
without decoding the other properties; the rest are decoded on first use. make_message picks
the kind for a body handed to send(), as JMSProducer.send(destination, body) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferrymq.client._bodies import BytesMessage, MapMessage, StreamMessage
from ferrymq.client._message import (
    CT_BYTES,
    CT_JSON,
    CT_MAP,
    CT_MESSAGE,
    CT_PICKLE,
    CT_STREAM,
    Message,
    ObjectMessage,
    TextMessage,
    _init_received,
)
from ferrymq.protocols.amqp.properties import decode_properties

__all__ = ["make_message", "message_from_delivery"]


def _content_type(raw: bytes) -> str | None:
    """Peek at content-type (the first property) without decoding the rest."""
    if len(raw) < 3 or not raw[0] & 0x80:
        return None
    if raw[1] & 1:  # more flag words follow: rare, decode in full
        return decode_properties(raw).content_type
    return raw[3 : 3 + raw[2]].decode("utf-8", "replace")


def message_from_delivery(
    raw_properties: bytes,
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    redelivered: bool,
    allow_pickle: bool = False,
) -> Message:
    """Build the received message of the right kind (see the module docstring)."""
    ctype = _content_type(raw_properties)
    msg: Message
    if ctype is None or ctype == CT_BYTES:
        msg = BytesMessage.__new__(BytesMessage)
        _init_received(msg)
        msg._buf = bytearray(body)
        msg._pos = 0
        msg._reading = True
    elif ctype.startswith("text/"):
        text = TextMessage.__new__(TextMessage)
        _init_received(text)
        text._text = None
        text._data = body
        text._charset = "utf-8"
        if "charset=" in ctype:
            charset = ctype.split("charset=", 1)[1].split(";", 1)[0].strip().strip('"')
            text._charset = charset or "utf-8"
        msg = text
    elif ctype == CT_MAP:
        msg = MapMessage.__new__(MapMessage)
        _init_received(msg)
        msg._map = {}
        msg._data = body
    elif ctype == CT_STREAM:
        msg = StreamMessage.__new__(StreamMessage)
        _init_received(msg)
        msg._items = []
        msg._data = body
        msg._pos = 0
        msg._reading = True
    elif ctype in (CT_JSON, CT_PICKLE):
        obj = ObjectMessage.__new__(ObjectMessage)
        _init_received(obj)
        obj._serializer = "pickle" if ctype == CT_PICKLE else "json"
        obj._object = None
        obj._data = body
        obj._allow_pickle = allow_pickle
        msg = obj
    elif ctype == CT_MESSAGE:
        msg = Message.__new__(Message)
        _init_received(msg)
    else:
        msg = BytesMessage.__new__(BytesMessage)
        _init_received(msg)
        msg._buf = bytearray(body)
        msg._pos = 0
        msg._reading = True
    msg._raw = raw_properties
    msg._exchange = exchange
    msg._routing_key = routing_key
    msg._redelivered = redelivered
    if redelivered:
        msg._delivery_count = 2
    return msg


def make_message(body: Any) -> Message:
    """A message for a JMS 2.0 body: str -> Text, bytes -> Bytes, dict -> Map, list ->
    Stream, a Message as is, anything else -> Object (JSON)."""
    if isinstance(body, Message):
        return body
    if isinstance(body, str):
        return TextMessage(body)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return BytesMessage(bytes(body))
    if isinstance(body, Mapping):
        return MapMessage(dict(body))
    if isinstance(body, list):
        return StreamMessage(body)
    return ObjectMessage(body)
