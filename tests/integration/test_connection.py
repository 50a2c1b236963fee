"""Connection-level behaviour: handshake, auth, tuning, heartbeats, error codes and limits.

Real clients refuse to send most of what is tested here (a wrong frame end, a second
channel.open, a body frame out of turn), so those cases speak AMQP over a bare socket through
`RawAMQP`, with pamqp encoding the frames. Every expectation was checked against RabbitMQ 3.10.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from pamqp import commands, constants
from pamqp import frame as pframe
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.helpers import wait_for

EXTERNAL = bool(os.environ.get("FERRYMQ_TEST_AMQP_URL"))
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"


class PeerClosed(Exception):
    """The broker closed the TCP connection."""


class RawAMQP:
    """A bare AMQP 0-9-1 client over a blocking socket, for what real clients refuse to send.

    It reads frames with its own length framing and lets pamqp decode each complete frame, so a
    partial read is never mistaken for a malformed frame.
    """

    def __init__(
        self, host: str, port: int, timeout: float = 5.0, rcvbuf: int | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # must be set before connect to shrink the TCP window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.last_frame_size = 0
        self.start: commands.Connection.Start | None = None
        self.tune: commands.Connection.Tune | None = None

    def __enter__(self) -> RawAMQP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- writing

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, channel: int, value: Any) -> None:
        self.send(pframe.marshal(value, channel))

    def send_raw_frame(self, frame_type: int, channel: int, payload: bytes) -> None:
        self.send(struct.pack(">BHI", frame_type, channel, len(payload)) + payload + FRAME_END)

    def publish(
        self,
        channel: int,
        body: bytes,
        routing_key: str,
        exchange: str = "",
        frame_max: int = 131072,
        **publish_args: Any,
    ) -> None:
        """basic.publish + content header + body frames no larger than frame_max."""
        out = [
            pframe.marshal(
                commands.Basic.Publish(exchange=exchange, routing_key=routing_key, **publish_args),
                channel,
            ),
            pframe.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), channel),
        ]
        step = frame_max - 8
        for i in range(0, len(body), step):
            out.append(pframe.marshal(ContentBody(body[i : i + step]), channel))
        self.send(b"".join(out))

    # ---- reading

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete frame from the broker in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise PeerClosed(str(e)) from e
        except TimeoutError:
            raise TimeoutError("no complete frame from the broker in time") from None
        if not data:
            raise PeerClosed("EOF")
        self.buf += data

    def read_bytes(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._recv(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self, timeout: float = 5.0) -> tuple[int, Any]:
        """The next frame as (channel, pamqp object)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 8 and self.buf[:4] == b"AMQP":
                return 0, self.read_bytes(8)
            if len(self.buf) >= 7:
                _, channel, size = struct.unpack_from(">BHI", self.buf)
                if len(self.buf) >= size + 8:
                    used, channel, value = pframe.unmarshal(bytes(self.buf[: size + 8]))
                    del self.buf[:used]
                    self.last_frame_size = used
                    return channel, value
            self._recv(deadline)

    def expect(
        self, kind: type[Any] | tuple[type[Any], ...], timeout: float = 5.0
    ) -> tuple[int, Any]:
        """Read frames (skipping heartbeats) until one of `kind`; anything else is an error."""
        deadline = time.monotonic() + timeout
        while True:
            channel, value = self.read_frame(max(deadline - time.monotonic(), 0.001))
            if isinstance(value, Heartbeat):
                continue
            if isinstance(value, kind):
                return channel, value
            raise AssertionError(f"expected {kind}, got {value!r} on channel {channel}")

    def expect_connection_close(self, timeout: float = 5.0) -> commands.Connection.Close:
        """Wait for connection.close, answer close-ok, and check the broker then hangs up."""
        deadline = time.monotonic() + timeout
        while True:
            channel, value = self.read_frame(max(deadline - time.monotonic(), 0.001))
            if isinstance(value, commands.Connection.Close):
                assert channel == 0
                try:
                    self.send_frame(0, commands.Connection.CloseOk())
                except OSError:
                    pass
                return value

    def expect_channel_close(self, timeout: float = 5.0) -> tuple[int, commands.Channel.Close]:
        channel, value = self.expect(commands.Channel.Close, timeout)
        self.send_frame(channel, commands.Channel.CloseOk())
        return channel, value

    def wait_peer_closed(self, timeout: float = 5.0) -> bool:
        """True if the broker closes the socket within timeout (frames read meanwhile dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._recv(deadline)
            except PeerClosed:
                return True
            except TimeoutError:
                return False
            self.buf.clear()
        return False

    # ---- conversations

    def handshake(
        self,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        mechanism: str = "PLAIN",
        channel_max: int | None = None,
        frame_max: int | None = None,
        heartbeat: int = 0,
        open_vhost: bool = True,
    ) -> commands.Connection.Tune:
        """Protocol header through connection.open-ok; None for a tune value echoes the server's."""
        self.send(PROTOCOL_HEADER)
        _, self.start = self.expect(commands.Connection.Start)
        if mechanism == "AMQPLAIN":
            # AMQPLAIN's response is a field table without its 4-byte length prefix.
            table = commands.Connection.StartOk(
                client_properties={"LOGIN": user, "PASSWORD": password}
            ).marshal()
            response = table[4 : 4 + struct.unpack_from(">I", table)[0]].decode("latin-1")
        else:
            response = f"\0{user}\0{password}"
        self.send_frame(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "product": "ferrymq-raw-test",
                    "capabilities": {"authentication_failure_close": True},
                },
                mechanism=mechanism,
                response=response,
            ),
        )
        _, self.tune = self.expect(commands.Connection.Tune)
        assert self.tune is not None
        self.send_frame(
            0,
            commands.Connection.TuneOk(
                channel_max=self.tune.channel_max if channel_max is None else channel_max,
                frame_max=self.tune.frame_max if frame_max is None else frame_max,
                heartbeat=heartbeat,
            ),
        )
        if open_vhost:
            self.send_frame(0, commands.Connection.Open(virtual_host=vhost))
            self.expect(commands.Connection.OpenOk)
        return self.tune

    def open_channel(self, channel: int = 1) -> None:
        self.send_frame(channel, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)

    def call(self, channel: int, method: Frame, reply: type[Any]) -> Any:
        self.send_frame(channel, method)
        return self.expect(reply)[1]


