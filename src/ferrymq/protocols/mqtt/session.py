"""MQTT sessions over core: subscriptions as queues and bindings, deliveries, QoS 1 and 2 state.

Theory of operation. A session (4.1) outlives its network connections when the client asks for
it (Clean Session 0 in 3.x, a Session Expiry Interval in 5.0). Its subscriptions live in core,
as RabbitMQ's MQTT plugin keeps them:

- subscriptions granted QoS 0 bind queue `mqtt-subscription-<client id>qos0` to `amq.topic`,
  and those granted QoS 1 or 2 bind `mqtt-subscription-<client id>qos1`; the binding key is the
  filter in AMQP form (topics.py). The QoS 0 queue has a no-ack consumer (the fast path: a
  message goes from the publisher's socket to the subscriber's write buffer with no state
  kept). It exists only while the client is connected: QoS 0 messages are not kept for an
  offline client (Mosquitto's default; MQTT-3.1.2-5 lets us choose). The QoS 1 queue keeps
  messages while the client is away and is declared durable for persistent sessions, so the
  journal will keep it when it lands.
- a shared subscription `$share/<group>/<filter>` (4.8.2) is one queue per (group, filter) in the
  vhost, `mqtt-shared-<group>-<filter>`, with one consumer per member session: the queue's
  round robin spreads the messages over the online members, and it keeps them while none is.

A queue delivers to the session (core's `DeliverySink`). The session checks the message against
the subscriptions of that queue with MQTT's own matching (topics.FilterTree) unless the AMQP
match is already exact (one subscription, plain filter, plain topic), then applies No Local,
the effective QoS (the minimum of the publish QoS and the best matching subscription's QoS,
MQTT-3.8.4-8), Retain As Published and the Subscription Identifiers, and writes the PUBLISH.

Outgoing QoS 1 and 2 messages are in flight under a packet identifier until PUBACK, or PUBREC
then PUBCOMP; the queue entry is acknowledged at PUBACK or PUBREC (after PUBREC the message is
the client's, 4.3.3). In-flight messages stay with a session across a reconnect and are sent
again with DUP set (MQTT-4.4.0-1); the Receive Maximum (or, for 3.x clients, our own limit)
caps them (MQTT-3.3.4-9). Incoming QoS 2 packet identifiers are remembered until PUBREL, so a
re-sent PUBLISH is not routed twice ("method B" of 4.3.3: exactly once).

Persistence. Sessions live in memory (`SessionRegistry`); a persistent session's record (its
subscriptions, QoS 0 ones included, its pending will, when it went offline, its QoS 2 packet
identifiers) is written to disk by a writer the server gives the registry (session_store.py has
the format, server/mqtt_sessions_file.py the file). Every change to what is recorded calls
`SessionRegistry.changed`: structural changes (connect, disconnect, subscribe, unsubscribe, a
will held or published, the end) ask for a rewrite; QoS 2 identifier changes only mark the
session's cached record stale, so they ride along with the next rewrite and the shutdown one,
and no message ever causes a write. The queued messages themselves are in durable queues and
the journal. Expiry and will delays are kept as wall-clock times on disk, so a session's expiry
continues across a restart (`resume_offline`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ferrymq.core.clock import TimerHandle
from ferrymq.core.consumer import Consumer
from ferrymq.core.errors import BrokerError
from ferrymq.core.message import Entry
from ferrymq.core.queue_type import QueueType
from ferrymq.protocols.mqtt.codec import encode_ack
from ferrymq.protocols.mqtt.constants import (
    MQTT_5,
    SESSION_NEVER_EXPIRES,
    PacketType,
)
from ferrymq.protocols.mqtt.mapping import ForeignView, MQTTMessage, publish_packet, view_of
from ferrymq.protocols.mqtt.topics import (
    FilterTree,
    filter_to_binding_key,
    needs_mqtt_check,
)

if TYPE_CHECKING:
    from ferrymq.core.vhost import VHost
    from ferrymq.protocols.mqtt.broker import MQTTBroker

log = logging.getLogger("ferrymq.mqtt")

_PUBREL = PacketType.PUBREL


class Output(Protocol):
    """What a session needs of the connection it is attached to."""

    version: int
    writable: bool
    max_packet_size: int  # the client's Maximum Packet Size (3.1.2.11.4)

    def send(self, data: bytes) -> None: ...

    def outgoing_alias(self, topic: str) -> tuple[int, bool]:
        """(alias, already known to the client) for a topic; (0, False) for no alias."""
        ...

    def drop_alias(self, topic: str) -> None:
        """The packet that would have set up the topic's alias was not sent after all."""
        ...

    def subscription_queue_lost(self) -> None:
        """A queue of this session was deleted by someone else (an AMQP client, an operator)."""
        ...


