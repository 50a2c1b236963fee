"""The producer and consumer processes: the hot loops of the load generator.

Theory of operation. Each scenario runs one producer process and one consumer process (which may
hold several connections, e.g. the ten of the fanout scenario), so producing and consuming each
get their own core and GIL. They talk to the parent through a small shared int64 array
(`Shared`): the producer publishes its sequence number, each consumer connection its received
count and highest sequence seen; the parent sets the measured window and the stop flags and
takes snapshots of the counters at the window's edges.

Every message body starts with 24 bytes: run nonce, sequence number and send time
(`time.monotonic_ns()`, one clock for all processes on Linux), little-endian u64 each. The
producer pre-encodes `batch` copies of the publish frames and per batch only re-stamps those
fields before one `sendall`. The consumer walks frame headers with `struct.unpack_from` over a
large receive buffer and keeps plain int counters; the only thing stored per message is its
latency, in an `array('q')`, and only inside the measured window.

Flow control is the neutral yardstick's: the producer pauses while sent - received > 5,000 per
consumer (using the lowest "highest sequence seen" over all consumer connections).
"""

from __future__ import annotations

import array
import os
import select
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.amqp import (
    BASIC_ACK,
    BASIC_CANCEL,
    BASIC_DELIVER,
    BASIC_NACK,
    CHANNEL_CLOSE,
    CONNECTION_CLOSE,
    FRAME_BODY,
    FRAME_END,
    FRAME_HDR,
    FRAME_HEADER,
    FRAME_METHOD,
    U32,
    U64,
    AmqpError,
    AmqpUrl,
    BlockingConnection,
    ack_frame,
    publish_template,
)

STAMP = struct.Struct("<QQQ")  # nonce, seq, send time (ns)
SEQ_TS = struct.Struct("<QQ")
STAMP_BYTES = STAMP.size
RECV_BUF = 4 * 1024 * 1024
LAT_CAP = 4_000_000  # samples kept per consumer process before halving the sampling rate

# -- layout of the shared int64 array
SENT = 0  # producer: messages published so far (= highest seq)
GO = 1  # parent: 1 once M_START/M_END are set, the producer starts
STOP = 2  # parent: 1 stops the producer, 2 stops producer and consumers
M_START = 3  # measured window [M_START, M_END) in monotonic ns
M_END = 4
PRODUCER_READY = 5  # producer: 1 connected, -1 failed
PRODUCER_DONE = 6
CONFIRMED = 7  # producer: messages confirmed by the broker
_SLOT0 = 8
_SLOT_WIDTH = 4
RECEIVED, HIGH, READY = 0, 1, 2  # per consumer connection: READY is 1 consuming, -1 failed


def shared_size(n_connections: int) -> int:
    return _SLOT0 + _SLOT_WIDTH * max(n_connections, 1)


def slot(index: int, field_: int) -> int:
    """Index in the shared array of `field_` of consumer connection `index`."""
    return _SLOT0 + _SLOT_WIDTH * index + field_


def make_body(size: int, nonce: int) -> bytes:
    if size < STAMP_BYTES:
        raise ValueError(f"--size must be at least {STAMP_BYTES} bytes")
    return STAMP.pack(nonce, 0, 0) + b"x" * (size - STAMP_BYTES)


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """What the producer process needs; the window comes later through the shared array."""

    url: AmqpUrl
    exchange: str
    routing_key: str
    size: int
    nonce: int
    persistent: bool = False
    confirm: bool = False
    window: int = 1000  # max unconfirmed messages (confirm only)
    rate: int = 0  # fixed msg/s, 0 = as fast as flow control allows
    max_inflight: int = 5000  # per consumer, 0 = off
    n_consumers: int = 1
    batch: int = 64
    time_limit_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """One consumer process; it opens one connection per queue in `queues`."""

    url: AmqpUrl
    queues: tuple[str, ...]
    nonce: int
    declare: bool = False  # declare each queue exclusive + auto-delete on its own connection
    bind_exchange: str = ""  # and bind it to this exchange
    no_ack: bool = True
    prefetch: int = 0
    ack_every: int = 100
    time_limit_s: float = 300.0
    slot_offset: int = 0


# ----------------------------------------------------------------------------- producer


