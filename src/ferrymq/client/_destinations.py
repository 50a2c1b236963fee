"""Destinations: JMS queues and topics, and how they map onto AMQP 0-9-1.

A Queue is an AMQP queue of the same name, reached through the default exchange; a Topic is
the routing key of the same name on `amq.topic`, and every subscription to it is a queue bound
there (ARCHITECTURE.md, "Core model"; RabbitMQ's JMS client maps them the same way). Names are
plain data: creating one touches nothing on the broker, the session declares what it uses.

JMSReplyTo travels in the AMQP `reply-to` property. A queue is written as its bare name so a
pika or Celery RPC server can answer it on the default exchange; a topic is written
`/topic/<name>`, the STOMP and RabbitMQ address form, which no queue name can be confused with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TOPIC_EXCHANGE",
    "Destination",
    "Queue",
    "TemporaryQueue",
    "TemporaryTopic",
    "Topic",
    "destination_from_delivery",
    "destination_from_reply_to",
    "reply_to_address",
]

TOPIC_EXCHANGE = "amq.topic"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where messages go: a Queue or a Topic (abstract)."""

    name: str

    @property
    def exchange(self) -> str:
        """The AMQP exchange a send publishes to."""
        raise NotImplementedError

    @property
    def routing_key(self) -> str:
        """The AMQP routing key a send publishes with."""
        return self.name

    def __str__(self) -> str:
        return reply_to_address(self)


@dataclass(frozen=True, slots=True)
class Queue(Destination):
    """Point-to-point: each message goes to one consumer of the queue."""

    @property
    def exchange(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Topic(Destination):
    """Publish/subscribe: each subscription gets its own copy (routing key on amq.topic).

    Subscribers may use AMQP topic wildcards (`prices.*`, `prices.#`) in the name.
    """

    @property
    def exchange(self) -> str:
        return TOPIC_EXCHANGE


@dataclass(frozen=True, slots=True)
class TemporaryQueue(Queue):
    """A queue that lives as long as the connection that made it (JMS TemporaryQueue)."""

    _deleter: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def delete(self) -> Any:
        """Delete the queue now; with the asyncio client, await the result."""
        if self._deleter is None:
            from ferrymq.client._errors import IllegalStateError

            raise IllegalStateError("only the connection that created it can delete it")
        return self._deleter()


@dataclass(frozen=True, slots=True)
class TemporaryTopic(Topic):
    """A topic name unique to the connection that made it (JMS TemporaryTopic)."""

    _deleter: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def delete(self) -> Any:
        """Forget the topic; subscriptions to it end with their consumers."""
        if self._deleter is None:
            from ferrymq.client._errors import IllegalStateError

            raise IllegalStateError("only the connection that created it can delete it")
        return self._deleter()


def reply_to_address(destination: Destination) -> str:
    """The AMQP reply-to string for a destination (see the module docstring)."""
    if isinstance(destination, Topic):
        return "/topic/" + destination.name
    return destination.name


def destination_from_reply_to(address: str) -> Destination:
    """The destination a received reply-to names."""
    if address.startswith("/topic/"):
        return Topic(address[7:])
    if address.startswith("/exchange/amq.topic/"):
        return Topic(address[20:])
    if address.startswith("/queue/"):
        return Queue(address[7:])
    if address.startswith("/amq/queue/"):
        return Queue(address[11:])
    return Queue(address)


def destination_from_delivery(
    exchange: str, routing_key: str, fallback: Destination | None
) -> Destination | None:
    """JMSDestination of a received message: where it was sent, as far as AMQP tells."""
    if exchange == "":
        return Queue(routing_key)
    if exchange == TOPIC_EXCHANGE:
        return Topic(routing_key)
    return fallback
