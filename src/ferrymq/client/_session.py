"""Sessions and consumers over the engine (see _core for the theory of operation).

A session's channel is in confirm mode (so a PERSISTENT send returns once the broker has the
message, on disk when the queue is durable) or, when transacted, in tx mode (sends and acks
wait for Tx.Commit).

Consumers: basic.consume with the consumer's own prefetch (basic.qos global=false) on the
session's channel. Deliveries land in the consumer's buffer (or the session's listener queue)
from the reader context; the application takes them, and the session does what the
acknowledgement mode says:

    AUTO          ack each message as it is handed out (listener: after it returns; a
                  listener that raises gets its message requeued, so it is redelivered)
    DUPS_OK       collect, ack in batches and whenever a buffer runs dry
    CLIENT        collect; message.acknowledge() acks everything the session consumed
    INDIVIDUAL    message.acknowledge() acks that message
    transacted    collect; commit() acks them inside the transaction, rollback() requeues

Acks use multiple=true up to the highest consumed delivery tag below the lowest tag still
sitting unconsumed in any buffer of the session (tags rise per channel, so that ack covers only
consumed messages), and single acks above it. recover() and rollback() nack with requeue both
what was consumed and what is buffered, so the broker redelivers in queue order.

If the broker closes a session's channel (say an exclusive consumer refused at consumer
creation), the error is raised to the caller and the session reopens its channel in the
background, restoring its other consumers.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

from pamqp import commands as spec

from ferrymq.client._consumer import CoreConsumer, subscription_queue
from ferrymq.client._core import (
    OPEN,
    RECONNECTING,
    AckMode,
    CoreConnection,
)
from ferrymq.client._destinations import Destination, Queue, Topic
from ferrymq.client._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    IllegalStateError,
    InvalidDestinationError,
    JMSError,
    TransactionRolledBackError,
)
from ferrymq.client._kinds import message_from_delivery
from ferrymq.client._message import Message
from ferrymq.client._protocol import ChannelState, method
from ferrymq.client._waiters import Op
from ferrymq.protocols.amqp.codec import encode_ack, encode_nack

__all__ = ["CoreSession"]

BROWSE_CAPABILITY = "consumer_browse"


class CoreSession:
    """See the module docstring."""

    def __init__(
        self, conn: CoreConnection, ack_mode: AckMode, transacted: bool, prefetch: int
    ) -> None:
        self.conn = conn
        self.flavor = conn.flavor
        self.chan: ChannelState | None = None
        self.ack_mode = ack_mode
        self.transacted = transacted
        self.prefetch = prefetch
        self.consumers: dict[str, CoreConsumer] = {}
        self.unacked: list[int] = []
        self.individual: set[int] = set()
        self.listener_queue: deque[tuple[CoreConsumer, Message]] = deque()
        self.listener_signal = conn.flavor.signal()
        self.in_listener = False
        self.closed = False
        self.error: JMSError | None = None
        self.tx_failed: JMSError | None = None
        self.tx_dirty = False
        # which transaction: a loss noticed by the reader while commit() ends the transaction
        # on the user's thread must not fail the next one (read before tx_dirty, bumped after)
        self.tx_serial = 0
        self.tx_failed_serial = -1
        self.dups_batch = max(1, min(prefetch // 2, 500)) if prefetch else 100
        self._healing = False
        self.allow_pickle = conn.settings.allow_pickle

    # -- channel -------------------------------------------------------------------------------

    def open_op(self) -> Op[None]:
        engine = self.conn.engine
        if engine is None:
            raise ConnectionLostError("connection lost")
        chan, opened = engine.open_channel()
        chan.on_deliver = self._on_deliver
        chan.on_cancel = self._on_cancel
        chan.on_closed = self._on_channel_closed
        yield opened
        if self.transacted:
            yield engine.call(chan, spec.Tx.Select(), (spec.Tx.SelectOk,))
        else:
            yield engine.call(
                chan, method(spec.Confirm.Select, nowait=False), (spec.Confirm.SelectOk,)
            )
            chan.confirm = True
        self.chan = chan
        self.error = None

    def restore_op(self) -> Op[None]:
        """Reopen the channel and resubscribe every consumer (after a failure).

        A consumer the broker now refuses is failed and left out; if refusing it closed the
        new channel too, the restore starts over without it.
        """
        while True:
            self._forget_deliveries()
            yield from self.open_op()
            chan = self.chan
            for consumer in list(self.consumers.values()):
                if consumer.closed:
                    continue
                try:
                    yield from consumer.subscribe_op()
                except JMSError as exc:
                    consumer.fail(exc)
                    self.consumers.pop(consumer.tag, None)
                    if chan is None or not chan.open:
                        break
            else:
                break
        self.wake_all()

    def _forget_deliveries(self) -> None:
        """Deliveries of a dead channel cannot be acknowledged: drop them (they come again)."""
        for consumer in self.consumers.values():
            consumer.buffer.clear()
        self.listener_queue.clear()
        self.unacked = []
        self.individual.clear()
        serial = self.tx_serial
        if self.transacted and self.tx_dirty:
            self.tx_failed_serial = serial
            self.tx_failed = TransactionRolledBackError(
                "the transaction was rolled back: its channel or connection was lost"
            )
        self.tx_dirty = False

    def connection_lost(self, error: JMSError) -> None:
        self._forget_deliveries()
        self.wake_all()

    def _on_channel_closed(self, error: JMSError) -> None:
        """The broker closed our channel (reader context): reopen it in the background."""
        self.error = error
        self._forget_deliveries()
        self.wake_all()
        if not self.closed and self.conn.state == OPEN and not self._healing:
            self._healing = True
            self.flavor.spawn(self._heal_op(), "ferrymq-session-restore")

    def _heal_op(self) -> Op[None]:
        try:
            yield from self.restore_op()
        except (JMSError, TimeoutError) as exc:
            self.error = exc if isinstance(exc, JMSError) else JMSError(str(exc))
        finally:
            self._healing = False

    def wake_all(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.signal.notify()
        self.listener_signal.notify()

    def usable_chan(self) -> ChannelState:
        if self.closed:
            raise ConnectionClosedError("the session is closed")
        chan = self.chan
        self.conn.check_usable()
        if chan is None or not chan.open:
            raise self.error or ConnectionLostError("the session's channel is being restored")
        return chan

    def wait_usable_op(self) -> Op[ChannelState]:
        """The channel, waiting while a failed one is reopened or the connection reconnects."""
        conn = self.conn
        policy = conn.settings.reconnect
        wait = max(conn.settings.timeout, policy.max_wait if policy is not None else 0.0)
        deadline = time.monotonic() + wait
        while True:
            if self.closed:
                raise ConnectionClosedError("the session is closed")
            chan = self.chan
            state = conn.state
            if chan is not None and chan.open and state == OPEN:
                return chan
            if state not in (OPEN, RECONNECTING):
                conn.check_usable()
            if time.monotonic() > deadline:
                raise self.error or ConnectionLostError("the session's channel is not open")
            yield self.flavor.sleep(0.01)

    # -- deliveries (reader context) -----------------------------------------------------------

    def _on_deliver(
        self,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> None:
        consumer = self.consumers.get(consumer_tag)
        chan = self.chan
        if chan is None:
            return
        if consumer is None or consumer.closed:
            # after basic.cancel: give it back
            self._settle(chan, encode_nack(chan.number, delivery_tag, False, True))
            return
        msg = message_from_delivery(
            properties,
            body,
            exchange=exchange,
            routing_key=routing_key,
            redelivered=redelivered,
            allow_pickle=self.allow_pickle,
        )
        msg._session = self
        msg._tag = delivery_tag
        msg._chan = chan
        msg._consumer_dest = consumer.destination
        if consumer.no_local:
            msg._decode()
            if msg._origin == self.conn.origin:
                self._settle(chan, encode_ack(chan.number, delivery_tag, False))
                return
        if consumer.listener is not None:
            self.listener_queue.append((consumer, msg))
            self.listener_signal.notify()
        else:
            consumer.buffer.append(msg)
            consumer.signal.notify()

    def _on_cancel(self, consumer_tag: str) -> None:
        consumer = self.consumers.get(consumer_tag)
        if consumer is not None:
            consumer.fail(
                InvalidDestinationError(
                    f"the broker cancelled the consumer of {consumer.queue_name!r} (queue deleted?)"
                )
            )

    # -- consumption and acknowledgement -------------------------------------------------------

    def consumed(self, msg: Message) -> None:
        """The application now has `msg` (receive returned it, or a listener will run)."""
        if self.transacted:
            self.unacked.append(msg._tag)
            self.tx_dirty = True
            return
        mode = self.ack_mode
        if mode is AckMode.AUTO:
            chan = msg._chan
            if chan is self.chan and chan is not None:
                self._settle(chan, encode_ack(chan.number, msg._tag, False))
        elif mode is AckMode.CLIENT:
            self.unacked.append(msg._tag)
        elif mode is AckMode.INDIVIDUAL:
            self.individual.add(msg._tag)
        else:  # DUPS_OK
            self.unacked.append(msg._tag)
            if len(self.unacked) >= self.dups_batch:
                self._ack_consumed()

    def buffer_drained(self) -> None:
        """A consumer's buffer ran dry: DUPS_OK acks what it collected."""
        if self.ack_mode is AckMode.DUPS_OK and self.unacked and not self.transacted:
            self._ack_consumed()

    def listener_done(self, msg: Message, failed: bool) -> None:
        """A listener returned (or raised) for `msg`, which was passed to consumed_by_listener."""
        if self.transacted:
            return
        chan = msg._chan
        if chan is not self.chan or chan is None:
            return
        mode = self.ack_mode
        if failed and mode in (AckMode.AUTO, AckMode.DUPS_OK):
            # JMS 2.0 8.7: redeliver what a listener failed on in the automatic modes
            if mode is AckMode.DUPS_OK and msg._tag in self.unacked:
                self.unacked.remove(msg._tag)
            self._settle(chan, encode_nack(chan.number, msg._tag, False, True))
            return
        if mode is AckMode.AUTO:
            self._settle(chan, encode_ack(chan.number, msg._tag, False))
        elif mode is AckMode.DUPS_OK and not self.listener_queue:
            self._ack_consumed()

    def consumed_by_listener(self, msg: Message) -> None:
        if self.transacted:
            self.unacked.append(msg._tag)
            self.tx_dirty = True
        elif self.ack_mode is AckMode.CLIENT or self.ack_mode is AckMode.DUPS_OK:
            self.unacked.append(msg._tag)
        elif self.ack_mode is AckMode.INDIVIDUAL:
            self.individual.add(msg._tag)

    def acknowledge(self, msg: Message) -> None:
        """Message.acknowledge(): see AckMode."""
        if self.closed:
            raise IllegalStateError("the session is closed")
        if self.transacted:
            return
        if msg._chan is not self.chan:
            return  # delivered before a failover: it will come again
        mode = self.ack_mode
        if mode is AckMode.CLIENT:
            self._ack_consumed()
        elif mode is AckMode.INDIVIDUAL:
            tag = msg._tag
            if tag in self.individual:
                self.individual.discard(tag)
                chan = self.chan
                assert chan is not None
                self._settle(chan, encode_ack(chan.number, tag, False))

    def acknowledge_all(self) -> None:
        """Acknowledge everything consumed so far (JMSContext.acknowledge)."""
        if self.closed:
            raise IllegalStateError("the session is closed")
        if self.transacted:
            return
        if self.ack_mode is AckMode.CLIENT:
            self._ack_consumed()
        elif self.ack_mode is AckMode.INDIVIDUAL and self.individual:
            tags = sorted(self.individual)
            self.individual.clear()
            chan = self.chan
            if chan is not None:
                self._settle(chan, b"".join(encode_ack(chan.number, t, False) for t in tags))

    def _settle(self, chan: ChannelState, data: bytes) -> None:
        engine = self.conn.engine
        if engine is not None:
            engine.settle(chan, data)

    def _lowest_buffered(self) -> int:
        low = 1 << 64
        for consumer in self.consumers.values():
            buffer = consumer.buffer
            if buffer:
                tag = buffer[0]._tag
                if tag < low:
                    low = tag
        if self.listener_queue:
            tag = self.listener_queue[0][1]._tag
            if tag < low:
                low = tag
        return low

    def _ack_frames(self, tags: list[int]) -> bytes:
        chan = self.chan
        assert chan is not None
        number = chan.number
        boundary = self._lowest_buffered()
        below = [t for t in tags if t < boundary]
        frames = []
        if below:
            frames.append(encode_ack(number, max(below), len(below) > 1))
        frames.extend(encode_ack(number, t, False) for t in tags if t >= boundary)
        return b"".join(frames)

    def _ack_consumed(self) -> None:
        tags, self.unacked = self.unacked, []
        chan = self.chan
        if not tags or chan is None:
            return
        self._settle(chan, self._ack_frames(tags))

    def _take_back(self) -> list[int]:
        """Everything consumed-but-unacked and everything buffered, cleared, in tag order."""
        tags = list(self.unacked) + list(self.individual)
        self.unacked = []
        self.individual.clear()
        for consumer in self.consumers.values():
            tags.extend(m._tag for m in consumer.buffer)
            consumer.buffer.clear()
        tags.extend(m._tag for _, m in self.listener_queue)
        self.listener_queue.clear()
        return sorted(set(tags))

    def recover_op(self) -> Op[None]:
        """Session.recover(): redeliver every unacknowledged message, oldest first."""
        if self.transacted:
            raise IllegalStateError("recover() is not allowed in a transacted session")
        chan = self.usable_chan()
        tags = self._take_back()
        if tags:
            self._settle(chan, b"".join(encode_nack(chan.number, t, False, True) for t in tags))
        # a round trip, so the requeue happened before recover() returns
        engine = self.conn.engine
        assert engine is not None
        yield engine.call(chan, spec.Basic.Qos(prefetch_count=self.prefetch), (spec.Basic.QosOk,))

    def commit_op(self) -> Op[None]:
        if not self.transacted:
            raise IllegalStateError("commit() needs a transacted session")
        chan = self.chan
        if chan is None or not chan.open or self.conn.state != OPEN:
            chan = yield from self.wait_usable_op()
        if self.tx_failed is not None and self.tx_failed_serial == self.tx_serial:
            # the whole transaction goes, including what was sent since the failover
            error = self.tx_failed
            yield from self.rollback_op()
            raise error
        self.tx_failed = None  # if set, it was about a transaction already reported
        engine = self.conn.engine
        assert engine is not None
        tags, self.unacked = self.unacked, []
        if tags:
            engine.settle(chan, self._ack_frames(tags))
        self.tx_dirty = False
        self.tx_serial += 1
        try:
            yield engine.call(chan, spec.Tx.Commit(), (spec.Tx.CommitOk,))
        except ConnectionLostError as exc:
            raise TransactionRolledBackError(
                f"the connection was lost during commit; the outcome is unknown: {exc}"
            ) from None

    def rollback_op(self) -> Op[None]:
        if not self.transacted:
            raise IllegalStateError("rollback() needs a transacted session")
        chan = self.chan
        if chan is None or not chan.open or self.conn.state != OPEN:
            chan = yield from self.wait_usable_op()
        self.tx_failed = None
        engine = self.conn.engine
        assert engine is not None
        tags = self._take_back()
        self.tx_dirty = False
        self.tx_serial += 1
        yield engine.call(chan, spec.Tx.Rollback(), (spec.Tx.RollbackOk,))
        if tags:
            engine.settle(chan, b"".join(encode_nack(chan.number, t, False, True) for t in tags))
            yield engine.call(chan, spec.Tx.Commit(), (spec.Tx.CommitOk,))

    # -- sending -------------------------------------------------------------------------------

    def send(
        self,
        destination: Destination,
        msg: Message,
        delivery_mode: int,
        priority: int,
        ttl: float,
        delay: float,
        disable_id: bool,
        disable_timestamp: bool,
        want_confirm: bool,
    ) -> Any:
        """Publish; returns a pending confirm when want_confirm (and not transacted), else None."""
        chan = self.chan
        conn = self.conn
        if chan is None or not chan.open or self.closed or conn.state != OPEN:
            chan = self.usable_chan()
        if not 0 <= priority <= 9:
            raise JMSError(f"priority must be 0..9, not {priority}")
        props, body = msg._prepare_send(
            destination,
            delivery_mode,
            priority,
            int(ttl * 1000) if ttl > 0 else 0,
            int(delay * 1000) if delay > 0 else 0,
            None if disable_id else conn.next_message_id(),
            time.time(),
            not disable_timestamp,
            conn.origin if conn.no_local and isinstance(destination, Topic) else None,
        )
        if self.transacted:
            self.tx_dirty = True
            want_confirm = False
        engine = conn.engine
        assert engine is not None
        return engine.publish(
            chan, destination.exchange, destination.routing_key, props, body, want_confirm
        )

    # -- consumers -----------------------------------------------------------------------------

    def consumer_op(
        self,
        destination: Destination,
        *,
        selector: str | None = None,
        no_local: bool = False,
        subscription: str | None = None,
        durable: bool = False,
        shared: bool = False,
        prefetch: int | None = None,
    ) -> Op[CoreConsumer]:
        self.usable_chan()
        if not isinstance(destination, Destination):
            raise InvalidDestinationError(f"not a destination: {destination!r}")
        if durable and not shared and not self.conn.client_id:
            raise IllegalStateError("an unshared durable subscription needs a client id")
        consumer = CoreConsumer(
            self,
            destination,
            selector=selector or None,
            no_local=no_local,
            subscription=subscription,
            durable=durable,
            shared=shared,
            prefetch=self.prefetch if prefetch is None else prefetch,
        )
        try:
            yield from consumer.subscribe_op()
        except JMSError:
            consumer.closed = True
            self.consumers.pop(consumer.tag, None)
            chan = self.chan
            if chan is None or not chan.open:  # the session heals in the background
                with contextlib.suppress(JMSError, TimeoutError):
                    yield from self.wait_usable_op()
            raise
        if no_local:
            self.conn.no_local += 1
        return consumer

    def unsubscribe_op(self, name: str) -> Op[None]:
        """Delete a durable subscription (unshared first, then shared, by this name)."""
        conn = self.conn
        candidates = []
        if conn.client_id:
            candidates.append(subscription_queue(conn.client_id, name, durable=True, shared=False))
        candidates.append(subscription_queue(conn.client_id, name, durable=True, shared=True))
        for session in conn.sessions:
            for consumer in session.consumers.values():
                if consumer.queue_name in candidates and not consumer.closed:
                    raise IllegalStateError(
                        f"the durable subscription {name!r} has an active consumer"
                    )
        for queue in candidates:
            exists = yield from conn.queue_exists_op(queue)
            if exists:
                try:
                    yield from conn.delete_queue_op(queue, if_unused=True)
                except JMSError as exc:
                    if exc.reply_code == 406:
                        raise IllegalStateError(
                            f"the durable subscription {name!r} is in use: {exc.text}"
                        ) from None
                    raise
                return
        raise InvalidDestinationError(f"no durable subscription named {name!r}")

    def browse_op(self, queue: Queue, selector: str | None, limit: int) -> Op[list[Message]]:
        """A snapshot of the queue's messages, left in place (see _browse)."""
        conn = self.conn
        exists = yield from conn.queue_exists_op(queue.name)
        if not exists:
            raise InvalidDestinationError(f"no queue named {queue.name!r}")
        engine = conn.engine
        assert engine is not None
        caps = engine.server_properties.get("capabilities") or {}
        chan, opened = engine.open_channel()
        yield opened
        found: list[Message] = []

        def add(
            tag: str, dtag: int, redelivered: bool, ex: str, rk: str, props: bytes, body: bytes
        ) -> None:
            msg = message_from_delivery(
                props,
                body,
                exchange=ex,
                routing_key=rk,
                redelivered=redelivered,
                allow_pickle=self.allow_pickle,
            )
            msg._consumer_dest = queue
            found.append(msg)

        try:
            if (isinstance(caps, dict) and caps.get(BROWSE_CAPABILITY)) or (
                engine.server_properties.get("product") == "FerryMQ"
            ):
                done = self.flavor.pending()
                chan.on_deliver = add
                chan.on_cancel = lambda tag: done.done() or done.set_result(None)
                args: dict[str, Any] = {"x-browse": True}
                if selector:
                    args["x-selector"] = selector
                yield engine.call(
                    chan,
                    method(
                        spec.Basic.Consume,
                        queue=queue.name,
                        consumer_tag=conn.next_tag(),
                        no_local=False,
                        no_ack=True,
                        exclusive=False,
                        nowait=False,
                        arguments=args,
                    ),
                    (spec.Basic.ConsumeOk,),
                )
                yield done
                return found[:limit]
            # Without broker support: get each message unacknowledged, then close the channel,
            # which puts them all back in their places (marked redelivered).
            while len(found) < limit:
                got = yield engine.call(
                    chan,
                    method(spec.Basic.Get, queue=queue.name, no_ack=False),
                    (spec.Basic.GetOk, spec.Basic.GetEmpty),
                )
                if got is None:
                    break
                m, props, body = got
                add("", m.delivery_tag, m.redelivered, m.exchange, m.routing_key, props, body)
            if selector:
                from ferrymq.client._select import filter_messages

                return filter_messages(selector, found)
            return found
        finally:
            if chan.open:
                with contextlib.suppress(JMSError, TimeoutError):
                    yield engine.close_channel(chan)

    # -- closing -------------------------------------------------------------------------------

    def close_op(self, from_connection: bool = False) -> Op[None]:
        if self.closed:
            return
        if self.ack_mode is AckMode.DUPS_OK and not self.transacted:
            with contextlib.suppress(JMSError):
                self._ack_consumed()
        self.closed = True
        for consumer in list(self.consumers.values()):
            consumer.closed = True
            if consumer.no_local:
                self.conn.no_local -= 1
        self.wake_all()
        chan = self.chan
        engine = self.conn.engine
        if chan is not None and chan.open and engine is not None and engine.alive:
            with contextlib.suppress(JMSError, TimeoutError):
                yield engine.close_channel(chan)
        if self in self.conn.sessions:
            self.conn.sessions.remove(self)