class _Confirms:
    """Publisher-confirm bookkeeping fed by non-blocking reads of the producer's socket."""

    __slots__ = ("buf", "end", "low", "nacks", "singles", "view")

    def __init__(self) -> None:
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)
        self.end = 0
        self.low = 0  # every tag <= low is confirmed
        self.singles: set[int] = set()  # confirmed tags above low (single acks out of order)
        self.nacks = 0

    @property
    def confirmed(self) -> int:
        return self.low + len(self.singles)

    def pump(self, sock: socket.socket) -> bool:
        """Read whatever is there without blocking; return False if nothing was.

        Readiness comes from select: on a socket with a timeout, Python retries a
        MSG_DONTWAIT recv until the timeout instead of returning EAGAIN.
        """
        if not select.select([sock], [], [], 0)[0]:
            return False
        n = sock.recv_into(self.view[self.end :])
        if n == 0:
            raise AmqpError("producer connection closed by the broker")
        end = self.end + n
        buf = self.buf
        pos = 0
        while end - pos >= 8:
            ftype, _, size = FRAME_HDR.unpack_from(buf, pos)
            fend = pos + 7 + size
            if fend >= end:
                break
            if buf[fend] != FRAME_END:
                raise AmqpError("bad frame end on the producer connection")
            if ftype == FRAME_METHOD:
                cm = U32.unpack_from(buf, pos + 7)[0]
                if cm in (BASIC_ACK, BASIC_NACK):
                    tag = U64.unpack_from(buf, pos + 11)[0]
                    if cm == BASIC_NACK:
                        self.nacks += 1
                    self._settle(tag, buf[pos + 19] & 1 == 1)
                elif cm in (CHANNEL_CLOSE, CONNECTION_CLOSE):
                    raise AmqpError(f"producer: broker closed: {_close_reason(buf, pos)}")
            pos = fend + 1
        rest = end - pos
        if rest:
            buf[:rest] = buf[pos:end]
        self.end = rest
        return True

    def _settle(self, tag: int, multiple: bool) -> None:
        low = self.low
        if tag <= low:
            return
        singles = self.singles
        if multiple:
            if singles:
                self.singles = singles = {t for t in singles if t > tag}
            low = tag
        elif tag == low + 1:
            low = tag
        else:
            singles.add(tag)
        while singles and low + 1 in singles:
            low += 1
            singles.discard(low)
        self.low = low


def _close_reason(buf: bytearray, pos: int) -> str:
    """reply-code and reply-text of a Channel.Close / Connection.Close frame at `pos`."""
    code = struct.unpack_from(">H", buf, pos + 11)[0]
    n = buf[pos + 13]
    text = bytes(buf[pos + 14 : pos + 14 + n]).decode(errors="replace")
    return f"{code} {text}"


def producer_main(cfg: ProducerConfig, shared: Any, result: Connection) -> None:
    """Process entry: connect, wait for GO, publish until the window ends, report."""
    out: dict[str, Any] = {"pid": os.getpid()}
    conn: BlockingConnection | None = None
    try:
        conn = BlockingConnection(cfg.url, name="ferrymq-bench producer")
        conn.open_channel(1)
        if cfg.confirm:
            conn.confirm_select(1)
        shared[PRODUCER_READY] = 1
        out.update(_produce(cfg, shared, conn))
    except BaseException as exc:
        shared[PRODUCER_READY] = -1
        out["error"] = f"producer: {type(exc).__name__}: {exc}"
    finally:
        shared[PRODUCER_DONE] = 1
        if conn is not None:
            conn.close()
    result.send(out)
    result.close()


