"""The JMS message model of ferrymq.client: properties, conversions, bodies, the AMQP mapping.

No broker here: messages are encoded as a send would encode them and decoded as a consumer
would receive them.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.client import (
    Byte,
    BytesMessage,
    DeliveryMode,
    Double,
    Float,
    Int,
    Long,
    MapMessage,
    Message,
    MessageEOFError,
    MessageFormatError,
    MessageNotReadableError,
    MessageNotWriteableError,
    ObjectMessage,
    Queue,
    Short,
    StreamMessage,
    TemporaryQueue,
    TextMessage,
    Topic,
    make_message,
)
from ferrymq.client._destinations import (
    destination_from_delivery,
    destination_from_reply_to,
    reply_to_address,
)
from ferrymq.client._errors import (
    AuthenticationError,
    InvalidClientIDError,
    InvalidDestinationError,
    InvalidSelectorError,
    ResourceAllocationError,
    error_from_reply,
)
from ferrymq.client._kinds import _content_type, message_from_delivery
from ferrymq.client._properties import check_property_name, convert, jms_type
from ferrymq.client._transport import parse_url
from ferrymq.protocols.amqp.properties import BasicProperties, decode_properties, encode_properties


def transmit(msg: Message, **options: Any) -> Message:
    """Encode `msg` as a send does and decode it as a delivery (what a consumer gets)."""
    send = {
        "destination": Queue("q"),
        "delivery_mode": 2,
        "priority": 4,
        "ttl_ms": 0,
        "delay_ms": 0,
        "message_id": "ID:test-1",
        "now": 1_700_000_000.25,
        "stamp_time": True,
        "origin": None,
    }
    send.update(options)
    props, body = msg._prepare_send(**send)
    return message_from_delivery(
        props, body, exchange="", routing_key="q", redelivered=False, allow_pickle=True
    )


# -- property names and values -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "region", "_x", "$y", "a1", "JMSXGroupID", "JMS_vendor", "é"]
)
def test_valid_property_names(name: str) -> None:
    check_property_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1a",
        "a-b",
        "a b",
        "NULL",
        "true",
        "And",
        "between",
        "escape",
        "JMSXFoo",
        "JMSType",
        "x.",
    ],
)
def test_invalid_property_names(name: str) -> None:
    with pytest.raises(MessageFormatError):
        check_property_name(name)


@pytest.mark.parametrize("value", [None, b"x", [1], {"a": 1}, object(), 2**63, -(2**63) - 1])
def test_invalid_property_values(value: Any) -> None:
    with pytest.raises(MessageFormatError):
        Message().set_property("p", value)


@pytest.mark.parametrize(
    ("setter", "value", "kind"),
    [
        ("set_boolean_property", True, "boolean"),
        ("set_byte_property", -5, "byte"),
        ("set_short_property", 300, "short"),
        ("set_int_property", 70_000, "int"),
        ("set_long_property", 5, "long"),
        ("set_float_property", 1.5, "float"),
        ("set_double_property", 2.5, "double"),
        ("set_string_property", "x", "String"),
        ("set_property", 5, "int"),
        ("set_property", 2**40, "long"),
        ("set_property", 0.1, "double"),
        ("set_property", Short(4), "short"),
    ],
)
def test_typed_setters_keep_their_width_through_the_wire(
    setter: str, value: Any, kind: str
) -> None:
    msg = TextMessage("x")
    getattr(msg, setter)("p", value)
    assert msg.property_type("p") == kind
    received = transmit(msg)
    assert received.property_type("p") == kind
    assert received.get_property("p") == value


@pytest.mark.parametrize(
    ("setter", "value"),
    [("set_byte_property", 128), ("set_short_property", -40_000), ("set_int_property", 2**31)],
)
def test_typed_setters_check_their_range(setter: str, value: int) -> None:
    with pytest.raises(MessageFormatError):
        getattr(Message(), setter)("p", value)


# JMS 2.0 section 3.5.4: the rows are the type written, the columns the type read.
_READ_AS = ["boolean", "byte", "short", "int", "long", "float", "double", "String"]
_ALLOWED = {
    "boolean": {"boolean", "String"},
    "byte": {"byte", "short", "int", "long", "String"},
    "short": {"short", "int", "long", "String"},
    "int": {"int", "long", "String"},
    "long": {"long", "String"},
    "float": {"float", "double", "String"},
    "double": {"double", "String"},
    "String": set(_READ_AS),
}
_SAMPLES: dict[str, Any] = {
    "boolean": True,
    "byte": Byte(7),
    "short": Short(7),
    "int": Int(7),
    "long": Long(7),
    "float": Float(7.0),
    "double": 7.0,
}


@pytest.mark.parametrize("written", list(_SAMPLES))
@pytest.mark.parametrize("read", _READ_AS)
def test_the_conversion_table(written: str, read: str) -> None:
    value = _SAMPLES[written]
    assert jms_type(value) == written
    if read in _ALLOWED[written]:
        result = convert("p", value, read)
        if read == "String":
            assert result == (
                "true"
                if value is True
                else str(int(value))
                if written in ("byte", "short", "int", "long")
                else "7.0"
            )
        elif read == "boolean":
            assert result is True
        else:
            assert result == 7
    else:
        with pytest.raises(MessageFormatError):
            convert("p", value, read)


@pytest.mark.parametrize(
    ("text", "read", "expected"),
    [
        ("true", "boolean", True),
        ("TRUE", "boolean", True),
        ("yes", "boolean", False),
        ("12", "byte", 12),
        ("-300", "short", -300),
        (" 42 ", "int", 42),
        ("9000000000", "long", 9_000_000_000),
        ("1.5", "float", 1.5),
        ("1e3", "double", 1000.0),
        ("abc", "String", "abc"),
    ],
)
def test_strings_convert_by_parsing(text: str, read: str, expected: Any) -> None:
    assert convert("p", text, read) == expected


@pytest.mark.parametrize(
    ("text", "read"), [("300", "byte"), ("x", "int"), ("1.5", "long"), ("", "double")]
)
def test_unparseable_strings_raise(text: str, read: str) -> None:
    with pytest.raises(MessageFormatError):
        convert("p", text, read)


def test_missing_properties_read_as_null_false_or_raise() -> None:
    msg = Message()
    assert msg.get_property("nope") is None
    assert msg.get_string_property("nope") is None
    assert msg.get_boolean_property("nope") is False
    for getter in ("get_int_property", "get_long_property", "get_double_property"):
        with pytest.raises(MessageFormatError):
            getattr(msg, getter)("nope")
    assert msg.property_names() == [] and not msg.has_property("nope")


def test_group_properties_are_jmsx_properties() -> None:
    msg = TextMessage("x")
    msg.group_id = "g"
    msg.group_seq = 2
    assert msg.properties == {"JMSXGroupID": "g", "JMSXGroupSeq": 2}
    msg.set_property("JMSXGroupID", "h")
    assert msg.group_id == "h"
    received = transmit(msg)
    assert (received.group_id, received.group_seq) == ("h", 2)
    assert received.get_property("JMSXDeliveryCount") == 1


# -- received messages -------------------------------------------------------------------------


def test_received_messages_are_read_only_until_cleared() -> None:
    received = transmit(TextMessage("x", properties={"a": 1}))
    assert isinstance(received, TextMessage)
    with pytest.raises(MessageNotWriteableError):
        received.set_property("a", 2)
    with pytest.raises(MessageNotWriteableError):
        received.text = "y"
    with pytest.raises(MessageNotWriteableError):
        received.group_id = "g"
    received.clear_properties()
    assert received.properties == {}
    received.set_property("b", 2)
    received.clear_body()
    assert received.text is None
    received.text = "y"
    # header fields stay settable: a received message can be forwarded
    received.correlation_id = "c"


def test_header_fields_after_send_and_receive() -> None:
    msg = TextMessage("x", correlation_id="c", reply_to=Topic("answers"), type="T")
    received = transmit(
        msg, delivery_mode=1, priority=9, ttl_ms=1500, delay_ms=2000, message_id="ID:m"
    )
    for m in (msg, received):
        assert m.message_id == "ID:m"
        assert m.correlation_id == "c"
        assert m.reply_to == Topic("answers")
        assert m.type == "T"
        assert m.priority == 9
        assert m.delivery_mode is DeliveryMode.NON_PERSISTENT
    assert msg.timestamp == 1_700_000_000.25 and received.timestamp == 1_700_000_000
    assert msg.expiration == pytest.approx(1_700_000_001.75)
    assert received.expiration == pytest.approx(1_700_000_001.5)  # whole-second timestamp
    assert msg.delivery_time == pytest.approx(1_700_000_002.25)
    assert received.delivery_time == pytest.approx(1_700_000_002.0)
    assert received.destination == Queue("q")
    assert "x-delay" not in received.properties


def test_redelivery_and_delivery_count() -> None:
    props = encode_properties(BasicProperties(headers={"x-delivery-count": 2, "k": 1}))
    msg = message_from_delivery(props, b"", exchange="", routing_key="q", redelivered=True)
    assert msg.redelivered and msg.delivery_count == 3 and msg.properties == {"k": 1}
    plain = message_from_delivery(b"\x00\x00", b"", exchange="", routing_key="q", redelivered=True)
    assert plain.delivery_count == 2
    fresh = message_from_delivery(b"\x00\x00", b"", exchange="", routing_key="q", redelivered=False)
    assert fresh.delivery_count == 1 and fresh.priority == 4 and not fresh.persistent


def test_disabled_id_and_timestamp() -> None:
    received = transmit(TextMessage("x"), message_id=None, stamp_time=False)
    assert received.message_id is None and received.timestamp is None


def test_bytes_correlation_ids_keep_their_octets() -> None:
    msg = BytesMessage(b"", correlation_id=b"\x00\xfe\xff")
    assert msg.correlation_id_bytes == b"\x00\xfe\xff"
    assert transmit(msg).correlation_id_bytes == b"\x00\xfe\xff"


# -- bodies ------------------------------------------------------------------------------------


def test_bytes_message_streams_java_types() -> None:
    msg = BytesMessage()
    msg.write_boolean(True)
    msg.write_byte(-1)
    msg.write_short(-2)
    msg.write_char("é")
    msg.write_int(3)
    msg.write_long(-(2**40))
    msg.write_float(1.5)
    msg.write_double(math.pi)
    msg.write_utf("héllo")
    msg.write_bytes(b"\x01\x02")
    for value in (7, 2**40, 0.25, "s", b"\x09", Short(5)):
        msg.write_object(value)
    with pytest.raises(MessageNotReadableError):
        msg.read_int()
    received = transmit(msg)
    assert isinstance(received, BytesMessage)
    assert received.body_length == msg.body_length
    assert received.read_boolean() is True
    assert received.read_byte() == -1
    assert received.read_short() == -2
    assert received.read_char() == "é"
    assert received.read_int() == 3
    assert received.read_long() == -(2**40)
    assert received.read_float() == 1.5
    assert received.read_double() == math.pi
    assert received.read_utf() == "héllo"
    assert received.read_bytes(2) == b"\x01\x02"
    assert received.read_int() == 7
    assert received.read_long() == 2**40
    assert received.read_double() == 0.25
    assert received.read_utf() == "s"
    assert received.read_bytes(1) == b"\x09"
    assert received.read_short() == 5
    assert received.read_bytes() == b""
    with pytest.raises(MessageEOFError):
        received.read_byte()
    with pytest.raises(MessageNotWriteableError):
        received.write_int(1)
    with pytest.raises(MessageFormatError):
        BytesMessage().write_byte(200)


def test_bytes_message_reset_switches_to_reading() -> None:
    msg = BytesMessage(b"ab")
    msg.write_bytes(b"c")
    msg.reset()
    assert msg.read_bytes() == b"abc"
    msg.clear_body()
    msg.write_bytes(b"z")
    assert msg.body == b"z"


def test_map_message_typed_access() -> None:
    msg = MapMessage({"s": "12", "i": 5, "f": Float(0.5), "b": b"\x00", "t": True})
    msg.set_short("sh", 3)
    msg.set_long("l", 2**40)
    received = transmit(msg)
    assert isinstance(received, MapMessage)
    assert received.get_int("s") == 12 and received.get_string("i") == "5"
    assert received.get_long("sh") == 3 and received.get_double("f") == 0.5
    assert received.get_bytes("b") == b"\x00" and received.get_boolean("t") is True
    assert received.get_long("l") == 2**40
    assert received.get_object("missing") is None and not received.item_exists("missing")
    assert set(received) == {"s", "i", "f", "b", "t", "sh", "l"} and len(received) == 7
    with pytest.raises(MessageFormatError):
        received.get_int("f")
    with pytest.raises(MessageFormatError):
        received.get_string("b")
    with pytest.raises(MessageFormatError):
        received.get_int("l")  # a long does not narrow to an int
    with pytest.raises(MessageNotWriteableError):
        received.set_int("x", 1)


def test_map_and_stream_messages_keep_property_getters() -> None:
    for msg in (MapMessage({"k": 1}), StreamMessage([1]), BytesMessage(b"x")):
        msg.set_property("flag", True)
        received = transmit(msg)
        assert received.get_string_property("flag") == "true"
        assert received.get_boolean_property("flag") is True


def test_stream_message_reads_in_order_with_conversions() -> None:
    msg = StreamMessage([Short(1), "2", 3.5, b"\x04", True])
    msg.write_long(6)
    received = transmit(msg)
    assert isinstance(received, StreamMessage)
    assert received.read_int() == 1
    assert received.read_long() == 2
    with pytest.raises(MessageFormatError):
        received.read_int()  # a double does not narrow; the position stays
    assert received.read_double() == 3.5
    assert received.read_bytes() == b"\x04"
    assert received.read_string() == "true"
    assert received.read_object() == 6
    with pytest.raises(MessageEOFError):
        received.read_object()


def test_object_message_json_and_pickle() -> None:
    received = transmit(ObjectMessage({"a": [1, 2, None]}))
    assert isinstance(received, ObjectMessage) and received.object == {"a": [1, 2, None]}
    with pytest.raises(MessageFormatError, match="pickle"):
        transmit(ObjectMessage({1, 2}))  # a set is not JSON
    msg = ObjectMessage({1, 2}, serializer="pickle")
    props, body = msg._prepare_send(Queue("q"), 2, 4, 0, 0, None, 0.0, False, None)
    refused = message_from_delivery(props, body, exchange="", routing_key="q", redelivered=False)
    with pytest.raises(MessageFormatError, match="allow_pickle"):
        _ = refused.object
    allowed = message_from_delivery(
        props, body, exchange="", routing_key="q", redelivered=False, allow_pickle=True
    )
    assert allowed.object == {1, 2}  # type: ignore[attr-defined]
    assert pickle.loads(body) == {1, 2}


def test_make_message_picks_the_kind_from_the_body() -> None:
    assert isinstance(make_message("s"), TextMessage)
    assert isinstance(make_message(b"b"), BytesMessage)
    assert isinstance(make_message({"k": 1}), MapMessage)
    assert isinstance(make_message([1]), StreamMessage)
    assert isinstance(make_message(3.5), ObjectMessage)
    msg = Message()
    assert make_message(msg) is msg


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        (None, BytesMessage),
        ("text/plain", TextMessage),
        ("text/html; charset=latin-1", TextMessage),
        ("application/octet-stream", BytesMessage),
        ("application/x-jms-map", MapMessage),
        ("application/x-jms-stream", StreamMessage),
        ("application/json", ObjectMessage),
        ("application/x-jms-message", Message),
        ("image/png", BytesMessage),
    ],
)
def test_content_type_picks_the_received_kind(content_type: str | None, kind: type) -> None:
    props = encode_properties(BasicProperties(content_type=content_type, priority=1))
    body = b"\xe9" if content_type and "latin" in content_type else b""
    msg = message_from_delivery(props, body, exchange="", routing_key="q", redelivered=False)
    assert type(msg) is kind
    if content_type and "latin" in content_type:
        assert msg.body == "é"


# -- the AMQP mapping under generated input ----------------------------------------------------

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: (
        n.upper()
        not in {
            "NULL",
            "TRUE",
            "FALSE",
            "NOT",
            "AND",
            "OR",
            "BETWEEN",
            "LIKE",
            "IN",
            "IS",
            "ESCAPE",
        }
        and not n.startswith("JMS")
    )
)
_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-128, 127).map(Byte),
    st.integers(-(2**15), 2**15 - 1).map(Short),
    st.integers(-(2**31), 2**31 - 1).map(Int),
    st.integers(-(2**63), 2**63 - 1).map(Long),
    st.floats(allow_nan=False, width=32).map(Float),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)


@settings(max_examples=100, deadline=None)
@given(
    props=st.dictionaries(_names, _values, max_size=8),
    text=st.text(max_size=50),
    priority=st.integers(0, 9),
    persistent=st.booleans(),
    ttl=st.integers(0, 10**9),
    correlation=st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=20)),
)
def test_send_then_receive_preserves_everything(
    props: dict[str, Any],
    text: str,
    priority: int,
    persistent: bool,
    ttl: int,
    correlation: str | bytes | None,
) -> None:
    msg = TextMessage(text, properties=props, correlation_id=correlation)
    if isinstance(correlation, str) and len(correlation.encode("utf-8", "surrogateescape")) > 255:
        return
    received = transmit(msg, priority=priority, delivery_mode=2 if persistent else 1, ttl_ms=ttl)
    assert isinstance(received, TextMessage) and received.text == text
    assert received.properties == props
    for name, value in props.items():
        assert received.property_type(name) == jms_type(value)
    assert received.priority == priority and received.persistent is persistent
    if correlation is None:
        assert received.correlation_id is None
    elif isinstance(correlation, bytes):
        assert received.correlation_id_bytes == correlation
    else:
        assert received.correlation_id == correlation
    raw = encode_properties(
        decode_properties(
            msg._prepare_send(Queue("q"), 2, priority, ttl, 0, "ID:x", 1.0, True, None)[0]
        )
    )
    assert _content_type(raw) == "text/plain"


@given(
    st.builds(
        BasicProperties,
        content_type=st.one_of(st.none(), st.text(max_size=30)),
        priority=st.one_of(st.none(), st.integers(0, 9)),
        message_id=st.one_of(st.none(), st.text(max_size=10)),
    )
)
def test_content_type_peek_agrees_with_the_full_decoder(props: BasicProperties) -> None:
    raw = encode_properties(props)
    assert _content_type(raw) == decode_properties(raw).content_type


# -- destinations, URLs, errors ----------------------------------------------------------------


def test_reply_to_addresses() -> None:
    assert reply_to_address(Queue("q")) == "q"
    assert reply_to_address(Topic("a.b")) == "/topic/a.b"
    assert reply_to_address(TemporaryQueue("jms.tmp.1")) == "jms.tmp.1"
    assert destination_from_reply_to("q") == Queue("q")
    assert destination_from_reply_to("/topic/a.b") == Topic("a.b")
    assert destination_from_reply_to("/exchange/amq.topic/a") == Topic("a")
    assert destination_from_reply_to("/queue/x") == Queue("x")
    assert destination_from_reply_to("amq.rabbitmq.reply-to.abc") == Queue(
        "amq.rabbitmq.reply-to.abc"
    )
    assert destination_from_delivery("", "q", None) == Queue("q")
    assert destination_from_delivery("amq.topic", "t", None) == Topic("t")
    assert destination_from_delivery("other", "k", Queue("mine")) == Queue("mine")
    assert Queue("a") != Topic("a") and Queue("a") == Queue("a")


def test_parse_url() -> None:
    a = parse_url("amqp://user:p%40ss@host:1234/%2F?heartbeat=5&connection_timeout=2.5")
    assert (a.host, a.port, a.username, a.password, a.vhost) == ("host", 1234, "user", "p@ss", "/")
    assert (a.heartbeat, a.connect_timeout) == (5, 2.5)
    assert parse_url("amqp://localhost").vhost == "/"
    assert parse_url("amqp://localhost/prod").vhost == "prod"
    assert parse_url("amqps://h").port == 5671
    v = parse_url("vm://")
    assert v.is_vm and v.vm_name == "localhost"
    assert parse_url("vm://embedded").vm_name == "embedded"
    from ferrymq.client import JMSError

    with pytest.raises(JMSError):
        parse_url("http://x")


@pytest.mark.parametrize(
    ("code", "text", "index", "kind"),
    [
        (403, "ACCESS_REFUSED - Login was refused", 0x000A000B, AuthenticationError),
        (404, "NOT_FOUND - no queue 'q'", 0x0032000A, InvalidDestinationError),
        (405, "RESOURCE_LOCKED - cannot obtain exclusive access", 0, ResourceAllocationError),
        (406, "PRECONDITION_FAILED - invalid selector: ...", 0x003C0014, InvalidSelectorError),
        (530, "NOT_ALLOWED - client id 'x' is already in use", 0, InvalidClientIDError),
        (530, "NOT_ALLOWED - access to vhost 'v' refused", 0x000A0028, AuthenticationError),
    ],
)
def test_reply_codes_map_to_exception_types(code: int, text: str, index: int, kind: type) -> None:
    error = error_from_reply(code, text, index)
    assert type(error) is kind and error.reply_code == code and error.text == text


def test_double_alias() -> None:
    assert Double is float
