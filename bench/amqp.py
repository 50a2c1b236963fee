"""A minimal blocking AMQP 0-9-1 client over a raw socket, for the load generator.

pamqp encodes and decodes the handshake and the control methods (declare, bind, consume, ...),
where speed does not matter. The message path is hand-encoded: `publish_template` builds the
Basic.Publish + content header + body frames once, and the hot loops in `bench.loadgen` only
overwrite the sequence number and timestamp inside them. Deliveries are counted by walking frame
headers in `bench.loadgen`, never through pamqp (its decode manages about 70k frames/s here).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame
from pamqp.base import Frame

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_HEADER_SIZE = 7
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

# (class id << 16 | method id), read as one big-endian u32 from a method frame's payload
BASIC_CANCEL = 60 << 16 | 30
BASIC_DELIVER = 60 << 16 | 60
BASIC_ACK = 60 << 16 | 80
BASIC_NACK = 60 << 16 | 120
CHANNEL_CLOSE = 20 << 16 | 40
CONNECTION_CLOSE = 10 << 16 | 50
CONNECTION_CLOSE_OK = 10 << 16 | 51

# we ask for this frame-max; the receive buffers of the hot loops are sized from it
WANTED_FRAME_MAX = 131072

FRAME_HDR = struct.Struct(">BHI")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
_ACK = struct.Struct(">BHIIQBB")

_F = TypeVar("_F", bound=Frame)


class AmqpError(Exception):
    """The broker closed a channel or the connection, or spoke something we cannot parse."""


@dataclass(frozen=True, slots=True)
class AmqpUrl:
    """amqp://user:pass@host:port/vhost, loopback hosts only (the bench never leaves the box)."""

    host: str
    port: int
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"

    @classmethod
    def parse(cls, url: str) -> AmqpUrl:
        parts = urlsplit(url)
        if parts.scheme != "amqp":
            raise ValueError(f"not an amqp:// URL: {url!r}")
        host = parts.hostname or "127.0.0.1"
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"refusing non-loopback host {host!r}")
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            host="127.0.0.1" if host == "localhost" else host,
            port=parts.port or 5672,
            user=unquote(parts.username) if parts.username else "guest",
            password=unquote(parts.password) if parts.password else "guest",
            vhost=vhost,
        )

    def __str__(self) -> str:
        return f"amqp://{self.host}:{self.port}"


def _close_text(method: Frame) -> str:
    code = getattr(method, "reply_code", "?")
    text = getattr(method, "reply_text", "")
    return f"{method.name} {code} {text}"


