"""Frames and methods: fast path and every pamqp method against pamqp, splitting, errors."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pbody
from pamqp import commands
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import heartbeat as pheartbeat

from ferrymq.protocols.amqp.codec import (
    Ack,
    CodecError,
    ContentBody,
    ContentHeader,
    Deliver,
    EncodeError,
    FrameDecoder,
    Heartbeat,
    MethodFrame,
    Nack,
    ProtocolHeader,
    ProtocolHeaderMismatch,
    Publish,
    Reject,
    encode_ack,
    encode_content,
    encode_deliver,
    encode_get_ok,
    encode_heartbeat,
    encode_method,
    encode_nack,
    encode_publish,
    encode_return,
    method_ids,
)
from ferrymq.protocols.amqp.constants import FRAME_MIN_SIZE, PROTOCOL_HEADER, ReplyCode
from ferrymq.protocols.amqp.properties import (
    EMPTY_PROPERTIES,
    BasicProperties,
    encode_properties,
)

PROPS = encode_properties(BasicProperties(content_type="text/plain", delivery_mode=2))


def decode_all(data: bytes, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("expect_protocol_header", False)
    return FrameDecoder(**kwargs).feed(data)


def pamqp_frames(data: bytes) -> list[tuple[int, Any]]:
    """(channel, frame) pairs as pamqp reads them."""
    out = []
    while data:
        consumed, channel, frame = pframe.unmarshal(data)
        out.append((channel, frame))
        data = data[consumed:]
    return out


def fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


FAST_PATH = (Publish, Deliver, Ack, Nack, Reject)


def norm(frames: list[Any]) -> list[Any]:
    """Frames made comparable: pamqp command objects have no __eq__."""
    return [
        (f.channel, type(f.method), fields(f.method))
        if isinstance(f, MethodFrame) and not isinstance(f.method, FAST_PATH)
        else f
        for f in frames
    ]


# -- the fast path against pamqp -----------------------------------------------------------------

FAST_CASES: list[tuple[Any, Any]] = [
    (
        Publish("amq.topic", "a.b.c", mandatory=True, immediate=False),
        commands.Basic.Publish(exchange="amq.topic", routing_key="a.b.c", mandatory=True),
    ),
    (
        Publish("", "q", mandatory=False, immediate=True),
        commands.Basic.Publish(exchange="", routing_key="q", immediate=True),
    ),
    (
        Deliver("ctag-1", 2**40, True, "ex", "rk"),
        commands.Basic.Deliver(
            consumer_tag="ctag-1",
            delivery_tag=2**40,
            redelivered=True,
            exchange="ex",
            routing_key="rk",
        ),
    ),
    (Ack(7, multiple=True), commands.Basic.Ack(delivery_tag=7, multiple=True)),
    (Ack(0, multiple=False), commands.Basic.Ack(delivery_tag=0, multiple=False)),
    (
        Nack(9, multiple=False, requeue=True),
        commands.Basic.Nack(delivery_tag=9, multiple=False, requeue=True),
    ),
    (
        Nack(2**63 - 1, multiple=True, requeue=False),
        commands.Basic.Nack(delivery_tag=2**63 - 1, multiple=True, requeue=False),
    ),
    (Reject(3, requeue=False), commands.Basic.Reject(delivery_tag=3, requeue=False)),
    (Reject(4, requeue=True), commands.Basic.Reject(delivery_tag=4, requeue=True)),
]


@pytest.mark.parametrize(("ours", "theirs"), FAST_CASES)
def test_fast_path_encode_is_read_equal_by_pamqp(ours: Any, theirs: Any) -> None:
    data = encode_method(5, ours)
    [(channel, decoded)] = pamqp_frames(data)
    assert channel == 5
    assert type(decoded) is type(theirs)
    for name, value in fields(ours).items():
        assert getattr(decoded, name) == value, name
    assert data == pframe.marshal(theirs, 5)  # byte for byte, too


@pytest.mark.parametrize(("ours", "theirs"), FAST_CASES)
def test_pamqp_encode_is_read_equal_by_us(ours: Any, theirs: Any) -> None:
    [frame] = decode_all(pframe.marshal(theirs, 5))
    assert frame == MethodFrame(5, ours)
    assert method_ids(frame.method) == (60, theirs.index & 0xFFFF)


def test_fast_path_objects_mirror_pamqp_names() -> None:
    for ours, theirs in FAST_CASES:
        assert ours.name == theirs.name
        assert ours.index == theirs.index


def frame_sizes(data: bytes) -> list[int]:
    """Size of every frame in `data`, 8 octets of overhead included."""
    sizes, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from(">I", data, pos + 3)[0] + 8
        sizes.append(size)
        pos += size
    return sizes


def read_message(data: bytes) -> tuple[Any, Any, bytes, list[int]]:
    """pamqp's reading of method + header + bodies: (method, header, body, frame sizes)."""
    frames = pamqp_frames(data)
    method, header = frames[0][1], frames[1][1]
    body = b"".join(f.value for _, f in frames[2:])
    return method, header, body, [len(pframe.marshal(f, c)) for c, f in frames]


