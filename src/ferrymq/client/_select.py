"""Selectors evaluated in the client, for the one case the broker cannot: browsing a queue on
a broker without browse support, where the client reads every message and must filter.

The evaluation is core.selector's (the same compiled predicates the broker runs), over the
fields of a received message named as the broker names them (core.selection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferrymq.client._errors import InvalidSelectorError
from ferrymq.client._message import Message


def message_fields(msg: Message) -> Callable[[str], Any]:
    """`fields(name)` for a selector: JMS header fields, then properties."""

    def field(name: str) -> Any:
        if name.startswith("JMS"):
            if name == "JMSDeliveryMode":
                return "PERSISTENT" if msg.persistent else "NON_PERSISTENT"
            if name == "JMSPriority":
                return msg.priority
            if name == "JMSMessageID":
                return msg.message_id
            if name == "JMSTimestamp":
                ts = msg.timestamp
                return None if ts is None else int(ts) * 1000
            if name == "JMSCorrelationID":
                return msg.correlation_id
            if name == "JMSType":
                return msg.type
            if name == "JMSXDeliveryCount":
                return msg.delivery_count
        value = msg.properties.get(name)
        return None if isinstance(value, (bytes, bytearray)) else value

    return field


def filter_messages(selector: str, messages: list[Message]) -> list[Message]:
    try:
        from ferrymq.core.selector import compile_selector
    except ImportError:  # pragma: no cover - the selector engine ships with the broker
        raise InvalidSelectorError("this build has no selector engine to filter with") from None
    try:
        compiled = compile_selector(selector)
    except ValueError as exc:
        raise InvalidSelectorError(f"invalid selector: {exc}", 406) from None
    return [m for m in messages if compiled.matches(message_fields(m))]