class Subscription:
    """One subscription and its options (3.8.3.1)."""

    __slots__ = (
        "binding_args",
        "binding_key",
        "check",
        "key",
        "no_local",
        "qos",
        "retain_as_published",
        "retain_handling",
        "share",
        "sub_id",
        "topic_filter",
    )

    def __init__(
        self,
        key: str,
        topic_filter: str,
        qos: int,
        *,
        share: str | None = None,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int = 0,
    ) -> None:
        self.key = key  # as subscribed: with the $share/<group>/ prefix if shared
        self.topic_filter = topic_filter
        self.qos = qos
        self.share = share
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.sub_id = sub_id
        self.binding_key = filter_to_binding_key(topic_filter)
        self.check = needs_mqtt_check(topic_filter)
        # The binding carries the subscription, so a recovered durable queue (or an operator
        # listing bindings) tells which MQTT subscriptions it serves.
        options = qos | (4 if no_local else 0) | (8 if retain_as_published else 0)
        options |= retain_handling << 4
        self.binding_args: dict[str, Any] = {"x-mqtt-filter": key, "x-mqtt-options": options}
        if sub_id:
            self.binding_args["x-mqtt-subscription-id"] = sub_id

    @classmethod
    def from_binding(cls, args: Any) -> Subscription | None:
        """The subscription a binding made by `binding_args` stands for (None if not ours)."""
        key = args.get("x-mqtt-filter")
        options = args.get("x-mqtt-options")
        if not isinstance(key, str) or not isinstance(options, int) or not key:
            return None
        sub_id = args.get("x-mqtt-subscription-id", 0)
        return cls(
            key,
            key,
            options & 3,
            no_local=bool(options & 4),
            retain_as_published=bool(options & 8),
            retain_handling=(options >> 4) & 3,
            sub_id=sub_id if isinstance(sub_id, int) else 0,
        )

    def __repr__(self) -> str:
        return f"<Subscription {self.key!r} qos={self.qos}>"


class SubscriptionSet:
    """The subscriptions one queue serves; `only` is set when AMQP matching is exact."""

    __slots__ = ("by_key", "only", "tree")

    def __init__(self) -> None:
        self.by_key: dict[str, Subscription] = {}
        self.tree: FilterTree[Subscription] = FilterTree()
        self.only: Subscription | None = None

    def __len__(self) -> int:
        return len(self.by_key)

    def add(self, sub: Subscription) -> None:
        self.by_key[sub.key] = sub
        self.tree.add(sub.topic_filter, sub)
        self._refresh()

    def remove(self, sub: Subscription) -> None:
        if self.by_key.pop(sub.key, None) is not None:
            self.tree.remove(sub.topic_filter)
        self._refresh()

    def _refresh(self) -> None:
        self.only = None
        if len(self.by_key) == 1:
            sub = next(iter(self.by_key.values()))
            if not sub.check:
                self.only = sub

    def match(self, topic: str) -> list[Subscription]:
        return self.tree.match(topic)


class SubConsumer(Consumer):
    """A session's consumer on one queue, with the subscriptions that queue serves."""

    __slots__ = ("subs",)

    def __init__(self, tag: str, sink: Any, subs: SubscriptionSet, *, no_ack: bool) -> None:
        super().__init__(tag, sink, no_ack=no_ack)
        self.subs = subs