def test_encode_deliver_against_pamqp() -> None:
    data = encode_deliver(3, "ctag", 42, True, "amq.direct", "key", PROPS, b"hello", 4096)
    method, header, body, _ = read_message(data)
    assert isinstance(method, commands.Basic.Deliver)
    assert (method.consumer_tag, method.delivery_tag, method.redelivered) == ("ctag", 42, True)
    assert (method.exchange, method.routing_key) == ("amq.direct", "key")
    assert header.body_size == 5
    assert header.properties.content_type == "text/plain"
    assert body == b"hello"
    frames = decode_all(data)
    assert frames == [
        MethodFrame(3, Deliver("ctag", 42, True, "amq.direct", "key")),
        ContentHeader(3, 60, 5, PROPS),
        ContentBody(3, b"hello"),
    ]


def test_encode_publish_against_pamqp() -> None:
    data = encode_publish(2, "ex", "rk", True, PROPS, b"payload", 4096, immediate=True)
    method, header, body, _ = read_message(data)
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory, method.immediate) == (
        "ex",
        "rk",
        True,
        True,
    )
    assert (header.body_size, body) == (7, b"payload")
    expected = pframe.marshal(
        commands.Basic.Publish(exchange="ex", routing_key="rk", mandatory=True, immediate=True), 2
    )
    assert data.startswith(expected)


def test_encode_get_ok_against_pamqp() -> None:
    data = encode_get_ok(1, 77, False, "ex", "rk", 12, PROPS, b"b", 4096)
    method, _, body, _ = read_message(data)
    assert isinstance(method, commands.Basic.GetOk)
    assert fields(method) == {
        "delivery_tag": 77,
        "redelivered": False,
        "exchange": "ex",
        "routing_key": "rk",
        "message_count": 12,
    }
    assert body == b"b"
    [frame, *_] = decode_all(data)
    assert fields(frame.method) == fields(method)


def test_encode_return_against_pamqp() -> None:
    data = encode_return(1, 312, "NO_ROUTE", "ex", "rk", EMPTY_PROPERTIES, b"", 4096)
    frames = pamqp_frames(data)
    assert len(frames) == 2  # an empty body has no body frame
    method = frames[0][1]
    assert isinstance(method, commands.Basic.Return)
    assert fields(method) == {
        "reply_code": 312,
        "reply_text": "NO_ROUTE",
        "exchange": "ex",
        "routing_key": "rk",
    }
    assert frames[1][1].body_size == 0


def test_encode_ack_and_nack_against_pamqp() -> None:
    assert encode_ack(1, 5, True) == pframe.marshal(commands.Basic.Ack(5, True), 1)
    assert encode_nack(1, 5, False, requeue=False) == pframe.marshal(
        commands.Basic.Nack(5, False, False), 1
    )
    assert encode_nack(1, 5, True) == pframe.marshal(commands.Basic.Nack(5, True, True), 1)
    assert encode_ack(1, 5, True) == encode_method(1, Ack(5, True))


