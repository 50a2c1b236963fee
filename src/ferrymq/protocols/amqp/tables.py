"""AMQP field tables and arrays in RabbitMQ's flavour (the one every client speaks).

Theory of operation
-------------------
The 0-9-1 grammar (4.2.1) and what RabbitMQ actually parses differ; clients follow RabbitMQ
(https://www.rabbitmq.com/amqp-0-9-1-errata.html and rabbit_binary_parser.erl), so we do too:

    t bool (any non-zero octet is true)   b int8      B uint8      s int16 (not short-string!)
    u uint16     I int32     i uint32     l int64     L int64 (read only, as RabbitMQ does)
    f float32    d float64   D decimal (scale octet + int32 mantissa)
    S long string            x byte array              A array     F table     V void
    T timestamp (uint64 seconds)

Round trips must be byte-identical, because the broker rewrites headers (x-death, CC, ...) and
hands them to other clients who expect the types they were sent. A Python int alone cannot say
whether it came as `b`, `u` or `l`, so values whose type would otherwise change decode to small
int / float subclasses that remember their type letter:

    ShortShortInt (b)  ShortShortUInt (B)  ShortInt (s)  ShortUInt (u)  LongUInt (i)
    LongLongInt (l)    Float32 (f)         Timestamp (T)

They *are* ints and floats (compare, hash and compute as such; arithmetic gives plain ints), so
callers rarely notice them. Plain values decode as themselves: `I` -> int, `d` -> float,
`S` -> str, `x` -> bytes, `D` -> Decimal (exponent = -scale, so it re-encodes to the same scale),
`A` -> list, `F` -> dict (wire order kept), `V` -> None.

Choices worth knowing:

* `T` decodes to `Timestamp`, an int of seconds, not a datetime: every uint64 round-trips
  (datetime stops at year 9999 and drops nothing but also invents nothing), and no guessing
  about milliseconds as pamqp does. `Timestamp.to_datetime()` gives an aware UTC datetime.
  Encoding a datetime writes whole seconds (naive datetimes are taken as UTC, like pika).
* Long and short strings decode as UTF-8 with errors="surrogateescape": any bytes a peer sends
  decode without raising, and encode back (with the same handler) to the very same bytes.
* `t` re-encodes as 0/1; a table with a duplicate key keeps the last value. Both are outside
  the spec, so only such malformed input is not byte-identical after a round trip.
* `D`: RabbitMQ reads the mantissa as uint32, pika, pamqp and the Java client as int32; we
  follow the clients (the bytes are the same, only negative values differ).
* Encoding a plain int picks `I` for the int32 range and `l` beyond, as pika does.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from ferrymq.protocols.amqp.constants import ReplyCode
from ferrymq.protocols.amqp.errors import CodecError, EncodeError

__all__ = [
    "Float32",
    "LongInt",
    "LongLongInt",
    "LongUInt",
    "ShortInt",
    "ShortShortInt",
    "ShortShortUInt",
    "ShortUInt",
    "Timestamp",
    "decode_array",
    "decode_table",
    "encode_array",
    "encode_table",
]

# Nesting deeper than this is refused: a hostile peer could otherwise exhaust the C stack with
# a few kilobytes of nested "F" values.
MAX_DEPTH = 64

_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_F32 = struct.Struct(">f")
_DECIMAL = struct.Struct(">Bi")
_EMPTY_TABLE = b"\x00\x00\x00\x00"


class _TypedInt(int):
    """An int that remembers which field-table type letter it travels as."""

    __slots__ = ()
    kind: ClassVar[bytes]
    _struct: ClassVar[struct.Struct]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class ShortShortInt(_TypedInt):
    """Signed 8-bit field value (`b`)."""

    __slots__ = ()
    kind = b"b"
    _struct = struct.Struct(">b")


class ShortShortUInt(_TypedInt):
    """Unsigned 8-bit field value (`B`)."""

    __slots__ = ()
    kind = b"B"
    _struct = struct.Struct(">B")


class ShortInt(_TypedInt):
    """Signed 16-bit field value (`s` in RabbitMQ's flavour, not a short string)."""

    __slots__ = ()
    kind = b"s"
    _struct = struct.Struct(">h")


class ShortUInt(_TypedInt):
    """Unsigned 16-bit field value (`u`)."""

    __slots__ = ()
    kind = b"u"
    _struct = struct.Struct(">H")


class LongInt(_TypedInt):
    """Signed 32-bit field value (`I`); plain ints in range encode the same way."""

    __slots__ = ()
    kind = b"I"
    _struct = _I32


class LongUInt(_TypedInt):
    """Unsigned 32-bit field value (`i`)."""

    __slots__ = ()
    kind = b"i"
    _struct = struct.Struct(">I")


class LongLongInt(_TypedInt):
    """Signed 64-bit field value (`l`), kept as `l` even when it would fit in 32 bits."""

    __slots__ = ()
    kind = b"l"
    _struct = _I64


class Timestamp(_TypedInt):
    """Seconds since the epoch (`T`, uint64); lossless where a datetime is not."""

    __slots__ = ()
    kind = b"T"
    _struct = _U64

    def to_datetime(self) -> _dt.datetime:
        """The aware UTC datetime (raises OverflowError/ValueError past year 9999)."""
        return _dt.datetime.fromtimestamp(int(self), tz=_dt.UTC)

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """Whole seconds of `value`; a naive datetime is taken as UTC."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return cls(int(value.timestamp()))


class Float32(float):
    """Single-precision field value (`f`); every float32 survives the trip through a double."""

    __slots__ = ()
    kind: ClassVar[bytes] = b"f"

    def __repr__(self) -> str:
        return f"Float32({float(self)!r})"


# --------------------------------------------------------------------------------------------
# Decoding


def _syntax(text: str) -> CodecError:
    return CodecError(ReplyCode.SYNTAX_ERROR, text)


def decode_table(buf: bytes | memoryview, offset: int = 0) -> tuple[dict[str, Any], int]:
    """Decode the table whose 4-byte length starts at `offset`; return it and the next offset.

    Raises:
        CodecError: 502 SYNTAX_ERROR when the table is truncated or holds an unknown type.
    """
    try:
        return _table(buf, offset, len(buf), 0)
    except (IndexError, struct.error):
        raise _syntax("truncated field table") from None


def decode_array(buf: bytes | memoryview, offset: int = 0) -> tuple[list[Any], int]:
    """Decode the array whose 4-byte length starts at `offset`; return it and the next offset."""
    try:
        return _array(buf, offset, len(buf), 0)
    except (IndexError, struct.error):
        raise _syntax("truncated field array") from None


def _table(buf: bytes | memoryview, o: int, limit: int, depth: int) -> tuple[dict[str, Any], int]:
    if o + 4 > limit:
        raise _syntax("truncated field table length")
    end = o + 4 + _U32.unpack_from(buf, o)[0]
    if end > limit:
        raise _syntax("field table longer than its container")
    if depth > MAX_DEPTH:
        raise _syntax("field tables nested too deeply")
    o += 4
    result: dict[str, Any] = {}
    while o < end:
        klen = buf[o]
        o += 1
        ko = o + klen
        if ko >= end:  # the key, then at least the type octet, must fit
            raise _syntax("truncated field table key")
        key = str(buf[o:ko], "utf-8", "surrogateescape")
        result[key], o = _value(buf, ko, end, depth)
    return result, end


def _array(buf: bytes | memoryview, o: int, limit: int, depth: int) -> tuple[list[Any], int]:
    if o + 4 > limit:
        raise _syntax("truncated field array length")
    end = o + 4 + _U32.unpack_from(buf, o)[0]
    if end > limit:
        raise _syntax("field array longer than its container")
    if depth > MAX_DEPTH:
        raise _syntax("field arrays nested too deeply")
    o += 4
    result: list[Any] = []
    append = result.append
    while o < end:
        value, o = _value(buf, o, end, depth)
        append(value)
    return result, end


def _fixed(buf: bytes | memoryview, o: int, size: int, limit: int) -> int:
    """Offset after a fixed-size value at `o`, checked against the container's end."""
    nxt = o + size
    if nxt > limit:
        raise _syntax("truncated field value")
    return nxt


def _value(buf: bytes | memoryview, o: int, limit: int, depth: int) -> tuple[Any, int]:
    """Decode one typed value (type octet at `o`, caller checked `o < limit`)."""
    kind = buf[o]
    o += 1
    if kind == 0x53:  # S
        start = _fixed(buf, o, 4, limit)
        nxt = start + _U32.unpack_from(buf, o)[0]
        if nxt > limit:
            raise _syntax("truncated long string")
        return str(buf[start:nxt], "utf-8", "surrogateescape"), nxt
    if kind == 0x49:  # I
        return _I32.unpack_from(buf, o)[0], _fixed(buf, o, 4, limit)
    if kind == 0x74:  # t
        return buf[o] != 0, _fixed(buf, o, 1, limit)
    if kind == 0x6C or kind == 0x4C:  # l, and L which RabbitMQ reads as signed 64 too
        return LongLongInt(_I64.unpack_from(buf, o)[0]), _fixed(buf, o, 8, limit)
    if kind == 0x46:  # F
        return _table(buf, o, limit, depth + 1)
    if kind == 0x41:  # A
        return _array(buf, o, limit, depth + 1)
    if kind == 0x78:  # x
        start = _fixed(buf, o, 4, limit)
        nxt = start + _U32.unpack_from(buf, o)[0]
        if nxt > limit:
            raise _syntax("truncated byte array")
        return bytes(buf[start:nxt]), nxt
    if kind == 0x56:  # V
        return None, o
    if kind == 0x54:  # T
        return Timestamp(_U64.unpack_from(buf, o)[0]), _fixed(buf, o, 8, limit)
    if kind == 0x64:  # d
        return _F64.unpack_from(buf, o)[0], _fixed(buf, o, 8, limit)
    if kind == 0x62:  # b
        return ShortShortInt(ShortShortInt._struct.unpack_from(buf, o)[0]), _fixed(buf, o, 1, limit)
    if kind == 0x42:  # B
        return ShortShortUInt(buf[o]), _fixed(buf, o, 1, limit)
    if kind == 0x73:  # s
        return ShortInt(ShortInt._struct.unpack_from(buf, o)[0]), _fixed(buf, o, 2, limit)
    if kind == 0x75:  # u
        return ShortUInt(ShortUInt._struct.unpack_from(buf, o)[0]), _fixed(buf, o, 2, limit)
    if kind == 0x69:  # i
        return LongUInt(_U32.unpack_from(buf, o)[0]), _fixed(buf, o, 4, limit)
    if kind == 0x66:  # f
        return Float32(_F32.unpack_from(buf, o)[0]), _fixed(buf, o, 4, limit)
    if kind == 0x44:  # D
        scale, mantissa = _DECIMAL.unpack_from(buf, o)
        # From a string: exact whatever the caller's decimal context precision is.
        return Decimal(f"{mantissa}E{-scale}"), _fixed(buf, o, 5, limit)
    raise _syntax(f"unknown field value type {kind:#04x}")


# --------------------------------------------------------------------------------------------
# Encoding


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """Encode `table` with its 4-byte length prefix; None or empty gives an empty table.

    Raises:
        EncodeError: a key is not a str of at most 255 UTF-8 bytes, or a value has no
            field-table type or is out of its type's range.
    """
    if not table:
        return _EMPTY_TABLE
    parts: list[bytes] = []
    _encode_items(table, parts, 0)
    payload = b"".join(parts)
    return _U32.pack(len(payload)) + payload


def encode_array(array: Sequence[Any] | None) -> bytes:
    """Encode `array` with its 4-byte length prefix; None or empty gives an empty array."""
    if not array:
        return _EMPTY_TABLE
    parts: list[bytes] = []
    for item in array:
        _encode_value(item, parts, 0)
    payload = b"".join(parts)
    return _U32.pack(len(payload)) + payload


def _encode_items(table: Mapping[str, Any], parts: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodeError("field tables nested too deeply (a cycle?)")
    append = parts.append
    for key, value in table.items():
        if not isinstance(key, str):
            raise EncodeError(f"field table keys must be str, not {type(key).__name__}")
        raw = key.encode("utf-8", "surrogateescape")
        if len(raw) > 255:
            raise EncodeError(f"field table key longer than 255 bytes: {key[:40]!r}...")
        append(_U8.pack(len(raw)))
        append(raw)
        _encode_value(value, parts, depth)


def _nested(payload_parts: list[bytes], kind: bytes) -> bytes:
    payload = b"".join(payload_parts)
    return kind + _U32.pack(len(payload)) + payload


def _encode_value(value: Any, parts: list[bytes], depth: int) -> None:
    append = parts.append
    t = type(value)
    if t is str:
        raw = value.encode("utf-8", "surrogateescape")
        append(b"S" + _U32.pack(len(raw)))
        append(raw)
    elif t is bool:
        append(b"t\x01" if value else b"t\x00")
    elif t is int:
        if -0x80000000 <= value <= 0x7FFFFFFF:
            append(b"I" + _I32.pack(value))
        elif -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            append(b"l" + _I64.pack(value))
        else:
            raise EncodeError(f"integer {value} does not fit a signed 64-bit field value")
    elif t is dict:
        inner: list[bytes] = []
        _encode_items(value, inner, depth + 1)
        append(_nested(inner, b"F"))
    elif isinstance(value, _TypedInt):
        try:
            append(value.kind + value._struct.pack(value))
        except struct.error:
            raise EncodeError(f"{value!r} is out of range for its type") from None
    elif t is float:
        append(b"d" + _F64.pack(value))
    elif t is Float32:
        try:
            append(b"f" + _F32.pack(value))
        except OverflowError:
            raise EncodeError(f"{value!r} does not fit a 32-bit float") from None
    elif t is bytes or t is bytearray or t is memoryview:
        append(b"x" + _U32.pack(len(value)))
        append(bytes(value))
    elif t is list or t is tuple:
        if depth > MAX_DEPTH:
            raise EncodeError("field arrays nested too deeply (a cycle?)")
        inner = []
        for item in value:
            _encode_value(item, inner, depth + 1)
        append(_nested(inner, b"A"))
    elif value is None:
        append(b"V")
    elif t is Decimal:
        append(b"D" + _encode_decimal(value))
    elif isinstance(value, _dt.datetime):
        try:
            append(b"T" + _U64.pack(Timestamp.from_datetime(value)))
        except struct.error:
            raise EncodeError(f"{value} is before the epoch") from None
    # Subclasses of the plain types (IntEnum, OrderedDict, str enums, ...) take the slow road.
    elif isinstance(value, bool):
        _encode_value(bool(value), parts, depth)
    elif isinstance(value, int):
        _encode_value(int(value), parts, depth)
    elif isinstance(value, str):
        _encode_value(str(value), parts, depth)
    elif isinstance(value, float):
        _encode_value(float(value), parts, depth)
    elif isinstance(value, Mapping):
        _encode_value(dict(value), parts, depth)
    elif isinstance(value, (list, tuple)):
        _encode_value(list(value), parts, depth)
    elif isinstance(value, Decimal):
        append(b"D" + _encode_decimal(value))
    else:
        raise EncodeError(f"no field-table type for {type(value).__name__}: {value!r:.80}")


def _encode_decimal(value: Decimal) -> bytes:
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise EncodeError(f"cannot encode {value} as a decimal field value")
    mantissa = int("".join(map(str, digits)) or "0")
    if exponent > 0:
        mantissa *= 10**exponent
        exponent = 0
    if sign:
        mantissa = -mantissa
    try:
        return _DECIMAL.pack(-exponent, mantissa)
    except struct.error:
        raise EncodeError(f"decimal {value} needs scale <= 255 and an int32 mantissa") from None
