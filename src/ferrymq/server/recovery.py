"""Bringing a node back: definitions first, then the journal's live messages into their queues.

Runs before any listener opens. Every confirmed persistent message of a durable queue comes back
in its queue's publish order; those that had been delivered come back marked redelivered.
Messages for queues that no longer exist are settled, so the journal can reclaim them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ferrymq.core.broker import Broker
from ferrymq.core.definitions import export_definitions, import_definitions
from ferrymq.core.message import Message, reserve_message_ids
from ferrymq.core.queue_type import QueueType
from ferrymq.protocols.amqp.properties import PROPERTY_CODEC, decode_properties
from ferrymq.server.definitions_file import load_definitions, save_definitions
from ferrymq.store.journal import Journal

log = logging.getLogger("ferrymq.recovery")

RECOVERY_OWNER = object()


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
    touched: set[str] = set()
    for item in recovery.messages:
        body = item.body if item.body is not None else journal.read_body(item.location)
        props = decode_properties(item.properties)
        ttl = None
        if props.expiration is not None and props.expiration.isdigit():
            ttl = int(props.expiration) / 1000.0
        message = Message(
            item.exchange,
            item.routing_key,
            item.properties,
            body,
            PROPERTY_CODEC,
            persistent=True,
            priority=props.priority or 0,
            ttl=ttl,
            properties=props,
            msg_id=item.msg_id,
        )
        for key in item.queues:
            held_by = delayed.get(key)
            if held_by is not None:
                # delayed messages wait again, in full: late rather than early
                delay = (props.headers or {}).get("x-delay", 0)
                held_by.schedule_delayed(item.exchange, message, max(int(delay), 1) / 1000, True)
                restored += 1
                continue
            target = queues.get(key)
            if target is None:
                journal.append_settle(item.msg_id, key)
                orphaned += 1
                continue
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
        "recovered %d messages in %d queues from %d segments in %.2fs%s",
        restored,
        len(touched),
        recovery.segments,
        elapsed,
        f" ({orphaned} for deleted queues dropped)" if orphaned else "",
    )