def raw(broker: Any, **kw: Any) -> RawAMQP:
    return RawAMQP(broker.host, broker.amqp_port, **kw)


def params(broker: Any, **kw: Any) -> pika.URLParameters:
    p = pika.URLParameters(broker.amqp_url)
    p.socket_timeout = 5
    p.blocked_connection_timeout = 10
    p.connection_attempts = 1
    for key, value in kw.items():
        setattr(p, key, value)
    return p


@pytest.fixture
def connect(broker: Any) -> Iterator[Callable[..., pika.BlockingConnection]]:
    """pika connections to the broker under test, all closed at the end."""
    opened: list[pika.BlockingConnection] = []

    def _connect(**kw: Any) -> pika.BlockingConnection:
        c = pika.BlockingConnection(params(broker, **kw))
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        if c.is_open:
            try:
                c.close()
            except pika.exceptions.AMQPError:
                pass


def assert_healthy(broker: Any, name: str) -> None:
    """A separate, fresh pika connection can still declare, publish and consume."""
    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        q = ch.queue_declare(f"{name}.health", exclusive=True).method.queue
        ch.basic_publish("", q, b"alive")
        for method, _, body in ch.consume(q, auto_ack=True, inactivity_timeout=5):
            assert method is not None, "healthy connection got no message"
            assert body == b"alive"
            break
        ch.cancel()


@pytest.fixture
def hb_broker(request: pytest.FixtureRequest) -> Any:
    """A broker proposing a 1 s heartbeat (FerryMQ); RabbitMQ accepts a client's 1 s instead."""
    if EXTERNAL:
        return request.getfixturevalue("broker")
    return request.getfixturevalue("make_broker")(heartbeat=1)


@pytest.fixture
def limited_broker(request: pytest.FixtureRequest) -> Any:
    """A broker with small channel_max/frame_max (FerryMQ); RabbitMQ keeps its defaults."""
    if EXTERNAL:
        return request.getfixturevalue("broker")
    return request.getfixturevalue("make_broker")(channel_max=10, frame_max=8192)


# ---------------------------------------------------------------- handshake and auth

CAPABILITIES = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
]


def test_connection_start_advertises_protocol_and_capabilities(broker: Any) -> None:
    with raw(broker) as r:
        r.send(PROTOCOL_HEADER)
        _, start = r.expect(commands.Connection.Start)

    assert (start.version_major, start.version_minor) == (0, 9)
    assert {"PLAIN", "AMQPLAIN"} <= set(str(start.mechanisms).split())
    assert "en_US" in str(start.locales).split()
    props = start.server_properties
    for key in ("product", "version", "platform"):
        assert props.get(key), key
    caps = props["capabilities"]
    for cap in CAPABILITIES:
        assert caps.get(cap) is True, cap


def test_pika_sees_the_capabilities(connect: Callable[..., pika.BlockingConnection]) -> None:
    conn = connect()
    caps = conn._impl.server_capabilities  # pika keeps what connection.start carried
    for cap in CAPABILITIES:
        assert caps.get(cap) is True, cap


def test_plain_auth_with_pika(connect: Callable[..., pika.BlockingConnection], name: str) -> None:
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    ch.basic_publish("", q, b"hi")
    assert _consume_bodies(ch, q, 1) == [b"hi"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "AMQPLAIN"])
