"""A virtual host: exchanges, queues, bindings, and the routing between them.

Routing follows RabbitMQ: the default exchange routes to the queue named by the routing key;
exchange-to-exchange bindings are followed once each (cycles end); an exchange that routes a
message nowhere hands it to its alternate exchange; a message reaches each queue at most once.
Dead-lettering writes the `x-death` header the way RabbitMQ does.
"""

from __future__ import annotations

import base64
import copy
import datetime
import os
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from ferrymq.core.arguments import check_equivalent, check_flag, queue_settings
from ferrymq.core.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from ferrymq.core.exchange import EXCHANGE_TYPES, Binding, Exchange, make_exchange
from ferrymq.core.message import Entry, Message
from ferrymq.core.selection import compile_or_refuse, message_matches
from ferrymq.core.topic_trie import TopicTrie
from ferrymq.queues.classic import ClassicQueue

if TYPE_CHECKING:
    from ferrymq.core.broker import Broker
    from ferrymq.core.consumer import Consumer
    from ferrymq.core.queue_type import QueueType
    from ferrymq.core.selector import Selector

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DIRECT_REPLY_PREFIX = DIRECT_REPLY_TO + "."
PREDECLARED = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}


def _queue_dest(name: str) -> tuple[str, str]:
    return ("queue", name)


def _exchange_dest(name: str) -> tuple[str, str]:
    return ("exchange", name)


class PublishOutcome:
    """What became of one publish: how many queues took it, whether any refused it, and
    whether it was written to the store (its confirm then waits for the commit)."""

    __slots__ = ("persisted", "refused", "routed")

    def __init__(self, routed: int, refused: bool, persisted: bool = False) -> None:
        self.routed = routed
        self.refused = refused
        self.persisted = persisted


