"""Recovery: replay every segment in order and rebuild the live set and the segment counts.

Replay rules (the log order is the order in which the running journal changed its index):
- a MESSAGE record sets the message's queue set; a later record for the same msg_id (a copy
  written by compaction) replaces the queue set and the location, and the segment holding it
  gets a copy_ref to the segment of the copy it superseded;
- a SETTLE removes one queue; a message with no queue left is gone;
- a MARK records a first delivery for a queue the message is still live in.

Damage: a record whose length, CRC or layout is bad is skipped if a valid record follows it
(corruption: logged, counted in corrupt_bytes); if nothing valid follows, the bytes are a torn
tail and the file is cut there (counted in truncated_bytes; expected only in the last segment,
logged as a warning anywhere else).

Speed: each segment is read whole and parsed with struct.unpack_from over the bytes and CRCs over
a memoryview, with names decoded once through a cache; about 2 us per record on this VM.
"""

from __future__ import annotations

import gc
import logging
import mmap
import os
import re
import struct
import zlib
from dataclasses import dataclass, field

from ferrymq.store import _records as rec
from ferrymq.store._index import CompactIndex
from ferrymq.store._model import (
    NO_MARKS,
    Entry,
    Location,
    RecoveredMessage,
    Seg,
    fsync_dir,
)

log = logging.getLogger("ferrymq.store")

_SEGMENT_FILE = re.compile(r"^(\d{10})\.seg$")


@dataclass
class Recovered:
    messages: list[RecoveredMessage]
    index: CompactIndex
    segs: dict[int, Seg]
    next_msg_id: int
    next_segment: int
    truncated_bytes: int = 0
    corrupt_bytes: int = 0
    removed: list[str] = field(default_factory=list)


def segment_numbers(directory: str) -> list[int]:
    out = []
    for name in os.listdir(directory):
        m = _SEGMENT_FILE.match(name)
        if m:
            out.append(int(m.group(1)))
    out.sort()
    return out


def recover(directory: str, load_bodies: bool) -> Recovered:
    return _Scanner(directory, load_bodies).run()


