"""A loopback fake broker that measures the load generator's own ceiling.

`discard` mode answers the handshake and then throws every byte away, so the producer process
publishes as fast as it can encode and write. `replay` mode answers up to Basic.ConsumeOk and
then writes a pre-encoded stream of Basic.Deliver frames in a loop, so the consumer process
parses as fast as it can read. Both run the same producer/consumer code as the real scenarios;
the fake broker is its own process, so it does not share a GIL with the side it feeds.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from pamqp import commands, frame

from bench.amqp import FRAME_HDR, FRAME_HEADER_SIZE, PROTOCOL_HEADER, deliver_stream
from bench.loadgen import STAMP

# Connection.Close (class 10, method 50) on channel 0, as the frame header + method id appear
_CLOSE_PREFIX = b"\x01\x00\x00"
_CLOSE_METHOD = struct.pack(">HH", 10, 50)
REPLAY_MESSAGES = 4096


class _ServerConn:
    """Server side of one AMQP connection, just enough for the bench's clients."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def read_frame(self, deadline: float) -> tuple[int, Any]:
        while True:
            if len(self.buf) >= FRAME_HEADER_SIZE:
                _, _, size = FRAME_HDR.unpack_from(self.buf, 0)
                total = FRAME_HEADER_SIZE + size + 1
                if len(self.buf) >= total:
                    data = bytes(self.buf[:total])
                    del self.buf[:total]
                    _, channel, value = frame.unmarshal(data)
                    return channel, value
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("client went away")
            self.buf += chunk

    def send(self, channel: int, value: Any) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def handshake(self, deadline: float) -> None:
        header = b""
        while len(header) < 8:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            part = self.sock.recv(8 - len(header))
            if not part:
                raise ConnectionError("client went away during the handshake")
            header += part
        if header != PROTOCOL_HEADER:
            raise ConnectionError(f"unexpected protocol header {header!r}")
        self.send(0, commands.Connection.Start(server_properties={"product": "bench-sink"}))
        self.read_frame(deadline)  # StartOk
        self.send(0, commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=0))
        self.read_frame(deadline)  # TuneOk
        self.read_frame(deadline)  # Open
        self.send(0, commands.Connection.OpenOk())

    def serve_control(self, deadline: float, until: type) -> Any:
        """Answer control methods until a method of type `until` has been answered."""
        for _ in range(1000):
            channel, value = self.read_frame(deadline)
            if isinstance(value, commands.Channel.Open):
                self.send(channel, commands.Channel.OpenOk())
            elif isinstance(value, commands.Confirm.Select):
                self.send(channel, commands.Confirm.SelectOk())
            elif isinstance(value, commands.Basic.Qos):
                self.send(channel, commands.Basic.QosOk())
            elif isinstance(value, commands.Queue.Declare):
                self.send(channel, commands.Queue.DeclareOk(queue=value.queue))
            elif isinstance(value, commands.Basic.Consume):
                tag = value.consumer_tag or "sink"
                self.send(channel, commands.Basic.ConsumeOk(consumer_tag=tag))
            elif isinstance(value, commands.Connection.Close):
                self.send(0, commands.Connection.CloseOk())
                raise ConnectionError("client closed during setup")
            if isinstance(value, until):
                return value
        raise ConnectionError("too many control frames")


def fake_server_main(
    mode: str, nonce: int, size: int, time_limit_s: float, port_out: Connection
) -> None:
    """Process entry: listen on 127.0.0.1:0, report the port, serve one client."""
    deadline = time.monotonic() + time_limit_s
    lsock = socket.create_server(("127.0.0.1", 0))
    port_out.send({"port": lsock.getsockname()[1]})
    port_out.close()
    lsock.settimeout(30.0)
    sock, _ = lsock.accept()
    lsock.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _ServerConn(sock)
    try:
        conn.handshake(deadline)
        if mode == "discard":
            conn.serve_control(deadline, commands.Channel.Open)
            _discard(conn, deadline)
        else:
            consume = conn.serve_control(deadline, commands.Basic.Consume)
            _replay(conn, consume, nonce, size, deadline)
    except (OSError, ConnectionError):
        pass
    finally:
        sock.close()


def _discard(conn: _ServerConn, deadline: float) -> None:
    """Read and drop everything; answer the client's final Connection.Close."""
    sock = conn.sock
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            n = sock.recv_into(view)
        except TimeoutError:
            continue
        if n == 0:
            return
        # the close frame is the last thing the producer sends; only look at the tail
        start = max(0, n - 64)
        at = buf.find(_CLOSE_PREFIX, start, n)
        while at != -1:
            if buf[at + 7 : at + 11] == _CLOSE_METHOD:
                conn.send(0, commands.Connection.CloseOk())
                return
            at = buf.find(_CLOSE_PREFIX, at + 1, n)


def _replay(conn: _ServerConn, consume: Any, nonce: int, size: int, deadline: float) -> None:
    """Write the same block of deliveries until the client says Connection.Close."""
    body = STAMP.pack(nonce, 0, 0) + b"x" * (size - STAMP.size)
    block = deliver_stream(
        channel=1,
        consumer_tag=consume.consumer_tag or "sink",
        routing_key=consume.queue,
        body=body,
        count=REPLAY_MESSAGES,
    )
    sock = conn.sock
    sock.settimeout(5.0)
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0)[0]:
            break  # the client only writes to close
        try:
            sock.sendall(block)
        except TimeoutError:
            continue
    # answer the close (skip anything else the client sent)
    for _ in range(100):
        try:
            _, value = conn.read_frame(min(deadline, time.monotonic() + 2.0))
        except (OSError, ConnectionError):
            return
        if isinstance(value, commands.Connection.Close):
            conn.send(0, commands.Connection.CloseOk())
            return
