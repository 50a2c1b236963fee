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

Paging (queues larger than memory). Each priority level is an in-memory deque followed by a
`PagedRun` tail (store/paging.py): once the queue's in-memory ready messages cost more than
`queue_memory_limit` (body bytes plus ENTRY_COST each), or the node holds more than its paging
share of the memory high watermark (`PagingState.node_over`, set by the resource monitor), a new
message goes to the tail instead of the deque, keeping 29 bytes of it in memory; and while a
level's tail is not empty every new message of that level goes there too, so order holds. The
deque is refilled from the tail when it runs empty, PAGE_IN_BATCH messages (at most
PAGE_IN_BYTES) per read, read back from the journal with a pread per run of records: the work
per dispatch stays bounded. A record not written yet (the publish is in the batch being
committed) stops the refill; the queue retries after the next commit. Without a store (an
in-process broker with no data directory) nothing is paged. Requeued and unacknowledged
messages stay in memory (prefetch bounds them).
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from ferrymq.core.clock import TimerHandle
from ferrymq.core.consumer import Consumer
from ferrymq.core.errors import AccessRefused
from ferrymq.core.message import Entry, Message, PropertyCodec, new_message_id
from ferrymq.core.queue_type import QueueHost, QueueType
from ferrymq.store.journal import StoreError
from ferrymq.store.paging import OWN_RECORD, PERSISTENT, REDELIVERED, PagedRun, Pager

log = logging.getLogger("ferrymq.queue")

SCAN_LIMIT = 10_000
PAGE_IN_BATCH = 256
PAGE_IN_BYTES = 1 << 20
ENTRY_COST = 320  # bytes of Python objects per in-memory message besides its body
_NO_LIMIT = 1 << 62


class PagingState:
    """Node-wide paging pressure, shared by a broker's queues; the resource monitor sets it."""

    __slots__ = ("codecs", "node_over")

    def __init__(self) -> None:
        self.node_over = False
        self.codecs: list[PropertyCodec] = []  # a paged entry names its codec by index


