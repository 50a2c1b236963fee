"""The journal's on-disk format: segment headers, record framing, and a validating scanner.

A segment file is a 28-byte header followed by records, back to back:

    header  magic "FMQJRNL\\0" | u32 version | u32 segment number | u64 base msg id | u32 crc32
    record  u32 n | u32 crc32 | u8 type | payload (n - 1 bytes)

`n` counts the type byte and the payload; the CRC covers the same bytes, so a torn or flipped
record fails the check. All integers are little-endian. Names (queues, exchange, routing key) are
u16-length-prefixed UTF-8. Record payloads:

    MESSAGE  u64 msg_id | u16 nq | u16 nd | u32 len(properties) | u32 len(body)
             | nq queue names | nd delivered-queue names | exchange | routing key
             | properties | body
    SETTLE   u64 msg_id | u32 segment holding the message record it settles | queue name
    MARK     u64 msg_id | queue name                      (first delivery of msg in queue)

The body is last so that a `Location` (segment, offset, length) can point straight at it. A
MESSAGE record written by compaction has the same type: it carries the message's live queues and
its delivered marks, and later records win. SETTLE names the segment of the message record it
applies to so that compaction can tell, without any index, whether the settle is still needed.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator

MAGIC = b"FMQJRNL\x00"
VERSION = 1
SUFFIX = ".seg"

SEG_HEADER = struct.Struct("<8sIIQI")
HEADER_SIZE = SEG_HEADER.size

FRAME = struct.Struct("<IIB")
FRAME_SIZE = FRAME.size  # 9: length and CRC (8 bytes), then the type byte the CRC starts with
LENGTH = struct.Struct("<I")
MSG_FIXED = struct.Struct("<QHHII")
SETTLE_FIXED = struct.Struct("<QI")
MARK_FIXED = struct.Struct("<Q")
NAME = struct.Struct("<H")

T_MESSAGE = 1
T_SETTLE = 2
T_MARK = 3

SEED_MESSAGE = zlib.crc32(bytes([T_MESSAGE]))
SEED_SETTLE = zlib.crc32(bytes([T_SETTLE]))
SEED_MARK = zlib.crc32(bytes([T_MARK]))

# Smallest valid n (type byte + fixed part + at least one 2-byte name) per record type.
MIN_N = {
    T_MESSAGE: 1 + MSG_FIXED.size + 4,
    T_SETTLE: 1 + SETTLE_FIXED.size + 2,
    T_MARK: 1 + MARK_FIXED.size + 2,
}
MAX_NAME = 0xFFFF
NO_SEGMENT = 0xFFFFFFFF

_TYPE_BYTE = re.compile(rb"[\x01\x02\x03]")


def segment_name(number: int) -> str:
    return f"{number:010d}{SUFFIX}"


def encode_header(number: int, base_msg_id: int) -> bytes:
    body = SEG_HEADER.pack(MAGIC, VERSION, number, base_msg_id, 0)[:-4]
    return body + LENGTH.pack(zlib.crc32(body))


def decode_header(buf: bytes) -> tuple[int, int] | None:
    """(segment number, base msg id), or None if the header is missing or damaged."""
    if len(buf) < HEADER_SIZE:
        return None
    magic, version, number, base, crc = SEG_HEADER.unpack_from(buf, 0)
    if magic != MAGIC or version != VERSION or zlib.crc32(buf[: HEADER_SIZE - 4]) != crc:
        return None
    return number, base


def encode_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > MAX_NAME:
        raise ValueError(f"name longer than {MAX_NAME} bytes: {name[:40]!r}...")
    return NAME.pack(len(raw)) + raw


def message_record(
    msg_id: int,
    queues: list[str],
    delivered: list[str],
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
) -> tuple[bytes, int]:
    """A complete MESSAGE record and the offset of its body inside it (compaction's slow path)."""
    names = b"".join(encode_name(n) for n in (*queues, *delivered, exchange, routing_key))
    prefix = (
        MSG_FIXED.pack(msg_id, len(queues), len(delivered), len(properties), len(body))
        + names
        + properties
    )
    crc = zlib.crc32(body, zlib.crc32(prefix, SEED_MESSAGE))
    head = FRAME.pack(1 + len(prefix) + len(body), crc, T_MESSAGE) + prefix
    return head + body, len(head)


def settle_record(msg_id: int, ref_segment: int, queue_blob: bytes) -> bytes:
    payload = SETTLE_FIXED.pack(msg_id, ref_segment) + queue_blob
    return FRAME.pack(len(payload) + 1, zlib.crc32(payload, SEED_SETTLE), T_SETTLE) + payload


def mark_record(msg_id: int, queue_blob: bytes) -> bytes:
    payload = MARK_FIXED.pack(msg_id) + queue_blob
    return FRAME.pack(len(payload) + 1, zlib.crc32(payload, SEED_MARK), T_MARK) + payload


# -- reading -------------------------------------------------------------------------------------


class Message:
    """A decoded MESSAGE record (compaction, tools and tests; recovery has its own fast loop)."""

    __slots__ = (
        "body_len",
        "body_offset",
        "delivered",
        "exchange",
        "msg_id",
        "properties",
        "queues",
        "routing_key",
    )

    def __init__(
        self,
        msg_id: int,
        queues: list[str],
        delivered: list[str],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body_offset: int,
        body_len: int,
    ) -> None:
        self.msg_id = msg_id
        self.queues = queues
        self.delivered = delivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body_offset = body_offset
        self.body_len = body_len


def decode_names(buf: bytes, p: int, count: int, limit: int) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        if p + 2 > limit:
            raise ValueError("name runs past the record")
        (size,) = NAME.unpack_from(buf, p)
        p += 2
        if p + size > limit:
            raise ValueError("name runs past the record")
        out.append(buf[p : p + size].decode())
        p += size
    return out, p


def decode_message(buf: bytes, start: int, end: int) -> Message:
    """Decode the MESSAGE payload in buf[start:end]; ValueError if its lengths do not add up."""
    msg_id, nq, nd, lprops, lbody = MSG_FIXED.unpack_from(buf, start)
    queues, p = decode_names(buf, start + MSG_FIXED.size, nq, end)
    delivered, p = decode_names(buf, p, nd, end)
    (exchange, routing_key), p = decode_names(buf, p, 2, end)
    if p + lprops + lbody != end:
        raise ValueError("message lengths do not match the record")
    props = buf[p : p + lprops]
    return Message(msg_id, queues, delivered, exchange, routing_key, props, p + lprops, lbody)


def decode_ref(buf: bytes, start: int, end: int, typ: int) -> tuple[int, int, str]:
    """(msg_id, ref segment or NO_SEGMENT, queue) of a SETTLE or MARK payload."""
    if typ == T_SETTLE:
        msg_id, ref = SETTLE_FIXED.unpack_from(buf, start)
        p = start + SETTLE_FIXED.size
    else:
        (msg_id,) = MARK_FIXED.unpack_from(buf, start)
        ref = NO_SEGMENT
        p = start + MARK_FIXED.size
    (queue,), p = decode_names(buf, p, 1, end)
    if p != end:
        raise ValueError("settle/mark length does not match the record")
    return msg_id, ref, queue


def _structurally_valid(buf: bytes, typ: int, start: int, end: int) -> bool:
    try:
        if typ == T_MESSAGE:
            decode_message(buf, start, end)
        else:
            decode_ref(buf, start, end, typ)
    except (ValueError, UnicodeDecodeError, struct.error):
        return False
    return True


def valid_at(buf: bytes, mv: memoryview, pos: int, end: int, check_layout: bool = True) -> int:
    """End of the valid record starting at pos, or -1 (bad length, CRC, type or layout)."""
    if end - pos < FRAME_SIZE:
        return -1
    n: int
    crc: int
    typ: int
    n, crc, typ = FRAME.unpack_from(buf, pos)
    stop = pos + 8 + n
    if typ not in MIN_N or n < MIN_N[typ] or stop > end:
        return -1
    if zlib.crc32(mv[pos + 8 : stop]) != crc:
        return -1
    if check_layout and not _structurally_valid(buf, typ, pos + FRAME_SIZE, stop):
        return -1
    return stop


def resync(buf: bytes, mv: memoryview, pos: int, end: int) -> int:
    """The next position after the bad record at pos where a valid record starts, or -1.

    -1 means nothing valid follows: the bad bytes are a torn tail. Otherwise the bad record is
    corruption in the middle and only [pos, result) is lost. The declared length is tried first
    (a flipped payload byte leaves it intact), then every later position whose type byte fits.
    """
    if end - pos >= 8:
        n: int = LENGTH.unpack_from(buf, pos)[0]
        nxt = pos + 8 + n
        if n > 0 and nxt < end and valid_at(buf, mv, nxt, end) > 0:
            return nxt
    p = pos + 1
    while True:
        m = _TYPE_BYTE.search(buf, p + 8)
        if m is None:
            return -1
        cand = m.start() - 8
        if valid_at(buf, mv, cand, end) > 0:
            return cand
        p = cand + 1


class BadRegion:
    """Bytes [start, end) that do not hold a valid record; `tail` if nothing valid follows."""

    __slots__ = ("end", "start", "tail")

    def __init__(self, start: int, end: int, tail: bool) -> None:
        self.start = start
        self.end = end
        self.tail = tail


def iter_records(
    buf: bytes, start: int = HEADER_SIZE, end: int | None = None
) -> Iterator[tuple[int, int, int, int] | BadRegion]:
    """Yield (position, type, payload start, payload end) per valid record, or a BadRegion.

    Framing and CRC are checked here; the caller decodes the payload and treats a ValueError
    as corruption too. Used by compaction, tests and tools (recovery has a faster inline loop).
    """
    mv = memoryview(buf)
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        stop = valid_at(buf, mv, pos, end, check_layout=False)
        if stop < 0:
            nxt = resync(buf, mv, pos, end)
            if nxt < 0:
                yield BadRegion(pos, end, True)
                return
            yield BadRegion(pos, nxt, False)
            pos = nxt
            continue
        yield pos, buf[pos + 8], pos + FRAME_SIZE, stop
        pos = stop
