"""Field tables and arrays: every type, byte-identical round trips, pamqp as oracle."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import decode as pdecode
from pamqp import encode as pencode

from ferrymq.protocols.amqp.constants import ReplyCode
from ferrymq.protocols.amqp.errors import CodecError, EncodeError
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
    decode_array,
    decode_table,
    encode_array,
    encode_table,
)


def table_bytes(*items: tuple[bytes, bytes, bytes]) -> bytes:
    """A table from (key, type letter, encoded value) triples, built by hand."""
    payload = b"".join(bytes([len(k)]) + k + t + v for k, t, v in items)
    return struct.pack(">I", len(payload)) + payload


# Every type letter RabbitMQ parses, hand-encoded, with the value and type we expect back.
EVERY_TYPE: list[tuple[bytes, bytes, Any, type]] = [
    (b"t", b"\x01", True, bool),
    (b"b", b"\xfe", -2, ShortShortInt),
    (b"B", b"\xfe", 254, ShortShortUInt),
    (b"s", b"\xff\xfe", -2, ShortInt),
    (b"u", b"\xff\xfe", 65534, ShortUInt),
    (b"I", b"\xff\xff\xff\xfe", -2, int),
    (b"i", b"\xff\xff\xff\xfe", 4294967294, LongUInt),
    (b"l", b"\xff\xff\xff\xff\xff\xff\xff\xfe", -2, LongLongInt),
    (b"f", struct.pack(">f", 1.5), 1.5, Float32),
    (b"d", struct.pack(">d", -2.25), -2.25, float),
    (b"D", b"\x02\x00\x00\x01\x00", Decimal("2.56"), Decimal),
    (b"S", b"\x00\x00\x00\x03h\xc3\xa9", "hé", str),
    (b"x", b"\x00\x00\x00\x02\x00\xff", b"\x00\xff", bytes),
    (b"T", b"\x00\x00\x00\x00\x65\x00\x00\x00", 0x65000000, Timestamp),
    (b"V", b"", None, type(None)),
    (b"A", b"\x00\x00\x00\x02b\x05", [5], list),
    (b"F", b"\x00\x00\x00\x03\x01kV", {"k": None}, dict),
]


@pytest.mark.parametrize(("letter", "raw", "expected", "kind"), EVERY_TYPE)
def test_every_type_decodes_and_reencodes_identically(
    letter: bytes, raw: bytes, expected: Any, kind: type
) -> None:
    data = table_bytes((b"key", letter, raw))
    table, offset = decode_table(data, 0)
    assert offset == len(data)
    assert table == {"key": expected}
    assert type(table["key"]) is kind
    assert encode_table(table) == data


def test_all_types_in_one_table_nested_in_arrays_and_tables() -> None:
    items = [(letter + b"k", letter, raw) for letter, raw, _, _ in EVERY_TYPE]
    inner = table_bytes(*items)
    array_payload = b"".join(letter + raw for letter, raw, _, _ in EVERY_TYPE)
    array = struct.pack(">I", len(array_payload)) + array_payload
    data = table_bytes((b"inner", b"F", inner), (b"arr", b"A", array), *items)
    table, _ = decode_table(data, 0)
    assert encode_table(table) == data
    assert table["arr"] == [expected for _, _, expected, _ in EVERY_TYPE]
    assert table["inner"]["Tk"] == 0x65000000
    values, end = decode_array(array, 0)
    assert end == len(array)
    assert encode_array(values) == array


def test_capital_l_reads_as_signed_64_like_rabbitmq() -> None:
    data = table_bytes((b"n", b"L", b"\xff" * 8))
    table, _ = decode_table(data)
    assert table == {"n": -1}
    assert encode_table(table) == table_bytes((b"n", b"l", b"\xff" * 8))


def test_python_values_map_to_the_expected_letters() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    cases: list[tuple[Any, bytes]] = [
        (True, b"t\x01"),
        (False, b"t\x00"),
        (7, b"I\x00\x00\x00\x07"),
        (-(2**31), b"I\x80\x00\x00\x00"),
        (2**31, b"l\x00\x00\x00\x00\x80\x00\x00\x00"),
        (0.5, b"d" + struct.pack(">d", 0.5)),
        (Decimal("-1.5"), b"D\x01" + struct.pack(">i", -15)),
        (Decimal("1E+2"), b"D\x00" + struct.pack(">i", 100)),
        ("ab", b"S\x00\x00\x00\x02ab"),
        (b"ab", b"x\x00\x00\x00\x02ab"),
        (bytearray(b"ab"), b"x\x00\x00\x00\x02ab"),
        ([1], b"A\x00\x00\x00\x05I\x00\x00\x00\x01"),
        ((1,), b"A\x00\x00\x00\x05I\x00\x00\x00\x01"),
        ({}, b"F\x00\x00\x00\x00"),
        (None, b"V"),
        (when, b"T" + struct.pack(">Q", int(when.timestamp()))),
        (when.replace(tzinfo=None), b"T" + struct.pack(">Q", int(when.timestamp()))),
        (ShortShortInt(-1), b"b\xff"),
        (ShortShortUInt(255), b"B\xff"),
        (ShortInt(-1), b"s\xff\xff"),
        (ShortUInt(65535), b"u\xff\xff"),
        (LongInt(-1), b"I\xff\xff\xff\xff"),
        (LongUInt(2**32 - 1), b"i\xff\xff\xff\xff"),
        (LongLongInt(1), b"l" + struct.pack(">q", 1)),
        (Float32(0.25), b"f" + struct.pack(">f", 0.25)),
        (Timestamp(2**64 - 1), b"T\xff\xff\xff\xff\xff\xff\xff\xff"),
        (ReplyCode.NOT_FOUND, b"I" + struct.pack(">i", 404)),
    ]
    for value, wire in cases:
        assert encode_table({"k": value}) == table_bytes((b"k", wire[:1], wire[1:])), value


def test_empty_and_none_tables() -> None:
    assert encode_table(None) == b"\x00\x00\x00\x00"
    assert encode_table({}) == b"\x00\x00\x00\x00"
    assert encode_array([]) == b"\x00\x00\x00\x00"
    assert decode_table(b"\x00\x00\x00\x00", 0) == ({}, 4)


def test_decode_at_an_offset_and_from_a_memoryview() -> None:
    data = b"junk" + table_bytes((b"a", b"S", b"\x00\x00\x00\x01z")) + b"tail"
    table, end = decode_table(memoryview(data), 4)
    assert table == {"a": "z"}
    assert data[end:] == b"tail"


def test_wire_order_of_keys_is_kept() -> None:
    data = table_bytes((b"z", b"V", b""), (b"a", b"V", b""))
    table, _ = decode_table(data)
    assert list(table) == ["z", "a"]
    assert encode_table(table) == data


def test_invalid_utf8_round_trips_byte_identical() -> None:
    data = table_bytes((b"k\xff", b"S", b"\x00\x00\x00\x02\xc3\x28"))
    table, _ = decode_table(data)
    assert encode_table(table) == data


def test_decimals_are_exact_whatever_the_decimal_context() -> None:
    raw = encode_table({"d": Decimal("-12345.6789")})
    with localcontext() as context:
        context.prec = 3
        table, _ = decode_table(raw)
    assert table == {"d": Decimal("-12345.6789")}
    assert encode_table(table) == raw


def test_timestamp_helpers() -> None:
    when = dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    stamp = Timestamp.from_datetime(when)
    assert stamp.to_datetime() == when
    assert repr(stamp) == f"Timestamp({int(when.timestamp())})"


# -- pamqp as oracle ---------------------------------------------------------------------------

ORACLE_TABLE: dict[str, Any] = {
    "bool": True,
    "int": 123456,
    "neg": -5,
    "big": 2**40,
    "str": "héllo",
    "dec": Decimal("3.14"),
    "none": None,
    "nested": {"a": [1, "two", {"three": False}], "b": {}},
    "when": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    "float": 0.5,
}


def test_our_encoding_decodes_equal_in_pamqp() -> None:
    raw = encode_table(ORACLE_TABLE)
    consumed, theirs = pdecode.field_table(raw)
    assert consumed == len(raw)
    assert theirs == ORACLE_TABLE


def test_pamqp_encoding_decodes_equal_in_ours() -> None:
    # pamqp packs floats as 'f' and ints into the smallest of b/s/u/I/i/l; values stay equal.
    raw = pencode.field_table(ORACLE_TABLE)
    ours, end = decode_table(raw)
    assert end == len(raw)
    expected = dict(ORACLE_TABLE, when=Timestamp.from_datetime(ORACLE_TABLE["when"]))
    assert ours == expected
    assert encode_table(ours) == raw  # typed ints keep pamqp's choices on the way back


def test_bytes_cross_check_with_pamqp() -> None:
    raw = encode_table({"blob": b"\x00\x01"})
    assert pdecode.field_table(raw)[1] == {"blob": bytearray(b"\x00\x01")}
    assert decode_table(pencode.field_table({"blob": bytearray(b"\x00\x01")}))[0] == {
        "blob": b"\x00\x01"
    }


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # no length
        b"\x00\x00\x00\x05\x01k",  # length past the end
        table_bytes((b"k", b"I", b"\x00\x00")),  # value cut short inside the table
        table_bytes((b"k", b"S", b"\x00\x00\x00\x09abc")),  # string past the table
        table_bytes((b"k", b"?", b"")),  # unknown type letter
        b"\x00\x00\x00\x02\x05k",  # key past the table
        b"\x00\x00\x00\x01\x00",  # key without a type octet
    ],
)
def test_malformed_tables_raise_syntax_error(data: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_table(data, 0)
    assert info.value.reply_code == ReplyCode.SYNTAX_ERROR


def test_deep_nesting_is_refused_not_a_crash() -> None:
    data = b"V"
    for _ in range(5000):
        data = b"A" + struct.pack(">I", len(data)) + data
    with pytest.raises(CodecError):
        decode_array(data[1:], 0)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        2**63,
        ShortShortInt(200),
        ShortUInt(-1),
        Decimal("NaN"),
        Decimal("1.000000000001"),  # mantissa beyond int32
        Float32(1e300),
        dt.datetime(1960, 1, 1, tzinfo=dt.UTC),
        {1, 2},
    ],
)
def test_unencodable_values_raise_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode_table({"k": value})


def test_bad_keys_raise_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_table({"k" * 256: 1})
    with pytest.raises(EncodeError):
        encode_table({1: 1})  # type: ignore[dict-item]


def test_cycles_raise_encode_error() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(EncodeError):
        encode_table(loop)


def test_encode_error_is_a_value_error() -> None:
    assert issubclass(EncodeError, ValueError)


# -- properties of the round trip --------------------------------------------------------------


def _typed(cls: type, lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.integers(lo, hi).map(cls)


scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    _typed(ShortShortInt, -128, 127),
    _typed(ShortShortUInt, 0, 255),
    _typed(ShortInt, -(2**15), 2**15 - 1),
    _typed(ShortUInt, 0, 2**16 - 1),
    _typed(LongUInt, 0, 2**32 - 1),
    _typed(LongLongInt, -(2**63), 2**63 - 1),
    _typed(Timestamp, 0, 2**64 - 1),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False, width=32).map(Float32),
    st.builds(
        lambda m, s: Decimal(m).scaleb(-s), st.integers(-(2**31), 2**31 - 1), st.integers(0, 255)
    ),
    st.text(),
    st.binary(),
    st.none(),
)
keys = st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_round_trip_property(table: dict[str, Any]) -> None:
    raw = encode_table(table)
    decoded, end = decode_table(raw, 0)
    assert end == len(raw)
    assert decoded == table
    assert encode_table(decoded) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_only_ever_raises_codec_error(blob: bytes) -> None:
    data = struct.pack(">I", len(blob)) + blob
    try:
        table, _ = decode_table(data, 0)
    except CodecError:
        return
    encode_table(table)  # whatever decoded must encode again
