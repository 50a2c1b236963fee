"""The streamed and structured bodies: BytesMessage, MapMessage, StreamMessage.

BytesMessage writes and reads Java's primitive types as java.io.DataOutputStream lays them out
(big-endian, writeUTF with a 2-byte length), so its bytes mean the same to a Java peer.
MapMessage and StreamMessage travel as an AMQP field table and field array, which keep each
value's width (see _properties), and read back under JMS's conversion table.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

from ferrymq.client._errors import (
    MessageEOFError,
    MessageFormatError,
    MessageNotReadableError,
    MessageNotWriteableError,
)
from ferrymq.client._message import CT_BYTES, CT_MAP, CT_STREAM, Message
from ferrymq.client._properties import check_property_value, convert, jms_type
from ferrymq.protocols.amqp.tables import (
    Float32,
    LongInt,
    LongLongInt,
    ShortInt,
    ShortShortInt,
    decode_array,
    decode_table,
    encode_array,
    encode_table,
)

__all__ = ["BytesMessage", "MapMessage", "StreamMessage"]

_BOOL = struct.Struct(">?")
_BYTE = struct.Struct(">b")
_UBYTE = struct.Struct(">B")
_SHORT = struct.Struct(">h")
_USHORT = struct.Struct(">H")
_CHAR = struct.Struct(">H")
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")


class BytesMessage(Message):
    """A message whose body is uninterpreted bytes (JMS BytesMessage).

    Written and read as a stream of Java primitive types, big-endian as DataOutputStream
    writes them (write_int, read_int, ...), or whole through `body`. A new message is in write
    mode; reset() switches to reading from the start. A received message is read-only and in
    read mode.
    """

    CONTENT_TYPE = CT_BYTES
    __slots__ = ("_buf", "_pos", "_reading")

    def __init__(self, body: bytes | bytearray | memoryview | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self._buf = bytearray(body or b"")
        self._pos = 0
        self._reading = False

    @property
    def body(self) -> bytes:
        """The whole body, whatever the mode."""
        return bytes(self._buf)

    @body.setter
    def body(self, value: bytes) -> None:
        self._check_body_writable()
        self._buf = bytearray(value)
        self._pos = 0
        self._reading = False

    @property
    def body_length(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Make the body read-only and position reading at its start."""
        self._reading = True
        self.body_read_only = True
        self._pos = 0

    def clear_body(self) -> None:
        super().clear_body()
        self._buf = bytearray()
        self._pos = 0
        self._reading = False

    def _body_bytes(self) -> bytes:
        return bytes(self._buf)

    def _set_body_bytes(self, body: bytes) -> None:
        self._buf = bytearray(body)
        self._pos = 0
        self._reading = True

    # writing
    def _write(self, data: bytes) -> None:
        self._check_body_writable()
        if self._reading:
            raise MessageNotWriteableError("the body is in read mode")
        self._buf += data

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._write(bytes(data))

    def write_boolean(self, value: bool) -> None:
        self._write(_BOOL.pack(bool(value)))

    def write_byte(self, value: int) -> None:
        self._write(_pack(_BYTE, value))

    def write_short(self, value: int) -> None:
        self._write(_pack(_SHORT, value))

    def write_char(self, value: str) -> None:
        if not isinstance(value, str) or len(value) != 1 or ord(value) > 0xFFFF:
            raise MessageFormatError("a char is one character of the Basic Multilingual Plane")
        self._write(_CHAR.pack(ord(value)))

    def write_int(self, value: int) -> None:
        self._write(_pack(_INT, value))

    def write_long(self, value: int) -> None:
        self._write(_pack(_LONG, value))

    def write_float(self, value: float) -> None:
        self._write(_pack(_FLOAT, value))

    def write_double(self, value: float) -> None:
        self._write(_DOUBLE.pack(value))

    def write_utf(self, value: str) -> None:
        """A string as DataOutputStream.writeUTF: 2-byte length, then UTF-8."""
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise MessageFormatError("write_utf takes at most 65535 encoded bytes")
        self._write(_USHORT.pack(len(raw)) + raw)

    def write_object(self, value: Any) -> None:
        """Write a bool, int (as a JMS int or long by its width), float, str or bytes."""
        kind = jms_type(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.write_bytes(value)
        elif kind == "boolean":
            self.write_boolean(value)
        elif kind == "byte":
            self.write_byte(value)
        elif kind == "short":
            self.write_short(value)
        elif kind == "int":
            self.write_int(value)
        elif kind == "long":
            self.write_long(value)
        elif kind == "float":
            self.write_float(value)
        elif kind == "double":
            self.write_double(value)
        elif kind == "String":
            self.write_utf(value)
        else:
            raise MessageFormatError(f"cannot write a {type(value).__name__}")

    # reading
    def _read(self, size: int) -> bytes:
        if not self._reading:
            raise MessageNotReadableError("the body is in write mode; call reset() first")
        end = self._pos + size
        if end > len(self._buf):
            raise MessageEOFError("end of the message body")
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data

    def read_bytes(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that remain with -1); b"" at the end."""
        if not self._reading:
            raise MessageNotReadableError("the body is in write mode; call reset() first")
        remaining = len(self._buf) - self._pos
        n = remaining if size < 0 else min(size, remaining)
        return self._read(n)

    def read_boolean(self) -> bool:
        result: bool = _BOOL.unpack(self._read(1))[0]
        return result

    def read_byte(self) -> int:
        result: int = _BYTE.unpack(self._read(1))[0]
        return result

    def read_unsigned_byte(self) -> int:
        result: int = _UBYTE.unpack(self._read(1))[0]
        return result

    def read_short(self) -> int:
        result: int = _SHORT.unpack(self._read(2))[0]
        return result

    def read_unsigned_short(self) -> int:
        result: int = _USHORT.unpack(self._read(2))[0]
        return result

    def read_char(self) -> str:
        return chr(_CHAR.unpack(self._read(2))[0])

    def read_int(self) -> int:
        result: int = _INT.unpack(self._read(4))[0]
        return result

    def read_long(self) -> int:
        result: int = _LONG.unpack(self._read(8))[0]
        return result

    def read_float(self) -> float:
        result: float = _FLOAT.unpack(self._read(4))[0]
        return result

    def read_double(self) -> float:
        result: float = _DOUBLE.unpack(self._read(8))[0]
        return result

    def read_utf(self) -> str:
        size = _USHORT.unpack(self._read(2))[0]
        return self._read(size).decode("utf-8")


def _pack(st: struct.Struct, value: Any) -> bytes:
    try:
        return st.pack(value)
    except (struct.error, OverflowError):
        raise MessageFormatError(f"{value!r} does not fit the type written") from None


def _check_map_value(name: str, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return check_property_value(name, value)


class MapMessage(Message):
    """A message whose body is a map of names to typed values (JMS MapMessage).

    Values are bool, int, float, str, bytes or a typed width; read them back with the typed
    getters, which follow JMS's conversion table, or all at once through `body` (a dict).
    """

    CONTENT_TYPE = CT_MAP
    __slots__ = ("_data", "_map")

    def __init__(self, values: Mapping[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self._map: dict[str, Any] = {}
        self._data: bytes | None = None
        for name, value in (values or {}).items():
            self.set_object(name, value)

    def _values(self) -> dict[str, Any]:
        if self._data is not None:
            try:
                self._map, _ = decode_table(self._data, 0) if self._data else ({}, 0)
            except Exception as exc:
                raise MessageFormatError(f"map message body is not a field table: {exc}") from None
            self._data = None
        return self._map

    @property
    def body(self) -> dict[str, Any]:
        return dict(self._values())

    def names(self) -> list[str]:
        return list(self._values())

    def item_exists(self, name: str) -> bool:
        return name in self._values()

    def __contains__(self, name: object) -> bool:
        return name in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def set_object(self, name: str, value: Any) -> None:
        self._check_body_writable()
        if not isinstance(name, str) or not name:
            raise MessageFormatError("map names must be non-empty strings")
        self._values()[name] = _check_map_value(name, value)

    def set_boolean(self, name: str, value: bool) -> None:
        self.set_object(name, bool(value))

    def set_byte(self, name: str, value: int) -> None:
        self.set_object(name, ShortShortInt(value))

    def set_short(self, name: str, value: int) -> None:
        self.set_object(name, ShortInt(value))

    def set_int(self, name: str, value: int) -> None:
        self.set_object(name, LongInt(value))

    def set_long(self, name: str, value: int) -> None:
        self.set_object(name, LongLongInt(value))

    def set_float(self, name: str, value: float) -> None:
        self.set_object(name, Float32(value))

    def set_double(self, name: str, value: float) -> None:
        self.set_object(name, float(value))

    def set_string(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise MessageFormatError(f"{name!r}: expected a str")
        self.set_object(name, value)

    def set_bytes(self, name: str, value: bytes) -> None:
        self.set_object(name, bytes(value))

    def get_object(self, name: str) -> Any:
        return self._values().get(name)

    def _get(self, name: str, to: str) -> Any:
        value = self._values().get(name)
        if isinstance(value, bytes):
            raise MessageFormatError(f"{name!r}: a byte array cannot be read as a {to}")
        return convert(name, value, to)

    def get_boolean(self, name: str) -> bool:
        result: bool = self._get(name, "boolean")
        return result

    def get_byte(self, name: str) -> int:
        result: int = self._get(name, "byte")
        return result

    def get_short(self, name: str) -> int:
        result: int = self._get(name, "short")
        return result

    def get_int(self, name: str) -> int:
        result: int = self._get(name, "int")
        return result

    def get_long(self, name: str) -> int:
        result: int = self._get(name, "long")
        return result

    def get_float(self, name: str) -> float:
        result: float = self._get(name, "float")
        return result

    def get_double(self, name: str) -> float:
        result: float = self._get(name, "double")
        return result

    def get_string(self, name: str) -> str | None:
        value = self._values().get(name)
        if isinstance(value, bytes):
            raise MessageFormatError(f"{name!r}: a byte array cannot be read as a String")
        result: str | None = convert(name, value, "String")
        return result

    def get_bytes(self, name: str) -> bytes | None:
        value = self._values().get(name)
        if value is None or isinstance(value, bytes):
            return value
        raise MessageFormatError(f"{name!r}: a {jms_type(value)} cannot be read as bytes")

    def clear_body(self) -> None:
        super().clear_body()
        self._map = {}
        self._data = None

    def _body_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        return encode_table(self._map)

    def _set_body_bytes(self, body: bytes) -> None:
        self._data = body


class StreamMessage(Message):
    """A message whose body is a sequence of typed values (JMS StreamMessage).

    write_* appends; after reset() (or on a received message) read_* returns the values in
    order, converted by JMS's table; reading past the end raises MessageEOFError. `body` gives
    the whole list.
    """

    CONTENT_TYPE = CT_STREAM
    __slots__ = ("_data", "_items", "_pos", "_reading")

    def __init__(self, items: list[Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self._items: list[Any] = []
        self._data: bytes | None = None
        self._pos = 0
        self._reading = False
        for item in items or ():
            self.write_object(item)

    def _values(self) -> list[Any]:
        if self._data is not None:
            try:
                self._items, _ = decode_array(self._data, 0) if self._data else ([], 0)
            except Exception as exc:
                raise MessageFormatError(
                    f"stream message body is not a field array: {exc}"
                ) from None
            self._data = None
        return self._items

    @property
    def body(self) -> list[Any]:
        return list(self._values())

    def reset(self) -> None:
        self._reading = True
        self.body_read_only = True
        self._pos = 0

    def clear_body(self) -> None:
        super().clear_body()
        self._items = []
        self._data = None
        self._pos = 0
        self._reading = False

    def write_object(self, value: Any) -> None:
        self._check_body_writable()
        if self._reading:
            raise MessageNotWriteableError("the body is in read mode")
        self._values().append(_check_map_value("stream item", value))

    def write_boolean(self, value: bool) -> None:
        self.write_object(bool(value))

    def write_byte(self, value: int) -> None:
        self.write_object(ShortShortInt(value))

    def write_short(self, value: int) -> None:
        self.write_object(ShortInt(value))

    def write_int(self, value: int) -> None:
        self.write_object(LongInt(value))

    def write_long(self, value: int) -> None:
        self.write_object(LongLongInt(value))

    def write_float(self, value: float) -> None:
        self.write_object(Float32(value))

    def write_double(self, value: float) -> None:
        self.write_object(float(value))

    def write_string(self, value: str) -> None:
        if not isinstance(value, str):
            raise MessageFormatError("expected a str")
        self.write_object(value)

    def write_bytes(self, value: bytes) -> None:
        self.write_object(bytes(value))

    def _next(self) -> Any:
        if not self._reading:
            raise MessageNotReadableError("the body is in write mode; call reset() first")
        items = self._values()
        if self._pos >= len(items):
            raise MessageEOFError("end of the stream message")
        return items[self._pos]

    def _read(self, to: str) -> Any:
        value = self._next()
        if isinstance(value, bytes):
            raise MessageFormatError(f"a byte array cannot be read as a {to}")
        result = convert("stream item", value, to)
        self._pos += 1  # JMS: a failed conversion leaves the position where it was
        return result

    def read_object(self) -> Any:
        value = self._next()
        self._pos += 1
        return value

    def read_boolean(self) -> bool:
        result: bool = self._read("boolean")
        return result

    def read_byte(self) -> int:
        result: int = self._read("byte")
        return result

    def read_short(self) -> int:
        result: int = self._read("short")
        return result

    def read_int(self) -> int:
        result: int = self._read("int")
        return result

    def read_long(self) -> int:
        result: int = self._read("long")
        return result

    def read_float(self) -> float:
        result: float = self._read("float")
        return result

    def read_double(self) -> float:
        result: float = self._read("double")
        return result

    def read_string(self) -> str | None:
        value = self._next()
        if isinstance(value, bytes):
            raise MessageFormatError("a byte array cannot be read as a String")
        result: str | None = convert("stream item", value, "String")
        self._pos += 1
        return result

    def read_bytes(self) -> bytes | None:
        value = self._next()
        if value is not None and not isinstance(value, bytes):
            raise MessageFormatError(f"a {jms_type(value)} cannot be read as bytes")
        self._pos += 1
        return value

    def _body_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        return encode_array(self._items)

    def _set_body_bytes(self, body: bytes) -> None:
        self._data = body
        self._reading = True