def test_heartbeat_round_trip() -> None:
    assert encode_heartbeat() == pheartbeat.Heartbeat().marshal()
    assert decode_all(encode_heartbeat()) == [Heartbeat(0)]


def test_content_against_pamqp_marshal() -> None:
    theirs = pframe.marshal(
        pheader.ContentHeader(
            0, 3, commands.Basic.Properties(content_type="text/plain", delivery_mode=2)
        ),
        4,
    ) + pframe.marshal(pbody.ContentBody(b"abc"), 4)
    assert encode_content(4, PROPS, b"abc", 4096) == theirs
    assert decode_all(theirs) == [ContentHeader(4, 60, 3, PROPS), ContentBody(4, b"abc")]


# -- every method pamqp knows ---------------------------------------------------------------------

SAMPLE_BY_TYPE: dict[str, Any] = {
    "shortstr": "name-1",
    "longstr": "a long string",
    "octet": 7,
    "short": 513,
    "long": 70000,
    "longlong": 2**40 + 3,
    "table": {"k": "v", "n": 1, "nested": {"list": [1, "x", None]}},
    "timestamp": 1_700_000_000,
}
# Values pamqp's own validation insists on, for the pamqp-encodes direction.
PAMQP_VALID = {
    "ticket": 0,
    "capabilities": "",
    "known_hosts": "",
    "insist": False,
    "out_of_band": "0",
    "channel_id": "0",
    "cluster_id": "",
}
ALL_METHODS = sorted(commands.INDEX_MAPPING.items())


def sample(cls: Any, *, pamqp_valid: bool) -> Any:
    method = cls.__new__(cls)
    for i, name in enumerate(cls.__slots__):
        kind = cls.amqp_type(name)
        value = (i % 2 == 0) if kind == "bit" else SAMPLE_BY_TYPE[kind]
        if pamqp_valid and name in PAMQP_VALID:
            value = PAMQP_VALID[name]
        setattr(method, name, value)
    return method


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pamqp's Basic.RecoverAsync
@pytest.mark.parametrize(("index", "cls"), ALL_METHODS, ids=[c.name for _, c in ALL_METHODS])
def test_every_pamqp_method_round_trips(index: int, cls: Any) -> None:
    method = sample(cls, pamqp_valid=False)
    data = encode_method(9, method)
    # Our bytes, read by pamqp.
    [(channel, theirs)] = pamqp_frames(data)
    assert channel == 9
    assert type(theirs) is cls
    assert fields(theirs) == fields(method)
    # Our bytes, read by us (byte-by-byte as well as whole).
    [frame] = decode_all(data)
    assert frame.channel == 9
    assert frame.method.index == index
    names = [k for k in cls.__slots__ if k != "ticket"]  # our Publish drops reserved-1
    assert {k: getattr(frame.method, k) for k in names} == {k: fields(method)[k] for k in names}
    decoder = FrameDecoder(expect_protocol_header=False)
    assert norm([f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])]) == norm(
        [frame]
    )
    if cls is not commands.Basic.Publish:  # (whose reserved ticket we drop)
        assert encode_method(9, frame.method) == data  # byte-identical back
    # pamqp's bytes (validated values), read by us.
    valid = sample(cls, pamqp_valid=True)
    [mine] = decode_all(pframe.marshal(valid, 9))
    assert {k: getattr(mine.method, k) for k in names} == {k: fields(valid)[k] for k in names}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_default_pamqp_instances_encode() -> None:
    for _, cls in ALL_METHODS:
        try:
            method = cls()
        except TypeError:
            continue  # required arguments
        [frame] = decode_all(encode_method(1, method))
        assert frame.method.index == cls.index


def test_decoded_pamqp_methods_skip_pamqp_validation() -> None:
    # RabbitMQ accepts any queue name bytes here; pamqp's __init__ would reject them.
    data = encode_method(1, sample(commands.Queue.Declare, pamqp_valid=False))
    data = data.replace(b"name-1", b"name!1")
    [frame] = decode_all(data)
    assert frame.method.queue == "name!1"