def test_raw_auth_mechanisms(broker: Any, mechanism: str) -> None:
    with raw(broker) as r:
        tune = r.handshake(mechanism=mechanism)
        r.open_channel(1)
        ok = r.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk)
    assert tune.frame_max >= 4096
    assert ok.queue.startswith("amq.gen-")


@pytest.mark.parametrize(
    ("mechanism", "user", "password"),
    [("PLAIN", "guest", "wrong"), ("PLAIN", "nobody", "guest"), ("AMQPLAIN", "guest", "wrong")],
)
def test_bad_credentials_close_with_403(
    broker: Any, mechanism: str, user: str, password: str
) -> None:
    """With authentication_failure_close the broker says why before hanging up."""
    with raw(broker) as r:
        r.send(PROTOCOL_HEADER)
        r.expect(commands.Connection.Start)
        r.send_frame(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism=mechanism,
                response=_auth_response(mechanism, user, password),
            ),
        )
        close = r.expect_connection_close()
        assert close.reply_code == 403
        assert close.reply_text.startswith("ACCESS_REFUSED")
        assert mechanism in close.reply_text
        assert r.wait_peer_closed(5)


def _auth_response(mechanism: str, user: str, password: str) -> str:
    if mechanism == "PLAIN":
        return f"\0{user}\0{password}"
    table = commands.Connection.StartOk(client_properties={"LOGIN": user, "PASSWORD": password})
    data = table.marshal()
    return data[4 : 4 + struct.unpack_from(">I", data)[0]].decode("latin-1")


def test_pika_wrong_password(broker: Any) -> None:
    p = params(broker)
    p.credentials = pika.PlainCredentials("guest", "definitely-wrong")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as exc:
        pika.BlockingConnection(p)
    assert "403" in str(exc.value)
    assert "ACCESS_REFUSED" in str(exc.value)


def test_malformed_auth_response_is_refused(broker: Any) -> None:
    """A PLAIN response without NULs is a syntax error: no tune, the socket is closed.

    RabbitMQ logs syntax_error and closes without a connection.close (it is before tune); a
    broker that does send connection.close must say 502 SYNTAX_ERROR.
    """
    with raw(broker, timeout=10) as r:
        r.send(PROTOCOL_HEADER)
        r.expect(commands.Connection.Start)
        r.send_frame(0, commands.Connection.StartOk(mechanism="PLAIN", response="garbage"))
        _expect_refused(r, {502})


def test_unknown_mechanism_is_refused(broker: Any) -> None:
    with raw(broker, timeout=10) as r:
        r.send(PROTOCOL_HEADER)
        r.expect(commands.Connection.Start)
        r.send_frame(
            0, commands.Connection.StartOk(mechanism="NO-SUCH-MECH", response="\0guest\0guest")
        )
        _expect_refused(r, {503, 403})