class _Scanner:
    def __init__(self, directory: str, load_bodies: bool) -> None:
        self.directory = directory
        self.load_bodies = load_bodies
        self.state: dict[int, RecoveredMessage] = {}
        self.marks_of: dict[int, dict[str, int]] = {}
        self.multi: set[int] = set()  # msg_ids whose current record lists more than one queue
        self.cache: dict[bytes, str] = {}
        self.no_marks = NO_MARKS
        self.max_id = 0
        self.last_new = 0  # msg_id of the last new message seen, to know if ids came in order
        self.ordered = True

    def run(self) -> Recovered:
        # A million new objects would trigger full collections over a growing heap: about half
        # the time of a large recovery. Nothing built here forms cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _run(self) -> Recovered:
        directory = self.directory
        numbers = segment_numbers(directory)
        segs: dict[int, Seg] = {}
        result = Recovered([], CompactIndex(), segs, 1, (numbers[-1] + 1) if numbers else 1)
        changed_dir = False
        for i, number in enumerate(numbers):
            path = os.path.join(directory, rec.segment_name(number))
            last = i == len(numbers) - 1
            with open(path, "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                header = None
                if size >= rec.HEADER_SIZE:
                    header = rec.decode_header(os.pread(f.fileno(), rec.HEADER_SIZE, 0))
                if header is None and size < rec.HEADER_SIZE:
                    # Created, header never fully written: it holds nothing. Remove it.
                    if not last:
                        log.warning("journal: segment %s has no complete header, removed", path)
                    result.truncated_bytes += size
                    os.unlink(path)
                    result.removed.append(path)
                    changed_dir = True
                    continue
                if header is None:
                    log.warning("journal: %s has a damaged header; reading its records", path)
                    result.corrupt_bytes += rec.HEADER_SIZE
                else:
                    if header[0] != number:
                        log.warning("journal: segment %s says it is number %d", path, header[0])
                    self.max_id = max(self.max_id, header[1] - 1)
                seg = Seg(number, path)
                segs[number] = seg
                # mmap: no copy of the whole segment; bodies are copied out only if loaded.
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    mm.madvise(mmap.MADV_SEQUENTIAL)
                    cut = self.scan(mm, seg, result)  # type: ignore[arg-type]
                end = size
                if cut >= 0:
                    lost = end - cut
                    if last:
                        log.info(
                            "journal: cut %d bytes of a torn record at the end of %s", lost, path
                        )
                    else:
                        log.warning("journal: cut %d unreadable bytes at the end of %s", lost, path)
                    result.truncated_bytes += lost
                    f.truncate(cut)
                    os.fsync(f.fileno())
                    end = cut
            seg.alloc = seg.durable = end

        if changed_dir:
            fsync_dir(directory)
        self.finish(result)
        return result

    def finish(self, result: Recovered) -> None:
        """Live counts per segment, the index, and the recovered list in msg_id order."""
        state = self.state
        segs = result.segs
        index = result.index
        multi = self.multi
        ids = list(state)
        if not self.ordered:
            ids.sort()
        messages = result.messages
        append = messages.append
        marks_of = self.marks_of
        live: dict[int, list[int]] = {n: [0, 0] for n in segs}
        for msg_id in ids:
            m = state[msg_id]
            loc = m.location
            counts = live[loc.segment]
            counts[0] += 1
            counts[1] += loc.length
            marks = marks_of.get(msg_id)
            if marks:
                for s in marks.values():
                    segs[s].marks += 1
                m.delivered = set(marks)
                index[msg_id] = Entry(loc, list(m.queues), marks)
            else:
                m.delivered = NO_MARKS
                # A bare Location means "the one queue its record names" (see Entry).
                if len(m.queues) == 1 and msg_id not in multi:
                    index[msg_id] = loc
                else:
                    index[msg_id] = Entry(loc, list(m.queues), None)
            append(m)
        for number, (count, body_bytes) in live.items():
            segs[number].live_msgs = count
            segs[number].live_body = body_bytes
        if ids:
            self.max_id = max(self.max_id, ids[-1])
        result.next_msg_id = self.max_id + 1

    def scan(self, buf: bytes, seg: Seg, result: Recovered) -> int:
        """Replay one segment; return the offset to cut a torn tail at, or -1."""
        number = seg.number
        state = self.state
        marks_of = self.marks_of
        multi = self.multi
        cache = self.cache
        no_marks = self.no_marks
        load_bodies = self.load_bodies
        mv = memoryview(buf)
        end = len(buf)
        pos = rec.HEADER_SIZE
        unpack_frame = rec.FRAME.unpack_from
        unpack_msg = rec.MSG_FIXED.unpack_from
        unpack_settle = rec.SETTLE_FIXED.unpack_from
        unpack_mark = rec.MARK_FIXED.unpack_from
        unpack_name = rec.NAME.unpack_from
        crc32 = zlib.crc32
        no_segment = rec.NO_SEGMENT
        refs = seg.refs
        max_id = self.max_id
        total_msgs = total_msg_bytes = total_body = 0
        last_new = self.last_new
        cut = -1

        while pos < end:
            ok = False
            if end - pos >= 9:
                n, crc, typ = unpack_frame(buf, pos)
                nxt = pos + 8 + n
                if nxt <= end and 0 < typ < 4 and n >= 11 and crc32(mv[pos + 8 : nxt]) == crc:
                    ok = True
            if not ok:
                again = rec.resync(buf, mv, pos, end)
                if again < 0:
                    cut = pos
                    break
                log.warning(
                    "journal: skipped %d corrupt bytes at offset %d of %s",
                    again - pos,
                    pos,
                    seg.path,
                )
                result.corrupt_bytes += again - pos
                pos = again
                continue
            p = pos + 9
            try:
                if typ == 1:
                    msg_id, nq, nd, lprops, lbody = unpack_msg(buf, p)
                    p += 20
                    if nq == 1:
                        (size,) = unpack_name(buf, p)
                        key = buf[p + 2 : p + 2 + size]
                        p += 2 + size
                        name = cache.get(key)
                        if name is None:
                            name = cache[key] = key.decode()
                        queues = [name]
                    else:
                        queues = []
                        for _ in range(nq):
                            (size,) = unpack_name(buf, p)
                            key = buf[p + 2 : p + 2 + size]
                            p += 2 + size
                            name = cache.get(key)
                            if name is None:
                                name = cache[key] = key.decode()
                            queues.append(name)
                    embedded: list[str] = []
                    for _ in range(nd):
                        (size,) = unpack_name(buf, p)
                        embedded.append(buf[p + 2 : p + 2 + size].decode())
                        p += 2 + size
                    (size,) = unpack_name(buf, p)
                    key = buf[p + 2 : p + 2 + size]
                    p += 2 + size
                    exchange = cache.get(key)
                    if exchange is None:
                        exchange = cache[key] = key.decode()
                    (size,) = unpack_name(buf, p)
                    key = buf[p + 2 : p + 2 + size]
                    p += 2 + size
                    routing_key = cache.get(key)
                    if routing_key is None:
                        routing_key = key.decode()
                        if len(cache) < 100_000:
                            cache[key] = routing_key
                    body_at = p + lprops
                    if body_at + lbody != nxt:
                        raise ValueError("message lengths do not match the record")
                    props = buf[p:body_at]
                    body = buf[body_at:nxt] if load_bodies else None
                    loc = Location(number, body_at, lbody)
                    total_msgs += 1
                    total_msg_bytes += nxt - pos
                    total_body += lbody
                    if msg_id > max_id:
                        max_id = msg_id
                    old = state.get(msg_id)
                    if old is None:
                        state[msg_id] = RecoveredMessage(
                            msg_id, queues, exchange, routing_key, props, body, loc, no_marks
                        )
                        if nq > 1:
                            multi.add(msg_id)
                        if msg_id < last_new:
                            self.ordered = False
                        last_new = msg_id
                    else:
                        # A copy written by compaction: it wins, and must outlive the older one.
                        old_seg = old.location.segment
                        if old_seg != number:
                            seg.copy_refs[old_seg] = seg.copy_refs.get(old_seg, 0) + 1
                        old.queues = queues
                        old.location = loc
                        old.body = body
                        marks = marks_of.get(msg_id)
                        if marks:
                            for q in list(marks):
                                if q not in queues:
                                    del marks[q]
                        if nq > 1:
                            multi.add(msg_id)
                        else:
                            multi.discard(msg_id)
                    if embedded:
                        marks = marks_of.setdefault(msg_id, {})
                        for q in embedded:
                            if q in queues:
                                marks[q] = number
                elif typ == 2:
                    msg_id, ref = unpack_settle(buf, p)
                    (size,) = unpack_name(buf, p + 12)
                    if p + 14 + size != nxt:
                        raise ValueError("settle length does not match the record")
                    key = buf[p + 14 : nxt]
                    queue = cache.get(key)
                    if queue is None:
                        queue = key.decode()
                    if msg_id > max_id:
                        max_id = msg_id
                    if ref != number and ref != no_segment:
                        refs[ref] = refs.get(ref, 0) + 1
                    m = state.get(msg_id)
                    if m is not None and queue in m.queues:
                        m.queues.remove(queue)
                        marks = marks_of.get(msg_id)
                        if marks:
                            marks.pop(queue, None)
                        if not m.queues:
                            del state[msg_id]
                            marks_of.pop(msg_id, None)
                            multi.discard(msg_id)
                else:
                    (msg_id,) = unpack_mark(buf, p)
                    (size,) = unpack_name(buf, p + 8)
                    if p + 10 + size != nxt:
                        raise ValueError("mark length does not match the record")
                    key = buf[p + 10 : nxt]
                    queue = cache.get(key)
                    if queue is None:
                        queue = key.decode()
                    if msg_id > max_id:
                        max_id = msg_id
                    m = state.get(msg_id)
                    if m is not None and queue in m.queues:
                        marks_of.setdefault(msg_id, {})[queue] = number
            except (ValueError, UnicodeDecodeError, struct.error):
                log.warning(
                    "journal: skipped a malformed record of %d bytes at offset %d of %s",
                    nxt - pos,
                    pos,
                    seg.path,
                )
                result.corrupt_bytes += nxt - pos
            pos = nxt

        mv.release()
        seg.total_msgs += total_msgs
        seg.total_msg_bytes += total_msg_bytes
        seg.total_body += total_body
        self.max_id = max_id
        self.last_new = last_new
        return cut
