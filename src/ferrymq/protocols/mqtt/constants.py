"""MQTT numbers: packet types, protocol levels, reason codes and property identifiers.

Sources: MQTT 3.1 (IBM, 2010), MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019). Section
numbers in comments elsewhere in this package refer to the 5.0 text unless they say 3.1.1.
"""

from __future__ import annotations

from enum import IntEnum

# Protocol levels (3.1.2.2): the byte after the protocol name in CONNECT.
MQTT_31 = 3  # protocol name "MQIsdp"
MQTT_311 = 4  # protocol name "MQTT"
MQTT_5 = 5  # protocol name "MQTT"

PROTOCOL_NAMES = {MQTT_31: b"MQIsdp", MQTT_311: b"MQTT", MQTT_5: b"MQTT"}

#: Largest Remaining Length a four-byte variable byte integer can carry (1.5.5).
MAX_REMAINING_LENGTH = 268_435_455
#: Largest packet on the wire: the fixed header's 1 + 4 bytes and the remaining length.
MAX_PACKET_SIZE = MAX_REMAINING_LENGTH + 5


class PacketType(IntEnum):
    """The high nibble of a packet's first byte (2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  # MQTT 5 only


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (2.4). One value has several names in the spec; see aliases below."""

    SUCCESS = 0x00  # also NORMAL_DISCONNECTION, GRANTED_QOS_0
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


NORMAL_DISCONNECTION = ReasonCode.SUCCESS
GRANTED_QOS_0 = ReasonCode.SUCCESS


class ConnackCode(IntEnum):
    """CONNACK return codes of MQTT 3.1 and 3.1.1 (3.1.1 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


#: SUBACK return code for a refused subscription in 3.1.1 (3.1.1 3.9.3).
SUBACK_FAILURE = 0x80

#: MQTT 5 CONNACK reason -> the closest 3.1.1 return code (for refusing a 3.x client).
V5_TO_V3_CONNACK = {
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnackCode.IDENTIFIER_REJECTED,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnackCode.NOT_AUTHORIZED,
    ReasonCode.SERVER_UNAVAILABLE: ConnackCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnackCode.SERVER_UNAVAILABLE,
    ReasonCode.QUOTA_EXCEEDED: ConnackCode.SERVER_UNAVAILABLE,
    ReasonCode.BANNED: ConnackCode.NOT_AUTHORIZED,
    ReasonCode.BAD_AUTHENTICATION_METHOD: ConnackCode.BAD_USER_NAME_OR_PASSWORD,
}


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class PropertyType(IntEnum):
    """How a property's value is encoded (1.5)."""

    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 4
    VARINT = 5
    UTF8 = 6
    BINARY = 7
    UTF8_PAIR = 8


