"""How a queued message looks to a JMS selector, and filters built from selectors.

The selector engine (core.selector) evaluates an expression over named fields; this module says
what the names mean for a message in a queue: JMS header fields map onto AMQP properties as
RabbitMQ's JMS client and ActiveMQ Artemis map them, and every other identifier is a header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ferrymq.core.errors import PreconditionFailed
from ferrymq.core.message import Entry, Message

if TYPE_CHECKING:
    from ferrymq.core.selector import Selector

JMS_DEFAULT_PRIORITY = 4


def _header_fields(message: Message, delivery_count: int) -> Callable[[str], Any]:
    props = message.properties
    headers = props.headers or {}

    def field(name: str) -> Any:
        if name.startswith("JMS"):
            if name == "JMSDeliveryMode":
                return "PERSISTENT" if message.persistent else "NON_PERSISTENT"
            if name == "JMSPriority":
                return props.priority if props.priority is not None else JMS_DEFAULT_PRIORITY
            if name == "JMSMessageID":
                return props.message_id
            if name == "JMSTimestamp":
                return None if props.timestamp is None else int(props.timestamp) * 1000
            if name == "JMSCorrelationID":
                return props.correlation_id
            if name == "JMSType":
                return props.type
            if name == "JMSXDeliveryCount":
                return delivery_count
            if name == "JMSXGroupID":
                return message.group
        value = headers.get(name)
        if isinstance(value, (bytes, bytearray)):
            return None  # byte arrays are not selectable (JMS 3.8.1.1)
        return value

    return field


def compile_or_refuse(text: Any) -> Selector:
    """Compile a selector from the wire; a bad one is a 406 with the parser's message."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str):
        raise PreconditionFailed(f"invalid selector: expected a string, got {type(text).__name__}")
    from ferrymq.core.selector import InvalidSelector, compile_selector

    try:
        return compile_selector(text)
    except InvalidSelector as exc:
        raise PreconditionFailed(f"invalid selector: {exc}") from None


# Dispatch offers one entry to consumer after consumer: build its field accessor once.
_last_entry: list[Any] = [None, None, 0]  # entry, accessor, delivery count it was built for


def _fields_of(entry: Entry) -> Callable[[str], Any]:
    if _last_entry[0] is entry and _last_entry[2] == entry.delivery_count:
        accessor: Callable[[str], Any] = _last_entry[1]
        return accessor
    accessor = _header_fields(entry.message, entry.delivery_count + 1)
    _last_entry[:] = [entry, accessor, entry.delivery_count]
    return accessor


def entry_filter(selector: Selector) -> Callable[[Entry], bool]:
    """A consumer filter: does this queued entry match?"""
    predicate = selector.predicate

    def accepts(entry: Entry) -> bool:
        return bool(predicate(_fields_of(entry)))

    return accepts


def message_matches(selector: Selector, message: Message) -> bool:
    """For binding filters, before the message reaches any queue."""
    return bool(selector.predicate(_header_fields(message, 1)))
