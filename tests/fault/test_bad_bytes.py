"""Bad bytes on the wire: each must end only the offending connection, never the broker.

After every case a separate, healthy pika connection still declares, publishes and consumes.
Expectations were checked against RabbitMQ 3.10, which answers a bad protocol header with its
own header (`AMQP 0-9-1`) and hangs up.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from typing import Any

import pika
import pytest
from pamqp import commands, constants
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.helpers import wait_for
from tests.integration.test_connection import (
    PROTOCOL_HEADER,
    PeerClosed,
    RawAMQP,
    assert_healthy,
    params,
)

ERROR_CODES = {501, 502, 503, 504, 505, 506, 530, 540, 541}


def read_until_eof(sock: socket.socket, timeout: float = 5.0, limit: int = 1 << 16) -> bytes:
    """Everything the broker sends before it closes the socket (a reset counts as closing)."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"broker did not close within {timeout}s; got {bytes(out)!r}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            break
        except TimeoutError:
            continue
        if not data:
            break
        out += data
    return bytes(out)


BAD_HEADERS = {
    "garbage": b"\x8f\x13 not amqp at all \x00\xff",
    "http-get": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\n\r\n",
    "http-post": b"POST /api/queues HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32,
    "zeros": b"\x00" * 8,
    "amqp-0-8": b"AMQP\x00\x00\x08\x00",
    "amqp-0-9-0": b"AMQP\x00\x00\x09\x00",
    "amqp-0-9-2": b"AMQP\x00\x00\x09\x02",
    "amqp-1-0": b"AMQP\x00\x01\x00\x00",
    "amqp-1-0-sasl": b"AMQP\x03\x01\x00\x00",
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_protocol_header_gets_ours_back(broker: Any, name: str, data: bytes) -> None:
    with socket.create_connection((broker.host, broker.amqp_port), timeout=5) as sock:
        sock.sendall(data)
        reply = read_until_eof(sock)
    assert reply == PROTOCOL_HEADER
    assert_healthy(broker, name)


def test_protocol_header_byte_by_byte(broker: Any) -> None:
    """A header split over eight TCP segments is still a header."""
    with RawAMQP(broker.host, broker.amqp_port) as r:
        r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in PROTOCOL_HEADER:
            r.send(bytes([b]))
            time.sleep(0.01)
        _, start = r.expect(commands.Connection.Start)
        assert (start.version_major, start.version_minor) == (0, 9)


def test_frame_claiming_2_gib(broker: Any, name: str) -> None:
    """The size field is checked against frame_max before anything is buffered."""
    with RawAMQP(broker.host, broker.amqp_port) as r:
        r.handshake()
        r.open_channel(1)
        r.send(struct.pack(">BHI", constants.FRAME_METHOD, 1, 0x80000000) + b"\x00" * 64)
        close = r.expect_connection_close()
    assert close.reply_code == 501
    assert close.reply_text.startswith("FRAME_ERROR - ")
    assert_healthy(broker, name)


def test_frame_claiming_4_gib_on_channel_0(broker: Any, name: str) -> None:
    with RawAMQP(broker.host, broker.amqp_port) as r:
        r.handshake()
        r.send(struct.pack(">BHI", constants.FRAME_BODY, 0, 0xFFFFFFFF))
        close = r.expect_connection_close()
    assert close.reply_code == 501
    assert_healthy(broker, name)


def _publish_bytes(queue: str, body: bytes) -> bytes:
    from pamqp import frame

    return (
        frame.marshal(commands.Basic.Publish(routing_key=queue), 1)
        + frame.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1)
        + frame.marshal(ContentBody(body), 1)
    )


