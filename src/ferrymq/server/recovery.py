"""Bringing a node back: definitions first, then the journal's live messages into their queues.

Runs before any listener opens. Every confirmed persistent message of a durable queue comes back
in its queue's publish order; those that had been delivered come back marked redelivered.
Messages for queues that no longer exist are settled, so the journal can reclaim them.

The journal's scan builds only its compact index; the live messages then stream in msg_id
order, each record read back from its segment (in runs of up to 256 KiB) as it comes, so
recovery holds one message at a time rather than the whole backlog. A message that its queue
would page out at once (over `queue_memory_limit`, or the node over its paging share of the
memory watermark) goes straight into the queue's paged tail and its body is dropped, so
recovering a queue larger than memory costs its index, not its bodies. Paged
transient messages (the journal key `PAGED_KEY`) are settled: they do not survive a restart.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ferrymq.core.broker import Broker
from ferrymq.core.definitions import export_definitions, import_definitions
from ferrymq.core.message import Message, reserve_message_ids
from ferrymq.core.queue_type import QueueType
from ferrymq.protocols.amqp.properties import PROPERTY_CODEC, BasicProperties, decode_properties
from ferrymq.queues.classic import ClassicQueue, paging_state
from ferrymq.server.definitions_file import load_definitions, save_definitions
from ferrymq.server.monitor import memory_limits
from ferrymq.store.journal import Journal
from ferrymq.store.paging import PAGED_KEY

log = logging.getLogger("ferrymq.recovery")

RECOVERY_OWNER = object()
_DECODED_CACHE = 4096  # distinct property byte strings decoded once each during recovery


def recover_definitions(broker: Broker, path: Path) -> None:
    data = load_definitions(path)
    if data is not None:
        import_definitions(broker, data, owner=RECOVERY_OWNER)
    save_definitions(path, export_definitions(broker))
    broker.on_definitions_changed = lambda: save_definitions(path, export_definitions(broker))


def recover_messages(broker: Broker, journal: Journal) -> None:
    started = time.monotonic()
    recovery = journal.open()
    reserve_message_ids(recovery.next_msg_id)
    queues: dict[str, QueueType] = {}
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if queue.durable:
                queues[queue.store_key] = queue
    delayed = {vhost.delayed_store_key: vhost for vhost in broker.vhosts.values()}
    restored = 0
    orphaned = 0
    paged = 0
    transient = 0
    touched: set[str] = set()
    pressure = paging_state(broker)
    node_limit = memory_limits(broker.config)[1]
    in_memory = 0
    seen: dict[bytes, tuple[BasicProperties, float | None, int]] = {}
    for item in recovery.stream():  # one message at a time, read from its segment
        # A backlog often repeats the same property bytes: decode each distinct one once for
        # the paged path (which needs only TTL and priority); a message kept in memory gets
        # its own decoded copy below.
        decoded = seen.get(item.properties)
        if decoded is None:
            props = decode_properties(item.properties)
            ttl = None
            if props.expiration is not None and props.expiration.isdigit():
                ttl = int(props.expiration) / 1000.0
            decoded = (props, ttl, props.priority or 0)
            if len(seen) < _DECODED_CACHE:
                seen[item.properties] = decoded
        shared_props, ttl, priority = decoded
        message: Message | None = None
        for key in item.queues:
            if key == PAGED_KEY:
                journal.append_settle(item.msg_id, key)
                transient += 1
                continue
            held_by = delayed.get(key)
            target = queues.get(key)
            if held_by is None and target is None:
                journal.append_settle(item.msg_id, key)
                orphaned += 1
                continue
            if held_by is None and isinstance(target, ClassicQueue) and target.pages_next():
                target.recover_paged(
                    item.msg_id,
                    item.location.length,
                    priority,
                    ttl,
                    key in item.delivered,
                    PROPERTY_CODEC,
                )
                touched.add(key)
                restored += 1
                paged += 1
                continue
            if message is None:
                body = item.body if item.body is not None else journal.read_body(item.location)
                in_memory += len(body)
                if in_memory > node_limit:
                    pressure.node_over = True  # the monitor takes over once the node runs
                props = decode_properties(item.properties)
                message = Message(
                    item.exchange,
                    item.routing_key,
                    item.properties,
                    body,
                    PROPERTY_CODEC,
                    persistent=True,
                    priority=priority,
                    ttl=ttl,
                    properties=props,
                    msg_id=item.msg_id,
                )
            if held_by is not None:
                # delayed messages wait again, in full: late rather than early
                delay = (shared_props.headers or {}).get("x-delay", 0)
                held_by.schedule_delayed(item.exchange, message, max(int(delay), 1) / 1000, True)
                restored += 1
                continue
            assert target is not None
            target.recover(message, key in item.delivered)
            touched.add(key)
            restored += 1
    elapsed = time.monotonic() - started
    if recovery.truncated_bytes:
        log.warning(
            "journal: cut %d bytes of a torn record at the end of the last segment",
            recovery.truncated_bytes,
        )
    log.info(
        "recovered %d messages in %d queues from %d segments in %.2fs%s%s%s",
        restored,
        len(touched),
        recovery.segments,
        elapsed,
        f" ({paged} paged, bodies left on disk)" if paged else "",
        f" ({orphaned} for deleted queues dropped)" if orphaned else "",
        f" ({transient} paged transient dropped)" if transient else "",
    )
