"""One AMQP channel: methods, content assembly, consumers, acknowledgements, confirms, tx.

Theory of operation. The connection hands every frame for this channel to `handle_method`,
`handle_header` or `handle_body`. A basic.publish is followed by exactly one content header and
as many body frames as its size needs; anything else in between is an UNEXPECTED_FRAME connection
error (AMQP 0-9-1 4.2.6). The channel is also core's `DeliverySink`: queues call `deliver`,
and the channel numbers deliveries, remembers unacknowledged ones and writes the frames.
Settlement (ack/nack/reject) is grouped per queue so one ack multiple=true of a hundred
deliveries is one call into the queue. Publisher confirms are collected while a received buffer
is processed and written as one ack multiple=true per run (see `flush_confirms`).
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from ferrymq.core.clock import TimerHandle
from ferrymq.core.consumer import Consumer
from ferrymq.core.errors import BrokerError, PreconditionFailed
from ferrymq.core.message import Entry, Message
from ferrymq.core.queue_type import QueueType
from ferrymq.core.selection import compile_or_refuse, entry_filter
from ferrymq.core.vhost import DIRECT_REPLY_TO
from ferrymq.protocols.amqp._errors import ChannelError, ConnectionError_, from_broker_error
from ferrymq.protocols.amqp.codec import (
    Ack,
    ContentBody,
    ContentHeader,
    Nack,
    Publish,
    Reject,
    encode_ack,
    encode_deliver,
    encode_get_ok,
    encode_method,
    encode_nack,
    encode_return,
)
from ferrymq.protocols.amqp.properties import (
    PROPERTY_CODEC,
    decode_properties,
    encode_properties,
)

if TYPE_CHECKING:
    from ferrymq.protocols.amqp.connection import AMQPConnection

# property-flag bits that make the publish path decode the properties in full
_FLAG_PRIORITY = 0x0800
_FLAG_REPLY_TO = 0x0200
_FLAG_EXPIRATION = 0x0100
_FLAG_USER_ID = 0x0010
_FLAG_DELIVERY_MODE = 0x1000
_FLAG_HEADERS = 0x2000
# headers are read for x-delay (delivery delay) and JMSXGroupID (message groups)
_NEEDS_DECODE = _FLAG_PRIORITY | _FLAG_REPLY_TO | _FLAG_EXPIRATION | _FLAG_USER_ID | _FLAG_HEADERS
_BEFORE_DELIVERY_MODE = 0xE000  # content-type, content-encoding, headers


OPEN, CLOSING = 1, 2

# an unacknowledged delivery: (entry, queue or None, consumer or None, delivered_at or 0.0)
_Unacked = tuple[Entry, QueueType | None, Consumer | None, float]


def _tag(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def _has_delivery_limit(queue: QueueType | None) -> bool:
    settings = getattr(queue, "settings", None)
    return settings is not None and settings.delivery_limit is not None


def _with_delivery_count(message: Message, count: int) -> bytes:
    """A redelivered message carries x-delivery-count (how often it was returned before), as
    RabbitMQ's quorum queues (which have delivery limits) write it. Classic queues add it only
    for consumers that ask with the consumer argument x-delivery-count (the JMS client does, for
    JMSXDeliveryCount), so plain AMQP clients see what RabbitMQ's classic queues give them."""
    props = copy.copy(message.properties)
    props.headers = {**(props.headers or {}), "x-delivery-count": count}
    return encode_properties(props)


def method(cls: type, **fields: Any) -> Any:
    """Build a pamqp method without its name validation (RabbitMQ allows any UTF-8 name)."""
    obj = cls()
    for key, value in fields.items():
        setattr(obj, key, value)
    return obj