def test_truncated_frames_then_close(broker: Any, name: str) -> None:
    """Cut a publish anywhere and hang up: nothing half-received may be enqueued."""
    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        q = f"{name}.q"
        ch.queue_declare(q, auto_delete=False)
        try:
            wire = _publish_bytes(q, b"0123456789" * 10)
            cuts = sorted({1, 3, 7, 8, 11, 20, len(wire) // 2, len(wire) - 9, len(wire) - 1})
            for cut in cuts:
                with RawAMQP(broker.host, broker.amqp_port) as r:
                    r.handshake()
                    r.open_channel(1)
                    r.send(wire[:cut])
            # Cut inside the handshake too.
            for cut in (3, 8, 12):
                with socket.create_connection((broker.host, broker.amqp_port), timeout=5) as s:
                    s.sendall((PROTOCOL_HEADER + b"\x01\x00\x00\x00\x00\x00\x10")[:cut])
            # A complete publish for comparison; only it may arrive.
            with RawAMQP(broker.host, broker.amqp_port) as r:
                r.handshake()
                r.open_channel(1)
                r.send(wire)
                r.call(1, commands.Queue.Declare(queue=q, passive=True), commands.Queue.DeclareOk)
            wait_for(lambda: ch.queue_declare(q, passive=True).method.message_count >= 1)
            time.sleep(0.2)  # let any wrongly accepted partial message show up too
            assert ch.queue_declare(q, passive=True).method.message_count == 1
            _, _, body = ch.basic_get(q, auto_ack=True)
            assert body == b"0123456789" * 10
        finally:
            ch.queue_delete(q)
    assert_healthy(broker, name)


def _check_reply(r: RawAMQP, deadline: float) -> None:
    """Whatever the broker answers to noise must be valid AMQP: an error close or nothing."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            _, value = r.read_frame(timeout=remaining)
        except (PeerClosed, TimeoutError):
            return
        if isinstance(value, Heartbeat):
            continue
        if isinstance(value, commands.Connection.Close):
            assert value.reply_code in ERROR_CODES, (value.reply_code, value.reply_text)
            assert value.reply_text
            return
        if isinstance(value, commands.Channel.Close):
            assert value.reply_code is not None
            assert 300 <= value.reply_code < 600, value.reply_code
            continue
        # A well-formed random method may even succeed and get its reply; that is fine.


def _noise_after_handshake(broker: Any, payloads: list[bytes]) -> None:
    conns: list[RawAMQP] = []
    try:
        for data in payloads:
            r = RawAMQP(broker.host, broker.amqp_port)
            conns.append(r)
            r.handshake()
            r.open_channel(1)
            try:
                r.send(data)
            except OSError:
                pass  # the broker may already have hung up mid-send
        deadline = time.monotonic() + 1.5  # one shared wait for every connection's answer
        for r in conns:
            _check_reply(r, deadline)
    finally:
        for r in conns:
            r.close()


def test_random_bytes_after_handshake(broker: Any, name: str) -> None:
    rng = random.Random(0xFE77)
    payloads = [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]
    _noise_after_handshake(broker, payloads)
    assert_healthy(broker, name)


def test_random_method_arguments_after_handshake(broker: Any, name: str) -> None:
    """Well-framed method frames with real class/method ids and random argument bytes."""
    rng = random.Random(0xA119)
    # Exchange (40), Queue (50), Basic (60), Confirm (85) and Tx (90) methods.
    ids = sorted(i for i in commands.INDEX_MAPPING if i >> 16 in {40, 50, 60, 85, 90})
    payloads = []
    for _ in range(40):
        body = struct.pack(">I", rng.choice(ids)) + rng.randbytes(rng.randint(0, 64))
        payloads.append(struct.pack(">BHI", constants.FRAME_METHOD, 1, len(body)) + body + b"\xce")
    _noise_after_handshake(broker, payloads)
    assert_healthy(broker, name)


def test_stalled_reader_does_not_block_others(broker: Any, name: str) -> None:
    """A consumer that never reads its socket fills the broker's send path for that socket only.

    When it finally goes away, everything it was sent but never acked is back in the queue.
    """
    n, size = 300, 32 * 1024  # ~10 MB: more than the loopback socket buffers can hold
    q = f"{name}.stalled"
    with pika.BlockingConnection(params(broker)) as setup:
        sch = setup.channel()
        sch.queue_declare(q)
        try:
            body = b"s" * size
            for _ in range(n):
                sch.basic_publish("", q, body)
            wait_for(lambda: sch.queue_declare(q, passive=True).method.message_count == n, 10)

            stalled = RawAMQP(broker.host, broker.amqp_port, rcvbuf=4096)
            try:
                stalled.handshake()
                stalled.open_channel(1)
                stalled.send_frame(1, commands.Basic.Consume(queue=q, no_ack=False))
                # From here on the stalled client never reads again.
                wait_for(lambda: sch.queue_declare(q, passive=True).method.message_count < n, 10)

                # Another connection is unaffected: declare, publish, consume 100 messages.
                t0 = time.monotonic()
                with pika.BlockingConnection(params(broker)) as other:
                    och = other.channel()
                    oq = och.queue_declare(f"{name}.other", exclusive=True).method.queue
                    for i in range(100):
                        och.basic_publish("", oq, str(i).encode())
                    got: list[bytes] = []
                    for method, _, b in och.consume(oq, auto_ack=True, inactivity_timeout=5):
                        assert method is not None, f"other consumer starved after {len(got)}"
                        got.append(b)
                        if len(got) == 100:
                            break
                    och.cancel()
                assert got == [str(i).encode() for i in range(100)]
                assert time.monotonic() - t0 < 5
            finally:
                stalled.close()

            # Its unacked deliveries are requeued once the broker sees it gone.
            wait_for(lambda: sch.queue_declare(q, passive=True).method.message_count == n, 10)
            method, _, b = sch.basic_get(q, auto_ack=True)
            assert method is not None
            assert method.redelivered is True
            assert b == body
        finally:
            sch.queue_delete(q)
