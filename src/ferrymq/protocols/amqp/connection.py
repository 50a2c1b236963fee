"""The server side of one AMQP 0-9-1 connection, over core, with no I/O of its own.

Theory of operation. The server layer feeds received bytes to `data_received` and gives a
`Transport` (write, close) for output; everything here is synchronous. States:

    HEADER -> (connection.start sent) START_OK -> (tune sent) TUNE_OK -> OPEN_WAIT -> OPEN
    any state -> CLOSING (we sent connection.close; only close/close-ok are read) -> CLOSED

Channel-level errors close one channel (channel.close sent, frames for it are dropped until its
close-ok, AMQP 0-9-1 4.2.6/2.3.5); connection-level errors send connection.close with the reply
code and wait briefly for close-ok. Nothing raised here escapes to the server: a fault in one
connection never reaches another.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from typing import Any, Protocol

from pamqp import commands as spec

import ferrymq
from ferrymq.core.broker import Broker
from ferrymq.core.errors import BrokerError
from ferrymq.core.settings import User
from ferrymq.core.vhost import VHost
from ferrymq.protocols.amqp._errors import (
    AMQPError,
    ChannelError,
    ConnectionError_,
    from_broker_error,
)
from ferrymq.protocols.amqp.channel import CLOSING, OPEN, Channel, method
from ferrymq.protocols.amqp.codec import (
    Ack,
    CodecError,
    ContentBody,
    ContentHeader,
    FrameDecoder,
    Heartbeat,
    MethodFrame,
    Nack,
    ProtocolHeader,
    ProtocolHeaderMismatch,
    Publish,
    Reject,
    encode_method,
)
from ferrymq.protocols.amqp.constants import FRAME_MIN_SIZE, PROTOCOL_HEADER
from ferrymq.protocols.amqp.tables import decode_table

log = logging.getLogger("ferrymq.amqp")

S_HEADER, S_START_OK, S_TUNE_OK, S_OPEN_WAIT, S_OPEN, S_CLOSING, S_CLOSED = range(7)

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
    "consumer_browse": True,  # FerryMQ: basic.consume with x-browse (JMS QueueBrowser)
}


class Transport(Protocol):
    """What the server layer gives a connection."""

    def write(self, data: bytes) -> None:
        """Queue bytes; the server coalesces them into one socket write per loop iteration."""
        ...

    def close(self) -> None:
        """Flush and close the socket."""
        ...

    def close_later(self, seconds: float) -> None:
        """Close the socket after a grace period unless it closes first (awaiting close-ok)."""
        ...

    def pause_reading(self) -> None:
        """Stop reading from the socket (flow control); TCP pushes back on the client."""
        ...

    def resume_reading(self) -> None: ...


class AMQPConnection:
    """See the module docstring."""

    def __init__(
        self, broker: Broker, transport: Transport, *, from_loopback: bool, peer: str = ""
    ) -> None:
        self.broker = broker
        self.transport = transport
        self.from_loopback = from_loopback
        self.peer = peer
        cfg = broker.config
        self.state = S_HEADER
        self.decoder = FrameDecoder(expect_protocol_header=True, max_frame_size=cfg.frame_max)
        self.frame_max = cfg.frame_max
        self.channel_max = cfg.channel_max
        self.heartbeat = cfg.heartbeat
        self.channels: dict[int, Channel] = {}
        self.writable = True
        self.cancel_notify = False
        self.user: User | None = None
        self.user_name = ""
        self._vhost: VHost | None = None
        self.client_properties: dict[str, Any] = {}
        self._confirming: list[Channel] = []
        self._counted = False
        self.has_published = False
        self.client_id: str | None = None  # JMS client id, unique per vhost
        self.blocked = False
        self.send: Callable[[bytes], None] = transport.write

    @property
    def vhost(self) -> VHost:
        assert self._vhost is not None
        return self._vhost

    # -- input -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state == S_CLOSED:
            return
        try:
            frames = self.decoder.feed(data)
        except ProtocolHeaderMismatch:
            self.send(PROTOCOL_HEADER)
            self._shutdown()
            return
        except CodecError as exc:
            self._connection_error(
                ConnectionError_(
                    exc.reply_code, _named(exc.reply_code, exc.text), exc.class_id, exc.method_id
                )
            )
            return
        for frame in frames:
            if self.state == S_CLOSED:
                return
            try:
                self._dispatch(frame)
            except ChannelError as exc:
                channel = self.channels.get(getattr(frame, "channel", 0))
                if channel is None:
                    self._connection_error(
                        ConnectionError_(
                            504, "CHANNEL_ERROR - " + exc.text, exc.class_id, exc.method_id
                        )
                    )
                else:
                    self.close_channel(channel, exc)
            except ConnectionError_ as exc:
                self._connection_error(exc)
            except BrokerError as exc:
                err = from_broker_error(exc)
                if isinstance(err, ChannelError) and getattr(frame, "channel", 0) in self.channels:
                    self.close_channel(self.channels[frame.channel], err)
                else:
                    self._connection_error(ConnectionError_(err.code, err.text))
            except Exception:
                log.exception("internal error on connection %s", self.peer)
                self._connection_error(ConnectionError_(541, "INTERNAL_ERROR"))
        if self._confirming:
            confirming, self._confirming = self._confirming, []
            for channel in confirming:
                channel.flush_confirms()
        if self.broker.alarms.active and self.has_published and not self.blocked:
            self._alarm_changed(self.broker.alarms.active)

    def confirms_pending(self, channel: Channel) -> None:
        self._confirming.append(channel)

    def _dispatch(self, frame: Any) -> None:
        if self.state == S_OPEN:
            cls = type(frame)
            if cls is MethodFrame:
                number = frame.channel
                m = frame.method
                channel = self.channels.get(number)
                if number == 0:
                    self._connection_method(m)
                    return
                if channel is None:
                    if isinstance(m, spec.Channel.Open):
                        self._open_channel(number)
                        return
                    raise ConnectionError_(
                        504,
                        f"CHANNEL_ERROR - expected 'channel.open' on channel {number}",
                        *_ids(m),
                    )
                if channel.state == CLOSING:
                    if isinstance(m, spec.Channel.CloseOk):
                        del self.channels[number]
                    elif isinstance(m, spec.Channel.Close):
                        self.send(encode_method(number, spec.Channel.CloseOk()))
                    return
                if channel.expecting_content:
                    raise ConnectionError_(
                        505,
                        "UNEXPECTED_FRAME - expected content header for class 60, got a method",
                        *_ids(m),
                    )
                mt = type(m)
                if mt is Publish:
                    channel.handle_publish(m)
                elif mt is Ack or mt is Nack or mt is Reject:
                    channel.settle(m)
                elif mt is spec.Channel.Close:
                    channel.close()
                    del self.channels[number]
                    self.send(encode_method(number, spec.Channel.CloseOk()))
                elif mt is spec.Channel.CloseOk:
                    pass
                elif mt is spec.Channel.Open:
                    raise ConnectionError_(
                        504,
                        f"CHANNEL_ERROR - second 'channel.open' seen on channel {number}",
                        20,
                        10,
                    )
                else:
                    channel.handle_method(m)
                return
            if cls is ContentBody or cls is ContentHeader:
                channel = self.channels.get(frame.channel)
                if channel is None:
                    raise ConnectionError_(
                        504, f"CHANNEL_ERROR - expected 'channel.open' on channel {frame.channel}"
                    )
                if channel.state == CLOSING:
                    return
                if cls is ContentBody:
                    channel.handle_body(frame)
                else:
                    channel.handle_header(frame)
                return
            if cls is Heartbeat:
                return
            raise ConnectionError_(505, "UNEXPECTED_FRAME")
        self._handshake(frame)

    # -- handshake ---------------------------------------------------------------------------------

    def _handshake(self, frame: Any) -> None:
        state = self.state
        if isinstance(frame, Heartbeat):
            return
        if state == S_HEADER:
            if isinstance(frame, ProtocolHeader):
                self._send_start()
                self.state = S_START_OK
                return
            raise ConnectionError_(505, "UNEXPECTED_FRAME")
        if state == S_CLOSING:
            if isinstance(frame, MethodFrame) and frame.channel == 0:
                if isinstance(frame.method, spec.Connection.CloseOk):
                    self._shutdown()
                elif isinstance(frame.method, spec.Connection.Close):
                    self.send(encode_method(0, spec.Connection.CloseOk()))
                    self._shutdown()
            return
        if not isinstance(frame, MethodFrame) or frame.channel != 0:
            raise ConnectionError_(505, "UNEXPECTED_FRAME - handshake not complete")
        m = frame.method
        if isinstance(m, spec.Connection.Close):
            self._connection_method(m)
            return
        if state == S_START_OK and isinstance(m, spec.Connection.StartOk):
            self._start_ok(m)
        elif state == S_TUNE_OK and isinstance(m, spec.Connection.TuneOk):
            self._tune_ok(m)
        elif state == S_OPEN_WAIT and isinstance(m, spec.Connection.Open):
            self._open(m)
        else:
            raise ConnectionError_(
                503, f"COMMAND_INVALID - unexpected {type(m).__name__} during handshake", *_ids(m)
            )

    def _send_start(self) -> None:
        server_properties: dict[str, Any] = {
            "product": "FerryMQ",
            "version": ferrymq.__version__,
            "platform": f"Python {platform.python_version()}",
            "copyright": "FerryMQ authors",
            "information": "Licensed under Apache-2.0",
            "cluster_name": "ferrymq@" + platform.node(),
            "capabilities": CAPABILITIES,
        }
        self.send(
            encode_method(
                0,
                spec.Connection.Start(
                    version_major=0,
                    version_minor=9,
                    server_properties=server_properties,
                    mechanisms="PLAIN AMQPLAIN",
                    locales="en_US",
                ),
            )
        )

    def _start_ok(self, m: spec.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        caps = self.client_properties.get("capabilities") or {}
        self.cancel_notify = bool(isinstance(caps, dict) and caps.get("consumer_cancel_notify"))
        response: bytes = (
            m.response.encode("utf-8", "surrogateescape")
            if isinstance(m.response, str)
            else bytes(m.response)
        )
        mechanism = m.mechanism
        if mechanism == "PLAIN":
            parts = response.split(b"\x00")
            if len(parts) != 3:
                raise ConnectionError_(502, "SYNTAX_ERROR - malformed PLAIN response", 10, 11)
            username, password = (
                parts[1].decode("utf-8", "replace"),
                parts[2].decode("utf-8", "replace"),
            )
        elif mechanism == "AMQPLAIN":
            raw = response
            try:
                table, _ = decode_table(len(raw).to_bytes(4, "big") + raw, 0)
            except Exception:
                raise ConnectionError_(
                    403, "ACCESS_REFUSED - malformed AMQPLAIN response", 10, 11
                ) from None
            username, password = str(table.get("LOGIN", "")), str(table.get("PASSWORD", ""))
        else:
            raise ConnectionError_(
                403, f"ACCESS_REFUSED - unsupported authentication mechanism '{mechanism}'", 10, 11
            )
        try:
            self.user = self.broker.authenticate(
                username, password, from_loopback=self.from_loopback
            )
        except BrokerError as exc:
            text = exc.text.replace("mechanism PLAIN", f"mechanism {mechanism}")
            log.info("authentication failed for user %r from %s", username, self.peer)
            raise ConnectionError_(403, "ACCESS_REFUSED - " + text, 10, 11) from None
        self.user_name = username
        cfg = self.broker.config
        self.send(
            encode_method(
                0,
                spec.Connection.Tune(
                    channel_max=cfg.channel_max, frame_max=cfg.frame_max, heartbeat=cfg.heartbeat
                ),
            )
        )
        self.state = S_TUNE_OK

    def _tune_ok(self, m: spec.Connection.TuneOk) -> None:
        cfg = self.broker.config
        for field, value, server_value, minimum in (
            ("frame_max", m.frame_max, cfg.frame_max, FRAME_MIN_SIZE),
            ("channel_max", m.channel_max, cfg.channel_max, 1),
        ):
            if value and value < minimum:
                raise ConnectionError_(
                    530,
                    f"NOT_ALLOWED - negotiated {field} = {value} is lower than the minimum "
                    f"allowed value ({minimum})",
                    10,
                    31,
                )
            if server_value and (value == 0 or value > server_value):
                raise ConnectionError_(
                    530,
                    f"NOT_ALLOWED - negotiated {field} = {value} is higher than the maximum "
                    f"allowed value ({server_value})",
                    10,
                    31,
                )
        self.frame_max = m.frame_max or cfg.frame_max
        self.decoder.max_frame_size = self.frame_max
        self.channel_max = m.channel_max or cfg.channel_max
        self.heartbeat = m.heartbeat
        self.state = S_OPEN_WAIT

    def _open(self, m: spec.Connection.Open) -> None:
        assert self.user is not None
        try:
            vhost = self.broker.open_vhost(self.user, m.virtual_host)
            client_id = self.client_properties.get("client_id")
            if isinstance(client_id, str) and client_id:
                self.broker.claim_client_id(vhost.name, client_id, self)
                self.client_id = client_id
            self.broker.connection_opened()
        except BrokerError as exc:
            if self.client_id is not None:
                self.broker.release_client_id(m.virtual_host, self.client_id, self)
                self.client_id = None
            raise ConnectionError_(530, "NOT_ALLOWED - " + exc.text, 10, 40) from None
        self._vhost = vhost
        self._counted = True
        self.broker.alarms.subscribe(self._alarm_changed)
        self.send(encode_method(0, spec.Connection.OpenOk()))
        self.state = S_OPEN

    # -- connection and channel methods ------------------------------------------------------

    def _connection_method(self, m: Any) -> None:
        if isinstance(m, spec.Connection.Close):
            self.send(encode_method(0, spec.Connection.CloseOk()))
            self._shutdown()
        elif isinstance(m, spec.Connection.CloseOk):
            self._shutdown()
        elif isinstance(
            m, (spec.Connection.Blocked, spec.Connection.Unblocked, spec.Connection.UpdateSecretOk)
        ):
            return
        else:
            raise ConnectionError_(
                504, f"CHANNEL_ERROR - unexpected {type(m).__name__} on channel 0", *_ids(m)
            )

    def _open_channel(self, number: int) -> None:
        if number > self.channel_max:
            raise ConnectionError_(
                530,
                f"NOT_ALLOWED - channel_max {self.channel_max} exceeded (channel {number})",
                20,
                10,
            )
        self.channels[number] = Channel(self, number)
        self.send(encode_method(number, spec.Channel.OpenOk()))

    def close_channel(self, channel: Channel, exc: AMQPError) -> None:
        """Close one channel from the broker's side with the error's reply code."""
        if channel.state != OPEN:
            return
        log.debug("closing channel %d on %s: %s", channel.number, self.peer, exc.text)
        channel.close()
        channel.state = CLOSING
        self.send(
            encode_method(
                channel.number,
                method(
                    spec.Channel.Close,
                    reply_code=exc.code,
                    reply_text=exc.text[:255],
                    class_id=exc.class_id,
                    method_id=exc.method_id,
                ),
            )
        )

    def _connection_error(self, exc: AMQPError) -> None:
        if self.state in (S_CLOSING, S_CLOSED):
            return
        log.info("closing connection %s: %s", self.peer, exc.text)
        self.send(
            encode_method(
                0,
                method(
                    spec.Connection.Close,
                    reply_code=exc.code,
                    reply_text=exc.text[:255],
                    class_id=exc.class_id,
                    method_id=exc.method_id,
                ),
            )
        )
        self._release()
        self.state = S_CLOSING
        self.transport.close_later(1.0)

    def shutdown(
        self,
        code: int = 320,
        text: str = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
    ) -> None:
        """The broker is stopping: tell the client, then close."""
        if self.state == S_OPEN:
            self._connection_error(ConnectionError_(code, text))
        else:
            self._shutdown()

    # -- teardown ----------------------------------------------------------------------------------

    def _alarm_changed(self, active: frozenset[str]) -> None:
        """Block a publishing connection while a resource alarm is set (RabbitMQ's flow)."""
        if self.state != S_OPEN:
            return
        caps = self.client_properties.get("capabilities") or {}
        notify = isinstance(caps, dict) and bool(caps.get("connection.blocked"))
        if active and self.has_published and not self.blocked:
            self.blocked = True
            reason = "low on disk space" if "disk" in active else "low on memory"
            if notify:
                self.send(encode_method(0, spec.Connection.Blocked(reason=reason)))
            self.transport.pause_reading()
        elif not active and self.blocked:
            self.blocked = False
            if notify:
                self.send(encode_method(0, spec.Connection.Unblocked()))
            self.transport.resume_reading()

    def _release(self) -> None:
        self.broker.alarms.unsubscribe(self._alarm_changed)
        channels, self.channels = self.channels, {}
        try:
            for channel in channels.values():
                if channel.state == OPEN:
                    channel.close()
            if self._vhost is not None:
                self._vhost.owner_closed(self)
        except Exception:
            log.exception("error releasing connection %s", self.peer)
        if self.client_id is not None and self._vhost is not None:
            self.broker.release_client_id(self._vhost.name, self.client_id, self)
            self.client_id = None
        if self._counted:
            self._counted = False
            self.broker.connection_closed()

    def _shutdown(self) -> None:
        self._release()
        self.state = S_CLOSED
        self.transport.close()

    def connection_lost(self) -> None:
        """The socket is gone (client closed, crashed, or we closed it)."""
        if self.state != S_CLOSED:
            self._release()
            self.state = S_CLOSED

    def set_writable(self, writable: bool) -> None:
        """The socket's send buffer filled up or drained (back-pressure from a slow reader)."""
        self.writable = writable
        if writable:
            for channel in list(self.channels.values()):
                channel.wake_consumers()


def _ids(m: Any) -> tuple[int, int]:
    index = getattr(m, "index", 0)
    return index >> 16, index & 0xFFFF


_NAMES = {
    501: "FRAME_ERROR",
    502: "SYNTAX_ERROR",
    503: "COMMAND_INVALID",
    504: "CHANNEL_ERROR",
    505: "UNEXPECTED_FRAME",
    540: "NOT_IMPLEMENTED",
}


def _named(code: int, text: str) -> str:
    name = _NAMES.get(code)
    return text if name is None or text.startswith(name) else f"{name} - {text}"
