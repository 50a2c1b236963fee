"""MQTT 5 property sections (2.2.2): a length, then identifier/value pairs.

Properties are a `dict[int, Any]` keyed by `PropertyId`. Single-valued properties hold their
value (int, str or bytes); User Property holds a list of (name, value) pairs in wire order and
Subscription Identifier a list of ints, the two properties that may repeat. Decoding checks
what 2.2.2.2 and each packet's section require: that the property is allowed in that packet,
that only User Property and Subscription Identifier repeat (each property's section says "It is
a Protocol Error to include ... more than once"), and the value ranges (a 0/1 byte, a non-zero
Receive Maximum...).
"""

from __future__ import annotations

from typing import Any

from ferrymq.protocols.mqtt.constants import (
    BOOLEAN_PROPERTIES,
    NONZERO_PROPERTIES,
    PROPERTY_SPEC,
    REPEATABLE,
    PropertyId,
    PropertyType,
)
from ferrymq.protocols.mqtt.errors import LocalProtocolError, MalformedPacket, ProtocolViolation
from ferrymq.protocols.mqtt.wire import (
    U16,
    U32,
    binary,
    read_binary,
    read_u16,
    read_u32,
    read_utf8,
    read_varint,
    utf8,
    varint,
)

Properties = dict[int, Any]

#: The empty property section: a zero length.
NO_PROPERTIES = b"\x00"

_BYTE = PropertyType.BYTE
_TWO = PropertyType.TWO_BYTE
_FOUR = PropertyType.FOUR_BYTE
_VARINT = PropertyType.VARINT
_UTF8 = PropertyType.UTF8
_BINARY = PropertyType.BINARY
_PAIR = PropertyType.UTF8_PAIR

_NAMES = {int(p): p.name.lower() for p in PropertyId}


def property_name(pid: int) -> str:
    return _NAMES.get(pid, f"0x{pid:02X}")


def decode_properties(data: bytes, o: int, end: int, where: int | str) -> tuple[Properties, int]:
    """Decode the property section at `o` for packet type `where` ("WILL" for will properties).

    Raises:
        MalformedPacket: truncated, an unknown identifier, or a value that cannot be decoded.
        ProtocolViolation: a property not allowed here, repeated, or out of range.
    """
    length, o = read_varint(data, o, end)
    stop = o + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    props: Properties = {}
    while o < stop:
        pid, o = read_varint(data, o, stop)
        spec = PROPERTY_SPEC.get(pid)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02X}")
        kind, allowed = spec
        if where not in allowed:
            raise ProtocolViolation(f"property {property_name(pid)} is not allowed in {where!s}")
        value: Any
        if kind is _BYTE:
            if o >= stop:
                raise MalformedPacket("truncated byte property")
            value = data[o]
            o += 1
        elif kind is _TWO:
            value, o = read_u16(data, o, stop)
        elif kind is _FOUR:
            value, o = read_u32(data, o, stop)
        elif kind is _VARINT:
            value, o = read_varint(data, o, stop)
        elif kind is _UTF8:
            value, o = read_utf8(data, o, stop, property_name(pid))
        elif kind is _BINARY:
            value, o = read_binary(data, o, stop)
        else:
            name, o = read_utf8(data, o, stop, "user property name")
            val, o = read_utf8(data, o, stop, "user property value")
            value = (name, val)
        if pid in BOOLEAN_PROPERTIES and value > 1:
            raise ProtocolViolation(f"property {property_name(pid)} must be 0 or 1, not {value}")
        if pid in NONZERO_PROPERTIES and value == 0:
            raise ProtocolViolation(f"property {property_name(pid)} must not be 0")
        if pid in REPEATABLE:
            props.setdefault(pid, []).append(value)
        elif pid in props:
            raise ProtocolViolation(f"property {property_name(pid)} appears more than once")
        else:
            props[pid] = value
    return props, stop


def encode_property_body(props: Properties) -> bytes:
    """The identifier/value pairs of a property section, without its length."""
    out: list[bytes] = []
    for pid, value in props.items():
        spec = PROPERTY_SPEC.get(pid)
        if spec is None:
            raise LocalProtocolError(f"unknown property identifier {pid!r}")
        kind = spec[0]
        values = value if pid in REPEATABLE else (value,)
        for v in values:
            out.append(varint(pid))
            if kind is _BYTE:
                out.append(bytes((v,)))
            elif kind is _TWO:
                out.append(U16(v))
            elif kind is _FOUR:
                out.append(U32(v))
            elif kind is _VARINT:
                out.append(varint(v))
            elif kind is _UTF8:
                out.append(utf8(v))
            elif kind is _BINARY:
                out.append(binary(bytes(v)))
            else:
                out.append(utf8(v[0]))
                out.append(utf8(v[1]))
    return b"".join(out)


def encode_properties(props: Properties | None) -> bytes:
    """A whole property section: its length, then the properties."""
    if not props:
        return NO_PROPERTIES
    body = encode_property_body(props)
    return varint(len(body)) + body
