"""JMS messages and their AMQP 0-9-1 form.

Header fields map onto AMQP properties as RabbitMQ's JMS client and ActiveMQ Artemis map them
(ARCHITECTURE.md): JMSMessageID -> message-id, JMSCorrelationID -> correlation-id (raw
octets, so a bytes id survives), JMSReplyTo -> reply-to (see _destinations), JMSDeliveryMode ->
delivery-mode 2/1, JMSPriority -> priority, JMSTimestamp -> timestamp (AMQP carries whole
seconds), JMSType -> type, JMSExpiration -> expiration (AMQP's is a relative TTL in
milliseconds; the absolute time is the timestamp plus it), JMSDeliveryTime -> the `x-delay`
header in milliseconds (RabbitMQ's delayed-message convention, which the broker honours).
Properties are the headers table, with their JMS widths (see _properties); JMSXGroupID and
JMSXGroupSeq are headers of those names; JMSXDeliveryCount is read from the broker's
`x-delivery-count` header (deliveries before this one) plus one.

The message kind travels in content-type so a pika consumer can read a message this client
sent, and so that messages pika sent arrive as the natural kind:

    TextMessage    text/plain (UTF-8; any text/* with a charset parameter is read as text)
    BytesMessage   application/octet-stream (also: any type not listed here, or none)
    MapMessage     application/x-jms-map     body: an AMQP field table (typed values)
    StreamMessage  application/x-jms-stream  body: an AMQP field array
    ObjectMessage  application/json, or application/x-python-pickle when the sender opted in
    Message        application/x-jms-message (headers and properties only)

Times are Python floats of seconds since the epoch (time.time()), not JMS's milliseconds; the
broker's selectors see JMSTimestamp in milliseconds as JMS says.

Received messages decode their AMQP properties on first use, so a consumer that only reads the
body never pays for the headers. Their properties and body are read-only (JMS 3.9/3.10) until
clear_properties() / clear_body().
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ferrymq.client._destinations import (
    Destination,
    destination_from_delivery,
    destination_from_reply_to,
    reply_to_address,
)
from ferrymq.client._errors import IllegalStateError, MessageFormatError, MessageNotWriteableError
from ferrymq.client._properties import check_property_name, check_property_value, convert, jms_type
from ferrymq.protocols.amqp.properties import BasicProperties, decode_properties, encode_properties
from ferrymq.protocols.amqp.tables import Float32, LongInt, LongLongInt, ShortInt, ShortShortInt

if TYPE_CHECKING:
    from ferrymq.client._session import CoreSession

__all__ = [
    "DEFAULT_PRIORITY",
    "DeliveryMode",
    "Message",
    "ObjectMessage",
    "TextMessage",
]

DEFAULT_PRIORITY = 4

CT_TEXT = "text/plain"
CT_BYTES = "application/octet-stream"
CT_MAP = "application/x-jms-map"
CT_STREAM = "application/x-jms-stream"
CT_JSON = "application/json"
CT_PICKLE = "application/x-python-pickle"
CT_MESSAGE = "application/x-jms-message"

H_DELAY = "x-delay"
H_DELIVERY_COUNT = "x-delivery-count"
H_GROUP_ID = "JMSXGroupID"
H_GROUP_SEQ = "JMSXGroupSeq"
H_ORIGIN = "x-jms-origin"  # the sending connection, for noLocal subscriptions
_HIDDEN = frozenset({H_DELAY, H_DELIVERY_COUNT, H_ORIGIN})


class DeliveryMode(IntEnum):
    """JMS delivery modes, valued as AMQP's delivery-mode property."""

    NON_PERSISTENT = 1
    PERSISTENT = 2