def test_none_fields_encode_as_zero_values() -> None:
    [frame] = decode_all(encode_method(1, commands.Basic.CancelOk()))
    assert frame.method.consumer_tag == ""


# -- content splitting ---------------------------------------------------------------------------

FM = FRAME_MIN_SIZE


@pytest.mark.parametrize(
    ("size", "body_frames"), [(0, 0), (1, 1), (FM - 8, 1), (FM - 7, 2), (3 * FM, 4)]
)
def test_content_is_split_to_frame_max(size: int, body_frames: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for data in (
        encode_content(1, PROPS, body, FM),
        encode_deliver(1, "c", 1, False, "e", "r", PROPS, body, FM),
        encode_publish(1, "e", "r", False, PROPS, body, FM),
        encode_get_ok(1, 1, False, "e", "r", 0, PROPS, body, FM),
        encode_return(1, 312, "NO_ROUTE", "e", "r", PROPS, body, FM),
    ):
        frames = decode_all(data, max_frame_size=FM)
        bodies = [f for f in frames if isinstance(f, ContentBody)]
        assert len(bodies) == body_frames
        assert b"".join(f.payload for f in bodies) == body
        header = next(f for f in frames if isinstance(f, ContentHeader))
        assert header.body_size == size
        assert all(s <= FM for s in frame_sizes(data))  # overhead included
    assert len(encode_content(1, PROPS, body, 0)) == 8 + 12 + len(PROPS) + (8 + size if size else 0)


def test_header_larger_than_frame_max_is_refused() -> None:
    big = encode_properties(BasicProperties(headers={"k": "x" * FM}))
    with pytest.raises(EncodeError):
        encode_content(1, big, b"", FM)
    with pytest.raises(EncodeError):
        encode_deliver(1, "c", 1, False, "e", "r", big, b"", FM)


# -- the decoder ---------------------------------------------------------------------------------

STREAM = (
    encode_method(0, commands.Connection.TuneOk(channel_max=10, frame_max=FM, heartbeat=5))
    + encode_heartbeat()
    + encode_publish(1, "ex", "rk", False, PROPS, b"x" * 5000, FM)
    + encode_ack(1, 1, False)
    + encode_method(2, commands.Queue.Declare(queue="q", arguments={"x-max-length": 10}))
    + encode_deliver(1, "c", 1, True, "ex", "rk", EMPTY_PROPERTIES, b"", FM)
)


def test_protocol_header_then_frames_in_one_feed() -> None:
    frames = FrameDecoder(expect_protocol_header=True).feed(PROTOCOL_HEADER + STREAM)
    assert frames[0] == ProtocolHeader(0, 9, 1)
    assert norm(frames[1:]) == norm(decode_all(STREAM))
    assert len(frames) == 1 + 1 + 1 + 4 + 1 + 1 + 2


def test_byte_by_byte_equals_all_at_once() -> None:
    whole = FrameDecoder(expect_protocol_header=True).feed(PROTOCOL_HEADER + STREAM)
    decoder = FrameDecoder(expect_protocol_header=True)
    data = PROTOCOL_HEADER + STREAM
    pieces = [f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])]
    assert norm(pieces) == norm(whole)
    assert decoder.buffered == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(PROTOCOL_HEADER + STREAM)), max_size=12))
def test_random_split_points_give_the_same_frames(cuts: list[int]) -> None:
    data = PROTOCOL_HEADER + STREAM
    points = [0, *sorted(cuts), len(data)]
    decoder = FrameDecoder(expect_protocol_header=True)
    frames = []
    for a, b in itertools.pairwise(points):
        frames += decoder.feed(memoryview(data)[a:b] if a % 2 else data[a:b])
    assert norm(frames) == norm(FrameDecoder(expect_protocol_header=True).feed(data))


def test_partial_frames_never_raise_and_are_kept() -> None:
    decoder = FrameDecoder(expect_protocol_header=False)
    data = encode_publish(1, "ex", "rk", False, PROPS, b"y" * 100, FM)
    assert decoder.feed(data[:3]) == []
    assert decoder.feed(data[3:20]) == []
    assert decoder.buffered == 20
    frames = decoder.feed(data[20:])
    assert [type(f) for f in frames] == [MethodFrame, ContentHeader, ContentBody]