def _expect_refused(r: RawAMQP, codes: set[int], timeout: float = 8.0) -> None:
    """The broker ends the connection; any frame it sends first may only be connection.close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, value = r.read_frame(max(deadline - time.monotonic(), 0.001))
        except PeerClosed:
            return
        if isinstance(value, Heartbeat):
            continue
        assert isinstance(value, commands.Connection.Close), f"unexpected {value!r}"
        assert value.reply_code in codes, (value.reply_code, value.reply_text)
        assert value.reply_text
        try:
            r.send_frame(0, commands.Connection.CloseOk())
        except OSError:
            return
        assert r.wait_peer_closed(5)
        return


@pytest.mark.skip(
    reason="guest is refused from non-loopback addresses, but every test connects over "
    "127.0.0.1; there is no second interface to connect from here"
)
def test_guest_refused_from_non_loopback() -> None:  # pragma: no cover
    raise AssertionError("unreachable")


def test_unknown_vhost_530(broker: Any) -> None:
    with raw(broker) as r:
        r.handshake(open_vhost=False)
        r.send_frame(0, commands.Connection.Open(virtual_host="no-such-vhost"))
        close = r.expect_connection_close()
        assert close.reply_code == 530
        assert close.reply_text.startswith("NOT_ALLOWED")
        assert "no-such-vhost" in close.reply_text
        assert (close.class_id, close.method_id) == (10, 40)  # connection.open
        assert r.wait_peer_closed(5)


def test_pika_unknown_vhost(broker: Any) -> None:
    p = params(broker, virtual_host="no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as exc:
        pika.BlockingConnection(p)
    assert "530" in str(exc.value)
    assert "NOT_ALLOWED" in str(exc.value)


def test_client_initiated_close(broker: Any) -> None:
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        r.send_frame(
            0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
        )
        r.expect(commands.Connection.CloseOk)


# ---------------------------------------------------------------- tuning


def test_tune_reflects_broker_settings(make_broker: Callable[..., Any]) -> None:
    b = make_broker(channel_max=10, frame_max=8192, heartbeat=7)
    with raw(b) as r:
        tune = r.handshake()
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (10, 8192, 7)


def test_smaller_channel_max_from_client_is_used(broker: Any) -> None:
    with raw(broker) as r:
        r.handshake(channel_max=3)
        for ch in (1, 2, 3):
            r.open_channel(ch)
        r.send_frame(4, commands.Channel.Open())
        close = r.expect_connection_close()
    assert close.reply_code == 530
    assert close.reply_text.startswith("NOT_ALLOWED")
    assert "channel_max" in close.reply_text


def test_channel_beyond_server_channel_max(make_broker: Callable[..., Any]) -> None:
    """FerryMQ with channel_max=10: a client echoing the limit may open 10 channels, not 11."""
    b = make_broker(channel_max=10)
    with raw(b) as r:
        r.handshake()
        for ch in range(1, 11):
            r.open_channel(ch)
        r.send_frame(11, commands.Channel.Open())
        close = r.expect_connection_close()
    assert close.reply_code == 530
    assert close.reply_text.startswith("NOT_ALLOWED")


def test_pika_channel_max_limited_broker(make_broker: Callable[..., Any]) -> None:
    b = make_broker(channel_max=10)
    with pika.BlockingConnection(params(b)) as c:
        channels = [c.channel() for _ in range(10)]
        assert all(ch.is_open for ch in channels)
        with pytest.raises(pika.exceptions.NoFreeChannels):
            c.channel()  # pika honours the negotiated limit itself


@pytest.mark.parametrize(
    "ask", [{"channel_max": 0}, {"channel_max": 65535}, {"frame_max": 0}, {"frame_max": "+1"}]
)
def test_client_asking_beyond_server_limit(limited_broker: Any, ask: dict[str, Any]) -> None:
    """0 (no limit) or more than the server offered never lifts the server's limit.

    RabbitMQ refuses such a connection (it closes the socket, no open-ok). A broker that
    accepts it must still enforce its own tune values.
    """
    with raw(limited_broker, timeout=10) as r:
        r.send(PROTOCOL_HEADER)
        r.expect(commands.Connection.Start)
        r.send_frame(0, commands.Connection.StartOk(response="\0guest\0guest"))
        _, tune = r.expect(commands.Connection.Tune)
        channel_max = ask.get("channel_max", tune.channel_max)
        frame_max = ask.get("frame_max", tune.frame_max)
        if frame_max == "+1":
            frame_max = tune.frame_max + 1
        r.send_frame(0, commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max))
        r.send_frame(0, commands.Connection.Open())
        try:
            r.expect(commands.Connection.OpenOk, timeout=8)
        except (PeerClosed, TimeoutError):
            return  # refused, as RabbitMQ does
        except AssertionError:
            return  # connection.close before open-ok: refused too
        # Accepted: the server's limits still hold.
        if "channel_max" in ask:
            for ch in range(1, tune.channel_max + 1):
                r.open_channel(ch)
            r.send_frame(tune.channel_max + 1, commands.Channel.Open())
            assert r.expect_connection_close().reply_code == 530
        else:
            r.open_channel(1)
            r.send_raw_frame(constants.FRAME_BODY, 1, b"x" * (tune.frame_max + 1))
            assert r.expect_connection_close().reply_code == 501


def test_smaller_frame_max_is_enforced(broker: Any) -> None:
    """frame_max counts the whole frame: 8 header/end octets plus the payload.

    RabbitMQ tolerates up to 8 octets over (its FRAME_SIZE_FUDGE for old clients), so the
    oversized frame here carries frame_max + 1 payload octets, which every broker must refuse.
    """
    with raw(broker) as r:
        r.handshake(frame_max=4096)
        r.open_channel(1)
        q = r.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk).queue
        # A full-size body frame is fine.
        r.publish(1, b"a" * 4088, q, frame_max=4096)
        ok = r.call(1, commands.Queue.Declare(queue=q, passive=True), commands.Queue.DeclareOk)
        assert ok.message_count == 1
        # A larger one is a frame error for the whole connection.
        r.send_frame(1, commands.Basic.Publish(routing_key=q))
        r.send_frame(1, ContentHeader(0, 4097, commands.Basic.Properties()))
        r.send_raw_frame(constants.FRAME_BODY, 1, b"b" * 4097)
        close = r.expect_connection_close()
    assert close.reply_code == 501
    assert close.reply_text.startswith("FRAME_ERROR")


def test_broker_splits_deliveries_to_client_frame_max(broker: Any, name: str) -> None:
    body = os.urandom(20_000)
    with raw(broker) as r:
        r.handshake(frame_max=4096)
        r.open_channel(1)
        q = r.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk).queue
        r.publish(1, body, q, frame_max=4096)
        r.call(1, commands.Basic.Consume(queue=q, no_ack=True), commands.Basic.ConsumeOk)
        r.expect(commands.Basic.Deliver)
        _, header = r.expect(ContentHeader)
        assert header.body_size == len(body)
        got = bytearray()
        while len(got) < len(body):
            _, part = r.expect(ContentBody)
            assert r.last_frame_size <= 4096
            got += part.value
    assert bytes(got) == body


def test_pika_small_frame_max_round_trip(
    connect: Callable[..., pika.BlockingConnection], name: str
) -> None:
    conn = connect(frame_max=4096)
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    body = os.urandom(100_000)
    ch.basic_publish("", q, body)
    assert _consume_bodies(ch, q, 1) == [body]


def _consume_bodies(ch: Any, queue: str, n: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    for method, _, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        assert method is not None, f"got {len(got)} of {n} messages"
        got.append(body)
        if len(got) == n:
            break
    ch.cancel()
    return got


# ---------------------------------------------------------------- heartbeats


def test_pika_heartbeat_keeps_idle_connection_alive(hb_broker: Any, name: str) -> None:
    with pika.BlockingConnection(params(hb_broker, heartbeat=1)) as conn:
        ch = conn.channel()
        q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
        conn.sleep(3.0)  # idle, but pika and the broker exchange heartbeats meanwhile
        assert conn.is_open
        ch.basic_publish("", q, b"still here")
        assert _consume_bodies(ch, q, 1) == [b"still here"]


def test_silent_client_is_disconnected(hb_broker: Any) -> None:
    """A client that negotiated a 1 s heartbeat and then says nothing is dropped in ~2-3 s."""
    with raw(hb_broker) as r:
        r.handshake(heartbeat=1)
        t0 = time.monotonic()
        heartbeats = 0
        with pytest.raises(PeerClosed):
            while time.monotonic() - t0 < 8:
                _, value = r.read_frame(timeout=8)
                if isinstance(value, Heartbeat):
                    heartbeats += 1
        elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 5.0, elapsed
    assert heartbeats >= 1  # the broker kept sending its own heartbeats until it gave up


def test_silent_client_is_disconnected_on_virtual_clock(clocked_broker: Any) -> None:
    """Heartbeat deadlines follow the broker's clock: a 60 s heartbeat, 200 s of silence."""
    with raw(clocked_broker) as r:
        r.handshake(heartbeat=60)
        r.open_channel(1)
        assert not r.wait_peer_closed(0.3)  # real time passing does not count
        clocked_broker.clock.advance(200)
        assert r.wait_peer_closed(5)