class Message:
    """A message with header fields and properties but no body (JMS Message).

    Args:
        properties: initial user properties (names must be identifiers; values bool, int,
            float, str or a typed width from ferrymq.client such as Short).
        correlation_id: JMSCorrelationID, a str or bytes.
        reply_to: JMSReplyTo, where a reply should go.
        type: JMSType, an application-defined type name.
        group_id: JMSXGroupID; messages of one group go to one consumer at a time.
        group_seq: JMSXGroupSeq, the position in the group.
    """

    CONTENT_TYPE: ClassVar[str | None] = CT_MESSAGE

    __slots__ = (
        "_chan",
        "_consumer_dest",
        "_correlation_id",
        "_delivery_count",
        "_delivery_mode",
        "_delivery_time",
        "_destination",
        "_exchange",
        "_expiration",
        "_group_id",
        "_group_seq",
        "_message_id",
        "_origin",
        "_priority",
        "_properties",
        "_props_ro",
        "_raw",
        "_received_at",
        "_redelivered",
        "_reply_to",
        "_routing_key",
        "_session",
        "_tag",
        "_timestamp",
        "_type",
        "body_read_only",
    )

    def __init__(
        self,
        *,
        properties: Mapping[str, Any] | None = None,
        correlation_id: str | bytes | None = None,
        reply_to: Destination | None = None,
        type: str | None = None,
        group_id: str | None = None,
        group_seq: int | None = None,
    ) -> None:
        self._raw: bytes | None = None
        self._message_id: str | None = None
        self._correlation_id: str | None = None
        self._reply_to: Destination | None = reply_to
        self._destination: Destination | None = None
        self._delivery_mode = DeliveryMode.PERSISTENT
        self._expiration: float | None = None
        self._delivery_time: float | None = None
        self._priority = DEFAULT_PRIORITY
        self._timestamp: float | None = None
        self._type = type
        self._redelivered = False
        self._delivery_count = 1
        self._group_id = group_id
        self._group_seq = group_seq
        self._properties: dict[str, Any] = {}
        self._props_ro = False
        self.body_read_only = False
        self._session: CoreSession | None = None
        self._tag = 0
        self._chan: Any = None
        self._origin: str | None = None
        self._exchange = ""
        self._routing_key = ""
        self._consumer_dest: Destination | None = None
        self._received_at = 0.0  # set on received messages
        if correlation_id is not None:
            self.correlation_id = correlation_id
        if properties:
            for name, value in properties.items():
                self.set_property(name, value)

    # -- received messages ---------------------------------------------------------------------

    def _decode(self) -> None:
        """Fill the header fields from the raw AMQP properties (received messages only)."""
        raw = self._raw
        if raw is None:
            return
        self._raw = None
        props = decode_properties(raw)
        self._message_id = props.message_id
        self._correlation_id = props.correlation_id
        if props.reply_to is not None:
            self._reply_to = destination_from_reply_to(props.reply_to)
        self._delivery_mode = (
            DeliveryMode.PERSISTENT if props.delivery_mode == 2 else DeliveryMode.NON_PERSISTENT
        )
        self._priority = DEFAULT_PRIORITY if props.priority is None else props.priority
        sent = None if props.timestamp is None else float(props.timestamp)
        self._timestamp = sent
        base = self._received_at if sent is None else sent
        self._type = props.type
        self._expiration = None
        if props.expiration is not None and props.expiration.isdigit():
            self._expiration = base + int(props.expiration) / 1000.0
        headers = props.headers
        self._delivery_time = sent
        if headers:
            user = self._properties
            for key, value in headers.items():
                if key in _HIDDEN:
                    if key == H_DELAY and isinstance(value, int) and not isinstance(value, bool):
                        self._delivery_time = base + value / 1000.0
                    elif key == H_DELIVERY_COUNT and isinstance(value, int):
                        self._delivery_count = int(value) + 1
                    elif key == H_ORIGIN and isinstance(value, str):
                        self._origin = value
                    continue
                if key == H_GROUP_ID:
                    self._group_id = None if value is None else str(value)
                elif key == H_GROUP_SEQ and isinstance(value, int):
                    self._group_seq = int(value)
                user[key] = value
        if self._redelivered and self._delivery_count < 2:
            self._delivery_count = 2

    # -- header fields -------------------------------------------------------------------------

    @property
    def message_id(self) -> str | None:
        """JMSMessageID ("ID:..."), set by send; None when ids are disabled."""
        if self._raw is not None:
            self._decode()
        return self._message_id

    @property
    def correlation_id(self) -> str | None:
        """JMSCorrelationID as text (bytes ids read back as their surrogate-escaped text)."""
        if self._raw is not None:
            self._decode()
        return self._correlation_id

    @correlation_id.setter
    def correlation_id(self, value: str | bytes | None) -> None:
        if self._raw is not None:
            self._decode()
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "surrogateescape")
        if value is not None and not isinstance(value, str):
            raise MessageFormatError("correlation_id must be str or bytes")
        self._correlation_id = value

    @property
    def correlation_id_bytes(self) -> bytes | None:
        """JMSCorrelationIDAsBytes: the id's octets as they travel."""
        cid = self.correlation_id
        return None if cid is None else cid.encode("utf-8", "surrogateescape")

    @correlation_id_bytes.setter
    def correlation_id_bytes(self, value: bytes | None) -> None:
        self.correlation_id = value

    @property
    def reply_to(self) -> Destination | None:
        """JMSReplyTo."""
        if self._raw is not None:
            self._decode()
        return self._reply_to

    @reply_to.setter
    def reply_to(self, value: Destination | None) -> None:
        if self._raw is not None:
            self._decode()
        if value is not None and not isinstance(value, Destination):
            raise MessageFormatError("reply_to must be a Queue or Topic")
        self._reply_to = value

    @property
    def destination(self) -> Destination | None:
        """JMSDestination: where the message was sent (set by send, or from the delivery)."""
        if self._destination is None and self._received_at:
            self._destination = destination_from_delivery(
                self._exchange, self._routing_key, self._consumer_dest
            )
        return self._destination

    @property
    def delivery_mode(self) -> DeliveryMode:
        """JMSDeliveryMode."""
        if self._raw is not None:
            self._decode()
        return self._delivery_mode

    @property
    def persistent(self) -> bool:
        return self.delivery_mode == DeliveryMode.PERSISTENT

    @property
    def expiration(self) -> float | None:
        """JMSExpiration as epoch seconds; None if the message never expires."""
        if self._raw is not None:
            self._decode()
        return self._expiration

    @property
    def delivery_time(self) -> float | None:
        """JMSDeliveryTime as epoch seconds: send time plus the delivery delay."""
        if self._raw is not None:
            self._decode()
        return self._delivery_time

    @property
    def priority(self) -> int:
        """JMSPriority, 0 (lowest) to 9; 4 by default."""
        if self._raw is not None:
            self._decode()
        return self._priority

    @property
    def timestamp(self) -> float | None:
        """JMSTimestamp as epoch seconds (AMQP keeps whole seconds); None when disabled."""
        if self._raw is not None:
            self._decode()
        return self._timestamp

    @property
    def type(self) -> str | None:
        """JMSType."""
        if self._raw is not None:
            self._decode()
        return self._type

    @type.setter
    def type(self, value: str | None) -> None:
        if self._raw is not None:
            self._decode()
        self._type = value

    @property
    def redelivered(self) -> bool:
        """JMSRedelivered: the broker delivered this message before."""
        return self._redelivered

    @property
    def delivery_count(self) -> int:
        """JMSXDeliveryCount: 1 on first delivery."""
        if self._raw is not None:
            self._decode()
        return self._delivery_count

    @property
    def group_id(self) -> str | None:
        """JMSXGroupID."""
        if self._raw is not None:
            self._decode()
        return self._group_id

    @group_id.setter
    def group_id(self, value: str | None) -> None:
        self._check_props_writable()
        self._group_id = value
        if value is None:
            self._properties.pop(H_GROUP_ID, None)
        else:
            self._properties[H_GROUP_ID] = str(value)

    @property
    def group_seq(self) -> int | None:
        """JMSXGroupSeq."""
        if self._raw is not None:
            self._decode()
        return self._group_seq

    @group_seq.setter
    def group_seq(self, value: int | None) -> None:
        self._check_props_writable()
        self._group_seq = value
        if value is None:
            self._properties.pop(H_GROUP_SEQ, None)
        else:
            self._properties[H_GROUP_SEQ] = int(value)

    # -- properties ----------------------------------------------------------------------------

    @property
    def properties(self) -> Mapping[str, Any]:
        """The properties, read-only (set them with set_property and the typed setters)."""
        if self._raw is not None:
            self._decode()
        return MappingProxyType(self._properties)

    def _check_props_writable(self) -> None:
        if self._raw is not None:
            self._decode()
        if self._props_ro:
            raise MessageNotWriteableError(
                "properties of a received message are read-only; call clear_properties() first"
            )

    def set_property(self, name: str, value: Any) -> None:
        """Set a property (JMS setObjectProperty): bool, int, float, str or a typed width."""
        self._check_props_writable()
        check_property_name(name)
        value = check_property_value(name, value)
        if name == H_GROUP_ID:
            self._group_id = str(value)
        elif name == H_GROUP_SEQ:
            self._group_seq = int(value)
        self._properties[name] = value

    def set_boolean_property(self, name: str, value: bool) -> None:
        self.set_property(name, bool(value))

    def set_byte_property(self, name: str, value: int) -> None:
        self.set_property(name, ShortShortInt(value))

    def set_short_property(self, name: str, value: int) -> None:
        self.set_property(name, ShortInt(value))

    def set_int_property(self, name: str, value: int) -> None:
        self.set_property(name, LongInt(value))

    def set_long_property(self, name: str, value: int) -> None:
        self.set_property(name, LongLongInt(value))

    def set_float_property(self, name: str, value: float) -> None:
        self.set_property(name, Float32(value))

    def set_double_property(self, name: str, value: float) -> None:
        self.set_property(name, float(value))

    def set_string_property(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise MessageFormatError(f"property {name!r}: expected a str")
        self.set_property(name, value)

    def get_property(self, name: str) -> Any:
        """The property's value as stored (JMS getObjectProperty); None when absent."""
        if self._raw is not None:
            self._decode()
        if name == "JMSXDeliveryCount":
            return self._delivery_count
        return self._properties.get(name)

    def _get_property(self, name: str, to: str) -> Any:
        return convert(name, self.get_property(name), to)

    def get_boolean_property(self, name: str) -> bool:
        result: bool = self._get_property(name, "boolean")
        return result

    def get_byte_property(self, name: str) -> int:
        result: int = self._get_property(name, "byte")
        return result

    def get_short_property(self, name: str) -> int:
        result: int = self._get_property(name, "short")
        return result

    def get_int_property(self, name: str) -> int:
        result: int = self._get_property(name, "int")
        return result

    def get_long_property(self, name: str) -> int:
        result: int = self._get_property(name, "long")
        return result

    def get_float_property(self, name: str) -> float:
        result: float = self._get_property(name, "float")
        return result

    def get_double_property(self, name: str) -> float:
        result: float = self._get_property(name, "double")
        return result

    def get_string_property(self, name: str) -> str | None:
        result: str | None = self._get_property(name, "String")
        return result

    def property_type(self, name: str) -> str | None:
        """The JMS type name of a property's value (int, short, String...), None if absent."""
        value = self.get_property(name)
        return None if value is None else jms_type(value)

    def has_property(self, name: str) -> bool:
        if self._raw is not None:
            self._decode()
        return name in self._properties or name == "JMSXDeliveryCount"

    def property_names(self) -> list[str]:
        if self._raw is not None:
            self._decode()
        return list(self._properties)

    def clear_properties(self) -> None:
        """Remove every property and make them writable again."""
        if self._raw is not None:
            self._decode()
        self._properties = {}
        self._group_id = None
        self._group_seq = None
        self._props_ro = False

    # -- body ----------------------------------------------------------------------------------

    @property
    def body(self) -> Any:
        """The body in its natural Python form (None for a plain Message)."""
        return None

    def clear_body(self) -> None:
        """Empty the body and make it writable again."""
        self.body_read_only = False

    def _check_body_writable(self) -> None:
        if self.body_read_only:
            raise MessageNotWriteableError(
                "the body of a received message is read-only; call clear_body() first"
            )

    def _body_bytes(self) -> bytes:
        return b""

    def _set_body_bytes(self, body: bytes) -> None:
        """Install a received body."""

    # -- acknowledgement -----------------------------------------------------------------------

    def acknowledge(self) -> None:
        """Acknowledge (JMS Message.acknowledge).

        In a CLIENT_ACKNOWLEDGE session this acknowledges every message the session consumed
        so far; in INDIVIDUAL_ACKNOWLEDGE only this one. Ignored in other modes.
        """
        session = self._session
        if session is None:
            raise IllegalStateError("only a received message can be acknowledged")
        session.acknowledge(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self.message_id!r} "
            f"properties={dict(self.properties)!r} body={self.body!r:.60}>"
        )

    # -- sending -------------------------------------------------------------------------------

    def _prepare_send(
        self,
        destination: Destination,
        delivery_mode: int,
        priority: int,
        ttl_ms: int,
        delay_ms: int,
        message_id: str | None,
        now: float,
        stamp_time: bool,
        origin: str | None,
    ) -> tuple[bytes, bytes]:
        """Stamp the header fields send() sets (JMS 3.4.11) and return (properties, body).

        The AMQP bytes are made here, once, so the application may change or resend the
        message as soon as send() returns, as JMS allows.
        """
        if self._raw is not None:
            self._decode()
        self._destination = destination
        self._delivery_mode = DeliveryMode(delivery_mode)
        self._priority = priority
        self._message_id = message_id
        self._timestamp = now if stamp_time else None
        self._expiration = now + ttl_ms / 1000.0 if ttl_ms > 0 else None
        self._delivery_time = now + delay_ms / 1000.0 if delay_ms > 0 else now
        props = self._properties
        headers: dict[str, Any] | None = None
        if props or delay_ms > 0 or origin is not None:
            headers = dict(props)
            if delay_ms > 0:
                headers[H_DELAY] = delay_ms
            if origin is not None:
                headers[H_ORIGIN] = origin
        reply_to = self._reply_to
        raw = encode_properties(
            BasicProperties(
                content_type=self._content_type_out(),
                headers=headers,
                delivery_mode=delivery_mode,
                priority=priority,
                correlation_id=self._correlation_id,
                reply_to=None if reply_to is None else reply_to_address(reply_to),
                expiration=str(ttl_ms) if ttl_ms > 0 else None,
                message_id=message_id,
                timestamp=int(now) if stamp_time else None,
                type=self._type,
            )
        )
        return raw, self._body_bytes()

    def _content_type_out(self) -> str | None:
        return self.CONTENT_TYPE