class Channel:
    """See the module docstring."""

    def __init__(self, conn: AMQPConnection, number: int) -> None:
        self.conn = conn
        self.number = number
        self.state = OPEN
        self.flow_active = True
        self._attaching = False  # a consumer is being attached: no deliveries yet
        self._next_tag = 1
        # delivery tag -> (entry, queue or None, consumer or None, delivered_at or 0.0)
        self.unacked: dict[int, tuple[Entry, QueueType | None, Consumer | None, float]] = {}
        self.consumers: dict[str, Consumer] = {}
        self.prefetch_consumer = 0
        self.prefetch_channel = 0
        self.confirm = False
        self._publish_seq = 0
        self.pending_confirms: list[tuple[int, bool]] = []
        self._needs_commit = False  # a publish since the last flush went to the store
        self._confirms_waiting = 0  # confirm batches waiting for the store's commit
        self.tx = False
        self._tx_ops: list[Callable[[], None]] = []
        self._tx_taken: list[tuple[int, _Unacked]] = []
        self._last_queue: str | None = None
        self._reply_to: str | None = None
        self._timeout_timer: TimerHandle | None = None
        # content being assembled
        self._publish: Publish | None = None
        self._header: ContentHeader | None = None
        self._body: list[bytes] = []
        self._remaining = 0

    # -- frames ----------------------------------------------------------------------------------

    @property
    def expecting_content(self) -> bool:
        return self._publish is not None

    def handle_publish(self, m: Publish) -> None:
        self._publish = m

    def handle_header(self, frame: ContentHeader) -> None:
        if self._publish is None or self._header is not None:
            raise ConnectionError_(505, "UNEXPECTED_FRAME - content header without a publish")
        if frame.class_id != 60:
            raise ConnectionError_(
                505, f"UNEXPECTED_FRAME - content header for class {frame.class_id}"
            )
        limit = self.conn.broker.config.max_message_size
        if frame.body_size > limit:
            self._publish = None
            raise ChannelError(
                406,
                f"PRECONDITION_FAILED - message size {frame.body_size} is larger than configured "
                f"max size {limit}",
                60,
                40,
            )
        self._header = frame
        self._remaining = frame.body_size
        if not self._remaining:
            self._complete()

    def handle_body(self, frame: ContentBody) -> None:
        if self._header is None:
            raise ConnectionError_(505, "UNEXPECTED_FRAME - content body without a header")
        payload = frame.payload
        self._remaining -= len(payload)
        if self._remaining < 0:
            raise ConnectionError_(
                501, "FRAME_ERROR - content body larger than the size in its header"
            )
        self._body.append(payload)
        if not self._remaining:
            self._complete()

    def _complete(self) -> None:
        publish, header = self._publish, self._header
        assert publish is not None and header is not None
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._publish = self._header = None
        self._body = []
        self.publish(publish, header.properties, body)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, m: Publish, raw: bytes, body: bytes) -> None:
        conn = self.conn
        conn.has_published = True
        vhost = conn.vhost
        exchange = m.exchange
        if m.immediate:
            raise ConnectionError_(540, "NOT_IMPLEMENTED - immediate=true", 60, 40)
        try:
            vhost.check_publish(exchange)
        except BrokerError as exc:
            raise from_broker_error(exc, 60, 40) from None
        flags = (raw[0] << 8 | raw[1]) if len(raw) >= 2 else 0
        props = None
        persistent = False
        priority = 0
        ttl = None
        delay = 0.0
        group = None
        if flags & _NEEDS_DECODE or (flags & _FLAG_DELIVERY_MODE and flags & _BEFORE_DELIVERY_MODE):
            props = decode_properties(raw)
            persistent = props.delivery_mode == 2
            priority = props.priority or 0
            if props.expiration is not None:
                ttl = self._parse_expiration(props.expiration)
            if props.user_id is not None and props.user_id != conn.user_name:
                raise ChannelError(
                    406,
                    f"PRECONDITION_FAILED - user_id property set to '{props.user_id}' but "
                    f"authenticated user was '{conn.user_name}'",
                    60,
                    40,
                )
            if props.reply_to == DIRECT_REPLY_TO:
                if self._reply_to is None:
                    raise ChannelError(
                        406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40
                    )
                props.reply_to = self._reply_to
                raw = encode_properties(props)
            headers = props.headers
            if headers:
                value = headers.get("x-delay")
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    delay = value / 1000.0
                value = headers.get("JMSXGroupID")
                if isinstance(value, (str, bytes)):
                    group = value if isinstance(value, str) else value.decode("utf-8", "replace")
        elif flags & _FLAG_DELIVERY_MODE:
            persistent = raw[2] == 2
        message = Message(
            exchange,
            m.routing_key,
            raw,
            body,
            PROPERTY_CODEC,
            persistent=persistent,
            priority=priority,
            ttl=ttl,
            properties=props,
            group=group,
        )
        if self.tx:
            self._tx_ops.append(lambda: self._route(m, message, delay))
            return
        self._route(m, message, delay)

    def _route(self, m: Publish, message: Message, delay: float = 0.0) -> None:
        outcome = self.conn.vhost.publish(m.exchange, message, delay)
        if not outcome.routed and m.mandatory:
            self.conn.send(
                encode_return(
                    self.number,
                    312,
                    "NO_ROUTE",
                    m.exchange,
                    m.routing_key,
                    message.raw_properties,
                    message.body,
                    self.conn.frame_max,
                )
            )
        if outcome.persisted:
            self._needs_commit = True
        if self.confirm:
            self._publish_seq += 1
            if not self.pending_confirms:
                self.conn.confirms_pending(self)
            self.pending_confirms.append((self._publish_seq, not outcome.refused))

    @staticmethod
    def _parse_expiration(value: str) -> float:
        if not value.isdigit():
            raise ChannelError(406, f"PRECONDITION_FAILED - invalid expiration '{value}'", 60, 40)
        return int(value) / 1000.0

    def flush_confirms(self) -> None:
        """Send the confirms collected from one received buffer.

        A persistent message on a durable queue is confirmed only once the store has it on
        disk (group commit); later confirms wait behind earlier ones so that no ack with
        multiple=true ever covers a message that is not yet durable.
        """
        pending, self.pending_confirms = self.pending_confirms, []
        if not pending or self.state != OPEN:
            return
        store = self.conn.broker.store
        if store is not None and (self._needs_commit or self._confirms_waiting):
            self._needs_commit = False
            self._confirms_waiting += 1
            store.after_commit(lambda exc: self._committed_confirms(pending, exc))
            return
        self._send_confirms(pending)

    def _committed_confirms(
        self, pending: list[tuple[int, bool]], exc: BaseException | None
    ) -> None:
        self._confirms_waiting -= 1
        if self.state != OPEN:
            return
        if exc is not None:  # the write failed: nothing in this batch is confirmed
            pending = [(seq, False) for seq, _ in pending]
        self._send_confirms(pending)

    def _send_confirms(self, pending: list[tuple[int, bool]]) -> None:
        out: list[bytes] = []
        run_start = run_end = 0
        for seq, ok in pending:
            if ok:
                if not run_end:
                    run_start = seq
                run_end = seq
                continue
            if run_end:
                out.append(encode_ack(self.number, run_end, run_end > run_start))
                run_end = 0
            out.append(encode_nack(self.number, seq, False, False))
        if run_end:
            out.append(encode_ack(self.number, run_end, run_end > run_start))
        self.conn.send(b"".join(out))

    # -- delivery (core's DeliverySink) ----------------------------------------------------------

    def has_credit(self) -> bool:
        return (
            not self._attaching
            and self.flow_active
            and self.conn.writable
            and self.state == OPEN
            and (not self.prefetch_channel or len(self.unacked) < self.prefetch_channel)
        )

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        tag = self._next_tag
        self._next_tag = tag + 1
        if not consumer.no_ack:
            delivered_at = 0.0
            timeout = getattr(queue, "settings", None)
            if timeout is not None and timeout.consumer_timeout is not None:
                delivered_at = self.conn.broker.clock.now()
                self._arm_timeout(delivered_at + timeout.consumer_timeout)
            self.unacked[tag] = (entry, queue, consumer, delivered_at)
        message = entry.message
        raw = message.raw_properties
        if entry.delivery_count and (
            consumer.arguments.get("x-delivery-count") or _has_delivery_limit(queue)
        ):
            raw = _with_delivery_count(message, entry.delivery_count)
        self.conn.send(
            encode_deliver(
                self.number,
                consumer.tag,
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                raw,
                message.body,
                self.conn.frame_max,
            )
        )

    def consumer_cancelled(self, consumer: Consumer) -> None:
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.conn.cancel_notify and self.state == OPEN:
            self.conn.send(
                encode_method(
                    self.number, method(spec.Basic.Cancel, consumer_tag=consumer.tag, nowait=True)
                )
            )

    # -- consumer timeout --------------------------------------------------------------------------

    def _arm_timeout(self, when: float) -> None:
        if self._timeout_timer is None:
            self._timeout_timer = self.conn.broker.clock.call_at(when, self._check_timeout)

    def _check_timeout(self) -> None:
        self._timeout_timer = None
        if self.state != OPEN:
            return
        now = self.conn.broker.clock.now()
        earliest = None
        for _entry, queue, _consumer, delivered_at in self.unacked.values():
            if not delivered_at:
                continue
            timeout = queue.settings.consumer_timeout  # type: ignore[union-attr]
            if now - delivered_at >= timeout:
                self.conn.close_channel(
                    self,
                    ChannelError(
                        406,
                        f"PRECONDITION_FAILED - delivery acknowledgement on channel {self.number} "
                        f"timed out. Timeout value used: {int(timeout * 1000)} ms. This timeout "
                        "value can be configured, see consumers doc guide to learn more",
                    ),
                )
                return
            due = delivered_at + timeout
            earliest = due if earliest is None or due < earliest else earliest
        if earliest is not None:
            self._arm_timeout(earliest)

    # -- settlement --------------------------------------------------------------------------------

    def _take(
        self, tag: int, multiple: bool, class_method: tuple[int, int]
    ) -> list[tuple[Entry, QueueType | None, Consumer | None, float]]:
        unacked = self.unacked
        if self.tx:
            # keep what a transaction settles, so tx.rollback can give it back
            before = dict(unacked)
            records = self._take_now(tag, multiple, class_method)
            self._tx_taken.extend((t, r) for t, r in before.items() if t not in unacked)
            return records
        return self._take_now(tag, multiple, class_method)

    def _take_now(
        self, tag: int, multiple: bool, class_method: tuple[int, int]
    ) -> list[tuple[Entry, QueueType | None, Consumer | None, float]]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if tag not in unacked and (not unacked or tag < next(iter(unacked))):
                raise ChannelError(
                    406, f"PRECONDITION_FAILED - unknown delivery tag {tag}", *class_method
                )
            taken = []
            for t in list(unacked):
                if t > tag:
                    break
                taken.append(unacked.pop(t))
            return taken
        record = unacked.pop(tag, None)
        if record is None:
            raise ChannelError(
                406, f"PRECONDITION_FAILED - unknown delivery tag {tag}", *class_method
            )
        return [record]

    @staticmethod
    def _grouped(
        records: list[tuple[Entry, QueueType | None, Consumer | None, float]],
    ) -> list[tuple[QueueType, Consumer | None, list[Entry]]]:
        if not records:
            return []
        if len(records) == 1 or all(
            r[1] is records[0][1] and r[2] is records[0][2] for r in records
        ):
            queue = records[0][1]
            if queue is None:
                return []
            return [(queue, records[0][2], [r[0] for r in records])]
        groups: dict[tuple[int, int], tuple[QueueType, Consumer | None, list[Entry]]] = {}
        for entry, queue, consumer, _ in records:
            if queue is None:
                continue
            key = (id(queue), id(consumer))
            group = groups.get(key)
            if group is None:
                group = groups[key] = (queue, consumer, [])
            group[2].append(entry)
        return list(groups.values())

    def settle(self, m: Ack | Nack | Reject) -> None:
        if isinstance(m, Ack):
            records = self._take(m.delivery_tag, m.multiple, (60, 80))
            action = "ack"
        elif isinstance(m, Nack):
            records = self._take(m.delivery_tag, m.multiple, (60, 120))
            action = "requeue" if m.requeue else "reject"
        else:
            records = self._take(m.delivery_tag, False, (60, 90))
            action = "requeue" if m.requeue else "reject"
        if self.tx:
            self._tx_ops.append(lambda: self._apply(records, action))
            return
        self._apply(records, action)

    def _apply(
        self, records: list[tuple[Entry, QueueType | None, Consumer | None, float]], action: str
    ) -> None:
        if not records:
            return
        for queue, consumer, entries in self._grouped(records):
            if action == "ack":
                queue.ack(entries, consumer)
            elif action == "requeue":
                queue.requeue(entries, consumer)
            else:
                queue.reject(entries, consumer)
        if self.prefetch_channel:
            self.wake_consumers()

    def wake_consumers(self) -> None:
        """Credit became available on this channel: let its queues dispatch."""
        for consumer in list(self.consumers.values()):
            if consumer.queue is not None:
                consumer.queue.credit_available()

    def requeue_all(self) -> None:
        records = list(self.unacked.values())
        self.unacked.clear()
        for queue, consumer, entries in self._grouped(records):
            queue.requeue(entries, consumer)

    # -- methods -----------------------------------------------------------------------------------

    def handle_method(self, m: Any) -> None:
        handler = _HANDLERS.get(type(m))
        if handler is None:
            raise ConnectionError_(
                540, f"NOT_IMPLEMENTED - method {type(m).__name__} on channel {self.number}"
            )
        try:
            handler(self, m)
        except BrokerError as exc:
            index = getattr(m, "index", 0)
            raise from_broker_error(exc, index >> 16, index & 0xFFFF) from None

    def reply(self, m: Any) -> None:
        self.conn.send(encode_method(self.number, m))

    def close(self) -> None:
        """Release everything the channel holds (client close, error, connection end)."""
        if self._timeout_timer is not None:
            self._timeout_timer.cancel()
            self._timeout_timer = None
        consumers, self.consumers = self.consumers, {}
        for consumer in consumers.values():
            if consumer.queue is not None:
                consumer.queue.remove_consumer(consumer)
        self.requeue_all()
        if self._reply_to is not None:
            self.conn.vhost.unregister_reply_to(self._reply_to)
            self._reply_to = None
        self._tx_ops.clear()
        if self._tx_taken:  # settled inside an open transaction: still unacked, so requeue
            for queue, owner, entries in self._grouped([r for _, r in self._tx_taken]):
                queue.requeue(entries, owner)
            self._tx_taken = []
        self._publish = self._header = None
        self._body = []

    def _owner(self) -> object:
        return self.conn

    # channel class
    def _channel_flow(self, m: spec.Channel.Flow) -> None:
        if not m.active:
            # RabbitMQ does not let a client pause deliveries this way; prefetch does that.
            raise ConnectionError_(540, "NOT_IMPLEMENTED - active=false", 20, 20)
        self.reply(spec.Channel.FlowOk(active=True))

    # exchange class
    def _exchange_declare(self, m: spec.Exchange.Declare) -> None:
        self.conn.vhost.declare_exchange(
            m.exchange,
            m.exchange_type,
            passive=m.passive,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments,
        )
        if not m.nowait:
            self.reply(spec.Exchange.DeclareOk())

    def _exchange_delete(self, m: spec.Exchange.Delete) -> None:
        self.conn.vhost.delete_exchange(m.exchange, if_unused=m.if_unused)
        if not m.nowait:
            self.reply(spec.Exchange.DeleteOk())

    def _exchange_bind(self, m: spec.Exchange.Bind) -> None:
        self.conn.vhost.bind_exchange(m.destination, m.source, m.routing_key, m.arguments)
        if not m.nowait:
            self.reply(spec.Exchange.BindOk())

    def _exchange_unbind(self, m: spec.Exchange.Unbind) -> None:
        self.conn.vhost.unbind_exchange(m.destination, m.source, m.routing_key, m.arguments)
        if not m.nowait:
            self.reply(spec.Exchange.UnbindOk())

    # queue class
    def _queue_name(self, name: str) -> str:
        if name:
            return name
        if self._last_queue is None:
            raise ChannelError(404, "NOT_FOUND - no previously declared queue")
        return self._last_queue

    def _queue_declare(self, m: spec.Queue.Declare) -> None:
        name = m.queue
        if m.passive and not name:
            name = self._queue_name(name)
        if name == DIRECT_REPLY_TO and m.passive:
            if not m.nowait:
                self.reply(
                    method(spec.Queue.DeclareOk, queue=name, message_count=0, consumer_count=0)
                )
            return
        queue = self.conn.vhost.declare_queue(
            name,
            owner=self._owner(),
            passive=m.passive,
            durable=m.durable,
            exclusive=m.exclusive,
            auto_delete=m.auto_delete,
            arguments=m.arguments,
        )
        self._last_queue = queue.name
        if not m.nowait:
            self.reply(
                method(
                    spec.Queue.DeclareOk,
                    queue=queue.name,
                    message_count=queue.message_count,
                    consumer_count=queue.consumer_count,
                )
            )

    def _queue_bind(self, m: spec.Queue.Bind) -> None:
        self.conn.vhost.bind_queue(
            self._queue_name(m.queue), m.exchange, m.routing_key, m.arguments, owner=self._owner()
        )
        if not m.nowait:
            self.reply(spec.Queue.BindOk())

    def _queue_unbind(self, m: spec.Queue.Unbind) -> None:
        self.conn.vhost.unbind_queue(
            self._queue_name(m.queue), m.exchange, m.routing_key, m.arguments, owner=self._owner()
        )
        self.reply(spec.Queue.UnbindOk())

    def _queue_purge(self, m: spec.Queue.Purge) -> None:
        count = self.conn.vhost.purge_queue(self._queue_name(m.queue), owner=self._owner())
        if not m.nowait:
            self.reply(spec.Queue.PurgeOk(message_count=count))

    def _queue_delete(self, m: spec.Queue.Delete) -> None:
        count = self.conn.vhost.delete_queue(
            self._queue_name(m.queue),
            owner=self._owner(),
            if_unused=m.if_unused,
            if_empty=m.if_empty,
        )
        if not m.nowait:
            self.reply(spec.Queue.DeleteOk(message_count=count))

    # basic class
    def _basic_qos(self, m: spec.Basic.Qos) -> None:
        if m.prefetch_size:
            raise ConnectionError_(
                540, f"NOT_IMPLEMENTED - prefetch_size!=0 ({m.prefetch_size})", 60, 10
            )
        if m.global_:
            self.prefetch_channel = m.prefetch_count
            self.wake_consumers()
        else:
            self.prefetch_consumer = m.prefetch_count
        self.reply(spec.Basic.QosOk())

    def _basic_consume(self, m: spec.Basic.Consume) -> None:
        tag = m.consumer_tag or _tag("amq.ctag-")
        if tag in self.consumers:
            raise ConnectionError_(
                530, f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'", 60, 20
            )
        args = dict(m.arguments or {})
        priority = args.get("x-priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise PreconditionFailed(f"invalid arg 'x-priority' of type {type(priority).__name__}")
        vhost = self.conn.vhost
        if m.queue == DIRECT_REPLY_TO:
            if not m.no_ack:
                raise PreconditionFailed("reply consumer cannot acknowledge")
            if self._reply_to is not None:
                raise PreconditionFailed("reply consumer already set")
            consumer = Consumer(tag, self, no_ack=True)
            self._reply_to = vhost.register_reply_to(consumer)
            self.consumers[tag] = consumer
            if not m.nowait:
                self.reply(spec.Basic.ConsumeOk(consumer_tag=tag))
            return
        queue = vhost.queue(self._queue_name(m.queue), self._owner())
        browse = bool(args.get("x-browse"))
        consumer = Consumer(
            tag,
            self,
            no_ack=m.no_ack or browse,
            exclusive=m.exclusive,
            prefetch=self.prefetch_consumer,
            priority=int(priority),
            arguments=args,
        )
        if args.get("x-selector") is not None:
            selector = compile_or_refuse(args["x-selector"])
            if not selector.selects_all:  # an empty selector keeps the fast FIFO path
                consumer.filter = entry_filter(selector)
        if browse:
            # JMS QueueBrowser: a snapshot of the queue, then basic.cancel from the broker
            self.consumers[tag] = consumer
            if not m.nowait:
                self.reply(spec.Basic.ConsumeOk(consumer_tag=tag))
            queue.browse(consumer)
            return
        # Attach first, so a refusal (exclusive use) comes before any consume-ok, as in RabbitMQ;
        # hold deliveries meanwhile, since consume-ok must precede the first of them.
        self._attaching = True
        try:
            queue.add_consumer(consumer)
        finally:
            self._attaching = False
        self.consumers[tag] = consumer
        if not m.nowait:
            self.reply(spec.Basic.ConsumeOk(consumer_tag=tag))
        queue.credit_available()

    def _basic_cancel(self, m: spec.Basic.Cancel) -> None:
        consumer = self.consumers.pop(m.consumer_tag or "", None)
        if consumer is not None:
            if consumer.queue is not None:
                consumer.queue.remove_consumer(consumer)
            elif self._reply_to is not None and consumer.no_ack:
                self.conn.vhost.unregister_reply_to(self._reply_to)
                self._reply_to = None
        if not m.nowait:
            self.reply(spec.Basic.CancelOk(consumer_tag=m.consumer_tag))

    def _basic_get(self, m: spec.Basic.Get) -> None:
        queue = self.conn.vhost.queue(self._queue_name(m.queue), self._owner())
        entry = queue.get(m.no_ack)
        if entry is None:
            self.reply(spec.Basic.GetEmpty())
            return
        tag = self._next_tag
        self._next_tag = tag + 1
        if not m.no_ack:
            self.unacked[tag] = (entry, queue, None, 0.0)
        message = entry.message
        self.conn.send(
            encode_get_ok(
                self.number,
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                queue.message_count,
                _with_delivery_count(message, entry.delivery_count)
                if entry.delivery_count and _has_delivery_limit(queue)
                else message.raw_properties,
                message.body,
                self.conn.frame_max,
            )
        )

    def _basic_recover(self, m: Any) -> None:
        if not m.requeue:
            raise ConnectionError_(540, "NOT_IMPLEMENTED - requeue=false", 60, 110)
        self.requeue_all()
        if isinstance(m, spec.Basic.Recover):
            self.reply(spec.Basic.RecoverOk())

    # confirm and tx classes
    def _confirm_select(self, m: spec.Confirm.Select) -> None:
        if self.tx:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self.confirm = True
        if not m.nowait:
            self.reply(spec.Confirm.SelectOk())

    def _tx_select(self, m: spec.Tx.Select) -> None:
        if self.confirm:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self.tx = True
        self.reply(spec.Tx.SelectOk())

    def _tx_commit(self, m: spec.Tx.Commit) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        ops, self._tx_ops = self._tx_ops, []
        self._tx_taken = []
        self._needs_commit = False
        for op in ops:
            op()
        store = self.conn.broker.store
        if self._needs_commit and store is not None:
            # commit-ok means the transaction's persistent messages are on disk
            self._needs_commit = False
            store.after_commit(self._tx_committed)
            return
        self.reply(spec.Tx.CommitOk())

    def _tx_committed(self, exc: BaseException | None) -> None:
        if self.state != OPEN:
            return
        if exc is not None:
            self.conn.close_channel(
                self, ChannelError(541, f"INTERNAL_ERROR - transaction not stored: {exc}", 90, 20)
            )
            return
        self.reply(spec.Tx.CommitOk())

    def _tx_rollback(self, m: spec.Tx.Rollback) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        self._tx_ops = []
        if self._tx_taken:
            restored = sorted([*self.unacked.items(), *self._tx_taken], key=lambda item: item[0])
            self.unacked = dict(restored)
            self._tx_taken = []
        self.reply(spec.Tx.RollbackOk())


_HANDLERS: dict[type, Callable[[Channel, Any], None]] = {
    spec.Channel.Flow: Channel._channel_flow,
    spec.Exchange.Declare: Channel._exchange_declare,
    spec.Exchange.Delete: Channel._exchange_delete,
    spec.Exchange.Bind: Channel._exchange_bind,
    spec.Exchange.Unbind: Channel._exchange_unbind,
    spec.Queue.Declare: Channel._queue_declare,
    spec.Queue.Bind: Channel._queue_bind,
    spec.Queue.Unbind: Channel._queue_unbind,
    spec.Queue.Purge: Channel._queue_purge,
    spec.Queue.Delete: Channel._queue_delete,
    spec.Basic.Qos: Channel._basic_qos,
    spec.Basic.Consume: Channel._basic_consume,
    spec.Basic.Cancel: Channel._basic_cancel,
    spec.Basic.Get: Channel._basic_get,
    spec.Basic.Recover: Channel._basic_recover,
    spec.Basic.RecoverAsync: Channel._basic_recover,
    spec.Confirm.Select: Channel._confirm_select,
    spec.Tx.Select: Channel._tx_select,
    spec.Tx.Commit: Channel._tx_commit,
    spec.Tx.Rollback: Channel._tx_rollback,
}
