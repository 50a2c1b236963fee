"""The client side of AMQP 0-9-1 over the shared sans-IO codec: one `Engine` per connection.

Theory of operation
-------------------
The engine owns no socket and no thread. A transport gives it received bytes (`feed`) and
takes the bytes it writes (`Transport.write`); whoever calls `feed` (the socket reader thread,
the event loop, or the in-process broker's loop for vm://) is the engine's *reader context*.

Requests that expect a reply (Queue.Declare, Basic.Consume, Tx.Commit...) are written together
with a `Pending` appended to their channel's FIFO, under `Engine.lock`, so the FIFO order is
the wire order; AMQP answers synchronous methods on a channel in order (0-9-1 2.2.2), so the
reader pops the head for each reply. Nothing waits inside the engine: a Pending is resolved
from the reader context and the caller waits on it however its flavour waits (a lock for the
sync client, a future for asyncio). That keeps one engine for both APIs.

Publisher confirms are numbered per channel from 1 (RabbitMQ's confirm extension); a send that
must wait registers its number before the publish is written, so an ack with multiple=true
resolves every waiting number up to its tag, and a nack fails them.

Deliveries (Basic.Deliver + header + bodies) are assembled per channel and handed to the
channel's `on_deliver(consumer_tag, delivery_tag, redelivered, exchange, routing_key, raw
properties, body)`; the session behind the channel dispatches them. Properties stay raw bytes.

Errors: Channel.Close from the broker fails that channel's pending requests with the mapped
error (client._errors) and calls `on_closed`; Connection.Close, a codec error or a lost
transport fails everything and calls the engine's `on_lost` once.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pamqp import commands as spec

import ferrymq
from ferrymq.client._errors import (
    ConnectionLostError,
    JMSError,
    SendRefusedError,
    error_from_reply,
)
from ferrymq.protocols.amqp.codec import (
    Ack,
    CodecError,
    ContentBody,
    ContentHeader,
    Deliver,
    FrameDecoder,
    Heartbeat,
    MethodFrame,
    Nack,
    encode_heartbeat,
    encode_method,
    encode_publish,
)
from ferrymq.protocols.amqp.constants import PROTOCOL_HEADER

__all__ = ["ChannelState", "Engine", "Pending", "Transport"]

log = logging.getLogger("ferrymq.client")

CLIENT_CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
}


class Pending(Protocol):
    """A reply that will arrive: resolved once from the reader context."""

    def set_result(self, value: Any) -> None: ...

    def set_exception(self, exc: BaseException) -> None: ...

    def done(self) -> bool: ...


class Transport(Protocol):
    """What the engine writes to; writes are made under Engine.lock, in wire order."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def _resolve(pending: Pending, value: Any) -> None:
    if not pending.done():
        pending.set_result(value)


def _fail(pending: Pending, exc: BaseException) -> None:
    if not pending.done():
        pending.set_exception(exc)


def method(cls: type, **fields: Any) -> Any:
    """A pamqp command without its field validation (queue names are free-form UTF-8)."""
    obj = cls()
    for key, value in fields.items():
        setattr(obj, key, value)
    return obj