def test_max_frame_size_can_change_after_tuning() -> None:
    decoder = FrameDecoder(expect_protocol_header=False, max_frame_size=FM)
    big = encode_content(1, EMPTY_PROPERTIES, b"z" * 10000, 20000)
    with pytest.raises(CodecError):
        FrameDecoder(expect_protocol_header=False, max_frame_size=FM).feed(big)
    decoder.max_frame_size = 20000
    assert decoder.feed(big)[1] == ContentBody(1, b"z" * 10000)
    assert decode_all(big, max_frame_size=0)[1] == ContentBody(1, b"z" * 10000)


def test_frame_of_exactly_max_frame_size_is_accepted() -> None:
    data = encode_content(1, EMPTY_PROPERTIES, b"a" * (FM - 8), FM)
    assert decode_all(data, max_frame_size=FM)[1] == ContentBody(1, b"a" * (FM - 8))


def test_hostile_names_decode_and_re_encode_to_the_same_bytes() -> None:
    data = encode_publish(1, "ex", "rk", False, EMPTY_PROPERTIES, b"", FM)
    data = data.replace(b"\x02ex\x02rk", b"\x02\xff\xc3\x02r\x80")
    [method, _] = decode_all(data)
    assert encode_method(1, method.method) == data[: len(encode_method(1, method.method))]
    assert (
        encode_publish(
            1, method.method.exchange, method.method.routing_key, False, EMPTY_PROPERTIES, b"", FM
        )
        == data
    )


# -- errors ----------------------------------------------------------------------------------


def frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def codec_error(data: bytes, **kwargs: Any) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode_all(data, **kwargs)
    return info.value


def test_bad_frame_end_is_a_frame_error() -> None:
    assert codec_error(encode_heartbeat()[:-1] + b"\x00").reply_code == ReplyCode.FRAME_ERROR


def test_oversize_frame_is_a_frame_error_naming_both_sizes() -> None:
    data = frame(3, 1, b"x" * FM)
    err = codec_error(data[:7], max_frame_size=FM)  # refused from the frame header alone
    assert err.reply_code == ReplyCode.FRAME_ERROR
    assert str(FM + 8) in err.text
    assert str(FM) in err.text


def test_unknown_frame_type_is_a_frame_error() -> None:
    assert codec_error(frame(4, 1, b"")).reply_code == ReplyCode.FRAME_ERROR


def test_heartbeat_on_channel_one_is_unexpected_like_rabbitmq() -> None:
    assert codec_error(frame(8, 1, b"")).reply_code == ReplyCode.UNEXPECTED_FRAME
    assert codec_error(frame(8, 0, b"\x00")).reply_code == ReplyCode.FRAME_ERROR


def test_short_method_and_header_frames_are_frame_errors() -> None:
    assert codec_error(frame(1, 1, b"\x00\x3c")).reply_code == ReplyCode.FRAME_ERROR
    assert codec_error(frame(2, 1, b"\x00\x3c" + bytes(10))).reply_code == ReplyCode.FRAME_ERROR


@pytest.mark.parametrize(
    "method",
    [
        Publish("exchange", "key"),
        Deliver("c", 1, False, "e", "r"),
        Ack(1),
        Nack(1),
        Reject(1),
        commands.Queue.Declare(queue="q", arguments={"a": 1}),
        commands.Connection.StartOk(client_properties={"p": "q"}, response="\x00u\x00p"),
        commands.Basic.Qos(prefetch_count=10),
    ],
)
def test_truncated_or_padded_arguments_are_frame_errors_like_rabbitmq(method: Any) -> None:
    payload = encode_method(1, method)[7:-1]
    class_id, method_id = method.index >> 16, method.index & 0xFFFF
    for bad in (payload[:-1], payload[:5], payload + b"\x00"):
        # Followed by another frame, so over-reads would find bytes to read.
        err = codec_error(frame(1, 1, bad) + encode_heartbeat() * 40)
        assert err.reply_code == ReplyCode.FRAME_ERROR, bad
        assert (err.class_id, err.method_id) == (class_id, method_id)


