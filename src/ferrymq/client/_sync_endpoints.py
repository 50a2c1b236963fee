"""The blocking producer, consumer, queue browser and requestor (see _sync)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ferrymq.client._consumer import CoreConsumer
from ferrymq.client._core import CLOSED, CLOSING, FAILED
from ferrymq.client._destinations import Destination, Queue
from ferrymq.client._errors import ConnectionClosedError, ConnectionLostError, IllegalStateError
from ferrymq.client._kinds import make_message
from ferrymq.client._message import DeliveryMode, Message
from ferrymq.client._vm import VMTransport
from ferrymq.client._waiters import SyncPending

if TYPE_CHECKING:
    from ferrymq.client._sync import Session

__all__ = ["Consumer", "Producer", "QueueBrowser", "Requestor"]

MessageListener = Callable[[Message], Any]


class Producer:
    """Sends messages (JMS MessageProducer). Its settings are the defaults of each send."""

    def __init__(
        self,
        session: Session,
        destination: Destination | None,
        *,
        delivery_mode: DeliveryMode,
        priority: int,
        time_to_live: float,
        delivery_delay: float,
        disable_message_id: bool,
        disable_message_timestamp: bool,
    ) -> None:
        self.session = session
        self.destination = destination
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.time_to_live = time_to_live
        self.delivery_delay = delivery_delay
        self.disable_message_id = disable_message_id
        self.disable_message_timestamp = disable_message_timestamp
        self.closed = False

    def _publish(
        self,
        message: Message | Any,
        destination: Destination | None,
        delivery_mode: DeliveryMode | None,
        priority: int | None,
        time_to_live: float | None,
        delivery_delay: float | None,
        want_confirm: bool,
    ) -> tuple[Message, SyncPending | None]:
        if self.closed:
            raise ConnectionClosedError("the producer is closed")
        target = destination if destination is not None else self.destination
        if target is None:
            raise IllegalStateError("this producer has no destination: pass destination=")
        if destination is not None and self.destination is not None:
            raise IllegalStateError("this producer sends to its own destination only")
        msg = make_message(message)
        session = self.session
        core = session._core
        conn = session.connection
        mode = self.delivery_mode if delivery_mode is None else delivery_mode
        persistent = mode == DeliveryMode.PERSISTENT
        if conn._core.needs_declare(target):
            conn._retrying(lambda: conn._core.ensure_destination_op(target))
        pending = core.send(
            target,
            msg,
            int(mode),
            self.priority if priority is None else priority,
            self.time_to_live if time_to_live is None else time_to_live,
            self.delivery_delay if delivery_delay is None else delivery_delay,
            self.disable_message_id,
            self.disable_message_timestamp,
            want_confirm and persistent,
        )
        transport = conn._core.transport
        if type(transport) is VMTransport and transport.backlog:
            transport.throttle()
        return msg, pending

    def send(
        self,
        message: Message | Any,
        *,
        destination: Destination | None = None,
        delivery_mode: DeliveryMode | None = None,
        priority: int | None = None,
        time_to_live: float | None = None,
        delivery_delay: float | None = None,
    ) -> Message:
        """Send a message (or a body, see make_message) and return it, header fields set.

        A PERSISTENT send returns once the broker confirmed it (on disk when the queue is
        durable); a NON_PERSISTENT one once it is written. Across a reconnect a send waits and
        is sent again (at-least-once).

        Raises:
            SendRefusedError: the broker refused it (queue full with reject-publish).
        """
        conn = self.session.connection
        deadline = None
        while True:
            try:
                msg, pending = self._publish(
                    message,
                    destination,
                    delivery_mode,
                    priority,
                    time_to_live,
                    delivery_delay,
                    True,
                )
                if pending is not None:
                    pending.wait(conn._flavor.timeout)
                return msg
            except ConnectionLostError:
                policy = conn._core.settings.reconnect
                if policy is None or conn._core.state in (FAILED, CLOSED, CLOSING):
                    raise
                if deadline is None:
                    deadline = time.monotonic() + policy.max_wait
                conn._wait_reconnected(deadline)

    def send_async(
        self,
        message: Message | Any,
        callback: Callable[[Message, BaseException | None], Any] | None = None,
        *,
        destination: Destination | None = None,
        delivery_mode: DeliveryMode | None = None,
        priority: int | None = None,
        time_to_live: float | None = None,
        delivery_delay: float | None = None,
    ) -> concurrent.futures.Future[Message]:
        """Send without waiting for the broker's confirmation (JMS 2.0 CompletionListener).

        The returned future completes (and `callback(message, error)` runs, on the
        connection's callback thread) once the broker confirmed a PERSISTENT message, or
        once a NON_PERSISTENT one is written. The message may be reused at once.
        """
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        msg, pending = self._publish(
            message, destination, delivery_mode, priority, time_to_live, delivery_delay, True
        )
        flavor = self.session.connection._flavor

        def completed(p: SyncPending | None) -> None:
            error = None if p is None else p.exception()
            if error is None:
                future.set_result(msg)
            else:
                future.set_exception(error)
            if callback is not None:
                flavor.call_soon(callback, msg, error)

        if pending is None:
            completed(None)
        else:
            pending.add_done_callback(completed)
        return future

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Consumer:
    """Receives messages (JMS MessageConsumer): receive(), a listener, or iteration."""

    def __init__(self, session: Session, core: CoreConsumer) -> None:
        self.session = session
        self._core = core

    @property
    def destination(self) -> Destination:
        return self._core.destination

    @property
    def selector(self) -> str | None:
        return self._core.selector

    @property
    def no_local(self) -> bool:
        return self._core.no_local

    @property
    def queue_name(self) -> str | None:
        """The AMQP queue this consumer reads (a subscription's own queue for topics)."""
        return self._core.queue_name

    @property
    def is_closed(self) -> bool:
        return self._core.closed

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message; None if `timeout` seconds pass or the consumer is closed.

        Raises:
            ConnectionLostError: the connection failed (and is not reconnecting).
            IllegalStateError: the consumer has a message listener.
        """
        core = self._core
        if core.listener is not None:
            raise IllegalStateError("this consumer has a message listener")
        conn = core.session.conn
        if conn.started:
            msg = core.take()
            if msg is not None:
                return msg
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if core.closed:
                if core.error is not None and not self.session._core.closed:
                    raise core.error
                return None
            state = conn.state
            if state == FAILED:
                raise conn.error or ConnectionLostError("connection lost")
            if state in (CLOSED, CLOSING) or core.session.closed:
                return None
            if conn.started:
                msg = core.take()
                if msg is not None:
                    return msg
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            core.signal.wait_until(core.ready, remaining)

    def receive_no_wait(self) -> Message | None:
        """A message if one is here now, else None."""
        return self.receive(0)

    def receive_body(self, timeout: float | None = None) -> Any:
        """The next message's body (text, bytes, dict, list or object); None on timeout."""
        msg = self.receive(timeout)
        return None if msg is None else msg.body

    @property
    def message_listener(self) -> MessageListener | None:
        return self._core.listener

    @message_listener.setter
    def message_listener(self, listener: MessageListener | None) -> None:
        self.set_message_listener(listener)

    def set_message_listener(self, listener: MessageListener | None) -> None:
        """Have `listener(message)` called for each message, on the session's thread."""
        core = self._core
        session = core.session
        core.listener = listener
        if listener is not None:
            # what was buffered for receive() goes to the listener, in order
            while core.buffer:
                session.listener_queue.append((core, core.buffer.popleft()))
            self.session._ensure_dispatcher()
            session.listener_signal.notify()

    def __iter__(self) -> Iterator[Message]:
        """Messages as they come, until the consumer or its connection is closed."""
        while True:
            msg = self.receive()
            if msg is None:
                return
            yield msg

    def close(self) -> None:
        """Stop consuming; messages buffered for it go back to the queue."""
        self.session.connection._run(self._core.close_op())

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QueueBrowser:
    """Looks at the messages on a queue without removing them (JMS QueueBrowser).

    Each iteration takes a fresh snapshot. The broker sends the snapshot when it supports
    browsing (capability `consumer_browse`, consumer argument `x-browse`); otherwise the client
    gets each message unacknowledged and returns them all by closing its channel, which puts
    them back in place but marks them redelivered.
    """

    def __init__(
        self, session: Session, queue: Queue, selector: str | None, limit: int = 10_000
    ) -> None:
        self.session = session
        self.queue = queue
        self.selector = selector
        self.limit = limit

    def messages(self) -> list[Message]:
        conn = self.session.connection
        return conn._retrying(
            lambda: self.session._core.browse_op(self.queue, self.selector, self.limit)
        )

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages())

    def close(self) -> None:
        pass

    def __enter__(self) -> QueueBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Requestor:
    """Request/reply: send with a temporary reply queue and a correlation id, wait for the
    answer with that id (JMS QueueRequestor, with a timeout and concurrent use allowed)."""

    def __init__(self, session: Session, destination: Destination) -> None:
        self.session = session
        self.destination = destination
        self.reply_queue = session.temporary_queue()
        self._consumer = session.consumer(self.reply_queue)
        self._producer = session.producer(destination)
        self._lock = threading.Lock()
        self._early: dict[str, Message] = {}

    def request(
        self, message: Message | Any, timeout: float | None = None, **send_options: Any
    ) -> Message | None:
        """Send `message` and return the reply (None if none came within `timeout`)."""
        msg = make_message(message)
        msg.reply_to = self.reply_queue
        send_options.setdefault("delivery_mode", DeliveryMode.NON_PERSISTENT)
        # AMQP RPC servers copy the correlation id, JMS ones often answer with the message id:
        # a reply matching either is ours
        if msg.correlation_id is None:
            msg.correlation_id = uuid.uuid4().hex
        sent = self._producer.send(msg, **send_options)
        wanted = {key for key in (msg.correlation_id, sent.message_id) if key is not None}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                for key in wanted:
                    early = self._early.pop(key, None)
                    if early is not None:
                        return early
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                reply = self._consumer.receive(remaining)
                if reply is None:
                    return None
                if reply.correlation_id in wanted:
                    return reply
                if reply.correlation_id is not None and len(self._early) < 1000:
                    self._early[reply.correlation_id] = reply

    def close(self) -> None:
        self._consumer.close()
        self.reply_queue.delete()

    def __enter__(self) -> Requestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