class VHost:
    """See the module docstring."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.clock = broker.clock
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, QueueType] = {}
        self._exclusive: dict[object, set[str]] = {}
        self._reply_to: dict[str, Consumer] = {}
        self.delayed = 0  # messages waiting for their delivery time
        # (exchange, destination) pairs with an x-selector binding: routing checks those bindings
        self._filtered: set[tuple[str, Hashable]] = set()
        self._selectors: dict[str, Selector] = {}
        self._single_topic: dict[str, TopicTrie] = {}
        for xname, xtype in PREDECLARED.items():
            self.exchanges[xname] = make_exchange(xtype, xname, durable=True)

    # -- exchanges -------------------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        try:
            return self.exchanges[name]
        except KeyError:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'") from None

    def declare_exchange(
        self,
        name: str,
        type_: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Exchange:
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
            return existing
        if name.startswith("amq.") and existing is None:
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        if type_ not in EXCHANGE_TYPES:
            raise CommandInvalid(f"invalid exchange type '{type_}'")
        if existing is not None:
            if existing.type != type_:
                raise PreconditionFailed(
                    f"inequivalent arg 'type' for exchange '{name}' in vhost '{self.name}': "
                    f"received '{type_}' but current is '{existing.type}'"
                )
            check_flag("exchange", name, self.name, "durable", existing.durable, durable)
            check_flag(
                "exchange", name, self.name, "auto_delete", existing.auto_delete, auto_delete
            )
            check_flag("exchange", name, self.name, "internal", existing.internal, internal)
            return existing
        args = dict(arguments or {})
        ae = args.get("alternate-exchange")
        if ae is not None and not isinstance(ae, (str, bytes)):
            raise PreconditionFailed(
                f"invalid arg 'alternate-exchange' for exchange '{name}' in vhost '{self.name}'"
            )
        try:
            exchange = make_exchange(
                type_,
                name,
                durable=durable,
                auto_delete=auto_delete,
                internal=internal,
                arguments=args,
            )
        except (KeyError, ValueError) as exc:
            raise PreconditionFailed(str(exc)) from None
        self.exchanges[name] = exchange
        if durable:
            self.broker.definitions_changed()
        return exchange

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        if name == "" or name.startswith("amq."):
            raise AccessRefused(
                "operation not permitted on the default exchange"
                if name == ""
                else f"exchange name '{name}' contains reserved prefix 'amq.*'"
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ: deleting a missing exchange is ok
        if if_unused and exchange.binding_count():  # only bindings where it is the source
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        self.exchanges.pop(exchange.name, None)
        self._unbind_everywhere(_exchange_dest(exchange.name))
        if exchange.durable:
            self.broker.definitions_changed()

    def _unbind_everywhere(self, destination: Hashable) -> None:
        for source in list(self.exchanges.values()):
            if source.unbind_destination(destination):
                self._maybe_auto_delete(source)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.binding_count():
            if self.exchanges.get(exchange.name) is exchange:
                self._remove_exchange(exchange)

    # -- queues ----------------------------------------------------------------------------------

    def queue(self, name: str, owner: object | None = None) -> QueueType:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(name)
        return queue

    def _locked(self, name: str) -> ResourceLocked:
        return ResourceLocked(
            f"cannot obtain exclusive access to locked queue '{name}' in vhost '{self.name}'. "
            "It could be originally declared on another connection or the exclusive property "
            "value does not match that of the original declaration."
        )

    def declare_queue(
        self,
        name: str,
        *,
        owner: object,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> QueueType:
        if passive:
            queue = self.queue(name, owner)
            queue.touch()
            return queue
        if not name:
            name = self._server_name()
        elif name.startswith("amq."):
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        args = dict(arguments or {})
        existing = self.queues.get(name)
        if existing is not None:
            self.queue(name, owner)  # exclusivity check
            check_flag("queue", name, self.name, "durable", existing.durable, durable)
            check_flag("queue", name, self.name, "auto_delete", existing.auto_delete, auto_delete)
            if (existing.exclusive_owner is not None) != exclusive:
                raise self._locked(name)
            check_equivalent("queue", name, self.name, existing.arguments, args)
            existing.touch()
            return existing
        settings = queue_settings(args, name, self.name, self.broker.config.consumer_timeout)
        queue = ClassicQueue(
            self,
            name,
            durable=durable,
            auto_delete=auto_delete,
            exclusive_owner=owner if exclusive else None,
            arguments=args,
            settings=settings,
        )
        self.queues[name] = queue
        if exclusive:
            self._exclusive.setdefault(owner, set()).add(name)
        elif durable:
            self.broker.definitions_changed()
        return queue

    def _server_name(self) -> str:
        while True:
            name = "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            if name not in self.queues:
                return name

    def delete_queue(
        self, name: str, *, owner: object, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0  # RabbitMQ 3.x: deleting a missing queue succeeds with 0
        self.queue(name, owner)
        if if_unused and queue.consumer_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' is not empty")
        return self._remove_queue(queue)

    def _remove_queue(self, queue: QueueType) -> int:
        if self.queues.get(queue.name) is not queue:
            return 0
        del self.queues[queue.name]
        if queue.exclusive_owner is not None:
            names = self._exclusive.get(queue.exclusive_owner)
            if names is not None:
                names.discard(queue.name)
        self._unbind_everywhere(_queue_dest(queue.name))
        count = queue.delete()
        if queue.durable and queue.exclusive_owner is None:
            self.broker.definitions_changed()
        return count

    def purge_queue(self, name: str, *, owner: object) -> int:
        return self.queue(name, owner).purge()

    def queue_unused(self, queue: QueueType) -> None:
        self._remove_queue(queue)

    def owner_closed(self, owner: object) -> None:
        """A connection went away: its exclusive queues go with it."""
        for name in sorted(self._exclusive.pop(owner, ())):
            queue = self.queues.get(name)
            if queue is not None:
                self._remove_queue(queue)

    # -- bindings --------------------------------------------------------------------------------

    def _bindable_source(self, name: str) -> Exchange:
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        return self.exchange(name)

    def bind_queue(
        self,
        queue_name: str,
        exchange_name: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
        *,
        owner: object,
    ) -> None:
        self.queue(queue_name, owner)
        source = self._bindable_source(exchange_name)
        binding = Binding(_queue_dest(queue_name), routing_key, dict(arguments or {}))
        self._validate(source, binding)
        self._note_selector(source, binding)
        if source.bind(binding) and self._durable_binding(source, binding):
            self.broker.definitions_changed()

    def unbind_queue(
        self,
        queue_name: str,
        exchange_name: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
        *,
        owner: object,
    ) -> None:
        # RabbitMQ: unbinding from a missing queue or exchange succeeds (nothing to remove)
        if queue_name in self.queues:
            self.queue(queue_name, owner)
        if exchange_name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        source = self.exchanges.get(exchange_name)
        if source is None:
            return
        binding = Binding(_queue_dest(queue_name), routing_key, dict(arguments or {}))
        if source.unbind(binding):
            self._maybe_auto_delete(source)
            if self._durable_binding(source, binding):
                self.broker.definitions_changed()

    def bind_exchange(
        self,
        destination: str,
        source_name: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
    ) -> None:
        self._bindable_source(destination)
        source = self._bindable_source(source_name)
        binding = Binding(_exchange_dest(destination), routing_key, dict(arguments or {}))
        self._validate(source, binding)
        self._note_selector(source, binding)
        if source.bind(binding) and self._durable_binding(source, binding):
            self.broker.definitions_changed()

    def unbind_exchange(
        self,
        destination: str,
        source_name: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
    ) -> None:
        if "" in (destination, source_name):
            raise AccessRefused("operation not permitted on the default exchange")
        source = self.exchanges.get(source_name)
        if source is None:
            return
        binding = Binding(_exchange_dest(destination), routing_key, dict(arguments or {}))
        if source.unbind(binding):
            self._maybe_auto_delete(source)
            if self._durable_binding(source, binding):
                self.broker.definitions_changed()

    def _durable_binding(self, source: Exchange, binding: Binding) -> bool:
        """A binding survives a restart when both of its ends do (RabbitMQ)."""
        if not source.durable:
            return False
        kind, name = cast(tuple[str, str], binding.destination)
        if kind == "queue":
            queue = self.queues.get(name)
            return queue is not None and queue.durable and queue.exclusive_owner is None
        target = self.exchanges.get(name)
        return target is not None and target.durable

    # -- selector bindings (JMS topic subscriptions with a selector) -------------------------------

    def _note_selector(self, source: Exchange, binding: Binding) -> None:
        text = binding.arguments.get("x-selector")
        if text is None:
            return
        key = str(text)
        if key not in self._selectors:
            self._selectors[key] = compile_or_refuse(text)
        if not self._selectors[key].selects_all:
            self._filtered.add((source.name, binding.destination))

    def _admits(self, exchange: Exchange, destination: Hashable, message: Message) -> bool:
        """Does a binding from exchange to destination take this message (key and selector)?"""
        for binding in exchange.bindings_to(destination):
            if exchange.type == "direct" and binding.routing_key != message.routing_key:
                continue
            if exchange.type == "topic" and not self._topic_match(
                binding.routing_key, message.routing_key
            ):
                continue
            text = binding.arguments.get("x-selector")
            if text is None:
                return True
            if message_matches(self._selectors[str(text)], message):
                return True
        return False

    def _topic_match(self, pattern: str, key: str) -> bool:
        trie = self._single_topic.get(pattern)
        if trie is None:
            trie = self._single_topic[pattern] = TopicTrie()
            trie.add(pattern, True)
        return bool(trie.match(key))

    @staticmethod
    def _validate(source: Exchange, binding: Binding) -> None:
        try:
            source.validate_binding(binding)
        except ValueError as exc:
            raise PreconditionFailed(str(exc)) from None

    # -- publishing ------------------------------------------------------------------------------

    def check_publish(self, exchange_name: str) -> None:
        """Refuse publishing to a missing or internal exchange (404 / 403)."""
        if exchange_name == "":
            return
        exchange = self.exchange(exchange_name)
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal exchange '{exchange_name}' in vhost '{self.name}'"
            )

    def route(self, exchange_name: str, message: Message) -> list[QueueType]:
        """The queues a message published to `exchange_name` reaches (each once)."""
        if exchange_name == "":
            queue = self.queues.get(message.routing_key)
            return [] if queue is None else [queue]
        exchange = self.exchanges.get(exchange_name)
        if exchange is None:
            return []
        if (
            exchange.type != "headers"
            and exchange.alternate_exchange is None
            and not self._filtered
        ):
            # fast path: one exchange, no headers, no alternate exchange
            dests = exchange.route(message.routing_key, None)
            if not dests:
                return []
            if len(dests) == 1:
                for dest in dests:
                    kind, name = cast(tuple[str, str], dest)
                    if kind == "queue":
                        q = self.queues.get(name)
                        return [] if q is None else [q]
        names: dict[str, None] = {}
        self._route_into(exchange, message, names, set())
        queues = self.queues
        return [queues[n] for n in names if n in queues]

    def _route_into(
        self, exchange: Exchange, message: Message, out: dict[str, None], seen: set[str]
    ) -> None:
        seen.add(exchange.name)
        headers = message.headers if exchange.type == "headers" else None
        dests = exchange.route(message.routing_key, headers)
        if not dests:
            ae = exchange.alternate_exchange
            if ae is not None and ae not in seen:
                alternate = self.exchanges.get(ae)
                if alternate is not None:
                    self._route_into(alternate, message, out, seen)
            return
        filtered = self._filtered
        for dest in dests:
            if filtered and (exchange.name, dest) in filtered:
                if not self._admits(exchange, dest, message):
                    continue
            kind, name = cast(tuple[str, str], dest)
            if kind == "queue":
                out[name] = None
            elif name not in seen:
                target = self.exchanges.get(name)
                if target is not None:
                    self._route_into(target, message, out, seen)

    def publish(self, exchange_name: str, message: Message, delay: float = 0.0) -> PublishOutcome:
        """Route and enqueue. The caller has already called check_publish.

        With a delay (the x-delay header, as RabbitMQ's delayed-message plugin), the message is
        held and routed when its time comes; a persistent one is kept in the store meanwhile.
        """
        if delay > 0:
            return self._delay(exchange_name, message, delay)
        if exchange_name == "" and message.routing_key.startswith(DIRECT_REPLY_PREFIX):
            return PublishOutcome(int(self._direct_reply(message)), False)
        queues = self.route(exchange_name, message)
        refused, persisted = self._enqueue(message, queues)
        return PublishOutcome(len(queues), refused, persisted)

    def _enqueue(self, message: Message, queues: list[QueueType]) -> tuple[bool, bool]:
        """Enqueue into each queue; a persistent message bound for durable queues is written to
        the store first, once. Returns (refused by some queue, written to the store)."""
        store = self.broker.store
        persisted = False
        if message.persistent and store is not None:
            durable = [q.store_key for q in queues if q.durable]
            if durable:
                store.write_message(
                    message.id,
                    durable,
                    message.exchange,
                    message.routing_key,
                    message.raw_properties,
                    message.body,
                )
                persisted = True
        refused = False
        for queue in queues:
            if not queue.enqueue(message):
                refused = True
                if persisted and queue.durable:
                    store.settle(message.id, queue.store_key)  # type: ignore[union-attr]
        return refused, persisted

    # -- delivery delay --------------------------------------------------------------------------

    @property
    def delayed_store_key(self) -> str:
        """The store key of the vhost's delayed messages (a NUL-named pseudo-queue)."""
        return f"{self.name}\x00\x00delayed"

    def _delay(self, exchange_name: str, message: Message, delay: float) -> PublishOutcome:
        store = self.broker.store
        persisted = False
        if message.persistent and store is not None:
            store.write_message(
                message.id,
                [self.delayed_store_key],
                exchange_name,
                message.routing_key,
                message.raw_properties,
                message.body,
            )
            persisted = True
        self.schedule_delayed(exchange_name, message, delay, persisted)
        return PublishOutcome(1, False, persisted)

    def schedule_delayed(
        self, exchange_name: str, message: Message, delay: float, persisted: bool
    ) -> None:
        """Route `message` once `delay` seconds have passed (also used by recovery)."""
        self.delayed += 1

        def due() -> None:
            self.delayed -= 1
            # routed as a new message; the held copy leaves the store once the new one is in
            routed = Message(
                exchange_name,
                message.routing_key,
                message.raw_properties,
                message.body,
                message.codec,
                persistent=message.persistent,
                priority=message.priority,
                ttl=message.ttl,
                properties=message._properties,
                group=message.group,
            )
            if exchange_name == "" or exchange_name in self.exchanges:
                self._enqueue(routed, self.route(exchange_name, routed))
            store = self.broker.store
            if persisted and store is not None:
                store.settle(message.id, self.delayed_store_key)

        self.clock.call_at(self.clock.now() + delay, due)

    # -- direct reply-to -------------------------------------------------------------------------

    def register_reply_to(self, consumer: Consumer) -> str:
        """Register a direct reply-to consumer; returns the reply-to address to publish with."""
        token = base64.urlsafe_b64encode(os.urandom(18)).decode()
        address = DIRECT_REPLY_PREFIX + token
        self._reply_to[address] = consumer
        return address

    def unregister_reply_to(self, address: str) -> None:
        self._reply_to.pop(address, None)

    def _direct_reply(self, message: Message) -> bool:
        consumer = self._reply_to.get(message.routing_key)
        if consumer is None:
            return False
        consumer.sink.deliver(consumer, Entry(message, 0, None), None)
        return True

    # -- dead-lettering --------------------------------------------------------------------------

    def dead_letter(self, queue: QueueType, entries: list[Entry], reason: str) -> None:
        settings = getattr(queue, "settings", None)
        if settings is None or settings.dead_letter_exchange is None:
            return
        dlx: str = settings.dead_letter_exchange
        if dlx != "" and dlx not in self.exchanges:
            return  # RabbitMQ drops dead letters whose DLX does not exist
        dlrk = settings.dead_letter_routing_key
        now = datetime.datetime.fromtimestamp(int(self.clock.wall()), tz=datetime.UTC)
        for entry in entries:
            message = entry.message
            props = copy.copy(message.properties)
            headers = dict(props.headers or {})
            _add_death(headers, queue.name, reason, message, props.expiration, now)
            props.headers = headers
            props.expiration = None
            routing_key = message.routing_key if dlrk is None else dlrk
            dead = message.derive(dlx, routing_key, props)
            targets = [
                target
                for target in self.route(dlx, dead)
                # a fully automatic cycle: RabbitMQ drops it
                if target is not queue or reason == "rejected" or _rejected_in(headers)
            ]
            self._enqueue(dead, targets)


def _rejected_in(headers: dict[str, Any]) -> bool:
    deaths = headers.get("x-death") or []
    return any(isinstance(d, dict) and d.get("reason") == "rejected" for d in deaths)


def _add_death(
    headers: dict[str, Any],
    queue: str,
    reason: str,
    message: Message,
    expiration: str | None,
    now: datetime.datetime,
) -> None:
    """Update the x-death header as RabbitMQ's rabbit_dead_letter does."""
    deaths = [d for d in (headers.get("x-death") or []) if isinstance(d, dict)]
    for i, death in enumerate(deaths):
        if death.get("queue") == queue and death.get("reason") == reason:
            death = dict(death)
            death["count"] = int(death.get("count", 0)) + 1
            death["time"] = now
            deaths.pop(i)
            deaths.insert(0, death)
            break
    else:
        death = {
            "count": 1,
            "reason": reason,
            "queue": queue,
            "time": now,
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        if expiration is not None:
            death["original-expiration"] = expiration
        deaths.insert(0, death)
    headers["x-death"] = deaths
    headers.setdefault("x-first-death-reason", reason)
    headers.setdefault("x-first-death-queue", queue)
    headers.setdefault("x-first-death-exchange", message.exchange)