def test_bad_table_in_arguments_is_a_frame_error_with_ids() -> None:
    payload = encode_method(1, commands.Queue.Declare(queue="q", arguments={"a": 1}))[7:-1]
    payload = payload.replace(b"\x01aI", b"\x01a?")
    err = codec_error(frame(1, 1, payload))
    assert (err.reply_code, err.class_id, err.method_id) == (ReplyCode.FRAME_ERROR, 50, 10)
    assert "Queue.Declare" in err.text
    assert "0x3f" in err.text  # the table's own complaint: unknown type '?'


def test_unknown_method_is_not_implemented() -> None:
    err = codec_error(frame(1, 1, b"\x00\x3c\x00\x99"))
    assert (err.reply_code, err.class_id, err.method_id) == (ReplyCode.NOT_IMPLEMENTED, 60, 0x99)
    assert codec_error(frame(1, 1, b"\x00\x07\x00\x01")).reply_code == ReplyCode.NOT_IMPLEMENTED


@pytest.mark.parametrize(
    "header",
    [
        b"AMQP\x00\x00\x09\x00",  # another revision
        b"AMQP\x01\x01\x00\x0a",  # AMQP 0-10
        b"AMQP\x00\x01\x00\x00",  # AMQP 1.0
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # an HTTP request
        b"\x16\x03\x01\x02\x00\x01\x00\x01",  # a TLS client hello
    ],
)
def test_bad_protocol_header_is_refused(header: bytes) -> None:
    decoder = FrameDecoder(expect_protocol_header=True)
    assert decoder.feed(header[:7]) == []  # waits for all 8 bytes
    with pytest.raises(ProtocolHeaderMismatch) as info:
        decoder.feed(header[7:])
    assert info.value.received == header[:8]
    assert isinstance(info.value, CodecError)


def test_a_server_refusing_our_header_is_recognised_by_the_client() -> None:
    with pytest.raises(ProtocolHeaderMismatch):
        decode_all(PROTOCOL_HEADER)


def test_short_strings_over_255_bytes_are_refused_on_encode() -> None:
    long = "é" * 128  # 256 UTF-8 bytes
    with pytest.raises(ValueError):
        encode_deliver(1, long, 1, False, "e", "r", PROPS, b"", FM)
    with pytest.raises(ValueError):
        encode_deliver(1, "c", 1, False, long, "r", PROPS, b"", FM)
    with pytest.raises(ValueError):
        encode_publish(1, "e", long, False, PROPS, b"", FM)
    with pytest.raises(ValueError):
        encode_get_ok(1, 1, False, long, "r", 0, PROPS, b"", FM)
    with pytest.raises(ValueError):
        encode_return(1, 312, long, "e", "r", PROPS, b"", FM)
    with pytest.raises(EncodeError):
        encode_method(1, Publish(long, "r"))
    with pytest.raises(EncodeError):
        encode_method(1, _queue_declare(long))


def _queue_declare(name: str) -> Any:
    method = sample(commands.Queue.Declare, pamqp_valid=True)
    method.queue = name
    return method


def test_out_of_range_numbers_are_refused_on_encode() -> None:
    with pytest.raises(EncodeError):
        encode_ack(1, -1, False)
    with pytest.raises(EncodeError):
        encode_nack(1, 2**64, False)
    with pytest.raises(EncodeError):
        encode_deliver(1, "c", -1, False, "e", "r", PROPS, b"", FM)
    with pytest.raises(EncodeError):
        encode_method(1, commands.Basic.Qos(prefetch_count=70000))
    with pytest.raises(EncodeError):
        encode_method(1, object())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_only_ever_raises_codec_error(blob: bytes) -> None:
    for data in (
        blob,
        frame(1, 1, b"\x00\x3c\x00\x28" + blob),
        frame(1, 1, b"\x00\x32\x00\x0a" + blob),
    ):
        try:
            decode_all(data)
        except CodecError:
            pass