class QueueSlot:
    """A queue the session consumes from, and its consumer while online."""

    __slots__ = ("consumer", "name", "queue", "subs")

    def __init__(self, name: str, subs: SubscriptionSet) -> None:
        self.name = name
        self.subs = subs
        self.queue: QueueType | None = None
        self.consumer: SubConsumer | None = None


class OutFlight:
    """An outgoing QoS 1/2 message awaiting PUBACK, PUBREC or (state PUBREL) PUBCOMP."""

    __slots__ = ("consumer", "entry", "message", "qos", "queue", "retain", "state", "sub_ids")

    def __init__(
        self,
        message: MQTTMessage | ForeignView | None,
        qos: int,
        retain: bool,
        sub_ids: list[int] | None,
        entry: Entry | None,
        queue: QueueType | None,
        consumer: Consumer | None,
    ) -> None:
        self.message = message  # None only for a restored flight past PUBREC
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.entry: Entry | None = entry
        self.queue: QueueType | None = queue
        self.consumer = consumer
        self.state = 0  # 0: PUBLISH sent; _PUBREL: PUBREL sent

    @classmethod
    def released(cls) -> OutFlight:
        """A QoS 2 delivery restored past PUBREC: the message is the client's (4.3.3), only
        the PUBREL / PUBCOMP exchange is left, so nothing but its packet identifier is kept."""
        flight = cls(None, 2, False, None, None, None, None)
        flight.state = _PUBREL
        return flight


class _NoAckSink:
    """The QoS 0 queue's sink. It never holds the queue back: at most once means a subscriber
    whose socket buffer is full (past the server's high-water mark) loses QoS 0 messages
    instead of making the broker keep them, as Mosquitto drops QoS 0 for a full client queue.
    The QoS 1/2 in-flight window does not apply to it either."""

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session

    def has_credit(self) -> bool:
        return self.session.conn is not None

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        session = self.session
        conn = session.conn
        if conn is not None and not conn.writable:
            session.dropped += 1
            return
        session.deliver(consumer, entry, queue)

    def consumer_cancelled(self, consumer: Consumer) -> None:
        self.session.consumer_cancelled(consumer)


