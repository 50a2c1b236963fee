"""Basic properties: every field alone and all together, pamqp as oracle."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.header import ContentHeader as PamqpContentHeader

from ferrymq.protocols.amqp.constants import ReplyCode
from ferrymq.protocols.amqp.errors import CodecError, EncodeError
from ferrymq.protocols.amqp.properties import (
    EMPTY_PROPERTIES,
    BasicProperties,
    decode_properties,
    encode_properties,
)

STAMP = 1_700_000_000
# One value per property; pamqp names `type` message_type and wants a datetime timestamp.
SAMPLES: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"x-a": "b", "x-n": 5, "x-t": {"deep": [True, None]}},
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corr-1",
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "m-1",
    "timestamp": STAMP,
    "type": "order.created",
    "user_id": "guest",
    "app_id": "ferry-tests",
    "cluster_id": "c1",
}


def pamqp_properties(**ours: Any) -> commands.Basic.Properties:
    """pamqp's Properties with the same values (bypassing its cluster_id validation)."""
    theirs = commands.Basic.Properties()
    for name, value in ours.items():
        if name == "type":
            name = "message_type"
        if name == "timestamp":
            value = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        setattr(theirs, name, value)
    return theirs


def pamqp_decode(section: bytes) -> commands.Basic.Properties:
    header = PamqpContentHeader()
    header.unmarshal(struct.pack(">HHQ", 60, 0, 0) + section)
    return header.properties


def assert_same(ours: BasicProperties, theirs: commands.Basic.Properties) -> None:
    for name in SAMPLES:
        mine = getattr(ours, name)
        other = getattr(theirs, "message_type" if name == "type" else name)
        if name == "timestamp" and other is not None:
            other = int(other.timestamp())
        if name == "cluster_id" and other == "":
            other = None  # pamqp's default for an absent cluster_id
        assert mine == other, name


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_property_alone_matches_pamqp(name: str) -> None:
    ours = BasicProperties(**{name: SAMPLES[name]})
    section = encode_properties(ours)
    assert_same(ours, pamqp_decode(section))
    theirs = pamqp_properties(**{name: SAMPLES[name]})
    assert decode_properties(theirs.marshal()) == ours
    if name != "headers":  # pamqp re-types ints in tables (5 -> 'b'), so bytes differ there
        assert section == theirs.marshal()


def test_all_properties_together_match_pamqp() -> None:
    ours = BasicProperties(**SAMPLES)
    section = encode_properties(ours)
    assert_same(ours, pamqp_decode(section))
    assert decode_properties(pamqp_properties(**SAMPLES).marshal()) == ours
    assert decode_properties(section) == ours


def test_empty_properties() -> None:
    assert EMPTY_PROPERTIES == b"\x00\x00"
    assert encode_properties(BasicProperties()) == EMPTY_PROPERTIES
    assert decode_properties(EMPTY_PROPERTIES) == BasicProperties()
    assert decode_properties(memoryview(EMPTY_PROPERTIES)) == BasicProperties()


def test_empty_string_is_a_present_property() -> None:
    section = encode_properties(BasicProperties(content_type=""))
    assert section == b"\x80\x00\x00"
    assert decode_properties(section).content_type == ""


def test_continuation_flag_words_are_skipped() -> None:
    # First word: content_type + continuation; a second word with nothing set.
    section = b"\x80\x01\x00\x00\x04text"
    assert decode_properties(section) == BasicProperties(content_type="text")
    # A second word announcing properties we do not know: their bytes follow ours, ignored.
    section = b"\x80\x01\x80\x00\x04text\x03???"
    assert decode_properties(section) == BasicProperties(content_type="text")
    # Three words.
    section = b"\x10\x01\x00\x01\x00\x00\x02"
    assert decode_properties(section) == BasicProperties(delivery_mode=2)


def test_invalid_utf8_round_trips() -> None:
    section = b"\x80\x00\x02\xff\xfe"
    props = decode_properties(section)
    assert encode_properties(props) == section


@pytest.mark.parametrize(
    "section",
    [
        b"",
        b"\x80",
        b"\x80\x00",  # content_type flagged, nothing follows
        b"\x80\x00\x05abc",  # string past the end
        b"\x20\x00\x00\x00\x00\x09\x01",  # headers table past the end
        b"\x00\x40\x00\x00\x00\x01",  # timestamp cut short
        b"\x80\x01",  # continuation word missing
        b"\x10\x00\x02\xff",  # trailing byte
        b"\x00\x00\xff",  # trailing byte after no properties
        b"\x20\x00\x00\x00\x00\x03\x01k?",  # bad table
    ],
)
def test_malformed_sections_raise_syntax_error(section: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_properties(section)
    assert info.value.reply_code == ReplyCode.SYNTAX_ERROR


@pytest.mark.parametrize(
    "props",
    [
        BasicProperties(content_type="x" * 256),
        BasicProperties(message_id="é" * 128),
        BasicProperties(delivery_mode=256),
        BasicProperties(priority=-1),
        BasicProperties(timestamp=-1),
        BasicProperties(headers={"k": object()}),
    ],
)
def test_unencodable_properties_raise_encode_error(props: BasicProperties) -> None:
    with pytest.raises(EncodeError):
        encode_properties(props)


shortstr = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
octet = st.integers(0, 255)
header_values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10), st.booleans())


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        BasicProperties,
        content_type=st.none() | shortstr,
        content_encoding=st.none() | shortstr,
        headers=st.none() | st.dictionaries(st.text(max_size=10), header_values, max_size=4),
        delivery_mode=st.none() | octet,
        priority=st.none() | octet,
        correlation_id=st.none() | shortstr,
        reply_to=st.none() | shortstr,
        expiration=st.none() | shortstr,
        message_id=st.none() | shortstr,
        timestamp=st.none() | st.integers(0, 2**64 - 1),
        type=st.none() | shortstr,
        user_id=st.none() | shortstr,
        app_id=st.none() | shortstr,
        cluster_id=st.none() | shortstr,
    )
)
def test_round_trip_property(props: BasicProperties) -> None:
    section = encode_properties(props)
    assert decode_properties(section) == props
    assert encode_properties(decode_properties(section)) == section


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_garbage_only_ever_raises_codec_error(section: bytes) -> None:
    try:
        decode_properties(section)
    except CodecError:
        pass