def test_heartbeating_raw_client_stays_connected(hb_broker: Any) -> None:
    with raw(hb_broker) as r:
        r.handshake(heartbeat=1)
        t0 = time.monotonic()
        received = 0
        while time.monotonic() - t0 < 3.0:
            r.send(Heartbeat().marshal())
            try:
                _, value = r.read_frame(timeout=0.4)
            except TimeoutError:
                continue
            assert isinstance(value, Heartbeat)
            received += 1
        r.open_channel(1)  # still usable
    assert received >= 2


# ---------------------------------------------------------------- channels


def test_channel_flow(broker: Any) -> None:
    """flow(active=true) is acknowledged; RabbitMQ does not implement a client pausing it."""
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        ok = r.call(1, commands.Channel.Flow(active=True), commands.Channel.FlowOk)
        assert ok.active is True
        r.send_frame(1, commands.Channel.Flow(active=False))
        close = r.expect_connection_close()
    assert close.reply_code == 540
    assert close.reply_text.startswith("NOT_IMPLEMENTED")
    assert (close.class_id, close.method_id) == (20, 20)


def test_500_channels_on_one_connection(
    connect: Callable[..., pika.BlockingConnection], name: str
) -> None:
    conn = connect()
    channels = [conn.channel() for _ in range(500)]
    q = channels[0].queue_declare(f"{name}.q", exclusive=True).method.queue
    for i, ch in enumerate(channels):
        ch.basic_publish("", q, str(i).encode())
    assert len({ch.channel_number for ch in channels}) == 500
    wait_for(lambda: channels[-1].queue_declare(q, passive=True).method.message_count == 500)
    for ch in channels[1:]:
        ch.close()
    assert sorted(int(b) for b in _consume_bodies(channels[0], q, 500)) == list(range(500))


def test_channel_close_and_reopen_same_number(broker: Any) -> None:
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        r.send_frame(
            1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
        )
        r.expect(commands.Channel.CloseOk)
        r.open_channel(1)
        r.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk)


