"""The message journal: append-only segment files with group commit, recovery and compaction.

Theory of operation
-------------------
Two threads share one `Journal`: the caller (the broker's event loop) and the writer thread.

The caller appends records. `append_*` builds the record bytes (struct.pack, a CRC), then, under
`_lock`, reserves the record's place at the head of the log (segment, offset), adds the bytes to
the pending batch and updates the index, all in one step. No system call happens on the caller's
thread. `flush(on_done)` closes the pending batch and queues it for the writer.

The writer takes every queued batch at once (group commit), writes one `pwrite` per segment
touched and one `fdatasync`, then calls each batch's `on_done` in order. Between batches it
deletes segments nothing needs any more and compacts segments whose live share fell low; the
copies it makes go through the same reservation step as the caller's records (see _compact.py).

Because the index changes only in the step that reserves a record's place, the order of records
in the log is the order of index changes, and replaying the segments in order (`_recovery.py`)
rebuilds the same index. Deleting or compacting a segment is allowed only when replaying the log
without it gives the same result; the counts on `Seg` (live messages, marks, refs, copy_refs)
track exactly that.

A failed write (ENOSPC, EIO) truncates what it wrote and fails its batch and every batch reserved
after it (they assumed its bytes would be there); their messages leave the index. The caller's
next flush sees the failure and moves the head to a fresh segment, so later batches can succeed
once space returns, and nothing written before is touched.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from ferrymq.store import _records as rec
from ferrymq.store._index import CompactIndex
from ferrymq.store._model import (
    NO_MARKS,
    Batch,
    Entry,
    IndexValue,
    Location,
    OnDone,
    Range,
    RecoveredMessage,
    Recovery,
    Seg,
    StoredMessage,
    StoreError,
)
from ferrymq.store._recovery import recover
from ferrymq.store._writer import STOP, Writer

__all__ = [
    "Journal",
    "Location",
    "RecoveredMessage",
    "Recovery",
    "StoreError",
    "StoredMessage",
]

FSYNC_POLICIES = ("always", "interval", "off")
_NAME_CACHE_MAX = 50_000

_FRAME_PACK = rec.FRAME.pack
_MSG_PACK = rec.MSG_FIXED.pack
_SETTLE_PACK = rec.SETTLE_FIXED.pack
_MARK_PACK = rec.MARK_FIXED.pack
_SEED_MESSAGE = rec.SEED_MESSAGE
_SEED_SETTLE = rec.SEED_SETTLE
_SEED_MARK = rec.SEED_MARK
_HEADER_SIZE = rec.HEADER_SIZE
_crc32 = zlib.crc32
_ID_PACK = struct.Struct("<Q").pack
_FRAME_UNPACK = rec.FRAME.unpack_from
_FRAME_SIZE = rec.FRAME_SIZE
# read-back (paging): how far before a body to look for its record's start, and how records
# close together in one segment are merged into one pread
_READ_WINDOW = 4096
_READ_WINDOW_MAX = 1 << 20
_READ_GAP = 64 * 1024
_READ_SPAN = 256 * 1024
_RECOVERY_BATCH = 512  # ids per run read by Recovery.stream

_Found = tuple[rec.Message, bytes]  # a record read back: decoded, and its body


class Journal:
    """An append-only, segmented, crash-safe message log.

    fsync policies (what `on_done(None)` promises):
      always    the batch is on disk (fdatasync returned) before on_done runs.
      interval  the batch is written to the OS; the writer fdatasyncs at most every
                `fsync_interval` seconds, so a machine crash can lose that much. A process crash
                loses nothing.
      off       the batch is written to the OS; fsync only on close and before a compacted
                segment is deleted. A process crash loses nothing, a machine crash may.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: str = "always",
        fsync_interval: float = 0.2,
        segment_bytes: int = 64 * 1024 * 1024,
        compact_below: float = 0.3,
        load_bodies: bool = True,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        if not 0.0 <= compact_below < 1.0:
            raise ValueError("compact_below must be in [0, 1)")
        self.directory = str(directory)
        self.fsync_policy = fsync
        self.fsync_interval = fsync_interval
        self.segment_bytes = segment_bytes
        self.compact_below = compact_below
        self.load_bodies = load_bodies

        self._lock = threading.Lock()  # index, allocator, segment table, pending batch
        self._fd_lock = threading.Lock()  # the fd table (read_body vs segment deletion)
        self._segs: dict[int, Seg] = {}
        self._fds: dict[int, int] = {}
        self._index = CompactIndex()
        # After compaction moved a body: its old (segment, offset) -> (msg_id, where it went).
        # read_body follows these one hop at a time, and only past segments already deleted;
        # each hop's copy is on disk before the segment it came from is deleted.
        self._aliases: dict[tuple[int, int], tuple[int, Location]] = {}
        self._names: dict[str, bytes] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._seq = 0
        self._epoch = 0
        self._failed_epoch = -1  # batches of this epoch or older fail (set by the writer)
        self._failed_exc: StoreError | None = None
        self._next_seg = 1
        self._max_id = 0
        self._closed = True  # until open()
        self._opened = False
        self._lockfd = -1
        self._writer: Writer | None = None
        self._head: Seg
        self._chunks: list[bytes]
        self._pending: Batch

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> Recovery:
        """Recover the live messages, then accept appends. Call once."""
        if self._opened:
            raise StoreError("journal already opened")
        self._opened = True
        started = time.perf_counter()
        os.makedirs(self.directory, exist_ok=True)
        self._lockfd = os.open(os.path.join(self.directory, "journal.lock"), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lockfd)
            self._lockfd = -1
            raise StoreError(
                f"journal {self.directory} is in use by another process", errno.EAGAIN
            ) from exc
        try:
            found = recover(self.directory)
        except OSError as exc:
            self._release_lockfile()
            raise StoreError.from_os(exc, "journal recovery") from exc
        except BaseException:
            self._release_lockfile()
            raise
        segments_found = len(found.segs)
        self._segs = found.segs
        self._index = found.index
        self._next_seg = found.next_segment
        self._max_id = found.next_msg_id - 1
        with self._lock:
            self._pending = Batch(self._seq, self._epoch)
            if self._segs:
                self._head = self._segs[max(self._segs)]
                self._add_range_locked(self._pending, self._head)
            else:
                self._roll_locked()
        self._closed = False
        self._writer = Writer(self)
        self._writer.start()
        load_bodies = self.load_bodies
        return Recovery(
            lambda: self._recovered(load_bodies),
            count=len(found.index),
            next_msg_id=found.next_msg_id,
            truncated_bytes=found.truncated_bytes,
            segments=segments_found,
            elapsed=time.perf_counter() - started,
            corrupt_bytes=found.corrupt_bytes,
        )

    def close(self) -> None:
        """Write what is pending, wait for the writer, fsync, close. Idempotent."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            if not self._pending.empty():
                self._flush_locked(None)
            self._queue.put(STOP)
        assert self._writer is not None
        self._writer.join()
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
        self._release_lockfile()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release_lockfile(self) -> None:
        if self._lockfd >= 0:
            os.close(self._lockfd)  # closing drops the flock
            self._lockfd = -1

    # -- appends (caller thread; no system calls) ---------------------------------------------

    def _recovered(self, load_bodies: bool) -> Iterator[RecoveredMessage]:
        """Recovery.stream(): the live messages in msg_id order, read in runs (read_messages).

        The index is walked while the caller settles what it passes (see CompactIndex.hold).
        A record compaction copied and has not written yet ends a run early: the pending batch
        is flushed and the rest read once it is written.
        """
        index = self._index
        with self._lock:
            index.hold = True
        try:
            ids = index.ascending()
            while True:
                with self._lock:
                    batch = list(itertools.islice(ids, _RECOVERY_BATCH))
                if not batch:
                    return
                values: list[IndexValue | None] = []
                got = self._read_records(batch, values)
                tries = 0
                while len(got) < len(batch):
                    tries += 1
                    if tries > 100:
                        raise StoreError(f"journal: record of msg_id {batch[len(got)]} not written")
                    self._wait_written()
                    got.extend(self._read_records(batch[len(got) :], values))
                for msg_id, found, value in zip(batch, got, values, strict=True):
                    # (the caller settles only what it has been given: value is still current)
                    if found is None or value is None:
                        continue
                    record, body = found
                    if type(value) is Location:
                        loc = value
                        queues = record.queues  # a bare Location: its record's one queue
                        delivered: AbstractSet[str] = NO_MARKS
                    else:
                        assert isinstance(value, Entry)
                        loc = value.loc
                        queues = list(value.queues)
                        delivered = frozenset(value.marks) if value.marks else NO_MARKS
                    yield RecoveredMessage(
                        msg_id,
                        queues,
                        record.exchange,
                        record.routing_key,
                        record.properties,
                        body if load_bodies else None,
                        loc,
                        delivered,
                    )
        finally:
            with self._lock:
                index.hold = False
                index.tidy()

    def _wait_written(self, timeout: float = 30.0) -> None:
        """Flush and wait until the writer has written everything appended so far."""
        done = threading.Event()
        self.flush(lambda exc: done.set())
        done.wait(timeout)

    def append_message(
        self,
        msg_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> Location:
        """Append a message record (written once however many queues); buffered until flush.

        msg_id must be new: larger than any id this journal has seen (Recovery.next_msg_id).
        The Location is valid for read_body once the flush covering this append has completed.
        """
        names = self._names
        nq = len(queues)
        if nq == 1:
            qblob = names.get(queues[0]) or self._name(queues[0])
        elif nq:
            qblob = b"".join([names.get(q) or self._name(q) for q in queues])
        else:
            raise ValueError("a message must be in at least one queue")
        xblob = names.get(exchange) or self._name(exchange)
        kblob = names.get(routing_key) or self._name(routing_key)
        blen = len(body)
        fixed = _MSG_PACK(msg_id, nq, 0, len(properties), blen)
        if blen < 65536:
            # One join and one CRC over the whole payload: the cheapest way in CPython.
            payload = b"".join((fixed, qblob, xblob, kblob, properties, body))
            size = 9 + len(payload)
            parts: tuple[bytes, ...] = (
                _FRAME_PACK(size - 8, _crc32(payload, _SEED_MESSAGE), 1) + payload,
            )
        else:
            # Large body: never copy it here; the writer's join copies it once.
            prefix = b"".join((fixed, qblob, xblob, kblob, properties))
            size = 9 + len(prefix) + blen
            crc = _crc32(body, _crc32(prefix, _SEED_MESSAGE))
            parts = (_FRAME_PACK(size - 8, crc, 1) + prefix, body)
        with self._lock:
            if self._closed:
                raise StoreError("journal is not open")
            head = self._head
            off = head.alloc
            if off + size > self.segment_bytes and off > _HEADER_SIZE:
                head = self._roll_locked()
                off = head.alloc
            chunks = self._chunks
            chunks.extend(parts)
            head.alloc = off + size
            loc = Location(head.number, off + size - blen, blen)
            value: IndexValue = loc if nq == 1 else Entry(loc, list(queues), None)
            if not self._index.add_new(msg_id, value):
                head.alloc = off  # undo the reservation; the bytes never go out
                del chunks[-len(parts) :]
                raise ValueError(f"msg_id {msg_id} is already in the journal")
            head.total_msgs += 1
            head.total_msg_bytes += size
            head.total_body += blen
            head.live_msgs += 1
            head.live_body += blen
            self._pending.new_msgs.append(msg_id)
            if msg_id > self._max_id:
                self._max_id = msg_id
        return loc

    def append_settle(self, msg_id: int, queue: str) -> None:
        """Record that msg_id is done in queue (ack, drop, expiry); buffered until flush.

        Unknown ids and queues the message is not in are ignored (nothing is written).
        """
        qblob = self._names.get(queue) or self._name(queue)
        with self._lock:
            index = self._index
            value = index.get(msg_id)
            if value is None:
                return
            if type(value) is Location:
                loc = value
                del index[msg_id]
                dead = True
            else:
                assert isinstance(value, Entry)
                if queue not in value.queues:
                    return
                value.queues.remove(queue)
                loc = value.loc
                if value.marks:
                    where = value.marks.pop(queue, None)
                    if where is not None:
                        self._segs[where].marks -= 1
                dead = not value.queues
                if dead:
                    del index[msg_id]
                    if value.marks:
                        for where in value.marks.values():
                            self._segs[where].marks -= 1
            ref = loc.segment
            if dead:
                seg = self._segs[ref]
                seg.live_msgs -= 1
                seg.live_body -= loc.length
            payload = _SETTLE_PACK(msg_id, ref) + qblob
            record = _FRAME_PACK(len(payload) + 1, _crc32(payload, _SEED_SETTLE), 2) + payload
            head = self._append_locked(record)
            if ref != head.number:
                head.refs[ref] = head.refs.get(ref, 0) + 1

    def append_delivered(self, msg_id: int, queue: str) -> None:
        """Record the first delivery of msg_id from queue, so recovery marks it redelivered."""
        qblob = self._names.get(queue) or self._name(queue)
        with self._lock:
            index = self._index
            value = index.get(msg_id)
            if value is None:
                return
            if type(value) is Location:
                entry = Entry(value, [queue], {})
                index[msg_id] = entry
            else:
                assert isinstance(value, Entry)
                entry = value
                if queue not in entry.queues or (entry.marks and queue in entry.marks):
                    return
                if entry.marks is None:
                    entry.marks = {}
            payload = _MARK_PACK(msg_id) + qblob
            record = _FRAME_PACK(len(payload) + 1, _crc32(payload, _SEED_MARK), 3) + payload
            head = self._append_locked(record)
            assert entry.marks is not None
            entry.marks[queue] = head.number
            head.marks += 1
            self._pending.new_marks.append((msg_id, queue, head.number))

    def flush(self, on_done: OnDone) -> None:
        """Hand everything appended since the last flush to the writer as one batch.

        on_done(None) runs in the writer thread once the batch is written (and fsynced, for
        policy "always"); on_done(StoreError) if it could not be. Batches complete in order.
        Never blocks.
        """
        with self._lock:
            if self._closed:
                raise StoreError("journal is not open")
            self._flush_locked(on_done)

    # -- reads ---------------------------------------------------------------------------------

    def read_body(self, location: Location) -> bytes:
        """Read a body back from its segment (pread). Safe while the writer runs.

        Locations from before a compaction stay valid: the body is found at its new place.
        """
        for _ in range(64):
            number, offset = location.segment, location.offset
            with self._fd_lock:
                fd = self._fd_locked(number)
                if fd >= 0:
                    try:
                        data = _pread_all(fd, location.length, offset)
                    except OSError as exc:
                        raise StoreError.from_os(exc, "journal read") from exc
                    if len(data) != location.length:
                        raise StoreError(
                            f"journal read: {location} is past the end of its segment", errno.EIO
                        )
                    return data
            with self._lock:
                moved = self._aliases.get((number, offset))
            if moved is None:
                break
            location = moved[1]
        raise StoreError(f"journal read: no message body at {location}", errno.ENOENT)

    def read_messages(self, msg_ids: Sequence[int]) -> list[StoredMessage | None]:
        """Read whole messages back by id, for queues that paged them out of memory.

        Returns one item per id for the longest prefix of `msg_ids` whose records are written
        (a record still in a pending batch, or a copy compaction has not written yet, ends the
        prefix: try again after the next commit). An item is None when the id is not live
        (never written, settled, or lost with a failed write). Records that lie close together
        in one segment are read with one pread (read-ahead), so paging a run back in costs
        about one system call per 256 KiB.
        """
        return [
            None
            if found is None
            else StoredMessage(
                found[0].exchange, found[0].routing_key, found[0].properties, found[1]
            )
            for found in self._read_records(msg_ids)
        ]

    def _read_records(
        self, msg_ids: Sequence[int], values: list[IndexValue | None] | None = None
    ) -> list[_Found | None]:
        """read_messages, with the decoded record (its queues too) next to the body.

        values, if given, receives the index value of each id read (None if not live).
        """
        locs: list[Location | None] = []
        with self._lock:
            index = self._index
            segs = self._segs
            for msg_id in msg_ids:
                value = index.get(msg_id)
                if value is None:
                    locs.append(None)
                    if values is not None:
                        values.append(None)
                    continue
                loc = value if type(value) is Location else value.loc  # type: ignore[union-attr]
                seg = segs.get(loc.segment)
                if seg is None or seg.durable < loc.offset + loc.length:
                    break
                locs.append(loc)
                if values is not None:
                    values.append(value)
        out: list[_Found | None] = []
        i = 0
        n = len(locs)
        while i < n:
            first = locs[i]
            if first is None:
                out.append(None)
                i += 1
                continue
            # a run: same segment, ascending, small gaps, bounded span
            j = i + 1
            end = first.offset + first.length
            while j < n:
                nxt = locs[j]
                if (
                    nxt is None
                    or nxt.segment != first.segment
                    or nxt.offset <= end
                    or nxt.offset - end > _READ_GAP
                    or nxt.offset + nxt.length - first.offset > _READ_SPAN
                ):
                    break
                end = nxt.offset + nxt.length
                j += 1
            got = self._read_run(msg_ids[i:j], locs[i:j])  # type: ignore[arg-type]
            if got is None:  # the segment went away under us (compaction): look up again
                if values is not None:
                    del values[i:]
                again = self._read_records(msg_ids[i:j], values)
                out.extend(again)
                if len(again) < j - i:
                    if values is not None:
                        del values[len(out) :]
                    return out
            else:
                out.extend(got)
            i = j
        return out

    def _read_run(
        self, msg_ids: Sequence[int], locs: Sequence[Location]
    ) -> list[_Found | None] | None:
        first = locs[0]
        window = _READ_WINDOW
        while True:
            start = max(_HEADER_SIZE, first.offset - window)
            length = locs[-1].offset + locs[-1].length - start
            with self._fd_lock:
                fd = self._fd_locked(first.segment)
                if fd < 0:
                    return None
                try:
                    buf = _pread_all(fd, length, start)
                except OSError as exc:
                    raise StoreError.from_os(exc, "journal read") from exc
            out: list[_Found | None] = []
            lo = 0
            for msg_id, loc in zip(msg_ids, locs, strict=True):
                body_at = loc.offset - start
                found = None
                if lo:  # records of a run mostly follow each other: walk forward first
                    found = _next_record(buf, lo, msg_id, body_at, loc.length)
                if found is None:
                    found = _find_record(buf, lo, msg_id, body_at, loc.length)
                out.append(found)
                if found is not None:
                    lo = body_at + loc.length
            if out[0] is not None or start == _HEADER_SIZE or window >= _READ_WINDOW_MAX:
                return out
            window *= 16  # large properties: look further back for the first record's start

    def stats(self) -> dict[str, int | float]:
        """Counters for monitoring; cheap, safe from any thread."""
        with self._lock:
            segs = list(self._segs.values())
            out: dict[str, int | float] = {
                "segments": len(segs),
                "bytes_on_disk": sum(s.durable for s in segs),
                "live_messages": len(self._index),
                "live_bytes": sum(s.est_live_bytes() for s in segs),
                "pending_batches": self._queue.qsize(),
                "head_segment": self._head.number if self._opened else 0,
            }
        if self._writer is not None:
            out.update(self._writer.counters())
        return out

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Flush, then block until the writer has written everything and has no compaction or
        deletion left to do. For tests, tools and shutdown; never call it on the event loop."""
        event = threading.Event()
        with self._lock:
            if self._closed:
                return True
            if not self._pending.empty():
                self._flush_locked(None)
            self._queue.put(event)
        return event.wait(timeout)

    # -- internals (callers hold _lock) --------------------------------------------------------

    def _name(self, name: str) -> bytes:
        blob = rec.encode_name(name)
        if len(self._names) >= _NAME_CACHE_MAX:
            self._names.clear()  # routing keys can be unbounded; queue names come right back
        self._names[name] = blob
        return blob

    def _append_locked(self, record: bytes) -> Seg:
        """Reserve room at the head for record and add it to the pending batch."""
        head = self._head
        if head.alloc + len(record) > self.segment_bytes and head.alloc > _HEADER_SIZE:
            head = self._roll_locked()
        self._chunks.append(record)
        head.alloc += len(record)
        return head

    def _roll_locked(self) -> Seg:
        number = self._next_seg
        self._next_seg += 1
        seg = Seg(number, os.path.join(self.directory, rec.segment_name(number)))
        seg.new = True
        seg.alloc = _HEADER_SIZE
        self._segs[number] = seg
        self._head = seg
        rng = self._add_range_locked(self._pending, seg)
        rng.start = 0
        rng.chunks.append(rec.encode_header(number, self._max_id + 1))
        return seg

    def _add_range_locked(self, batch: Batch, seg: Seg) -> Range:
        chunks: list[bytes] = []
        rng = Range(seg, seg.alloc, chunks)
        batch.ranges.append(rng)
        seg.inflight += 1
        self._chunks = chunks
        return rng

    def _flush_locked(self, on_done: OnDone | None) -> int:
        """Queue the pending batch; returns its seq. A new one takes its place."""
        batch = self._pending
        batch.on_done = on_done
        self._seq += 1
        if self._failed_epoch >= self._epoch:
            # A write failed: everything reserved in this epoch fails with it. Start over in a
            # fresh segment so the next batches do not depend on the failed bytes.
            self._epoch += 1
            self._pending = Batch(self._seq, self._epoch)
            self._roll_locked()
        else:
            self._pending = Batch(self._seq, self._epoch)
            self._add_range_locked(self._pending, self._head)
        self._queue.put(batch)
        return batch.seq

    def _fd_locked(self, number: int) -> int:
        """The segment's file descriptor, opened on first use; -1 if the segment is gone.

        The caller holds _fd_lock; the writer closes a deleted segment's fd under it too.
        """
        fd = self._fds.get(number)
        if fd is None:
            seg = self._segs.get(number)
            if seg is None:
                return -1
            flags = os.O_RDWR | (os.O_CREAT if seg.new else 0)
            fd = os.open(seg.path, flags, 0o644)
            self._fds[number] = fd
        return fd

    def _fd(self, number: int) -> int:
        with self._fd_lock:
            return self._fd_locked(number)


