"""AMQP 0-9-1 wire constants, written once from the spec (amqp0-9-1.xml) and RabbitMQ's extensions.

Plain ints rather than enums for frame types and class ids: they sit on the hot path, where an
IntEnum comparison costs a Python-level call.
"""

from __future__ import annotations

from enum import IntEnum

# AMQP 0-9-1 4.2.3: frame types and the frame-end octet.
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE

#: The 7 header octets (type, channel, size) plus the frame-end octet.
FRAME_OVERHEAD = 8

# AMQP 0-9-1 4.2.2: what a client sends first; also what a server answers to a wrong header.
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

# AMQP 0-9-1 4.2.1 / spec constant frame-min-size: every peer accepts frames of this size.
FRAME_MIN_SIZE = 4096

# Class ids (AMQP 0-9-1 section 1; confirm is RabbitMQ's extension).
CLASS_CONNECTION = 10
CLASS_CHANNEL = 20
CLASS_EXCHANGE = 40
CLASS_QUEUE = 50
CLASS_BASIC = 60
CLASS_CONFIRM = 85
CLASS_TX = 90


class ReplyCode(IntEnum):
    """Every reply code of the spec, plus RabbitMQ's NO_ROUTE (312) used by Basic.Return."""

    REPLY_SUCCESS = 200
    CONTENT_TOO_LARGE = 311
    NO_ROUTE = 312
    NO_CONSUMERS = 313
    CONNECTION_FORCED = 320
    INVALID_PATH = 402
    ACCESS_REFUSED = 403
    NOT_FOUND = 404
    RESOURCE_LOCKED = 405
    PRECONDITION_FAILED = 406
    FRAME_ERROR = 501
    SYNTAX_ERROR = 502
    COMMAND_INVALID = 503
    CHANNEL_ERROR = 504
    UNEXPECTED_FRAME = 505
    RESOURCE_ERROR = 506
    NOT_ALLOWED = 530
    NOT_IMPLEMENTED = 540
    INTERNAL_ERROR = 541


#: Codes the spec classes as "soft-error": they close the channel, not the connection.
SOFT_ERRORS = frozenset(
    {
        ReplyCode.CONTENT_TOO_LARGE,
        ReplyCode.NO_ROUTE,
        ReplyCode.NO_CONSUMERS,
        ReplyCode.ACCESS_REFUSED,
        ReplyCode.NOT_FOUND,
        ReplyCode.RESOURCE_LOCKED,
        ReplyCode.PRECONDITION_FAILED,
    }
)

# Method indexes (class_id << 16 | method_id) of the hand-written message path.
BASIC_PUBLISH = 0x003C0028
BASIC_RETURN = 0x003C0032
BASIC_DELIVER = 0x003C003C
BASIC_GET_OK = 0x003C0047
BASIC_ACK = 0x003C0050
BASIC_REJECT = 0x003C005A
BASIC_NACK = 0x003C0078