def _produce(cfg: ProducerConfig, shared: Any, conn: BlockingConnection) -> dict[str, Any]:
    hard_end = time.monotonic() + cfg.time_limit_s
    while not shared[GO]:
        if shared[STOP] or time.monotonic() > hard_end:
            return {"sent": 0}
        time.sleep(0.002)
    m_end = shared[M_END]
    deadline = time.monotonic_ns() + int(cfg.time_limit_s * 1e9)
    sock = conn.sock
    sock.settimeout(30.0)  # a broker that stops reading for 30 s fails the run
    template, body_off = publish_template(
        channel=1,
        exchange=cfg.exchange,
        routing_key=cfg.routing_key,
        body=make_body(cfg.size, cfg.nonce),
        persistent=cfg.persistent,
        frame_max=conn.frame_max,
    )
    flen = len(template)
    batch = cfg.batch
    buf = bytearray(template * batch)
    view = memoryview(buf)
    offsets = [i * flen + body_off + 8 for i in range(batch)]
    pack = SEQ_TS.pack_into
    sendall = sock.sendall
    monotonic_ns = time.monotonic_ns
    sleep = time.sleep

    n_cons = cfg.n_consumers
    high_idx = [slot(i, HIGH) for i in range(n_cons)] if cfg.max_inflight > 0 else []
    max_inflight = cfg.max_inflight
    # hysteresis: once blocked, resume only when a decent batch fits again
    min_room = max(1, min(batch, max_inflight // 2))
    confirms = _Confirms() if cfg.confirm else None
    window = cfg.window
    min_room_c = max(1, min(batch, window // 4))
    interval = 1e9 / cfg.rate if cfg.rate > 0 else 0.0
    next_due = float(monotonic_ns())
    seq = 0
    batches = 0
    while True:
        now = monotonic_ns()
        if now >= m_end or now >= deadline or shared[STOP]:
            break
        n = batch
        if interval:
            due = int((now - next_due) / interval) + 1
            if due <= 0:
                sleep(min((next_due - now) / 1e9, 0.05))
                continue
            n = min(n, due)
        if high_idx:
            low_high = min([shared[i] for i in high_idx])
            room = max_inflight - (seq - low_high)
            if room < min_room:
                sleep(0.0002)
                continue
            n = min(n, room)
        if confirms is not None:
            confirms.pump(sock)
            room = window - (seq - confirms.confirmed)
            if room < min_room_c:
                select.select([sock], [], [], 0.005)
                continue
            n = min(n, room)
        elif batches & 255 == 0 and select.select([sock], [], [], 0)[0]:
            _check_broker_closed(sock)
        for off in offsets[:n] if n < batch else offsets:
            seq += 1
            pack(buf, off, seq, now)
        sendall(view[: n * flen])
        shared[SENT] = seq
        batches += 1
        if interval:
            next_due += n * interval
    out: dict[str, Any] = {"sent": seq}
    if confirms is not None:
        # bounded wait for the tail of the confirms, so "unconfirmed" is meaningful
        wait_end = time.monotonic() + 3.0
        while confirms.confirmed < seq and time.monotonic() < wait_end:
            select.select([sock], [], [], 0.05)
            confirms.pump(sock)
        shared[CONFIRMED] = confirms.confirmed
        out.update(confirmed=confirms.confirmed, nacks=confirms.nacks)
    return out


def _check_broker_closed(sock: socket.socket) -> None:
    """Without confirms the broker only writes to a producer to close it: surface that."""
    data = sock.recv(65536)  # select said readable
    if not data:
        raise AmqpError("producer connection closed by the broker")
    buf = bytearray(data)
    if len(buf) >= 14 and buf[0] == FRAME_METHOD:
        cm = U32.unpack_from(buf, 7)[0]
        if cm in (CHANNEL_CLOSE, CONNECTION_CLOSE):
            raise AmqpError(f"producer: broker closed: {_close_reason(buf, 0)}")


# ----------------------------------------------------------------------------- consumer


class _Stream:
    """One consumer connection's parse state; per connection, never per message."""

    __slots__ = (
        "ack_every",
        "buf",
        "conn",
        "end",
        "first",
        "good",
        "high",
        "last_tag",
        "no_ack",
        "pending",
        "queue",
        "received",
        "remain",
        "reorder",
        "slot",
        "stale",
        "view",
    )

    def __init__(self, conn: BlockingConnection, queue: str, index: int, cfg: ConsumerConfig):
        self.conn = conn
        self.queue = queue
        self.slot = index
        self.no_ack = cfg.no_ack
        self.ack_every = max(cfg.ack_every, 1)
        self.buf = bytearray(max(RECV_BUF, 4 * conn.frame_max))
        self.view = memoryview(self.buf)
        leftover = conn.take_buffered()
        self.buf[: len(leftover)] = leftover
        self.end = len(leftover)
        self.remain = 0  # body bytes still expected for the current message
        self.first = False  # next body frame is the first of its message
        self.good = False  # current message carries this run's nonce
        self.received = 0
        self.high = 0
        self.stale = 0
        self.reorder = 0
        self.pending = 0
        self.last_tag = 0

    def pump(self, shared: Any, nonce: int, lat: array.array[int], lat_mask: int) -> None:
        """One recv, then parse every complete frame in the buffer (the hot loop)."""
        n = self.conn.sock.recv_into(self.view[self.end :])
        if n == 0:
            raise AmqpError(f"consumer connection for {self.queue!r} closed by the broker")
        now = time.monotonic_ns()
        m_start = shared[M_START]
        m_end = shared[M_END]
        end = self.end + n
        buf = self.buf
        hdr = FRAME_HDR.unpack_from
        stamp = STAMP.unpack_from
        lat_append = lat.append
        remain, first, good = self.remain, self.first, self.good
        received, high, stale, reorder = self.received, self.high, self.stale, self.reorder
        no_ack = self.no_ack
        pending, last_tag, ack_every, ack_tag = self.pending, self.last_tag, self.ack_every, 0
        pos = 0
        while end - pos >= 8:
            ftype, _, size = hdr(buf, pos)
            fend = pos + 7 + size
            if fend >= end:
                break
            if buf[fend] != FRAME_END:
                raise AmqpError(f"bad frame end at offset {fend} on {self.queue!r}")
            if ftype == FRAME_BODY:
                if first:
                    first = False
                    their_nonce, seq, ts = stamp(buf, pos + 7)
                    good = their_nonce == nonce
                    if good:
                        if seq > high:
                            high = seq
                        else:
                            reorder += 1
                        if m_start <= ts < m_end and not seq & lat_mask:
                            lat_append(now - ts)
                remain -= size
                if remain <= 0:
                    if good:
                        received += 1
                    else:
                        stale += 1
                    if not no_ack:
                        pending += 1
                        if pending >= ack_every:
                            ack_tag = last_tag
                            pending = 0
            elif ftype == FRAME_METHOD:
                cm = U32.unpack_from(buf, pos + 7)[0]
                if cm == BASIC_DELIVER:
                    if not no_ack:
                        last_tag = U64.unpack_from(buf, pos + 12 + buf[pos + 11])[0]
                elif cm in (CHANNEL_CLOSE, CONNECTION_CLOSE):
                    raise AmqpError(
                        f"consumer {self.queue!r}: broker closed: {_close_reason(buf, pos)}"
                    )
                elif cm == BASIC_CANCEL:  # the broker cancelled us, e.g. the queue was deleted
                    raise AmqpError(f"consumer {self.queue!r}: broker cancelled the consumer")
            elif ftype == FRAME_HEADER:
                remain = U64.unpack_from(buf, pos + 11)[0]
                first = True
                if remain == 0:  # a body-less message cannot carry our stamp
                    stale += 1
                    first = False
            pos = fend + 1
        rest = end - pos
        if rest:
            buf[:rest] = buf[pos:end]
        self.end = rest
        self.remain, self.first, self.good = remain, first, good
        self.received, self.high, self.stale, self.reorder = received, high, stale, reorder
        self.pending, self.last_tag = pending, last_tag
        base = self.slot
        shared[base + RECEIVED] = received
        shared[base + HIGH] = high
        if ack_tag:
            self.conn.sock.sendall(ack_frame(1, ack_tag, True))

    def handback(self) -> BlockingConnection:
        """Return the connection for control work, with the unparsed bytes put back."""
        self.conn.put_back(self.buf[: self.end])
        self.end = 0
        return self.conn


def _open_stream(cfg: ConsumerConfig, queue: str, index: int) -> _Stream:
    conn = BlockingConnection(cfg.url, name="ferrymq-bench consumer")
    try:
        conn.open_channel(1)
        if cfg.declare:
            conn.queue_declare(queue, exclusive=True, auto_delete=True)
            if cfg.bind_exchange:
                conn.queue_bind(queue, cfg.bind_exchange)
        if not cfg.no_ack and cfg.prefetch > 0:
            conn.qos(cfg.prefetch)
        conn.consume(queue, no_ack=cfg.no_ack, tag=f"bench-{index}")
        # sockets stay blocking: recv only runs once select says readable, and an ack's
        # sendall may then wait for buffer space, bounded by this timeout
        conn.sock.settimeout(10.0)
    except BaseException:
        conn.close(0.5)
        raise
    return _Stream(conn, queue, slot(index, 0), cfg)


def consumer_main(cfg: ConsumerConfig, shared: Any, result: Connection) -> None:
    """Process entry: open the connections, consume until told to stop, report."""
    out: dict[str, Any] = {"pid": os.getpid()}
    streams: list[_Stream] = []
    lat: array.array[int] = array.array("q")
    lat_mask = 0
    hard_end = time.monotonic() + cfg.time_limit_s
    sel = selectors.DefaultSelector()
    try:
        for i, queue in enumerate(cfg.queues):
            stream = _open_stream(cfg, queue, cfg.slot_offset + i)
            streams.append(stream)
            shared[slot(cfg.slot_offset + i, READY)] = 1
            sel.register(stream.conn.sock, selectors.EVENT_READ, stream)
        nonce = cfg.nonce
        while shared[STOP] < 2 and time.monotonic() < hard_end:
            for key, _ in sel.select(0.1):
                key.data.pump(shared, nonce, lat, lat_mask)
            if len(lat) > LAT_CAP:  # keep memory bounded: halve the samples and the rate
                lat = lat[::2]
                lat_mask = lat_mask * 2 + 1
    except BaseException as exc:
        out["error"] = f"consumer: {type(exc).__name__}: {exc}"
        for i in range(len(cfg.queues)):
            if shared[slot(cfg.slot_offset + i, READY)] != 1:
                shared[slot(cfg.slot_offset + i, READY)] = -1
    finally:
        sel.close()
        for s in streams:
            conn = s.handback()
            if cfg.declare:
                try:
                    conn.queue_delete(s.queue)
                except Exception:  # the report below matters more than a failed cleanup
                    pass
            conn.close(1.0)
    out["received"] = [s.received for s in streams]
    out["stale"] = sum(s.stale for s in streams)
    out["reorder"] = sum(s.reorder for s in streams)
    out["lat_ns"] = lat.tobytes()
    out["lat_sampling"] = lat_mask + 1
    result.send(out)
    result.close()