def _next_record(buf: bytes, pos: int, msg_id: int, body_at: int, body_len: int) -> _Found | None:
    """The MESSAGE record of msg_id ending at body_at + body_len, walking frames from pos.

    pos is the end of the record before it in the same run; SETTLE and MARK records between
    them are stepped over. None if the walk does not land on it (then _find_record searches).
    """
    end = body_at + body_len
    while pos + _FRAME_SIZE <= body_at:
        n, crc, typ = _FRAME_UNPACK(buf, pos)
        nxt = pos + 8 + n
        if nxt == end:
            if typ != 1 or _MSG_ID_UNPACK(buf, pos + _FRAME_SIZE)[0] != msg_id:
                return None
            return _record_at(buf, pos, crc, body_at, end)
        if n < 11 or nxt > body_at:
            return None
        pos = nxt
    return None


def _record_at(buf: bytes, pos: int, crc: int, body_at: int, end: int) -> _Found | None:
    """The MESSAGE record framed at pos and ending at end, if its CRC, layout and body position
    check out (both searches, _next_record and _find_record, end here)."""
    if _crc32(memoryview(buf)[pos + 8 : end]) != crc:
        return None
    try:
        m = _decode_cached(buf, pos + _FRAME_SIZE, end)
    except (ValueError, UnicodeDecodeError, struct.error):
        return None
    if m.body_offset != body_at:
        return None
    return m, buf[body_at:end]