def paging_state(broker: object) -> PagingState:
    state = getattr(broker, "_paging_state", None)
    if state is None:
        state = PagingState()
        setattr(broker, "_paging_state", state)  # noqa: B010 - core's Broker knows nothing of it
    assert isinstance(state, PagingState)
    return state


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
        # paging (see the module docstring)
        self._paged = 0  # entries in the tails
        self._paged_bytes = 0
        self._tails: list[PagedRun] = []  # one per level once something was paged
        # seq -> (priority, ttl, group) of paged entries that have any of them
        self._extras: dict[int, tuple[int, float | None, str | None]] = {}
        self._pressure = paging_state(host.broker)
        config = getattr(host.broker, "config", None)
        limit = getattr(config, "queue_memory_limit", 0)
        self._page_limit = limit if limit > 0 else _NO_LIMIT
        self._page_wake = False  # a retry of the refill is scheduled
        self.paged_out = 0
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
    def memory_bytes(self) -> int:
        return self._bytes - self._paged_bytes + self._unacked_bytes

    @property
    def paged_count(self) -> int:
        """Ready messages whose bodies are on disk only."""
        return self._paged

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
        level = self._level_of(entry)
        if not (self.pages_next() and self._page_out(entry, level)):
            self._levels[level].append(entry)
        self._ready += 1
        self._bytes += len(message.body)
        if ttl is not None:
            self._schedule_ttl()

    def pages_next(self) -> bool:
        """Whether the next message in goes to the paged tail (recovery asks, to skip reading
        the bodies of messages that would be paged out again at once)."""
        if self._paged:
            return True
        over = self._bytes + self._ready * ENTRY_COST > self._page_limit
        return over or self._pressure.node_over

    def recover_paged(
        self,
        msg_id: int,
        size: int,
        priority: int,
        ttl: float | None,
        redelivered: bool,
        codec: PropertyCodec,
    ) -> None:
        """Put back a recovered message straight into the paged tail, its body left on disk."""
        self._seq += 1
        queue_ttl = self.settings.message_ttl
        if ttl is not None and (queue_ttl is None or ttl < queue_ttl):
            queue_ttl = ttl
        expires_at = None if queue_ttl is None else self.clock.now() + queue_ttl
        level = priority if priority < self._max_level else self._max_level
        flags = PERSISTENT | (REDELIVERED if redelivered else 0) | (self._codec_index(codec) << 3)
        self._append_paged(level, msg_id, self._seq, expires_at, size, flags)
        if priority or ttl is not None:
            self._extras[self._seq] = (priority, ttl, None)
        self._ready += 1
        self._bytes += size
        if expires_at is not None:
            self._schedule_ttl()

    # -- paging ------------------------------------------------------------------------------------

    def _find_pager(self) -> Pager | None:
        pager = getattr(self.host.broker.store, "pager", None)
        return pager if isinstance(pager, Pager) else None

    def _codec_index(self, codec: PropertyCodec) -> int:
        codecs = self._pressure.codecs
        for i, known in enumerate(codecs):
            if known is codec:
                return i
        if len(codecs) >= 31:
            raise ValueError("too many property codecs to page messages")
        codecs.append(codec)
        return len(codecs) - 1

    def _append_paged(
        self, level: int, msg_id: int, seq: int, expires_at: float | None, size: int, flags: int
    ) -> None:
        if not self._tails:
            self._tails = [PagedRun() for _ in self._levels]
        self._tails[level].append(msg_id, seq, expires_at, size, flags)
        self._paged += 1
        self._paged_bytes += size
        self.paged_out += 1

    def _page_out(self, entry: Entry, level: int) -> bool:
        """Put a new entry in its level's paged tail instead of memory, if it must go there.

        The caller counts it in _ready and _bytes as for any entry.
        """
        tails = self._tails
        if not (tails and tails[level].count):
            # nothing paged at this level: page only when over a limit
            mem = self._bytes - self._paged_bytes + (self._ready - self._paged) * ENTRY_COST
            if mem <= self._page_limit and not self._pressure.node_over:
                return False
        message = entry.message
        if message.group is not None and self._filtering:
            return False  # keep selective dispatch's working set whole (rare)
        flags = self._codec_index(message.codec) << 3
        if entry.redelivered:
            flags |= REDELIVERED
        if message.persistent:
            flags |= PERSISTENT
        if message.persistent and self.durable:
            msg_id = message.id  # its record is in the journal already, naming this queue
        else:
            pager = self._find_pager()
            if pager is None:
                return False
            msg_id = new_message_id()
            try:
                pager.page_out(
                    msg_id,
                    message.exchange,
                    message.routing_key,
                    message.raw_properties,
                    message.body,
                )
            except StoreError:
                return False
            flags |= OWN_RECORD
        self._append_paged(level, msg_id, entry.seq, entry.expires_at, len(message.body), flags)
        if message.priority or message.ttl is not None or message.group is not None:
            self._extras[entry.seq] = (message.priority, message.ttl, message.group)
        return True

    def _refill(self, level: int) -> bool:
        """Read the head of a level's paged tail back into its deque; True if any came back."""
        tail = self._tails[level]
        if not tail.count:
            return False
        pager = self._find_pager()
        if pager is None:
            return False
        items = tail.peek(PAGE_IN_BATCH, PAGE_IN_BYTES)
        try:
            got = pager.read([item[0] for item in items])
        except StoreError as exc:
            log.error("queue '%s': cannot read paged messages back: %s", self.name, exc)
            got = []
        if len(got) < len(items):
            self._wake_later(pager)
        if not got:
            return False
        tail.drop(len(got))
        self._paged -= len(got)
        dq = self._levels[level]
        codecs = self._pressure.codecs
        extras = self._extras
        lost = 0
        for (msg_id, seq, expires_at, size, flags), stored in zip(items, got, strict=False):
            self._paged_bytes -= size
            if flags & OWN_RECORD:
                pager.release(msg_id)
            extra = extras.pop(seq, None) if extras else None
            if stored is None:
                lost += 1
                self._ready -= 1
                self._bytes -= size
                continue
            priority, ttl, group = extra if extra is not None else (0, None, None)
            message = Message(
                stored.exchange,
                stored.routing_key,
                stored.properties,
                stored.body,
                codecs[flags >> 3],
                persistent=bool(flags & PERSISTENT),
                priority=priority,
                ttl=ttl,
                msg_id=msg_id,
                group=group,
            )
            entry = Entry(message, seq, expires_at)
            if flags & REDELIVERED:
                entry.redelivered = True
            dq.append(entry)
        if lost:
            log.warning(
                "queue '%s': %d paged messages were not in the journal (a failed write)",
                self.name,
                lost,
            )
        return bool(dq)

    def _refill_empty(self) -> None:
        levels = self._levels
        for level, tail in enumerate(self._tails):
            if tail.count and not levels[level]:
                self._refill(level)

    def _wake_later(self, pager: Pager) -> None:
        """A record to page in is not written yet: try again after the next commit."""
        if self._page_wake:
            return
        self._page_wake = True

        def committed(_exc: BaseException | None) -> None:
            # via the clock: after_commit may call back at once, from inside this dispatch
            self.clock.call_at(self.clock.now() + 0.002, self._woken)

        pager.after_commit(committed)

    def _woken(self) -> None:
        self._page_wake = False
        if self.deleted or not self._paged:
            return
        if self._consumers:
            self._dispatch()
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
        if (
            not self._ready
            and self._consumers
            and not (self._dispatching or self.deleted or self._filtering or self._grouped)
            and message.group is None
        ):
            # An empty queue with a consumer that has credit: what _dispatch would pop is this
            # entry, so hand it over without the append and pop (a latency-bound fan-in spends
            # most of its publishes here). Max-length was applied above; TTL cannot have run out.
            consumer = self._pick_consumer()
            if consumer is not None:
                self.published += 1
                self._dispatching = True
                try:
                    self._deliver(consumer, entry)
                finally:
                    self._dispatching = False
                return True
        level = 0
        if self._max_level:
            level = message.priority if message.priority < self._max_level else self._max_level
        if not (
            (
                self._paged
                or self._bytes + self._ready * ENTRY_COST > self._page_limit
                or self._pressure.node_over
            )
            and self._page_out(entry, level)
        ):
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
        if self._paged:
            self._refill_empty()
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
                while budget:
                    if i >= len(queue) and not (self._paged and self._refill(level)):
                        break
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
                    consumers.insert(j - 1, consumers.pop(i))  # j counted before the pop
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
            if self._paged and self._tails[level].count:
                self._browse_paged(consumer, level)
        consumer.sink.consumer_cancelled(consumer)

    def _browse_paged(self, consumer: Consumer, level: int) -> None:
        """Browse a level's paged tail: read back in batches, delivered as copies, not kept."""
        pager = self._find_pager()
        if pager is None:
            return
        items = list(self._tails[level])
        codecs = self._pressure.codecs
        for start in range(0, len(items), PAGE_IN_BATCH):
            batch = items[start : start + PAGE_IN_BATCH]
            try:
                got = pager.read([msg_id for msg_id, _ in batch])
            except StoreError:
                return
            for (msg_id, flags), stored in zip(batch, got, strict=False):
                if stored is None:
                    continue
                message = Message(
                    stored.exchange,
                    stored.routing_key,
                    stored.properties,
                    stored.body,
                    codecs[flags >> 3],
                    persistent=bool(flags & PERSISTENT),
                    msg_id=msg_id,
                )
                copy = Entry(message, 0, None)
                copy.redelivered = bool(flags & REDELIVERED)
                if consumer.filter is None or consumer.filter(copy):
                    consumer.sink.deliver(consumer, copy, None)
            if len(got) < len(batch):
                return  # the rest is not written yet

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
                    consumers.insert(j - 1, consumers.pop(i))  # j counted before the pop
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
        if self._paged:
            self._purge_paged()
        for level in self._levels:
            level.clear()
        self._requeued.clear()
        self._ready = 0
        self._bytes = 0
        return count

    def _purge_paged(self) -> None:
        pager = self._find_pager()
        store = self.host.broker.store if self.durable else None
        for tail in self._tails:
            for msg_id, flags in tail:
                if flags & OWN_RECORD:
                    if pager is not None:
                        pager.release(msg_id)
                elif store is not None and flags & PERSISTENT:
                    store.settle(msg_id, self.store_key)
            tail.clear()
        self._paged = 0
        self._paged_bytes = 0
        self._extras.clear()

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
        for i, level in enumerate(self._levels):
            if level and level[0].expires_at is not None:
                t = level[0].expires_at
                best = t if best is None or t < best else best
            elif not level and self._paged:
                t3 = self._tails[i].head_expiry()
                if t3 is not None and (best is None or t3 < best):
                    best = t3
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
        for i, level in enumerate(self._levels):
            refills = 8  # bound the work of one timer run; the rest comes on the next one
            while True:
                while level and level[0].expires_at is not None and level[0].expires_at <= now:
                    entry = level.popleft()
                    self._ready -= 1
                    self._bytes -= len(entry.message.body)
                    expired.append(entry)
                if level or not self._paged or not refills:
                    break
                head = self._tails[i].head_expiry()
                if head is None or head > now or not self._refill(i):
                    break
                refills -= 1
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