def test_max_connections(make_broker: Callable[..., Any]) -> None:
    """FerryMQ's max_connections refuses at connection.open like RabbitMQ's connection limit:
    530 NOT_ALLOWED ("... connection limit (3) is reached")."""
    b = make_broker(max_connections=3)
    conns = [RawAMQP(b.host, b.amqp_port) for _ in range(4)]
    try:
        for r in conns[:3]:
            r.handshake()
        conns[3].handshake(open_vhost=False)
        conns[3].send_frame(0, commands.Connection.Open(virtual_host="/"))
        close = conns[3].expect_connection_close()
        assert close.reply_code == 530
        assert close.reply_text.startswith("NOT_ALLOWED")
        assert "limit" in close.reply_text
        # The three admitted connections are untouched; closing one frees a slot.
        conns[1].open_channel(1)
        conns[0].close()
        wait_for(lambda: _can_open(b), timeout=5)
    finally:
        for r in conns:
            r.close()


def _can_open(b: Any) -> bool:
    with RawAMQP(b.host, b.amqp_port) as r:
        try:
            r.handshake()
        except (AssertionError, PeerClosed):
            return False
        return True


# ---------------------------------------------------------------- channel errors


def _declare_internal(ch: Any, name: str) -> Any:
    return ch.exchange_declare(f"{name}.internal", "fanout", internal=True, auto_delete=True)


CHANNEL_ERRORS: list[tuple[str, Callable[[Any, Any, str], Any], int, str]] = [
    (
        "queue-not-found",
        lambda ch, other, n: ch.queue_declare(f"{n}.missing", passive=True),
        404,
        "NOT_FOUND",
    ),
    (
        "exchange-not-found",
        lambda ch, other, n: ch.exchange_declare(f"{n}.missing", passive=True),
        404,
        "NOT_FOUND",
    ),
    (
        "publish-to-missing-exchange",
        lambda ch, other, n: (
            ch.basic_publish(f"{n}.missing", "rk", b"x"),
            ch.queue_declare("", exclusive=True),
        ),
        404,
        "NOT_FOUND",
    ),
    (
        "bind-missing-queue",
        lambda ch, other, n: ch.queue_bind(f"{n}.missing", "amq.direct", "rk"),
        404,
        "NOT_FOUND",
    ),
    (
        "publish-to-internal-exchange",
        lambda ch, other, n: (
            _declare_internal(ch, n),
            ch.basic_publish(f"{n}.internal", "", b"x"),
            ch.queue_declare("", exclusive=True),
        ),
        403,
        "ACCESS_REFUSED",
    ),
    (
        "declare-amq-exchange",
        lambda ch, other, n: ch.exchange_declare(f"amq.{n}", "direct"),
        403,
        "ACCESS_REFUSED",
    ),
    (
        "declare-amq-queue",
        lambda ch, other, n: ch.queue_declare(f"amq.{n}"),
        403,
        "ACCESS_REFUSED",
    ),
    (
        "delete-system-exchange",
        lambda ch, other, n: ch.exchange_delete("amq.direct"),
        403,
        "ACCESS_REFUSED",
    ),
    (
        "exclusive-queue-of-other-connection",
        lambda ch, other, n: (
            other.channel().queue_declare(f"{n}.excl", exclusive=True),
            ch.queue_declare(f"{n}.excl", passive=True),
        ),
        405,
        "RESOURCE_LOCKED",
    ),
    (
        "consume-exclusive-queue-of-other-connection",
        lambda ch, other, n: (
            other.channel().queue_declare(f"{n}.excl", exclusive=True),
            ch.basic_consume(f"{n}.excl", lambda *a: None),
        ),
        405,
        "RESOURCE_LOCKED",
    ),
    (
        "redeclare-mismatch",
        lambda ch, other, n: (
            ch.queue_declare(f"{n}.mm", exclusive=True, arguments={"x-message-ttl": 1000}),
            ch.queue_declare(f"{n}.mm", exclusive=True, arguments={"x-message-ttl": 2000}),
        ),
        406,
        "PRECONDITION_FAILED",
    ),
    (
        "ack-unknown-delivery-tag",
        lambda ch, other, n: (ch.basic_ack(42), ch.queue_declare("", exclusive=True)),
        406,
        "PRECONDITION_FAILED",
    ),
    (
        "tx-commit-without-select",
        lambda ch, other, n: ch.tx_commit(),
        406,
        "PRECONDITION_FAILED",
    ),
]