_names_cache: dict[bytes, list[str]] = {}
_MSG_UNPACK = rec.MSG_FIXED.unpack_from
_MSG_ID_UNPACK = struct.Struct("<Q").unpack_from


def _decode_cached(buf: bytes, start: int, end: int) -> rec.Message:
    """rec.decode_message, with the names (queues, exchange, routing key) decoded once per
    distinct run of name bytes: a backlog repeats the same few."""
    msg_id, nq, nd, lprops, lbody = _MSG_UNPACK(buf, start)
    body_at = end - lbody
    props_at = body_at - lprops
    blob = buf[start + 20 : props_at]
    cache = _names_cache
    names = cache.get(blob)
    if names is None:
        if props_at < start + 20:
            raise ValueError("message lengths do not match the record")
        names, p = rec.decode_names(blob, 0, nq + nd + 2, len(blob))
        if p != len(blob):
            raise ValueError("message lengths do not match the record")
        if len(cache) > _NAME_CACHE_MAX:
            cache.clear()
        cache[blob] = names
    return rec.Message(
        msg_id,
        names[:nq],
        names[nq : nq + nd],
        names[-2],
        names[-1],
        buf[props_at:body_at],
        body_at,
        lbody,
    )


def _find_record(buf: bytes, lo: int, msg_id: int, body_at: int, body_len: int) -> _Found | None:
    """The MESSAGE record of msg_id whose body is buf[body_at:body_at+body_len], if in buf[lo:].

    The index knows where a body is, not where its record starts; the record is found by its id
    (8 bytes just after the frame) and confirmed by its length, layout and CRC.
    """
    end = body_at + body_len
    if end > len(buf):
        return None
    key = _ID_PACK(msg_id)
    hi = body_at
    while True:
        at = buf.rfind(key, lo + _FRAME_SIZE, hi)
        if at < 0:
            return None
        pos = at - _FRAME_SIZE
        hi = at + 7
        n, crc, typ = _FRAME_UNPACK(buf, pos)
        if typ != 1 or pos + 8 + n != end:
            continue
        found = _record_at(buf, pos, crc, body_at, end)
        if found is not None:
            return found


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
