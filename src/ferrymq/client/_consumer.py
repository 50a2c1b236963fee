"""Consumers and the subscriptions behind them (see _session for acknowledgement).

A consumer of a queue reads that queue; a consumer of a topic reads a queue bound to
`amq.topic`: its own exclusive auto-delete queue for a plain subscription, a named one for a
durable or shared subscription (the JMS identity, client id and name, is in the queue's name).
The selector is the consumer argument `x-selector` on a queue and the binding argument
`x-selector` on a topic subscription, so the broker filters in both cases.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from ferrymq.client._core import CLOSED, CLOSING, FAILED, AckMode
from ferrymq.client._destinations import Destination, Topic
from ferrymq.client._errors import ConnectionLostError, IllegalStateError, JMSError
from ferrymq.client._message import Message
from ferrymq.client._protocol import method
from ferrymq.client._waiters import Op
from ferrymq.protocols.amqp.codec import encode_nack

if TYPE_CHECKING:
    from ferrymq.client._session import CoreSession

__all__ = ["CoreConsumer", "subscription_queue"]


def subscription_queue(client_id: str | None, name: str, *, durable: bool, shared: bool) -> str:
    """The queue behind a named topic subscription (JMS identity: client id and name)."""
    if durable and not shared:
        return f"jms.durable.{client_id}.{name}"
    kind = "shared-durable" if durable else "shared"
    return f"jms.{kind}.{client_id or ''}.{name}"


class CoreConsumer:
    """A consumer and the subscription behind it (see the module docstring)."""

    def __init__(
        self,
        session: CoreSession,
        destination: Destination,
        *,
        selector: str | None,
        no_local: bool,
        subscription: str | None,
        durable: bool,
        shared: bool,
        prefetch: int,
    ) -> None:
        self.session = session
        self.destination = destination
        self.selector = selector
        self.no_local = no_local
        self.subscription = subscription
        self.durable = durable
        self.shared = shared
        self.prefetch = prefetch
        self.tag = session.conn.next_tag()
        self.buffer: deque[Message] = deque()
        self.signal = session.flavor.signal()
        self.listener: Callable[[Message], Any] | None = None
        self.closed = False
        self.error: JMSError | None = None
        self.queue_name: str | None = None

    def _subscription_queue_op(self) -> Op[str]:
        """Declare (and bind) the queue a topic subscription reads from."""
        conn = self.session.conn
        topic = self.destination.name
        selector = self.selector
        bind_args: dict[str, Any] = {"x-selector": selector} if selector else {}
        if self.subscription is None:  # a plain, non-durable subscription: its own queue
            name = yield from conn.declare_queue_op(
                "", durable=False, exclusive=True, auto_delete=True, for_consumer=True
            )
        else:
            name = subscription_queue(
                conn.client_id, self.subscription, durable=self.durable, shared=self.shared
            )
            spec_text = f"topic={topic};noLocal={int(self.no_local)};selector={selector or ''}"
            args = {"x-jms-subscription": spec_text}
            try:
                yield from conn.declare_queue_op(
                    name,
                    durable=self.durable,
                    auto_delete=not self.durable,
                    arguments=args,
                    for_consumer=True,
                    passive_on_conflict=False,
                )
            except JMSError as exc:
                if exc.reply_code != 406 or not self.durable:
                    raise
                # JMS 6.11.1: a changed durable subscription is deleted and made anew
                try:
                    yield from conn.delete_queue_op(name, if_unused=True)
                except JMSError as busy:
                    raise IllegalStateError(
                        f"durable subscription {self.subscription!r} is active with another "
                        f"topic, selector or noLocal: {busy.text}"
                    ) from None
                yield from conn.declare_queue_op(
                    name, durable=True, arguments=args, for_consumer=True, passive_on_conflict=False
                )
        bind = method(
            spec.Queue.Bind,
            queue=name,
            exchange=self.destination.exchange,
            routing_key=topic,
            nowait=False,
            arguments=bind_args,
        )
        yield from conn.control_op([(bind, (spec.Queue.BindOk,))])
        return name

    def subscribe_op(self) -> Op[None]:
        session = self.session
        conn = session.conn
        if isinstance(self.destination, Topic):
            queue = yield from self._subscription_queue_op()
            consumer_args: dict[str, Any] = {}
        else:
            queue = self.destination.name
            if queue not in conn.declared and queue not in conn.temporaries:
                queue = yield from conn.declare_queue_op(queue, for_consumer=True)
            consumer_args = {"x-selector": self.selector} if self.selector else {}
        # x-delivery-count: ask the broker to stamp redeliveries with their count, which is
        # where JMSXDeliveryCount comes from (classic queues add it only when asked)
        consumer_args["x-delivery-count"] = True
        self.queue_name = queue
        chan = session.chan
        engine = conn.engine
        if chan is None or engine is None:
            raise ConnectionLostError("connection lost")
        session.consumers[self.tag] = self
        qos = engine.call(
            chan,
            method(spec.Basic.Qos, prefetch_size=0, prefetch_count=self.prefetch, global_=False),
            (spec.Basic.QosOk,),
        )
        consume = engine.call(
            chan,
            method(
                spec.Basic.Consume,
                queue=queue,
                consumer_tag=self.tag,
                no_local=False,
                no_ack=False,
                exclusive=self.durable and not self.shared,
                nowait=False,
                arguments=consumer_args,
            ),
            (spec.Basic.ConsumeOk,),
        )
        # A broker may refuse a consumer just after consume-ok (FerryMQ checks exclusivity
        # then); a second qos in the same write makes any such refusal fail this call.
        settle = engine.call(
            chan,
            method(spec.Basic.Qos, prefetch_size=0, prefetch_count=self.prefetch, global_=False),
            (spec.Basic.QosOk,),
        )
        yield qos
        try:
            yield consume
            yield settle
        except JMSError as exc:
            if exc.reply_code == 403 and self.durable and not self.shared:
                raise IllegalStateError(
                    f"durable subscription {self.subscription!r} already has an active consumer"
                ) from None
            raise

    def fail(self, error: JMSError) -> None:
        self.error = error
        self.closed = True
        self.signal.notify()

    def take(self) -> Message | None:
        """The next buffered message, handed to the application (acks per the session's mode)."""
        try:
            msg = self.buffer.popleft()
        except IndexError:
            return None
        session = self.session
        session.consumed(msg)
        if not self.buffer and session.unacked and session.ack_mode is AckMode.DUPS_OK:
            session.buffer_drained()
        return msg

    def ready(self) -> bool:
        """Whether a waiting receive should wake: a message (when started), or an end."""
        if self.closed or self.error is not None:
            return True
        conn = self.session.conn
        if conn.state in (FAILED, CLOSED, CLOSING) or self.session.closed:
            return True
        return bool(self.buffer) and conn.started

    def close_op(self) -> Op[None]:
        if self.closed and self.error is None:
            return
        already_failed = self.closed
        self.closed = True
        session = self.session
        if self.no_local and not already_failed:
            session.conn.no_local -= 1
        self.signal.notify()
        chan = session.chan
        engine = session.conn.engine
        if chan is not None and chan.open and engine is not None and engine.alive:
            with contextlib.suppress(JMSError, TimeoutError):
                yield engine.call(
                    chan,
                    method(spec.Basic.Cancel, consumer_tag=self.tag, nowait=False),
                    (spec.Basic.CancelOk,),
                )
            tags = [m._tag for m in self.buffer if m._chan is chan]
            mine = [(c, m) for c, m in session.listener_queue if c is self]
            if mine:
                session.listener_queue = deque(
                    (c, m) for c, m in session.listener_queue if c is not self
                )
                tags.extend(m._tag for _, m in mine if m._chan is chan)
            if tags:
                engine.settle(
                    chan, b"".join(encode_nack(chan.number, t, False, True) for t in tags)
                )
        self.buffer.clear()
        session.consumers.pop(self.tag, None)