class BlockingConnection:
    """One AMQP connection: handshake and control RPCs through pamqp, then the raw socket.

    After the control phase a hot loop takes `sock` and `take_buffered()` (bytes already read
    past the last control reply, which may hold the first deliveries) and parses by hand.
    """

    def __init__(self, url: AmqpUrl, *, timeout: float = 10.0, name: str = "ferrymq-bench"):
        self.url = url
        self.sock = socket.create_connection((url.host, url.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self.frame_max = WANTED_FRAME_MAX
        self.server_properties: dict[str, Any] = {}
        try:
            self._handshake(name)
        except BaseException:
            self.sock.close()
            raise

    # -- framing

    def _read_frame(self, deadline: float) -> tuple[int, Any]:
        """Read one whole frame (bounded by `deadline`) and decode it with pamqp."""
        while True:
            if len(self._buf) >= FRAME_HEADER_SIZE:
                if self._buf[:4] == b"AMQP":
                    raise AmqpError(f"broker refused protocol version: {bytes(self._buf[:8])!r}")
                _, _, size = FRAME_HDR.unpack_from(self._buf, 0)
                total = FRAME_HEADER_SIZE + size + 1
                if len(self._buf) >= total:
                    data = bytes(self._buf[:total])
                    del self._buf[:total]
                    _, channel, value = frame.unmarshal(data)
                    return channel, value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from the broker in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AmqpError("connection closed by the broker")
            self._buf += chunk

    def send(self, channel: int, *frames: Any) -> None:
        self.sock.sendall(b"".join(frame.marshal(f, channel) for f in frames))

    def wait_for(self, channel: int, expected: type[_F], timeout: float = 10.0) -> _F:
        """Skip frames until `expected` arrives on `channel`; raise on channel/connection close.

        Deliveries that race a control reply are dropped here; callers only do control work
        before consuming starts or after the measured window ends.
        """
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            ch, value = self._read_frame(deadline)
            if isinstance(value, expected) and ch == channel:
                return value
            if isinstance(value, commands.Connection.Close):
                self.send(0, commands.Connection.CloseOk())
                raise AmqpError(_close_text(value))
            if isinstance(value, commands.Channel.Close):
                self.send(ch, commands.Channel.CloseOk())
                raise AmqpError(f"channel {ch}: {_close_text(value)}")
        raise AmqpError(f"no {expected.__name__} after 1,000,000 frames")

    def rpc(self, channel: int, method: Frame, expected: type[_F], timeout: float = 10.0) -> _F:
        self.send(channel, method)
        return self.wait_for(channel, expected, timeout)

    def _handshake(self, name: str) -> None:
        deadline_s = 10.0
        self.sock.sendall(PROTOCOL_HEADER)
        start = self.wait_for(0, commands.Connection.Start, deadline_s)
        self.server_properties = dict(start.server_properties or {})
        auth = f"\0{self.url.user}\0{self.url.password}"
        props: dict[str, Any] = {"product": name, "capabilities": {"publisher_confirms": True}}
        tune = self.rpc(
            0,
            commands.Connection.StartOk(client_properties=props, response=auth),
            commands.Connection.Tune,
            deadline_s,
        )
        server_max = tune.frame_max or WANTED_FRAME_MAX
        self.frame_max = min(server_max, WANTED_FRAME_MAX)
        self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max or 2047, frame_max=self.frame_max, heartbeat=0
            ),
            commands.Connection.Open(virtual_host=self.url.vhost),
        )
        self.wait_for(0, commands.Connection.OpenOk, deadline_s)

    # -- control methods used by the scenarios (channel 1 unless told)

    def open_channel(self, channel: int = 1) -> None:
        self.rpc(channel, commands.Channel.Open(), commands.Channel.OpenOk)

    def confirm_select(self, channel: int = 1) -> None:
        self.rpc(channel, commands.Confirm.Select(), commands.Confirm.SelectOk)

    def qos(self, prefetch: int, channel: int = 1) -> None:
        self.rpc(channel, commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)

    def queue_declare(
        self,
        queue: str,
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        channel: int = 1,
    ) -> str:
        ok = self.rpc(
            channel,
            commands.Queue.Declare(
                queue=queue, durable=durable, exclusive=exclusive, auto_delete=auto_delete
            ),
            commands.Queue.DeclareOk,
        )
        return str(ok.queue)

    def queue_delete(self, queue: str, channel: int = 1) -> None:
        self.rpc(channel, commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)

    def queue_bind(
        self, queue: str, exchange: str, routing_key: str = "", channel: int = 1
    ) -> None:
        self.rpc(
            channel,
            commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=routing_key),
            commands.Queue.BindOk,
        )

    def exchange_declare(self, exchange: str, kind: str, channel: int = 1) -> None:
        self.rpc(
            channel,
            commands.Exchange.Declare(exchange=exchange, exchange_type=kind),
            commands.Exchange.DeclareOk,
        )

    def exchange_delete(self, exchange: str, channel: int = 1) -> None:
        self.rpc(channel, commands.Exchange.Delete(exchange=exchange), commands.Exchange.DeleteOk)

    def consume(self, queue: str, *, no_ack: bool, tag: str = "", channel: int = 1) -> str:
        ok = self.rpc(
            channel,
            commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=no_ack),
            commands.Basic.ConsumeOk,
        )
        return str(ok.consumer_tag)

    def put_back(self, data: bytes | bytearray) -> None:
        """Hand unparsed bytes (starting at a frame boundary) back before more control work."""
        self._buf = bytearray(data) + self._buf

    def take_buffered(self) -> bytes:
        """Bytes read past the last control reply; the hot loop must parse them first."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def close(self, timeout: float = 2.0) -> None:
        """Best-effort Connection.Close; waits briefly for Close-Ok, skipping deliveries."""
        try:
            self.sock.settimeout(timeout)
            self.send(
                0,
                commands.Connection.Close(
                    reply_code=200, reply_text="bye", class_id=0, method_id=0
                ),
            )
            deadline = time.monotonic() + timeout
            for _ in range(100_000):
                _, value = self._read_frame(deadline)
                if isinstance(value, commands.Connection.CloseOk | commands.Connection.Close):
                    break
        except Exception:  # closing is best effort: the broker may be gone already
            pass
        finally:
            self.sock.close()


def publish_template(
    *,
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    persistent: bool,
    frame_max: int,
) -> tuple[bytes, int]:
    """Encode Basic.Publish + content header + body frame(s) once.

    Returns the frames and the offset of the body's first byte inside them, where the hot loop
    stamps the sequence number and send time. Transient messages carry no properties;
    persistent ones only delivery-mode 2 (AMQP 0-9-1 4.2.6: property flags, then values).
    """
    ex = exchange.encode()
    rk = routing_key.encode()
    method = struct.pack(">HHH", 60, 40, 0) + bytes([len(ex)]) + ex + bytes([len(rk)]) + rk + b"\0"
    props = struct.pack(">HB", 4096, 2) if persistent else struct.pack(">H", 0)
    content_header = struct.pack(">HHQ", 60, 0, len(body)) + props
    out = bytearray()
    for ftype, payload in ((FRAME_METHOD, method), (FRAME_HEADER, content_header)):
        out += FRAME_HDR.pack(ftype, channel, len(payload)) + payload + bytes([FRAME_END])
    body_offset = len(out) + FRAME_HEADER_SIZE
    chunk = max(frame_max - 8, 4096)  # frame-max counts the 8 bytes of frame overhead
    for i in range(0, len(body), chunk):
        part = body[i : i + chunk]
        out += FRAME_HDR.pack(FRAME_BODY, channel, len(part)) + part + bytes([FRAME_END])
    return bytes(out), body_offset


def deliver_stream(
    *, channel: int, consumer_tag: str, routing_key: str, body: bytes, count: int
) -> bytes:
    """Basic.Deliver + header + body frames as a broker sends them (for the sink replay).

    Delivery tags run 1..count; properties are empty, as for a transient publish.
    """
    ctag = consumer_tag.encode()
    rk = routing_key.encode()
    content_header = struct.pack(">HHQH", 60, 0, len(body), 0)
    head = FRAME_HDR.pack(FRAME_HEADER, channel, len(content_header)) + content_header + b"\xce"
    tail = FRAME_HDR.pack(FRAME_BODY, channel, len(body)) + body + b"\xce"
    out = bytearray()
    for tag in range(1, count + 1):
        method = (
            struct.pack(">HH", 60, 60)
            + bytes([len(ctag)])
            + ctag
            + struct.pack(">QB", tag, 0)
            + b"\0"  # exchange "" (default)
            + bytes([len(rk)])
            + rk
        )
        out += FRAME_HDR.pack(FRAME_METHOD, channel, len(method)) + method + b"\xce"
        out += head + tail
    return bytes(out)


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """Basic.Ack, hand-encoded: the consumer sends one every --ack-every deliveries."""
    return _ACK.pack(FRAME_METHOD, channel, 13, BASIC_ACK, delivery_tag, int(multiple), FRAME_END)
