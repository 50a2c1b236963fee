"""Consumers and the sink a protocol gives core to deliver through.

A queue type delivers to a `Consumer`; the consumer belongs to a `DeliverySink`, the protocol's
notion of a channel or session, which numbers deliveries, tracks what is unacknowledged and
writes bytes. Credit is checked here so that prefetch, channel-wide prefetch and a socket that
stopped draining all hold back the queue the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ferrymq.core.message import Entry
    from ferrymq.core.queue_type import QueueType


class DeliverySink(Protocol):
    """What a protocol implements to receive deliveries (an AMQP channel, an MQTT session)."""

    def has_credit(self) -> bool:
        """False while the sink cannot take more (channel prefetch reached, socket backed up)."""
        ...

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        """Send one message. With consumer.no_ack the queue has already forgotten it."""
        ...

    def consumer_cancelled(self, consumer: Consumer) -> None:
        """The broker cancelled this consumer (queue deleted, single-active handover...)."""
        ...


class Consumer:
    """One subscription to one queue."""

    __slots__ = (
        "arguments",
        "exclusive",
        "filter",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "sink",
        "tag",
        "unacked",
    )

    def __init__(
        self,
        tag: str,
        sink: DeliverySink,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        prefetch: int = 0,
        priority: int = 0,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.tag = tag
        self.sink = sink
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch  # 0: unlimited
        self.priority = priority
        self.arguments = arguments or {}
        self.unacked = 0
        self.queue: QueueType | None = None
        # a message selector or similar: the consumer takes only entries it accepts
        self.filter: Callable[[Entry], bool] | None = None

    def has_credit(self) -> bool:
        if self.prefetch and self.unacked >= self.prefetch and not self.no_ack:
            return False
        return self.sink.has_credit()

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r}>"