@pytest.mark.parametrize(
    ("provoke", "code", "prefix"),
    [pytest.param(p, c, t, id=i) for i, p, c, t in CHANNEL_ERRORS],
)
def test_channel_error_closes_only_the_channel(
    connect: Callable[..., pika.BlockingConnection],
    name: str,
    provoke: Callable[[Any, Any, str], Any],
    code: int,
    prefix: str,
) -> None:
    conn = connect()
    other = connect()
    bystander = conn.channel()
    q = bystander.queue_declare(f"{name}.bystander", exclusive=True).method.queue
    ch = conn.channel()

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        provoke(ch, other, name)

    assert exc.value.reply_code == code
    assert exc.value.reply_text.startswith(prefix + " - "), exc.value.reply_text
    assert not ch.is_open
    # The connection, its other channel, and new channels all keep working.
    assert conn.is_open
    bystander.basic_publish("", q, b"ok")
    fresh = conn.channel()
    wait_for(lambda: fresh.queue_declare(q, passive=True).method.message_count == 1)
    assert _consume_bodies(bystander, q, 1) == [b"ok"]
    # An unbound auto-delete exchange outlives the test on a shared broker; remove it.
    fresh.exchange_delete(f"{name}.internal")


def test_channel_error_reply_names_the_method(broker: Any, name: str) -> None:
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        r.open_channel(2)
        r.send_frame(1, commands.Queue.Declare(queue=f"{name}.missing", passive=True))
        channel, close = r.expect_channel_close()
        assert channel == 1
        assert close.reply_code == 404
        assert close.reply_text == f"NOT_FOUND - no queue '{name}.missing' in vhost '/'"
        assert (close.class_id, close.method_id) == (50, 10)  # queue.declare
        r.call(2, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk)
        r.open_channel(1)  # the number is free again after close-ok


# ---------------------------------------------------------------- connection errors


def _bad_frame_end(r: RawAMQP) -> None:
    payload = struct.pack(">HH", 60, 40) + b"\x00" * 4
    r.send(struct.pack(">BHI", constants.FRAME_METHOD, 1, len(payload)) + payload + b"\x00")


def _publish_then(r: RawAMQP, value: Any) -> None:
    r.send_frame(1, commands.Basic.Publish(routing_key="nowhere"))
    r.send_frame(1, value)


CONNECTION_ERRORS: list[tuple[str, Callable[[RawAMQP], Any], int, str]] = [
    ("bad-frame-end", _bad_frame_end, 501, "FRAME_ERROR"),
    # RabbitMQ answers method arguments it cannot decode with 501, not 502.
    (
        "truncated-method-arguments",
        lambda r: r.send_raw_frame(
            constants.FRAME_METHOD, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\x10ab"
        ),
        501,
        "FRAME_ERROR",
    ),
    (
        "unknown-frame-type",
        lambda r: r.send_raw_frame(9, 1, b"abc"),
        501,
        "FRAME_ERROR",
    ),
    (
        "unknown-exchange-type",
        lambda r: r.send_frame(
            1, commands.Exchange.Declare(exchange="ferrymq-test-x", exchange_type="nonsense")
        ),
        503,
        "COMMAND_INVALID",
    ),
    (
        "method-on-unopened-channel",
        lambda r: r.send_frame(5, commands.Queue.Declare(queue="x", passive=True)),
        504,
        "CHANNEL_ERROR",
    ),
    (
        "channel-open-twice",
        lambda r: r.send_frame(1, commands.Channel.Open()),
        504,
        "CHANNEL_ERROR",
    ),
    (
        "queue-method-on-channel-0",
        lambda r: r.send_frame(0, commands.Queue.Declare(queue="x", passive=True)),
        504,
        "CHANNEL_ERROR",
    ),
    (
        "connection-open-twice",
        lambda r: r.send_frame(0, commands.Connection.Open()),
        504,
        "CHANNEL_ERROR",
    ),
    (
        "close-ok-on-unopened-channel",
        lambda r: r.send_frame(7, commands.Channel.CloseOk()),
        504,
        "CHANNEL_ERROR",
    ),
    (
        "content-header-without-publish",
        lambda r: r.send_frame(1, ContentHeader(0, 3, commands.Basic.Properties())),
        505,
        "UNEXPECTED_FRAME",
    ),
    (
        "body-when-method-expected",
        lambda r: r.send_frame(1, ContentBody(b"abc")),
        505,
        "UNEXPECTED_FRAME",
    ),
    (
        "method-when-content-header-expected",
        lambda r: _publish_then(r, commands.Queue.Declare(queue="x", passive=True)),
        505,
        "UNEXPECTED_FRAME",
    ),
    (
        "heartbeat-on-channel-1",
        lambda r: r.send(struct.pack(">BHI", constants.FRAME_HEARTBEAT, 1, 0) + FRAME_END),
        505,
        "UNEXPECTED_FRAME",
    ),
    (
        "publish-immediate",
        lambda r: r.publish(1, b"x", "nowhere", immediate=True),
        540,
        "NOT_IMPLEMENTED",
    ),
]