#: Where each property may appear. "WILL" stands for the Will Properties of CONNECT.
_P = PacketType
PROPERTY_SPEC: dict[int, tuple[PropertyType, frozenset[int | str]]] = {
    PropertyId.PAYLOAD_FORMAT_INDICATOR: (PropertyType.BYTE, frozenset({_P.PUBLISH, "WILL"})),
    PropertyId.MESSAGE_EXPIRY_INTERVAL: (PropertyType.FOUR_BYTE, frozenset({_P.PUBLISH, "WILL"})),
    PropertyId.CONTENT_TYPE: (PropertyType.UTF8, frozenset({_P.PUBLISH, "WILL"})),
    PropertyId.RESPONSE_TOPIC: (PropertyType.UTF8, frozenset({_P.PUBLISH, "WILL"})),
    PropertyId.CORRELATION_DATA: (PropertyType.BINARY, frozenset({_P.PUBLISH, "WILL"})),
    PropertyId.SUBSCRIPTION_IDENTIFIER: (
        PropertyType.VARINT,
        frozenset({_P.PUBLISH, _P.SUBSCRIBE}),
    ),
    PropertyId.SESSION_EXPIRY_INTERVAL: (
        PropertyType.FOUR_BYTE,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    PropertyId.ASSIGNED_CLIENT_IDENTIFIER: (PropertyType.UTF8, frozenset({_P.CONNACK})),
    PropertyId.SERVER_KEEP_ALIVE: (PropertyType.TWO_BYTE, frozenset({_P.CONNACK})),
    PropertyId.AUTHENTICATION_METHOD: (
        PropertyType.UTF8,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    PropertyId.AUTHENTICATION_DATA: (
        PropertyType.BINARY,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    PropertyId.REQUEST_PROBLEM_INFORMATION: (PropertyType.BYTE, frozenset({_P.CONNECT})),
    PropertyId.WILL_DELAY_INTERVAL: (PropertyType.FOUR_BYTE, frozenset({"WILL"})),
    PropertyId.REQUEST_RESPONSE_INFORMATION: (PropertyType.BYTE, frozenset({_P.CONNECT})),
    PropertyId.RESPONSE_INFORMATION: (PropertyType.UTF8, frozenset({_P.CONNACK})),
    PropertyId.SERVER_REFERENCE: (PropertyType.UTF8, frozenset({_P.CONNACK, _P.DISCONNECT})),
    PropertyId.REASON_STRING: (
        PropertyType.UTF8,
        frozenset(
            {
                _P.CONNACK,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBACK,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    PropertyId.RECEIVE_MAXIMUM: (PropertyType.TWO_BYTE, frozenset({_P.CONNECT, _P.CONNACK})),
    PropertyId.TOPIC_ALIAS_MAXIMUM: (PropertyType.TWO_BYTE, frozenset({_P.CONNECT, _P.CONNACK})),
    PropertyId.TOPIC_ALIAS: (PropertyType.TWO_BYTE, frozenset({_P.PUBLISH})),
    PropertyId.MAXIMUM_QOS: (PropertyType.BYTE, frozenset({_P.CONNACK})),
    PropertyId.RETAIN_AVAILABLE: (PropertyType.BYTE, frozenset({_P.CONNACK})),
    PropertyId.USER_PROPERTY: (
        PropertyType.UTF8_PAIR,
        frozenset({*(t for t in _P if t not in (_P.PINGREQ, _P.PINGRESP)), "WILL"}),
    ),
    PropertyId.MAXIMUM_PACKET_SIZE: (PropertyType.FOUR_BYTE, frozenset({_P.CONNECT, _P.CONNACK})),
    PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE: (PropertyType.BYTE, frozenset({_P.CONNACK})),
    PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (PropertyType.BYTE, frozenset({_P.CONNACK})),
    PropertyId.SHARED_SUBSCRIPTION_AVAILABLE: (PropertyType.BYTE, frozenset({_P.CONNACK})),
}

#: Properties that may appear more than once in one packet (2.2.2.2, 3.3.2.3.8).
REPEATABLE = frozenset({PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER})

#: Byte-valued properties whose only legal values are 0 and 1.
BOOLEAN_PROPERTIES = frozenset(
    {
        PropertyId.PAYLOAD_FORMAT_INDICATOR,
        PropertyId.REQUEST_PROBLEM_INFORMATION,
        PropertyId.REQUEST_RESPONSE_INFORMATION,
        PropertyId.MAXIMUM_QOS,
        PropertyId.RETAIN_AVAILABLE,
        PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE,
        PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        PropertyId.SHARED_SUBSCRIPTION_AVAILABLE,
    }
)

#: Properties where 0 is a Protocol Error.
NONZERO_PROPERTIES = frozenset(
    {
        PropertyId.RECEIVE_MAXIMUM,
        PropertyId.MAXIMUM_PACKET_SIZE,
        PropertyId.SUBSCRIPTION_IDENTIFIER,
    }
)

#: Reason codes each acknowledgement may carry (3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1).
PUBACK_REASONS = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
PUBREL_REASONS = frozenset({0x00, 0x92})
#: Reason codes a DISCONNECT may carry (3.14.2.1).
DISCONNECT_REASONS = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90}
    | set(range(0x93, 0xA3))
)

#: Session Expiry Interval meaning "never expires" (3.1.2.11.2).
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