class Session:
    """See the module docstring."""

    __slots__ = (
        "_acks",
        "_expiry_timer",
        "_next_pid",
        "_noack_sink",
        "_q0",
        "_q1",
        "_shared",
        "_starved",
        "_will",
        "_will_timer",
        "client_id",
        "clock",
        "conn",
        "dropped",
        "ended",
        "expiry",
        "incoming_qos2",
        "inflight",
        "mqtt",
        "offline_since",
        "protocol_level",
        "record_cache",
        "recorded",
        "resume_pids",
        "send_quota",
        "subscriptions",
        "vhost",
        "will_due",
    )

    def __init__(self, mqtt: MQTTBroker, vhost: VHost, client_id: str, expiry: int) -> None:
        self.mqtt = mqtt
        self.vhost = vhost
        self.client_id = client_id
        self.expiry = expiry  # seconds; 0 ends with the connection; SESSION_NEVER_EXPIRES
        self.clock = vhost.clock
        self.conn: Output | None = None
        self.subscriptions: dict[str, Subscription] = {}
        # created with the first subscription of each kind (an idle connection stays small)
        self._q0: QueueSlot | None = None
        self._q1: QueueSlot | None = None
        self._shared: dict[str, QueueSlot] = {}  # subscription key -> slot
        self.inflight: dict[int, OutFlight] = {}
        self.incoming_qos2: set[int] | None = None  # incoming QoS 2 ids awaiting PUBREL
        # After a graceful restart: journal msg_id -> the packet id its unacknowledged PUBLISH
        # had, so the re-send keeps it (MQTT-4.4.0-1); those ids are not handed out meanwhile.
        self.resume_pids: dict[int, int] = {}
        self.send_quota = 65535
        self._next_pid = 1
        self._acks: list[OutFlight] = []
        self._starved = False
        self._noack_sink = _NoAckSink(self)
        self._expiry_timer: TimerHandle | None = None
        self._will_timer: TimerHandle | None = None
        self._will: MQTTMessage | None = None
        self.will_due = 0.0  # wall-clock time the held will is published
        self.offline_since: float | None = None  # wall-clock time the last connection ended
        self.protocol_level = 0
        self.record_cache: bytes | None = None  # session_store's encoding, until a change
        self.recorded = False  # persistent at some point: the durable registry has it
        self.ended = False
        self.dropped = 0  # QoS 0 deliveries dropped for a backed-up subscriber

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} on {self.vhost.name!r}>"

    @property
    def persistent(self) -> bool:
        return self.expiry != 0

    # -- connection lifecycle --------------------------------------------------------------------

    def attach(self, conn: Output, send_quota: int) -> None:
        """A connection took this session (new or resumed): resend what is in flight, consume."""
        self.conn = conn
        self.send_quota = send_quota
        self.protocol_level = conn.version
        self.offline_since = None
        self._cancel_timers()
        self._will = None  # MQTT-3.1.3-9: a new connection before the delay cancels the will
        self._starved = False
        self.mqtt.sessions.changed(self)
        for pid, flight in list(self.inflight.items()):
            self._resend(pid, flight)
        q0 = self._q0
        if q0 is not None and len(q0.subs):
            self._ensure_queue(q0, exclusive=True, durable=False)
            for sub in q0.subs.by_key.values():
                self._bind(q0.name, sub)
        for slot in self._slots():
            if slot.queue is not None:
                self._start_consumer(slot)

    def detach(self) -> None:
        """The connection went away: stop consuming; end the session if it does not persist."""
        self.conn = None
        for slot in self._slots():
            self._stop_consumer(slot)
        q0 = self._q0
        if q0 is not None and q0.queue is not None:
            self._drop_queue(q0)
        if self.expiry == 0:
            self.end()
            return
        self.offline_since = self.clock.wall()
        if self.expiry != SESSION_NEVER_EXPIRES:
            self._expiry_timer = self.clock.call_at(self.clock.now() + self.expiry, self.end)
        self.mqtt.sessions.changed(self)

    def resume_offline(
        self, offline_since: float, will: MQTTMessage | None, will_due: float
    ) -> None:
        """A session restored after a restart, offline: its expiry continues from when its
        client went away, and its held will from the due time it had (published at once if
        that passed while the broker was down). A session whose expiry passed ends here."""
        self.offline_since = offline_since
        wall = self.clock.wall()
        if self.expiry != SESSION_NEVER_EXPIRES:
            left = offline_since + self.expiry - wall
            if left <= 0:
                self._will = will  # end() publishes it: the session ended first or both passed
                self.end()
                return
            self._expiry_timer = self.clock.call_at(self.clock.now() + left, self.end)
        if will is not None:
            if will_due <= wall:
                self.mqtt.publish(self.vhost, will)
            else:
                self._hold_will(will, will_due)
        self.mqtt.sessions.changed(self)

    def end(self) -> None:
        """The session ends (3.1.2.11.2): its queues, shared memberships and pending will go."""
        if self.ended:
            return
        self.ended = True
        self._cancel_timers()
        will, self._will = self._will, None
        # In-flight messages from shared queues go back to the group (4.8.2).
        for flight in self.inflight.values():
            if flight.entry is not None and flight.queue is not None:
                if flight.queue.name.startswith("mqtt-shared-"):
                    flight.queue.requeue([flight.entry], flight.consumer)
                else:
                    flight.queue.ack([flight.entry], flight.consumer)
        self.inflight.clear()
        self._acks.clear()
        for slot in self._slots():
            self._stop_consumer(slot)
        for own in (self._q0, self._q1):
            if own is not None and own.queue is not None:
                self._drop_queue(own)
        for key, slot in list(self._shared.items()):
            self.mqtt.leave_shared(self.vhost, slot.name, self)
            del self._shared[key]
        self.subscriptions.clear()
        self.mqtt.sessions.remove(self)
        if will is not None:
            self.mqtt.publish(self.vhost, will)

    def set_will(self, will: MQTTMessage, delay: int) -> None:
        """Publish `will` after `delay` seconds unless the session resumes first (3.1.3.2.2)."""
        if delay <= 0 or self.expiry == 0:
            self.mqtt.publish(self.vhost, will)
            return
        self._hold_will(will, self.clock.wall() + delay)

    def _hold_will(self, will: MQTTMessage, due: float) -> None:
        """Keep `will` until the wall-clock time `due` unless the session resumes or ends first."""
        self._will = will
        self.will_due = due
        ends = None
        if self.expiry != SESSION_NEVER_EXPIRES and self.offline_since is not None:
            ends = self.offline_since + self.expiry
        if ends is None or due < ends:
            left = max(0.0, due - self.clock.wall())
            self._will_timer = self.clock.call_at(self.clock.now() + left, self._will_due)
        # else: the session ends first, and end() publishes it
        self.mqtt.sessions.changed(self)

    @property
    def held_will(self) -> MQTTMessage | None:
        """The will waiting for its delay (3.1.3.2.2), if any."""
        return self._will

    def _will_due(self) -> None:
        self._will_timer = None
        will, self._will = self._will, None
        if will is not None:
            self.mqtt.sessions.changed(self)
            self.mqtt.publish(self.vhost, will)

    def _cancel_timers(self) -> None:
        for timer in (self._expiry_timer, self._will_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._will_timer = None

    # -- queues ----------------------------------------------------------------------------------

    def _slots(self) -> Iterator[QueueSlot]:
        if self._q0 is not None:
            yield self._q0
        if self._q1 is not None:
            yield self._q1
        yield from self._shared.values()

    def _slot(self, qos0: bool) -> QueueSlot:
        """The QoS 0 or the QoS 1 queue's slot, created on first use."""
        if qos0:
            if self._q0 is None:
                self._q0 = QueueSlot(f"mqtt-subscription-{self.client_id}qos0", SubscriptionSet())
            return self._q0
        if self._q1 is None:
            self._q1 = QueueSlot(f"mqtt-subscription-{self.client_id}qos1", SubscriptionSet())
        return self._q1

    def _ensure_queue(self, slot: QueueSlot, *, exclusive: bool, durable: bool) -> QueueType:
        queue = slot.queue
        if queue is None or queue.deleted:
            queue = self.vhost.declare_queue(
                slot.name, owner=self, durable=durable, exclusive=exclusive
            )
            slot.queue = queue
        return queue

    def _drop_queue(self, slot: QueueSlot) -> None:
        queue, slot.queue = slot.queue, None
        if queue is not None and not queue.deleted:
            try:
                self.vhost.delete_queue(slot.name, owner=self)
            except BrokerError as exc:  # held exclusively by someone else: leave it
                log.warning("cannot delete %s: %s", slot.name, exc.text)

    def _start_consumer(self, slot: QueueSlot) -> None:
        queue = slot.queue
        if queue is None or slot.consumer is not None or self.conn is None:
            return
        no_ack = slot is self._q0
        sink: Any = self._noack_sink if no_ack else self
        consumer = SubConsumer(slot.name, sink, slot.subs, no_ack=no_ack)
        slot.consumer = consumer
        queue.add_consumer(consumer)

    def _stop_consumer(self, slot: QueueSlot) -> None:
        consumer, slot.consumer = slot.consumer, None
        if consumer is not None and slot.queue is not None:
            slot.queue.remove_consumer(consumer)

    def _bind(self, queue: str, sub: Subscription) -> None:
        self.vhost.bind_queue(
            queue, self.mqtt.exchange, sub.binding_key, sub.binding_args, owner=self
        )

    def _unbind(self, queue: str, sub: Subscription) -> None:
        try:
            self.vhost.unbind_queue(
                queue, self.mqtt.exchange, sub.binding_key, sub.binding_args, owner=self
            )
        except BrokerError:
            pass  # the queue is gone already

    def discard_leftovers(self) -> None:
        """Delete a durable QoS 1 queue left by an earlier persistent session of this id."""
        queue = self.vhost.queues.get(f"mqtt-subscription-{self.client_id}qos1")
        if queue is not None and queue.exclusive_owner is None:
            slot = self._slot(False)
            slot.queue = queue
            self._drop_queue(slot)

    def adopt_queues(self) -> bool:
        """Take over this client's durable QoS 1 queue if it exists already (recovered after a
        restart, or left by a session that ended without deleting it): its bindings are the
        subscriptions. Returns True if there was one."""
        queue = self.vhost.queues.get(f"mqtt-subscription-{self.client_id}qos1")
        exchange = self.vhost.exchanges.get(self.mqtt.exchange)
        if queue is None or not queue.durable or exchange is None:
            return False
        slot = self._slot(False)
        slot.queue = queue
        for binding in exchange.bindings_to(("queue", slot.name)):
            sub = Subscription.from_binding(binding.arguments)
            if sub is not None and sub.qos:
                slot.subs.add(sub)
                self.subscriptions[sub.key] = sub
        return True

    # -- subscriptions -----------------------------------------------------------------------------

    def subscribe(self, sub: Subscription) -> tuple[bool, QueueType | None]:
        """Add or replace a subscription. Returns (it existed before, the queue it feeds)."""
        old = self.subscriptions.get(sub.key)
        if sub.share is not None:
            slot = self._shared.get(sub.key)
            if slot is None:
                slot = self.mqtt.join_shared(self.vhost, sub, self)
                self._shared[sub.key] = slot
                self._start_consumer(slot)
            else:
                slot.subs.remove(sub)
                slot.subs.add(sub)
            self.subscriptions[sub.key] = sub
            self.mqtt.sessions.changed(self)
            return old is not None, slot.queue
        if old is not None:
            self._remove_from_slot(old)
        slot = self._slot(sub.qos == 0)
        if slot is self._q0:
            if self.conn is not None or slot.queue is not None:
                self._ensure_queue(slot, exclusive=True, durable=False)
        else:
            self._ensure_queue(slot, exclusive=not self.persistent, durable=self.persistent)
        slot.subs.add(sub)
        self.subscriptions[sub.key] = sub
        if slot.queue is not None:
            self._bind(slot.name, sub)
            self._start_consumer(slot)
        self.mqtt.sessions.changed(self)
        return old is not None, slot.queue

    def unsubscribe(self, key: str) -> bool:
        sub = self.subscriptions.pop(key, None)
        if sub is None:
            return False
        if sub.share is not None:
            slot = self._shared.pop(key, None)
            if slot is not None:
                self._stop_consumer(slot)
                self.mqtt.leave_shared(self.vhost, slot.name, self)
        else:
            self._remove_from_slot(sub)
        self.mqtt.sessions.changed(self)
        return True

    def _remove_from_slot(self, sub: Subscription) -> None:
        for own in (self._q0, self._q1):
            if own is not None and own.subs.by_key.get(sub.key) is sub:
                own.subs.remove(sub)
                if own.queue is not None:
                    self._unbind(own.name, sub)

    def queue_for(self, sub: Subscription) -> QueueType | None:
        if sub.share is not None:
            return None
        slot = self._q0 if sub.qos == 0 else self._q1
        return None if slot is None else slot.queue

    # -- delivery (core's DeliverySink) ------------------------------------------------------------

    def has_credit(self) -> bool:
        conn = self.conn
        if conn is None or not conn.writable:
            return False
        if len(self.inflight) >= self.send_quota:
            self._starved = True
            return False
        return True

    def consumer_cancelled(self, consumer: Consumer) -> None:
        for slot in self._slots():
            if slot.consumer is consumer:
                slot.consumer = None
                slot.queue = None
                if self.conn is not None:
                    self.conn.subscription_queue_lost()
                return

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        conn = self.conn
        message = entry.message
        mq = message if type(message) is MQTTMessage else view_of(message)
        if conn is None or mq is None or queue is None:
            self._settle(consumer, entry, queue)
            return
        subs: SubscriptionSet = consumer.subs  # type: ignore[attr-defined]
        sub_ids: list[int] | None = None
        target = mq.for_subscription
        if target is None and mq.plain:
            target = subs.only
        if target is not None:
            if target.no_local and mq.origin == self.client_id:
                self._settle(consumer, entry, queue)
                return
            qos = target.qos if target.qos < mq.qos else mq.qos
            retain = mq.retain and (target.retain_as_published or mq.for_subscription is target)
            if target.sub_id:
                sub_ids = [target.sub_id]
        else:
            matched = subs.match(mq.topic)
            origin = mq.origin
            if origin is not None and origin == self.client_id:
                matched = [s for s in matched if not s.no_local]
            if not matched:
                self._settle(consumer, entry, queue)
                return
            best = max(s.qos for s in matched)
            qos = best if best < mq.qos else mq.qos
            retain = mq.retain and any(s.retain_as_published for s in matched)
            ids = [s.sub_id for s in matched if s.sub_id]
            if ids:
                sub_ids = ids
        expiry: int | None = None
        if mq.expiry_interval is not None and entry.expires_at is not None:
            left = entry.expires_at - self.clock.now()
            if left <= 0:
                self._settle(consumer, entry, queue)
                return
            expiry = math.ceil(left)
        version = conn.version
        if qos == 0:
            if version == MQTT_5:
                if sub_ids is None and expiry is None and not retain:
                    packet = mq.wire_v5
                    if packet is None:
                        alias, known = conn.outgoing_alias(mq.topic)
                        packet = publish_packet(mq, 5, 0, False, 0, False, None, None, alias, known)
                        if not alias:
                            mq.wire_v5 = packet
                        elif not known and len(packet) > conn.max_packet_size:
                            conn.drop_alias(mq.topic)
                else:
                    alias, known = conn.outgoing_alias(mq.topic)
                    packet = publish_packet(
                        mq, 5, 0, retain, 0, False, sub_ids, expiry, alias, known
                    )
                    if alias and not known and len(packet) > conn.max_packet_size:
                        conn.drop_alias(mq.topic)
            elif retain:
                packet = publish_packet(mq, version, 0, True, 0, False, None, None, 0, False)
            else:
                packet = mq.wire_v4
                if packet is None:
                    packet = mq.wire_v4 = publish_packet(
                        mq, version, 0, False, 0, False, None, None, 0, False
                    )
            if len(packet) <= conn.max_packet_size:
                conn.send(packet)
            if not consumer.no_ack:
                queue.ack((entry,), consumer)
            return
        pid = 0
        resume = self.resume_pids
        if resume:
            pid = resume.pop(entry.message.id, 0)
            if pid in self.inflight:
                pid = 0
        dup = pid != 0  # the same PUBLISH again, under its original identifier
        if not pid:
            pid = self._allocate_pid()
        alias, known = conn.outgoing_alias(mq.topic) if version == MQTT_5 else (0, False)
        packet = publish_packet(mq, version, qos, retain, pid, dup, sub_ids, expiry, alias, known)
        if len(packet) > conn.max_packet_size:
            if alias and not known:
                conn.drop_alias(mq.topic)
            queue.ack((entry,), consumer)  # MQTT-3.1.2-25: discarded as if sent and acked
            return
        self.inflight[pid] = OutFlight(mq, qos, retain, sub_ids, entry, queue, consumer)
        conn.send(packet)

    def _settle(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        """A delivery we drop without sending (no match, No Local, expired): ack it."""
        if queue is not None and not consumer.no_ack:
            queue.ack((entry,), consumer)

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        reserved = self.resume_pids.values() if self.resume_pids else ()
        while pid in inflight or pid in reserved:
            pid = pid + 1 if pid < 0xFFFF else 1
        self._next_pid = pid + 1 if pid < 0xFFFF else 1
        return pid

    def _resend(self, pid: int, flight: OutFlight) -> None:
        conn = self.conn
        assert conn is not None
        version = conn.version
        if flight.state == _PUBREL:
            conn.send(encode_ack(_PUBREL, pid, version))
            return
        assert flight.message is not None
        conn.send(
            publish_packet(
                flight.message,
                version,
                flight.qos,
                flight.retain,
                pid,
                True,
                flight.sub_ids if version == MQTT_5 else None,
                None,
                0,
                False,
            )
        )

    # -- acknowledgements from the client ----------------------------------------------------------

    def puback(self, pid: int) -> None:
        flight = self.inflight.get(pid)
        if flight is None or flight.qos != 1:
            return  # unknown or not QoS 1: nothing to settle (4.3.2)
        del self.inflight[pid]
        self._acks.append(flight)

    def pubrec(self, pid: int, reason: int) -> bool:
        """PUBREC for a QoS 2 delivery; False if the identifier is unknown."""
        flight = self.inflight.get(pid)
        if flight is None or flight.qos != 2:
            return False
        if flight.state == _PUBREL:
            return True  # a repeated PUBREC: answer with PUBREL again
        if reason >= 0x80:
            del self.inflight[pid]  # 4.3.3: the flow ends with an error PUBREC
            self._acks.append(flight)
            return True
        flight.state = _PUBREL
        self._acks.append(flight)
        self.mqtt.sessions.changed(self, write=False)
        return True

    def pubcomp(self, pid: int) -> None:
        flight = self.inflight.get(pid)
        if flight is not None and flight.state == _PUBREL:
            del self.inflight[pid]
            self.mqtt.sessions.changed(self, write=False)
            if self._starved:
                self._wake()

    def flush_acks(self) -> None:
        """Settle the acknowledgements of one read batch with one call per queue."""
        acks = self._acks
        if acks:
            self._acks = []
            first = acks[0]
            if all(f.queue is first.queue and f.consumer is first.consumer for f in acks):
                entries = [f.entry for f in acks if f.entry is not None]
                if first.queue is not None and entries:
                    first.queue.ack(entries, first.consumer)
            else:
                groups: dict[tuple[int, int], tuple[QueueType, Consumer | None, list[Entry]]] = {}
                for f in acks:
                    if f.queue is None or f.entry is None:
                        continue
                    k = (id(f.queue), id(f.consumer))
                    group = groups.get(k)
                    if group is None:
                        group = groups[k] = (f.queue, f.consumer, [])
                    group[2].append(f.entry)
                for queue, consumer, entries in groups.values():
                    queue.ack(entries, consumer)
            for f in acks:
                f.entry = None
                f.queue = None
        if self._starved and len(self.inflight) < self.send_quota:
            self._wake()

    def _wake(self) -> None:
        self._starved = False
        for slot in self._slots():
            if slot.queue is not None and slot.consumer is not None:
                slot.queue.credit_available()

    def writable_again(self) -> None:
        self._wake()


class SnapshotWriter(Protocol):
    """What the server gives the registry to keep it on disk (server/mqtt_sessions_file.py)."""

    def request(self) -> None:
        """Write the registry's snapshot soon (coalesced: many requests, one write)."""
        ...


class SessionRegistry:
    """Sessions by (vhost, client id). With a `writer`, persistent sessions are recorded on
    disk: `changed` is the one place that learns of a change, and `session_store.snapshot`
    encodes the records (each session's cached until it changes again).
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], Session] = {}
        self.writer: SnapshotWriter | None = None
        self.final = False  # the shutdown's last write: records carry their unacked PUBLISHes

    def changed(self, session: Session, *, write: bool = True) -> None:
        """Something recorded about `session` changed. `write=False` (QoS 2 identifiers) only
        marks its record stale: it goes out with the next structural write."""
        session.record_cache = None
        if session.persistent:
            session.recorded = True
        elif not session.recorded:
            return  # a clean session: never on disk
        if write and self.writer is not None:
            self.writer.request()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, vhost: str, client_id: str) -> Session | None:
        return self._sessions.get((vhost, client_id))

    def add(self, session: Session) -> None:
        self._sessions[(session.vhost.name, session.client_id)] = session

    def remove(self, session: Session) -> None:
        key = (session.vhost.name, session.client_id)
        if self._sessions.get(key) is session:
            del self._sessions[key]
            if session.recorded and self.writer is not None:
                self.writer.request()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))