class TextMessage(Message):
    """A message whose body is a string (JMS TextMessage)."""

    CONTENT_TYPE = CT_TEXT
    __slots__ = ("_charset", "_data", "_text")

    def __init__(self, text: str | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self._text = text
        self._data: bytes | None = None
        self._charset = "utf-8"

    @property
    def text(self) -> str | None:
        """The body text."""
        if self._data is not None:
            self._text = self._data.decode(self._charset, "replace")
            self._data = None
        return self._text

    @text.setter
    def text(self, value: str | None) -> None:
        self._check_body_writable()
        if value is not None and not isinstance(value, str):
            raise MessageFormatError("text must be a str")
        self._data = None
        self._text = value

    @property
    def body(self) -> str | None:
        return self.text

    def clear_body(self) -> None:
        super().clear_body()
        self._text = None
        self._data = None

    def _body_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        return b"" if self._text is None else self._text.encode("utf-8")

    def _set_body_bytes(self, body: bytes) -> None:
        self._data = body


#: Serializers an ObjectMessage can use, by name, with their content types.
SERIALIZERS: dict[str, str] = {"json": CT_JSON, "pickle": CT_PICKLE}


class ObjectMessage(Message):
    """A message whose body is a Python object (JMS ObjectMessage).

    JSON by default: any peer can read it and reading it runs no code. `serializer="pickle"`
    carries any picklable object between Python programs, but unpickling runs code chosen by
    whoever made the bytes, so a receiving connection refuses pickled bodies unless it was
    opened with `allow_pickle=True`: do that only when every sender is trusted.
    """

    CONTENT_TYPE = CT_JSON
    __slots__ = ("_allow_pickle", "_data", "_object", "_serializer")

    def __init__(self, obj: Any = None, *, serializer: str = "json", **fields: Any) -> None:
        super().__init__(**fields)
        if serializer not in SERIALIZERS:
            raise MessageFormatError(f"unknown serializer {serializer!r}: use 'json' or 'pickle'")
        self._serializer = serializer
        self._object = obj
        self._data: bytes | None = None
        self._allow_pickle = False

    @property
    def serializer(self) -> str:
        return self._serializer

    @property
    def object(self) -> Any:
        """The deserialized body."""
        data = self._data
        if data is not None:
            if self._serializer == "pickle":
                if not self._allow_pickle:
                    raise MessageFormatError(
                        "refusing to unpickle a message body: open the connection with "
                        "allow_pickle=True if every sender is trusted"
                    )
                self._object = pickle.loads(data)
            else:
                try:
                    self._object = json.loads(data) if data else None
                except ValueError as exc:
                    raise MessageFormatError(f"object message body is not JSON: {exc}") from None
            self._data = None
        return self._object

    @object.setter
    def object(self, value: Any) -> None:
        self._check_body_writable()
        self._data = None
        self._object = value

    @property
    def body(self) -> Any:
        return self.object

    def clear_body(self) -> None:
        super().clear_body()
        self._object = None
        self._data = None

    def _body_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        if self._serializer == "pickle":
            return pickle.dumps(self._object, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            return json.dumps(self._object, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise MessageFormatError(
                f"object is not JSON-serializable ({exc}); use serializer='pickle' between "
                "trusted Python programs"
            ) from None

    def _set_body_bytes(self, body: bytes) -> None:
        self._data = body

    def _content_type_out(self) -> str | None:
        return SERIALIZERS[self._serializer]


def _init_received(msg: Message) -> None:
    """The fields __init__ would set, for a message made with __new__ (the receive path)."""
    msg._raw = None
    msg._message_id = None
    msg._correlation_id = None
    msg._reply_to = None
    msg._destination = None
    msg._delivery_mode = DeliveryMode.NON_PERSISTENT
    msg._expiration = None
    msg._delivery_time = None
    msg._priority = DEFAULT_PRIORITY
    msg._timestamp = None
    msg._type = None
    msg._redelivered = False
    msg._delivery_count = 1
    msg._group_id = None
    msg._group_seq = None
    msg._properties = {}
    msg._props_ro = True
    msg.body_read_only = True
    msg._session = None
    msg._tag = 0
    msg._chan = None
    msg._origin = None
    msg._consumer_dest = None
    msg._received_at = time.time()
