"""Typed JMS values: property names, the int widths, and JMS's conversion rules.

A Python int cannot say whether it is a JMS byte, short, int or long, so the widths travel as
the AMQP field-table types that remember them (tables.ShortShortInt for byte, ShortInt for
short, LongInt for int, LongLongInt for long, Float32 for float); a plain int is an int when it
fits 32 bits and a long beyond, a plain float is a double. On the wire these are the AMQP table
types `b s I l f d`, which pika and every RabbitMQ client read as the same widths.

Reading applies JMS 2.0's conversion table (section 3.5.4): a value converts to a wider type of
its kind and to String, a String converts to anything by parsing, nothing else converts and
the attempt raises MessageFormatError. A missing property reads as None for String, False for
boolean, and raises for the numeric types, as Java's valueOf(null) does.
"""

from __future__ import annotations

from typing import Any

from ferrymq.client._errors import MessageFormatError
from ferrymq.protocols.amqp.tables import (
    Float32,
    LongInt,
    LongLongInt,
    LongUInt,
    ShortInt,
    ShortShortInt,
    ShortShortUInt,
    ShortUInt,
    Timestamp,
)

__all__ = [
    "Byte",
    "Double",
    "Float",
    "Int",
    "Long",
    "Short",
    "check_property_name",
    "check_property_value",
    "convert",
    "jms_type",
]

#: JMS byte (8-bit), short (16-bit), int (32-bit), long (64-bit), float (32-bit) values.
Byte = ShortShortInt
Short = ShortInt
Int = LongInt
Long = LongLongInt
Float = Float32
Double = float

_RESERVED = frozenset(
    {"NULL", "TRUE", "FALSE", "NOT", "AND", "OR", "BETWEEN", "LIKE", "IN", "IS", "ESCAPE"}
)
#: JMS-defined properties an application may set (JMS 2.0 3.5.9).
JMSX_SETTABLE = frozenset({"JMSXGroupID", "JMSXGroupSeq"})

_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
_NUMERIC_ORDER = ("byte", "short", "int", "long")


def check_property_name(name: str) -> None:
    """A property name must be a Java identifier and not a selector keyword (JMS 3.5.1)."""
    if not isinstance(name, str) or not name:
        raise MessageFormatError(f"property name must be a non-empty string, not {name!r}")
    first = name[0]
    if not (first.isalpha() or first in "_$") or not all(
        c.isalnum() or c in "_$" for c in name[1:]
    ):
        raise MessageFormatError(f"property name {name!r} is not a valid identifier")
    if name.upper() in _RESERVED:
        raise MessageFormatError(f"property name {name!r} is a reserved selector word")
    if name.startswith("JMSX") and name not in JMSX_SETTABLE:
        raise MessageFormatError(f"property name {name!r} is reserved for JMS")
    if name.startswith("JMS") and not name.startswith(("JMSX", "JMS_")):
        raise MessageFormatError(f"property name {name!r} is reserved for JMS header fields")


def jms_type(value: Any) -> str | None:
    """The JMS type of a property value: boolean, byte, short, int, long, float, double,
    String; None for values JMS properties cannot hold (bytes, lists, tables...)."""
    t = type(value)
    if t is str:
        return "String"
    if t is bool:
        return "boolean"
    if t is int:
        return "int" if -(2**31) <= value < 2**31 else "long"
    if t is float:
        return "double"
    if t is ShortShortInt:
        return "byte"
    if t is ShortInt or t is ShortShortUInt:
        return "short"
    if t is LongInt or t is ShortUInt:
        return "int"
    if t is LongLongInt or t is LongUInt or t is Timestamp:
        return "long"
    if t is Float32:
        return "float"
    if isinstance(value, str):
        return "String"
    return None


def check_property_value(name: str, value: Any) -> Any:
    """Validate a value set by the application; returns the value to store."""
    kind = jms_type(value)
    if kind is None:
        raise MessageFormatError(
            f"property {name!r}: {type(value).__name__} is not a JMS property type "
            "(bool, int, float, str or a typed width such as Short)"
        )
    if kind in _RANGES:
        low, high = _RANGES[kind]
        if not low <= value <= high:
            raise MessageFormatError(f"property {name!r}: {value} is out of range for a {kind}")
    if type(value) is str or type(value) is bool:
        return value
    if isinstance(value, str):
        return str(value)
    return value


def _parse_int(name: str, text: str, kind: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise MessageFormatError(f"property {name!r}: {text!r} is not a {kind}") from None
    low, high = _RANGES[kind]
    if not low <= number <= high:
        raise MessageFormatError(f"property {name!r}: {text!r} is out of range for a {kind}")
    return number


def _parse_float(name: str, text: str, kind: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise MessageFormatError(f"property {name!r}: {text!r} is not a {kind}") from None


def java_string(value: Any) -> str:
    """String.valueOf for the JMS types (booleans print lowercase, as Java does)."""
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, int):
        return str(int(value))
    return str(value)


def convert(name: str, value: Any, to: str) -> Any:
    """Read `value` as JMS type `to` under the conversion table (module docstring)."""
    if value is None:
        if to == "String":
            return None
        if to == "boolean":
            return False
        raise MessageFormatError(f"property {name!r} is not set (null cannot be read as {to})")
    kind = jms_type(value)
    if kind is None:
        raise MessageFormatError(
            f"property {name!r}: {type(value).__name__} is not a JMS type; read it as an object"
        )
    if to == "String":
        return java_string(value)
    if kind == "String":
        if to == "boolean":
            return value.strip().lower() == "true"
        if to in _RANGES:
            return _parse_int(name, value, to)
        return _parse_float(name, value, to)
    if to == "boolean":
        if kind == "boolean":
            return bool(value)
    elif to in _RANGES:
        if kind in _RANGES and _NUMERIC_ORDER.index(kind) <= _NUMERIC_ORDER.index(to):
            return int(value)
    elif to == "float":
        if kind == "float":
            return float(value)
    elif to == "double":
        if kind in ("float", "double"):
            return float(value)
    raise MessageFormatError(f"property {name!r}: a {kind} cannot be read as a {to}")