class ChannelState:
    """One AMQP channel as the engine tracks it."""

    __slots__ = (
        "_body",
        "_header",
        "_method",
        "_remaining",
        "confirm",
        "confirmed",
        "confirms",
        "error",
        "number",
        "on_cancel",
        "on_closed",
        "on_deliver",
        "open",
        "publish_seq",
        "rpc",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.open = True
        self.error: JMSError | None = None
        self.rpc: deque[tuple[tuple[type, ...], Pending]] = deque()
        self.confirm = False
        self.publish_seq = 0
        self.confirmed = 0
        self.confirms: dict[int, Pending] = {}
        self.on_deliver: Callable[[str, int, bool, str, str, bytes, bytes], None] | None = None
        self.on_cancel: Callable[[str], None] | None = None
        self.on_closed: Callable[[JMSError], None] | None = None
        self._method: Any = None
        self._header: ContentHeader | None = None
        self._body: list[bytes] = []
        self._remaining = 0


class Engine:
    """See the module docstring."""

    def __init__(
        self,
        new_pending: Callable[[], Pending],
        on_lost: Callable[[JMSError], None],
    ) -> None:
        self.new_pending = new_pending
        self.on_lost = on_lost
        self.lock = threading.Lock()
        self.decoder = FrameDecoder(expect_protocol_header=False)
        self.transport: Transport | None = None
        self.channels: dict[int, ChannelState] = {}
        self.frame_max = 131072
        self.channel_max = 2047
        self.heartbeat = 0
        self.server_properties: dict[str, Any] = {}
        self.blocked = False
        self.alive = True
        self.error: JMSError | None = None
        self.last_recv = time.monotonic()
        self._conn_rpc: deque[tuple[tuple[type, ...], Pending]] = deque()
        self._opening: Pending | None = None
        self._login: tuple[str, str, str, dict[str, Any], int] = ("", "", "/", {}, 0)
        self._next_channel = 1
        self._closing = False

    # -- handshake -----------------------------------------------------------------------------

    def begin(
        self,
        transport: Transport,
        *,
        username: str,
        password: str,
        vhost: str,
        client_properties: dict[str, Any],
        heartbeat: int,
    ) -> Pending:
        """Send the protocol header; the Pending resolves when Connection.OpenOk arrives."""
        self.transport = transport
        self._login = (username, password, vhost, client_properties, heartbeat)
        self._opening = self.new_pending()
        with self.lock:
            transport.write(PROTOCOL_HEADER)
        return self._opening

    @staticmethod
    def client_properties(client_id: str | None, connection_name: str | None) -> dict[str, Any]:
        props: dict[str, Any] = {
            "product": "FerryMQ JMS client",
            "version": ferrymq.__version__,
            "platform": f"Python {platform.python_version()}",
            "information": "https://ferrymq.org/client",
            "capabilities": dict(CLIENT_CAPABILITIES),
        }
        if client_id is not None:
            props["client_id"] = client_id
        name = connection_name or client_id
        if name is not None:
            props["connection_name"] = name
        return props

    def _on_start(self, m: Any) -> None:
        username, password, _vhost, client_properties, _hb = self._login
        self.server_properties = dict(m.server_properties or {})
        mechanisms = str(m.mechanisms or "PLAIN").split()
        if "PLAIN" not in mechanisms:
            raise ConnectionLostError(f"the broker offers no PLAIN login ({m.mechanisms})")
        response = f"\x00{username}\x00{password}"
        self._write(
            0,
            method(
                spec.Connection.StartOk,
                client_properties=client_properties,
                mechanism="PLAIN",
                response=response,
                locale="en_US",
            ),
        )

    def _on_tune(self, m: Any) -> None:
        _u, _p, vhost, _props, heartbeat = self._login
        frame_max = m.frame_max or 131072
        self.frame_max = min(frame_max, 131072) if frame_max else 131072
        self.channel_max = min(m.channel_max or 2047, 2047)
        server_hb = m.heartbeat or 0
        self.heartbeat = min(server_hb, heartbeat) if server_hb and heartbeat else 0
        self.decoder.max_frame_size = self.frame_max
        self._write(
            0,
            method(
                spec.Connection.TuneOk,
                channel_max=self.channel_max,
                frame_max=self.frame_max,
                heartbeat=self.heartbeat,
            ),
        )
        self._write(
            0, method(spec.Connection.Open, virtual_host=vhost, capabilities="", insist=False)
        )

    # -- writing -------------------------------------------------------------------------------

    def _write(self, channel: int, m: Any) -> None:
        self.write_raw(encode_method(channel, m))

    def write_raw(self, data: bytes) -> None:
        """Write pre-encoded frames (acks, heartbeats)."""
        with self.lock:
            broken = self._write_locked(data) if self.alive else None
        if broken is not None:
            self._broken(broken)

    def _write_locked(self, data: bytes) -> ConnectionLostError | None:
        """Write under self.lock; the error if the transport broke (the caller then _broken())."""
        assert self.transport is not None
        try:
            self.transport.write(data)
        except ConnectionLostError as exc:
            return exc
        return None

    def _broken(self, error: ConnectionLostError) -> None:
        """A write failed: the engine dies now, on the writer's thread, not when the reader notices.

        Otherwise the caller, told the connection is lost, could write again into an engine that
        still looks alive and lose that too.
        """
        self._die(error, notify=not self._closing)

    def heartbeat_frame(self) -> None:
        self.write_raw(encode_heartbeat())

    def call(self, chan: ChannelState, m: Any, replies: tuple[type, ...] = ()) -> Pending:
        """Write a method; the Pending resolves with the reply (or None when none is expected)."""
        pending = self.new_pending()
        data = encode_method(chan.number, m)
        with self.lock:
            if not chan.open or not self.alive:
                _fail(pending, chan.error or self.error or ConnectionLostError("connection lost"))
                return pending
            if replies:
                chan.rpc.append((replies, pending))
            broken = self._write_locked(data)
        if broken is not None:
            self._broken(broken)  # fails the pending with the rest of the channel's
            if not replies:
                _fail(pending, broken)
            return pending
        if not replies:
            _resolve(pending, None)
        return pending

    def publish(
        self,
        chan: ChannelState,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        want_confirm: bool,
        mandatory: bool = False,
    ) -> Pending | None:
        """Publish; with want_confirm (on a confirm channel) the Pending resolves on the ack."""
        data = encode_publish(
            chan.number, exchange, routing_key, mandatory, properties, body, self.frame_max
        )
        with self.lock:
            if not chan.open or not self.alive:
                raise chan.error or self.error or ConnectionLostError("connection lost")
            pending = None
            if chan.confirm:
                seq = chan.publish_seq = chan.publish_seq + 1
                if want_confirm:
                    pending = chan.confirms[seq] = self.new_pending()
            broken = self._write_locked(data)
        if broken is not None:
            self._broken(broken)
            raise broken
        return pending

    def settle(self, chan: ChannelState, data: bytes) -> None:
        """Write encoded acks/nacks if the channel they belong to is still open."""
        with self.lock:
            if not (chan.open and self.alive and self.transport is not None):
                return
            broken = self._write_locked(data)
        if broken is not None:
            self._broken(broken)

    # -- channels ------------------------------------------------------------------------------

    def open_channel(self) -> tuple[ChannelState, Pending]:
        with self.lock:
            number = self._next_channel
            tries = 0
            while number in self.channels:
                number = number + 1 if number < self.channel_max else 1
                tries += 1
                if tries > self.channel_max:
                    raise JMSError("no free channel numbers left on this connection")
            self._next_channel = number + 1 if number < self.channel_max else 1
            chan = ChannelState(number)
            self.channels[number] = chan
        pending = self.call(chan, method(spec.Channel.Open), (spec.Channel.OpenOk,))
        return chan, pending

    def close_channel(self, chan: ChannelState) -> Pending:
        pending = self.call(
            chan,
            method(spec.Channel.Close, reply_code=200, reply_text="", class_id=0, method_id=0),
            (spec.Channel.CloseOk,),
        )
        return pending

    def _channel_gone(self, chan: ChannelState, error: JMSError, notify: bool) -> None:
        chan.open = False
        chan.error = error
        self.channels.pop(chan.number, None)
        while chan.rpc:
            replies, pending = chan.rpc.popleft()
            if spec.Channel.CloseOk in replies:
                _resolve(pending, None)  # our close crossed the broker's: closed all the same
            else:
                _fail(pending, error)
            error = chan.error  # only the head gets the broker's error as the first failure
        confirms, chan.confirms = chan.confirms, {}
        for pending in confirms.values():
            _fail(pending, error)
        if notify and chan.on_closed is not None:
            chan.on_closed(error)

    # -- connection close ----------------------------------------------------------------------

    def close(self) -> Pending:
        """Connection.Close; the Pending resolves on CloseOk (or at once if already dead)."""
        pending = self.new_pending()
        self._closing = True
        if not self.alive:
            _resolve(pending, None)
            return pending
        data = encode_method(
            0,
            method(
                spec.Connection.Close, reply_code=200, reply_text="Goodbye", class_id=0, method_id=0
            ),
        )
        with self.lock:
            self._conn_rpc.append(((spec.Connection.CloseOk,), pending))
            broken = self._write_locked(data)
        if broken is not None:
            self._broken(broken)  # resolves the close: nothing left to close
        return pending

    def transport_lost(self, exc: BaseException | None = None) -> None:
        """The transport broke or closed (called once from the reader context)."""
        if not self.alive:
            return
        if self._closing:
            self._die(ConnectionLostError("connection closed"), notify=False)
            return
        reason = f"connection to the broker lost: {exc}" if exc else "connection closed by broker"
        self._die(ConnectionLostError(reason), notify=True)

    def _die(self, error: JMSError, notify: bool) -> None:
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            self.error = error
        if self._opening is not None:
            _fail(self._opening, error)
        while self._conn_rpc:
            replies, pending = self._conn_rpc.popleft()
            if spec.Connection.CloseOk in replies:
                _resolve(pending, None)
            else:
                _fail(pending, error)
        for chan in list(self.channels.values()):
            self._channel_gone(chan, error, notify=False)
        transport = self.transport
        if transport is not None:
            try:
                transport.close()
            except Exception:  # pragma: no cover - best effort
                pass
        if notify:
            self.on_lost(error)

    # -- reading -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the broker; dispatches every complete frame."""
        if not self.alive:
            return
        self.last_recv = time.monotonic()
        try:
            frames = self.decoder.feed(data)
        except CodecError as exc:
            self._die(ConnectionLostError(f"broker sent bad bytes: {exc}"), notify=True)
            return
        try:
            self._dispatch(frames)
        except Exception as exc:  # a bug on our side: fail this connection, never the caller's
            log.exception("FerryMQ client failed to handle a frame")
            self._die(ConnectionLostError(f"client error handling a frame: {exc!r}"), notify=True)

    def _dispatch(self, frames: list[Any]) -> None:
        channels = self.channels
        for frame in frames:
            ftype = type(frame)
            if ftype is MethodFrame:
                number = frame.channel
                m = frame.method
                if number == 0:
                    self._connection_method(m)
                    if not self.alive:
                        return
                    continue
                chan = channels.get(number)
                if chan is None:
                    continue
                mtype = type(m)
                if mtype is Deliver or mtype is spec.Basic.GetOk or mtype is spec.Basic.Return:
                    chan._method = m
                elif mtype is Ack:
                    self._confirmed(chan, m.delivery_tag, m.multiple, None)
                elif mtype is Nack:
                    self._confirmed(chan, m.delivery_tag, m.multiple, _nacked())
                else:
                    self._channel_method(chan, m)
            elif ftype is ContentHeader:
                chan = channels.get(frame.channel)
                if chan is None or chan._method is None:
                    continue
                chan._header = frame
                chan._remaining = frame.body_size
                if not frame.body_size:
                    self._content_done(chan, b"")
            elif ftype is ContentBody:
                chan = channels.get(frame.channel)
                if chan is None or chan._header is None:
                    continue
                payload = frame.payload
                remaining = chan._remaining - len(payload)
                chan._remaining = remaining
                if remaining <= 0 and not chan._body:
                    self._content_done(chan, payload)
                else:
                    chan._body.append(payload)
                    if remaining <= 0:
                        body = b"".join(chan._body)
                        chan._body = []
                        self._content_done(chan, body)
            elif ftype is Heartbeat:
                pass

    def _content_done(self, chan: ChannelState, body: bytes) -> None:
        m = chan._method
        header = chan._header
        chan._method = None
        chan._header = None
        assert header is not None
        mtype = type(m)
        if mtype is Deliver:
            if chan.on_deliver is not None and chan.open:
                chan.on_deliver(
                    m.consumer_tag,
                    m.delivery_tag,
                    m.redelivered,
                    m.exchange,
                    m.routing_key,
                    header.properties,
                    body,
                )
        elif mtype is spec.Basic.GetOk:
            if chan.rpc:
                _replies, pending = chan.rpc.popleft()
                _resolve(pending, (m, header.properties, body))
        # Basic.Return: sends are not mandatory, so nothing waits for a returned message

    def _confirmed(
        self, chan: ChannelState, tag: int, multiple: bool, error: JMSError | None
    ) -> None:
        confirms = chan.confirms
        if multiple:
            if confirms:
                seqs = [seq for seq in list(confirms) if seq <= tag]
                for seq in seqs:
                    pending = confirms.pop(seq, None)
                    if pending is not None:
                        if error is None:
                            _resolve(pending, None)
                        else:
                            _fail(pending, error)
            if tag > chan.confirmed:
                chan.confirmed = tag
            return
        pending = confirms.pop(tag, None)
        if pending is not None:
            if error is None:
                _resolve(pending, None)
            else:
                _fail(pending, error)

    def _channel_method(self, chan: ChannelState, m: Any) -> None:
        mtype = type(m)
        if mtype is spec.Channel.Close:
            self.write_raw(encode_method(chan.number, spec.Channel.CloseOk()))
            error = error_from_reply(
                m.reply_code, m.reply_text, (m.class_id << 16) | (m.method_id or 0)
            )
            self._channel_gone(chan, error, notify=True)
            return
        if mtype is spec.Basic.Cancel:  # the broker cancelled a consumer (queue deleted...)
            if not m.nowait:
                self._write(chan.number, method(spec.Basic.CancelOk, consumer_tag=m.consumer_tag))
            if chan.on_cancel is not None:
                chan.on_cancel(m.consumer_tag)
            return
        if mtype is spec.Channel.Flow:
            self._write(chan.number, method(spec.Channel.FlowOk, active=m.active))
            return
        if mtype is spec.Basic.GetEmpty:
            if chan.rpc:
                _replies, pending = chan.rpc.popleft()
                _resolve(pending, None)
            return
        if chan.rpc:
            replies, pending = chan.rpc[0]
            if mtype in replies:
                chan.rpc.popleft()
                if mtype is spec.Channel.CloseOk:
                    chan.open = False
                    self.channels.pop(chan.number, None)
                    chan.error = ConnectionLostError("channel closed")
                _resolve(pending, m)

    def _connection_method(self, m: Any) -> None:
        mtype = type(m)
        try:
            if mtype is spec.Connection.Start:
                self._on_start(m)
            elif mtype is spec.Connection.Tune:
                self._on_tune(m)
            elif mtype is spec.Connection.OpenOk:
                if self._opening is not None:
                    opening, self._opening = self._opening, None
                    _resolve(opening, self)
            elif mtype is spec.Connection.Close:
                self.write_raw(encode_method(0, spec.Connection.CloseOk()))
                error = error_from_reply(
                    m.reply_code, m.reply_text, (m.class_id << 16) | (m.method_id or 0)
                )
                self._die(error, notify=not self._closing)
            elif mtype is spec.Connection.CloseOk:
                self._die(ConnectionLostError("connection closed"), notify=False)
            elif mtype is spec.Connection.Blocked:
                self.blocked = True
            elif mtype is spec.Connection.Unblocked:
                self.blocked = False
        except JMSError as exc:
            self._die(exc, notify=True)


def _nacked() -> JMSError:
    return SendRefusedError("the broker refused the message (negative publisher confirm)")
