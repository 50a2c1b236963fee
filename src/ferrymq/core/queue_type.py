"""The one seam between routing and storage, like RabbitMQ's queue-type behaviour.

Everything above it (vhost, protocols) speaks to a queue only through `QueueType`: enqueue,
consumers, settlement by entry, get, purge, delete, stats. Dispatch, prefetch, TTL,
dead-lettering, priorities, max-length and single-active-consumer live behind it, so a
cluster-backed queue type can implement the same interface later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ferrymq.core.broker import Broker
    from ferrymq.core.clock import Clock
    from ferrymq.core.consumer import Consumer
    from ferrymq.core.message import Entry, Message


class QueueHost(Protocol):
    """What a queue needs from the vhost that holds it."""

    clock: Clock
    name: str
    broker: Broker

    def dead_letter(self, queue: QueueType, entries: list[Entry], reason: str) -> None: ...

    def queue_unused(self, queue: QueueType) -> None:
        """An auto-delete queue lost its last consumer, or an x-expires queue expired."""
        ...


class QueueType(ABC):
    """Abstract queue: see the module docstring."""

    name: str
    store_key: str  # the queue's identity in the message store (vhost and name)
    durable: bool
    auto_delete: bool
    exclusive_owner: object | None
    arguments: dict[str, Any]
    deleted: bool

    @abstractmethod
    def enqueue(self, message: Message) -> bool:
        """Add a message; False when the queue refused it (x-overflow reject-publish)."""

    @abstractmethod
    def add_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    def remove_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    def ack(self, entries: Iterable[Entry], consumer: Consumer | None) -> None: ...

    @abstractmethod
    def requeue(self, entries: Iterable[Entry], consumer: Consumer | None) -> None:
        """Return unacknowledged entries to their original place, marked redelivered."""

    @abstractmethod
    def reject(self, entries: Iterable[Entry], consumer: Consumer | None) -> None:
        """Settle as rejected without requeue: dead-letter where configured."""

    @abstractmethod
    def get(self, no_ack: bool) -> Entry | None: ...

    @abstractmethod
    def recover(self, message: Message, redelivered: bool) -> None:
        """Put back a message recovered from the store, in recovery (publish) order."""

    @abstractmethod
    def browse(self, consumer: Consumer) -> None:
        """Deliver a snapshot of the ready messages without consuming them, then cancel."""

    @abstractmethod
    def credit_available(self) -> None:
        """A sink or consumer can take more: try to dispatch."""

    @abstractmethod
    def purge(self) -> int: ...

    @abstractmethod
    def delete(self) -> int:
        """Delete; consumers are cancelled. Returns the number of ready messages dropped."""

    @abstractmethod
    def touch(self) -> None:
        """The queue was used (declare, get): restarts its x-expires timer."""

    @property
    @abstractmethod
    def message_count(self) -> int:
        """Ready messages (not counting unacknowledged ones), as AMQP reports."""

    @property
    @abstractmethod
    def consumer_count(self) -> int: ...

    @property
    def unacked_count(self) -> int:
        return 0

    @property
    def memory_bytes(self) -> int:
        """Body bytes this queue holds in memory (ready and unacknowledged)."""
        return 0
