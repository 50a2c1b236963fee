"""Messages as core sees them.

A `Message` is immutable once published and shared by every queue it is routed to (a fanout to
ten queues holds one body). Its properties travel in their canonical encoded form, AMQP 0-9-1's
basic-properties section, kept as received so an AMQP consumer gets the very bytes the publisher
sent. Core decodes them only when it must (headers routing, dead-lettering) through the
`PropertyCodec` the publishing protocol supplied: core never imports a protocol.

An `Entry` is one message's place in one queue: its order, expiry and delivery history.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol


class Properties(Protocol):
    """The fields of the canonical property set that core reads or rewrites."""

    headers: dict[str, Any] | None
    expiration: str | None
    priority: int | None
    delivery_mode: int | None
    reply_to: str | None


class PropertyCodec(Protocol):
    def decode(self, raw: bytes) -> Any: ...

    def encode(self, properties: Any) -> bytes: ...


_ids = itertools.count(1)


def reserve_message_ids(next_id: int) -> None:
    """Continue numbering after the ids a recovered store already used."""
    global _ids
    current = next(_ids)
    _ids = itertools.count(max(current, next_id))


def new_message_id() -> int:
    """A fresh id from the messages' counter (a queue paging a message out writes it under one)."""
    return next(_ids)


class Message:
    """A published message; never mutated after publish."""

    __slots__ = (
        "_properties",
        "body",
        "codec",
        "exchange",
        "group",
        "id",
        "persistent",
        "priority",
        "raw_properties",
        "routing_key",
        "ttl",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        raw_properties: bytes,
        body: bytes,
        codec: PropertyCodec,
        *,
        persistent: bool = False,
        priority: int = 0,
        ttl: float | None = None,
        properties: Any = None,
        msg_id: int = 0,
        group: str | None = None,
    ) -> None:
        self.id = msg_id or next(_ids)
        self.exchange = exchange
        self.routing_key = routing_key
        self.raw_properties = raw_properties
        self.body = body
        self.codec = codec
        self.persistent = persistent
        self.priority = priority
        self.ttl = ttl  # per-message TTL in seconds (AMQP expiration), None for none
        self._properties = properties
        self.group = group  # JMSXGroupID: messages of one group go to one consumer at a time

    @property
    def properties(self) -> Any:
        """The decoded properties (decoded once, on first use)."""
        if self._properties is None:
            self._properties = self.codec.decode(self.raw_properties)
        return self._properties

    @property
    def headers(self) -> Mapping[str, Any] | None:
        headers: Mapping[str, Any] | None = self.properties.headers
        return headers

    @property
    def size(self) -> int:
        return len(self.body)

    def derive(self, exchange: str, routing_key: str, properties: Any) -> Message:
        """A copy with new routing and properties (dead-lettering, reply-to rewriting)."""
        return Message(
            exchange,
            routing_key,
            self.codec.encode(properties),
            self.body,
            self.codec,
            persistent=self.persistent,
            priority=self.priority,
            ttl=None if properties.expiration is None else self.ttl,
            properties=properties,
            group=self.group,
        )


class Entry:
    """One message's place in one queue."""

    __slots__ = ("delivery_count", "expires_at", "message", "redelivered", "seq")

    def __init__(self, message: Message, seq: int, expires_at: float | None) -> None:
        self.message = message
        self.seq = seq
        self.expires_at = expires_at
        self.redelivered = False
        self.delivery_count = 0

    def __lt__(self, other: Entry) -> bool:
        return self.seq < other.seq
