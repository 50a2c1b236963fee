"""The classic queue: FIFO (or priority levels) in memory.

Order: ready messages live in one deque per priority level. Entries that come back (nack,
reject with requeue, a channel closing) go into a heap keyed by their original sequence number
and are merged with the deque heads on the way out, so a requeued message returns to exactly the
place it had, as RabbitMQ does, without searching the deque.

Dispatch is a loop over ready messages and consumers with credit, run after every change that can
make progress (enqueue, ack, new consumer, sink drained). Consumers of the highest priority with
credit take turns; lower priorities get messages only while the higher ones are blocked.

Selective dispatch. Once a consumer has a filter (a JMS selector) or a message belongs to a group
(JMSXGroupID), the head of the queue may not be for the consumer that has credit. The queue then
scans in order, delivers each entry to the first eligible consumer and leaves the others where
they are for someone else; a group sticks to the consumer that got its first message until that
consumer goes. A scan looks at no more than SCAN_LIMIT entries per run, so one dispatch costs a
bounded amount of time even on a queue of millions whose consumers match nothing.

TTL: expired messages are dropped (or dead-lettered) when they reach the head, and one timer per
queue expires heads proactively, as RabbitMQ's classic queues do.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any

from ferrymq.core.clock import TimerHandle
from ferrymq.core.consumer import Consumer
from ferrymq.core.errors import AccessRefused
from ferrymq.core.message import Entry, Message
from ferrymq.core.queue_type import QueueHost, QueueType

SCAN_LIMIT = 10_000


class QueueSettings:
    """Validated x-arguments (see core.arguments), in the units the queue uses."""

    __slots__ = (
        "consumer_timeout",
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "delivery_limit",
        "expires",
        "max_length",
        "max_length_bytes",
        "max_priority",
        "message_ttl",
        "overflow",
        "single_active_consumer",
    )

    def __init__(self) -> None:
        self.message_ttl: float | None = None
        self.expires: float | None = None
        self.max_length: int | None = None
        self.max_length_bytes: int | None = None
        self.overflow = "drop-head"
        self.dead_letter_exchange: str | None = None
        self.dead_letter_routing_key: str | None = None
        self.max_priority: int | None = None
        self.single_active_consumer = False
        self.delivery_limit: int | None = None
        self.consumer_timeout: float | None = None


class ClassicQueue(QueueType):
    """See the module docstring."""

    def __init__(
        self,
        host: QueueHost,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        exclusive_owner: object | None = None,
        arguments: dict[str, Any] | None = None,
        settings: QueueSettings | None = None,
    ) -> None:
        self.host = host
        self.clock = host.clock
        self.name = name
        # the queue's identity in the store, which is shared by all vhosts
        self.store_key = f"{host.name}\x00{name}"
        self.durable = durable
        self.auto_delete = auto_delete
        self.exclusive_owner = exclusive_owner
        self.arguments = arguments or {}
        self.settings = settings or QueueSettings()
        self.deleted = False
        levels = (self.settings.max_priority or 0) + 1
        self._levels: list[deque[Entry]] = [deque() for _ in range(levels)]
        self._max_level = levels - 1
        self._requeued: list[tuple[int, int, Entry]] = []  # (-priority, seq, entry)
        self._ready = 0
        self._bytes = 0
        self._seq = 0
        self._unacked = 0
        self._unacked_bytes = 0
        self._consumers: list[Consumer] = []
        self._had_consumer = False
        self._dispatching = False
        self._filtering = 0  # consumers with a filter
        self._groups: dict[str, Consumer] = {}
        self._grouped = False  # a message with a group id has been seen
        self._ttl_timer: TimerHandle | None = None
        self._ttl_timer_at = 0.0
        self._expires_timer: TimerHandle | None = None
        # stats (plain ints; rates are computed by readers)
        self.published = 0
        self.delivered = 0
        self.acked = 0
        self.touch()

    # -- stats -------------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        return self._ready

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    @property
    def unacked_count(self) -> int:
        return self._unacked

    @property
    def ready_bytes(self) -> int:
        return self._bytes

    @property
    def memory_bytes(self) -> int:
        return self._bytes + self._unacked_bytes

    # -- the store -------------------------------------------------------------------------------
    # A persistent message in a durable queue was written at publish (vhost); the queue records
    # its first delivery and its end (ack, drop, dead-lettering) so recovery knows what is live.

    def _forget(self, entries: Iterable[Entry]) -> None:
        store = self.host.broker.store if self.durable else None
        if store is None:
            return
        key = self.store_key
        for entry in entries:
            if entry.message.persistent:
                store.settle(entry.message.id, key)

    def _drop(self, entries: list[Entry], reason: str) -> None:
        """Entries leave the queue for good: dead-letter them where configured, then forget."""
        self.host.dead_letter(self, entries, reason)
        self._forget(entries)

    def recover(self, message: Message, redelivered: bool) -> None:
        """Put back a message the store recovered (already on disk: nothing is written)."""
        self._seq += 1
        ttl = self.settings.message_ttl
        if message.ttl is not None and (ttl is None or message.ttl < ttl):
            ttl = message.ttl
        entry = Entry(message, self._seq, None if ttl is None else self.clock.now() + ttl)
        entry.redelivered = redelivered
        self._levels[self._level_of(entry)].append(entry)
        self._ready += 1
        self._bytes += len(message.body)
        if ttl is not None:
            self._schedule_ttl()

    # -- enqueue -----------------------------------------------------------------------------

    def enqueue(self, message: Message) -> bool:
        s = self.settings
        if s.max_length is not None or s.max_length_bytes is not None:
            if not self._make_room(message):
                return False
        self._seq += 1
        ttl = s.message_ttl
        if message.ttl is not None and (ttl is None or message.ttl < ttl):
            ttl = message.ttl
        expires_at = None if ttl is None else self.clock.now() + ttl
        entry = Entry(message, self._seq, expires_at)
        if ttl == 0:
            # TTL 0: delivered only to a consumer that can take it right now (RabbitMQ)
            self.published += 1
            consumer = None if self._ready or not self._consumers else self._pick_consumer()
            if consumer is None:
                self._drop([entry], "expired")
            else:
                self._deliver(consumer, entry)
            return True
        level = 0
        if self._max_level:
            level = message.priority if message.priority < self._max_level else self._max_level
        self._levels[level].append(entry)
        self._ready += 1
        self._bytes += len(message.body)
        self.published += 1
        if message.group is not None:
            self._grouped = True
        if self._consumers:
            self._dispatch()
        if expires_at is not None and self._ready:
            self._schedule_ttl()
        return True

    def _make_room(self, message: Message) -> bool:
        """Apply x-max-length / x-max-length-bytes before adding `message`."""
        s = self.settings
        size = len(message.body)

        def over() -> bool:
            if s.max_length is not None and self._ready + 1 > s.max_length:
                return True
            return s.max_length_bytes is not None and self._bytes + size > s.max_length_bytes

        if not over():
            return True
        if s.overflow == "drop-head":
            dropped: list[Entry] = []
            while over() and self._ready:
                entry = self._pop()
                if entry is None:
                    break
                dropped.append(entry)
            if dropped:
                self._drop(dropped, "maxlen")
            if over():  # a message larger than the byte limit on an empty queue
                self.host.dead_letter(self, [Entry(message, 0, None)], "maxlen")
                return False
            return True
        if s.overflow == "reject-publish-dlx":
            self.host.dead_letter(self, [Entry(message, 0, None)], "maxlen")
        return False

    # -- taking messages out -------------------------------------------------------------------

    def _pop(self) -> Entry | None:
        """Remove and return the next ready entry in delivery order, expired or not."""
        if not self._ready:
            return None
        level = self._max_level
        levels = self._levels
        while level and not levels[level]:
            level -= 1
        head = levels[level][0] if levels[level] else None
        requeued = self._requeued
        if requeued:
            neg_prio, seq, entry = requeued[0]
            if head is None or -neg_prio > level or (-neg_prio == level and seq < head.seq):
                heapq.heappop(requeued)
                self._ready -= 1
                self._bytes -= len(entry.message.body)
                return entry
        if head is None:
            return None
        levels[level].popleft()
        self._ready -= 1
        self._bytes -= len(head.message.body)
        return head

    def _pop_live(self) -> Entry | None:
        """The next entry that has not expired; expired ones are dead-lettered on the way."""
        expired: list[Entry] | None = None
        now = 0.0
        while True:
            entry = self._pop()
            if entry is None or entry.expires_at is None:
                break
            if not now:
                now = self.clock.now()
            if entry.expires_at > now:
                break
            if expired is None:
                expired = []
            expired.append(entry)
        if expired:
            self._drop(expired, "expired")
        return entry

    def _dispatch(self) -> None:
        if self._dispatching or self.deleted:
            return
        if self._filtering or self._grouped:
            self._dispatch_selective()
            return
        self._dispatching = True
        try:
            consumers = self._consumers
            while self._ready and consumers:
                consumer = self._pick_consumer()
                if consumer is None:
                    break
                entry = self._pop_live()
                if entry is None:
                    break
                self._deliver(consumer, entry)
        finally:
            self._dispatching = False

    def _dispatch_selective(self) -> None:
        if not self._ready or not self._consumers:
            return
        self._dispatching = True
        try:
            self._fold_requeued()
            budget = SCAN_LIMIT
            now = self.clock.now()
            expired: list[Entry] = []
            for level in range(self._max_level, -1, -1):
                queue = self._levels[level]
                i = 0
                while i < len(queue) and budget:
                    if not any(c.has_credit() for c in self._consumers):
                        return
                    entry = queue[i]
                    if entry.expires_at is not None and entry.expires_at <= now:
                        del queue[i]
                        self._ready -= 1
                        self._bytes -= len(entry.message.body)
                        expired.append(entry)
                        continue
                    consumer = self._eligible(entry)
                    if consumer is None:
                        i += 1
                        budget -= 1
                        continue
                    del queue[i]
                    self._ready -= 1
                    self._bytes -= len(entry.message.body)
                    self._deliver(consumer, entry)
        finally:
            self._dispatching = False
            if expired:
                self._drop(expired, "expired")

    def _eligible(self, entry: Entry) -> Consumer | None:
        """The consumer that should get `entry` now, honouring groups, filters and credit."""
        group = entry.message.group
        if group is not None:
            owner = self._groups.get(group)
            if owner is not None:
                if owner.has_credit() and (owner.filter is None or owner.filter(entry)):
                    return owner
                return None
        consumers = self._consumers
        candidates = consumers[:1] if self.settings.single_active_consumer else consumers
        for i, consumer in enumerate(candidates):
            if not consumer.has_credit():
                continue
            if consumer.filter is not None and not consumer.filter(entry):
                continue
            if len(consumers) > 1 and not self.settings.single_active_consumer:
                j = i + 1
                while j < len(consumers) and consumers[j].priority == consumer.priority:
                    j += 1
                if j - 1 != i:
                    consumers.insert(j, consumers.pop(i))
            if group is not None:
                self._groups[group] = consumer
            return consumer
        return None

    def _fold_requeued(self) -> None:
        """Put requeued entries back into their levels, in sequence order (selective mode)."""
        if not self._requeued:
            return
        by_level: dict[int, list[Entry]] = {}
        while self._requeued:
            neg_prio, _, entry = heapq.heappop(self._requeued)
            by_level.setdefault(-neg_prio, []).append(entry)
        for level, entries in by_level.items():
            merged = sorted([*entries, *self._levels[level]], key=lambda e: e.seq)
            self._levels[level] = deque(merged)

    def browse(self, consumer: Consumer) -> None:
        """Deliver a snapshot of the ready messages without taking them (JMS QueueBrowser)."""
        self._fold_requeued()
        now = self.clock.now()
        for level in range(self._max_level, -1, -1):
            for entry in list(self._levels[level]):
                if entry.expires_at is not None and entry.expires_at <= now:
                    continue
                if consumer.filter is not None and not consumer.filter(entry):
                    continue
                copy = Entry(entry.message, entry.seq, None)
                copy.redelivered = entry.redelivered
                copy.delivery_count = entry.delivery_count
                consumer.sink.deliver(consumer, copy, None)
        consumer.sink.consumer_cancelled(consumer)

    def _mark_delivered(self, entry: Entry) -> None:
        """A persistent message's first delivery: after a restart it comes back redelivered."""
        if not entry.redelivered and self.durable and entry.message.persistent:
            store = self.host.broker.store
            if store is not None:
                store.delivered(entry.message.id, self.store_key)

    def _deliver(self, consumer: Consumer, entry: Entry) -> None:
        self._mark_delivered(entry)
        if consumer.no_ack:
            self._forget((entry,))
        else:
            consumer.unacked += 1
            self._unacked += 1
            self._unacked_bytes += len(entry.message.body)
        self.delivered += 1
        consumer.sink.deliver(consumer, entry, self)

    def _pick_consumer(self) -> Consumer | None:
        consumers = self._consumers
        if len(consumers) == 1 or self.settings.single_active_consumer:
            first = consumers[0]
            return first if first.has_credit() else None
        for i, consumer in enumerate(consumers):
            if consumer.has_credit():
                # round robin within the priority group: move it to the end of its group
                j = i + 1
                while j < len(consumers) and consumers[j].priority == consumer.priority:
                    j += 1
                if j - 1 != i:
                    consumers.insert(j, consumers.pop(i))
                return consumer
        return None

    def get(self, no_ack: bool) -> Entry | None:
        self.touch()
        entry = self._pop_live()
        if entry is not None:
            self.delivered += 1
            self._mark_delivered(entry)
            if no_ack:
                self._forget((entry,))
            else:
                self._unacked += 1
                self._unacked_bytes += len(entry.message.body)
        return entry

    def credit_available(self) -> None:
        if self._ready and self._consumers:
            self._dispatch()

    # -- consumers -----------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        if any(c.exclusive for c in self._consumers) or (consumer.exclusive and self._consumers):
            raise AccessRefused(f"queue '{self.name}' in vhost '{self.host.name}' in exclusive use")
        consumer.queue = self
        if self.settings.single_active_consumer:
            self._consumers.append(consumer)
        else:
            # keep priority order (higher first), registration order within a priority
            i = len(self._consumers)
            while i and self._consumers[i - 1].priority < consumer.priority:
                i -= 1
            self._consumers.insert(i, consumer)
        self._had_consumer = True
        if consumer.filter is not None:
            self._filtering += 1
        self._cancel_expires_timer()
        self._dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self._consumers.remove(consumer)
        except ValueError:
            return
        if consumer.filter is not None:
            self._filtering -= 1
        if self._groups:  # its groups move to whoever takes their next message
            self._groups = {g: c for g, c in self._groups.items() if c is not consumer}
        if not self._consumers:
            self.touch()
            if self.auto_delete and self._had_consumer and not self.deleted:
                self.host.queue_unused(self)
                return
        self._dispatch()

    # -- settlement ------------------------------------------------------------------------------

    def _settled(self, count: int, size: int, consumer: Consumer | None) -> None:
        self._unacked -= count
        self._unacked_bytes -= size
        if consumer is not None and not consumer.no_ack:
            consumer.unacked -= count

    def ack(self, entries: Iterable[Entry], consumer: Consumer | None) -> None:
        n = size = 0
        persistent = False
        for entry in entries:
            n += 1
            size += len(entry.message.body)
            persistent = persistent or entry.message.persistent
        if persistent and self.durable:
            self._forget(entries)
        self.acked += n
        self._settled(n, size, consumer)
        if self._ready and self._consumers:
            self._dispatch()

    def requeue(self, entries: Iterable[Entry], consumer: Consumer | None) -> None:
        n = size = 0
        limit = self.settings.delivery_limit
        poison: list[Entry] = []
        timed = False
        for entry in entries:
            n += 1
            size += len(entry.message.body)
            timed = timed or entry.expires_at is not None
            if self.deleted:
                self._forget((entry,))
                continue
            entry.redelivered = True
            entry.delivery_count += 1
            if limit is not None and entry.delivery_count > limit:
                poison.append(entry)
                continue
            heapq.heappush(self._requeued, (-self._level_of(entry), entry.seq, entry))
            self._ready += 1
            self._bytes += len(entry.message.body)
        self._settled(n, size, consumer)
        if poison:
            self._drop(poison, "delivery_limit")
        if timed:
            self._schedule_ttl()
        self._dispatch()

    def _level_of(self, entry: Entry) -> int:
        p = entry.message.priority
        return p if p < self._max_level else self._max_level

    def reject(self, entries: Iterable[Entry], consumer: Consumer | None) -> None:
        rejected = list(entries)
        self._settled(len(rejected), sum(len(e.message.body) for e in rejected), consumer)
        if rejected:
            if self.deleted:
                self._forget(rejected)
            else:
                self._drop(rejected, "rejected")
        self._dispatch()

    # -- maintenance -----------------------------------------------------------------------------

    def purge(self) -> int:
        count = self._ready
        if self.durable and self.host.broker.store is not None:
            for level in self._levels:
                self._forget(level)
            self._forget(e for _, _, e in self._requeued)
        for level in self._levels:
            level.clear()
        self._requeued.clear()
        self._ready = 0
        self._bytes = 0
        return count

    def delete(self) -> int:
        if self.deleted:
            return 0
        self.deleted = True
        count = self.purge()
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.sink.consumer_cancelled(consumer)
        for timer in (self._ttl_timer, self._expires_timer):
            if timer is not None:
                timer.cancel()
        return count

    def touch(self) -> None:
        expires = self.settings.expires
        if expires is None or self.deleted:
            return
        self._cancel_expires_timer()
        if not self._consumers:
            self._expires_timer = self.clock.call_at(self.clock.now() + expires, self._expire)

    def _cancel_expires_timer(self) -> None:
        if self._expires_timer is not None:
            self._expires_timer.cancel()
            self._expires_timer = None

    def _expire(self) -> None:
        self._expires_timer = None
        if not self._consumers and not self.deleted:
            self.host.queue_unused(self)

    def _head_expiry(self) -> float | None:
        best: float | None = None
        for level in self._levels:
            if level and level[0].expires_at is not None:
                t = level[0].expires_at
                best = t if best is None or t < best else best
        if self._requeued:
            t2 = self._requeued[0][2].expires_at
            if t2 is not None and (best is None or t2 < best):
                best = t2
        return best

    def _schedule_ttl(self) -> None:
        when = self._head_expiry()
        if when is None:
            return
        if self._ttl_timer is not None:
            if self._ttl_timer_at <= when:
                return
            self._ttl_timer.cancel()
        self._ttl_timer_at = when
        self._ttl_timer = self.clock.call_at(when, self._on_ttl_timer)

    def _on_ttl_timer(self) -> None:
        self._ttl_timer = None
        if self.deleted:
            return
        now = self.clock.now()
        expired: list[Entry] = []
        for level in self._levels:
            while level and level[0].expires_at is not None and level[0].expires_at <= now:
                entry = level.popleft()
                self._ready -= 1
                self._bytes -= len(entry.message.body)
                expired.append(entry)
        while self._requeued:
            entry = self._requeued[0][2]
            if entry.expires_at is None or entry.expires_at > now:
                break
            heapq.heappop(self._requeued)
            self._ready -= 1
            self._bytes -= len(entry.message.body)
            expired.append(entry)
        if expired:
            self._drop(expired, "expired")
        self._schedule_ttl()