@pytest.mark.parametrize(
    ("provoke", "code", "prefix"),
    [pytest.param(p, c, t, id=i) for i, p, c, t in CONNECTION_ERRORS],
)
def test_connection_error_codes(
    broker: Any,
    connect: Callable[..., pika.BlockingConnection],
    name: str,
    provoke: Callable[[RawAMQP], Any],
    code: int,
    prefix: str,
) -> None:
    neighbour = connect()
    nch = neighbour.channel()
    q = nch.queue_declare(f"{name}.neighbour", exclusive=True).method.queue
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        provoke(r)
        close = r.expect_connection_close()
    assert close.reply_code == code
    assert close.reply_text.startswith(prefix + " - "), close.reply_text
    assert len(close.reply_text) > len(prefix) + 3
    # A fault in one connection never reaches another.
    nch.basic_publish("", q, b"unaffected")
    assert _consume_bodies(nch, q, 1) == [b"unaffected"]


def test_connection_error_then_socket_closed(broker: Any) -> None:
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        r.send_frame(1, commands.Channel.Open())
        assert r.expect_connection_close().reply_code == 504
        assert r.wait_peer_closed(5)


@pytest.mark.parametrize(
    ("label", "payload", "codes"),
    [
        # queue.declare whose arguments table holds an unknown field type 'Z'
        (
            "bad-field-type",
            struct.pack(">HH", 50, 10)
            + b"\x00\x00"
            + b"\x01q"
            + b"\x00"
            + struct.pack(">I", 3)
            + b"\x01aZ",
            {501, 502},
        ),
        ("unknown-method", struct.pack(">HH", 50, 153), {503, 540}),
        ("unknown-class", struct.pack(">HH", 1234, 1), {503, 540}),
    ],
)
def test_undecodable_methods_end_the_connection(
    broker: Any, name: str, label: str, payload: bytes, codes: set[int]
) -> None:
    """RabbitMQ drops these connections without a reply; a connection.close is fine too."""
    with raw(broker) as r:
        r.handshake()
        r.open_channel(1)
        r.send_raw_frame(constants.FRAME_METHOD, 1, payload)
        _expect_refused(r, codes)
    assert_healthy(broker, name)


@pytest.mark.skip(reason="541 INTERNAL_ERROR cannot be provoked from outside the broker")
def test_internal_error_541() -> None:  # pragma: no cover
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- limits


def test_message_larger_than_max_message_size(make_broker: Callable[..., Any], name: str) -> None:
    """RabbitMQ: channel closed with 406 'message size N is larger than configured max size M'."""
    b = make_broker(max_message_size=1024)
    with pika.BlockingConnection(params(b)) as conn:
        ch = conn.channel()
        q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
        ch.basic_publish("", q, b"x" * 1024)
        ch.basic_publish("", q, b"y" * 1025)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
            ch.queue_declare(q, passive=True)
        assert exc.value.reply_code == 406
        assert exc.value.reply_text.startswith("PRECONDITION_FAILED - ")
        assert "1025" in exc.value.reply_text
        assert "1024" in exc.value.reply_text
        assert conn.is_open
        ch2 = conn.channel()
        assert ch2.queue_declare(q, passive=True).method.message_count == 1
        assert _consume_bodies(ch2, q, 1) == [b"x" * 1024]


def test_frame_larger_than_frame_max_is_501(broker: Any) -> None:
    with raw(broker) as r:
        tune = r.handshake()
        r.open_channel(1)
        r.send_frame(1, commands.Basic.Publish(routing_key="nowhere"))
        r.send_frame(1, ContentHeader(0, tune.frame_max + 1, commands.Basic.Properties()))
        r.send_raw_frame(constants.FRAME_BODY, 1, b"z" * (tune.frame_max + 1))
        close = r.expect_connection_close()
    assert close.reply_code == 501
    assert close.reply_text.startswith("FRAME_ERROR - ")


@pytest.mark.parametrize("size", [0, 1, 8184, 8185, 8192, 8193, 3 * 8184, 3 * 8184 + 1])
def test_body_sizes_around_frame_boundaries(
    connect: Callable[..., pika.BlockingConnection], name: str, size: int
) -> None:
    """pika with frame_max 8192 carries 8184 body octets per frame; every split must rejoin."""
    conn = connect(frame_max=8192)
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    body = os.urandom(size)
    ch.basic_publish("", q, body)
    (got,) = _consume_bodies(ch, q, 1)
    assert len(got) == size
    assert got == body


def test_50_mib_message_round_trips(
    connect: Callable[..., pika.BlockingConnection], name: str
) -> None:
    conn = connect(socket_timeout=30, blocked_connection_timeout=60)
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.big", exclusive=True).method.queue
    body = os.urandom(1 << 20) * 50
    digest = hashlib.sha256(body).hexdigest()
    ch.basic_publish("", q, body)
    del body
    (got,) = _consume_bodies(ch, q, 1, timeout=60)
    assert len(got) == 50 << 20
    assert hashlib.sha256(got).hexdigest() == digest
