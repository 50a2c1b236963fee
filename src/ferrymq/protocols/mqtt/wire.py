"""MQTT data representations (1.5): integers, variable byte integers, strings, binary data.

Readers take the buffer and an offset and return (value, next offset); they raise
`MalformedPacket` on truncation or invalid encoding, so a hostile peer can never make them raise
anything else. Writers return bytes.
"""

from __future__ import annotations

import struct

from ferrymq.protocols.mqtt.errors import LocalProtocolError, MalformedPacket

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

U16 = _U16.pack
U32 = _U32.pack

MAX_VARINT = 268_435_455


def read_varint(data: bytes, o: int, end: int) -> tuple[int, int]:
    """A variable byte integer of at most four bytes (1.5.5, MQTT-1.5.5-1)."""
    value = 0
    shift = 0
    for _ in range(4):
        if o >= end:
            raise MalformedPacket("truncated variable byte integer")
        b = data[o]
        o += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, o
        shift += 7
    raise MalformedPacket("variable byte integer longer than four bytes")


def varint(n: int) -> bytes:
    """Encode a variable byte integer; the minimum number of bytes, as 1.5.5 requires."""
    if n < 0x80:
        if n < 0:
            raise LocalProtocolError(f"variable byte integer out of range: {n}")
        return bytes((n,))
    if n > MAX_VARINT:
        raise LocalProtocolError(f"variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_u16(data: bytes, o: int, end: int) -> tuple[int, int]:
    if o + 2 > end:
        raise MalformedPacket("truncated two byte integer")
    return (data[o] << 8) | data[o + 1], o + 2


def read_u32(data: bytes, o: int, end: int) -> tuple[int, int]:
    if o + 4 > end:
        raise MalformedPacket("truncated four byte integer")
    return _U32.unpack_from(data, o)[0], o + 4


def read_binary(data: bytes, o: int, end: int) -> tuple[bytes, int]:
    """Binary data: a two-byte length, then that many bytes (1.5.6)."""
    if o + 2 > end:
        raise MalformedPacket("truncated binary data length")
    e = o + 2 + ((data[o] << 8) | data[o + 1])
    if e > end:
        raise MalformedPacket("binary data runs past the end of the packet")
    return bytes(data[o + 2 : e]), e


def check_utf8(raw: bytes, what: str) -> str:
    """Decode a UTF-8 string field strictly (MQTT-1.5.4-1, -2).

    Python's strict codec refuses ill-formed sequences and the UTF-16 surrogates U+D800..U+DFFF,
    which is the spec's definition of ill-formed; U+0000 is refused separately.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not well-formed UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000")
    return text


def read_utf8(data: bytes, o: int, end: int, what: str = "string") -> tuple[str, int]:
    """A UTF-8 encoded string: a two-byte length, then the encoded characters (1.5.4)."""
    if o + 2 > end:
        raise MalformedPacket(f"truncated {what} length")
    e = o + 2 + ((data[o] << 8) | data[o + 1])
    if e > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return check_utf8(bytes(data[o + 2 : e]), what), e


def utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError("UTF-8 string longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise LocalProtocolError("binary data longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw
