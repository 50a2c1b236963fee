"""Reclaiming space: deleting segments nothing needs, compacting those with a low live share.

Runs in the writer thread, between group commits, a bounded step at a time.

A segment may be deleted when replaying the log without it gives the same live set:
- no live message has its current record there (live_msgs == 0),
- no delivered mark that still matters is stored there (marks == 0),
- no SETTLE there applies to a message record in a segment that still exists (refs): deleting
  it would bring that message back (the classic trap),
- no message record there supersedes an older copy in a segment that still exists (copy_refs):
  the older copy would come back with its old queue set.
Every deletion is made durable (directory fsync) before the refs pointing at it are dropped, so
a crash cannot leave a segment that depended on it deleted while it survives.

Compacting a segment copies what it still holds that matters to the head of the log, through the
same reservation step as the caller's appends (journal.py): each live message once, with only its
live queues and its delivered marks; each SETTLE whose message record's segment still exists;
each delivered mark still in use. The copies are written and fsynced, then the segment is deleted.
A crash in between leaves both copies: recovery keeps the later message record (same msg_id,
fewer queues) and settles stay idempotent, so nothing is lost or duplicated. A failed write of a
copy puts the index back and abandons the compaction; the old segment stays.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ferrymq.store import _records as rec
from ferrymq.store._model import Batch, Entry, Location, Move, Seg, StoreError, fsync_dir

if TYPE_CHECKING:
    from ferrymq.store._writer import Writer
    from ferrymq.store.journal import Journal

log = logging.getLogger("ferrymq.store")

# Test seam: called with a step name at each point where a crash must be survivable
# ("copied", "flushed", "synced", "unlinked", "deleted"). The fault tests kill -9 in it.
crash_hook: Callable[[str], None] | None = None

_STEP_RECORDS = 500  # copies per lock hold: about 1.5 ms
_STEP_SECONDS = 0.003  # of parsing per step
_FLUSH_BYTES = 4 << 20  # hand copies to the writer in batches of about this size
_PAUSE_AFTER_FAILURE = 5.0  # s without compaction after a copy failed to write
_SMALL_RECORD = 48  # rough size of a SETTLE or MARK, for the cost of copying them

_SCAN, _WAIT = 0, 1


def _hook(step: str) -> None:
    if crash_hook is not None:
        crash_hook(step)


class _Job:
    __slots__ = (
        "data",
        "end",
        "failed",
        "first_seq",
        "moved",
        "mv",
        "out_bytes",
        "out_seq",
        "phase",
        "pos",
        "victim",
    )

    def __init__(self, victim: Seg, data: bytes) -> None:
        self.victim = victim
        self.data = data
        self.mv = memoryview(data)
        self.pos = rec.HEADER_SIZE
        self.end = len(data)
        self.phase = _SCAN
        self.first_seq: int | None = None  # first batch that received a copy
        self.out_seq = -1  # last batch that received a copy
        self.out_bytes = 0
        self.moved = 0
        self.failed = False


class Compactor:
    def __init__(self, journal: Journal, writer: Writer) -> None:
        self.j = journal
        self.w = writer
        self.job: _Job | None = None
        self.compactions = 0
        self.deleted = 0
        self.reclaimed = 0
        self.moved = 0
        self._sweep_at = 4096
        self._pause_until = 0.0

    def counters(self) -> dict[str, int | float]:
        return {
            "compactions": self.compactions,
            "segments_deleted": self.deleted,
            "bytes_reclaimed": self.reclaimed,
            "messages_moved": self.moved,
        }

    def idle(self) -> bool:
        return self.job is None

    def runnable(self) -> bool:
        job = self.job
        return job is not None and (job.phase == _SCAN or self.w.completed_seq >= job.out_seq)

    # -- choosing work -------------------------------------------------------------------------

    def scan(self) -> bool:
        """Delete what is dead and maybe start a compaction; True if there may be more to do."""
        j = self.j
        compact = self.job is None and time.monotonic() >= self._pause_until
        dead: list[Seg] = []
        best: Seg | None = None
        best_ratio = j.compact_below
        with j._lock:
            segs = j._segs
            head = j._head
            if head.durable < rec.HEADER_SIZE:
                # The head's header (which carries the next msg_id) is not on disk yet: deleting
                # the segments before it could let a crash forget how far ids went, and reuse one.
                return self.job is not None
            for seg in segs.values():
                if seg is head or seg.inflight or seg.compacting:
                    continue
                pinned = sum(n for t, n in seg.refs.items() if t in segs)
                copies = any(t in segs for t in seg.copy_refs)
                if not seg.live_msgs and not seg.marks and not pinned and not copies:
                    dead.append(seg)
                    continue
                if not compact or copies or seg.durable <= rec.HEADER_SIZE:
                    continue
                cost = seg.est_live_bytes() + (pinned + seg.marks) * _SMALL_RECORD
                ratio = cost / seg.durable
                if ratio < best_ratio:
                    best, best_ratio = seg, ratio
            if best is not None and not dead:
                best.compacting = True
            if len(j._aliases) > self._sweep_at:
                index = j._index
                for key in [k for k, (m, _) in j._aliases.items() if m not in index]:
                    del j._aliases[key]
                self._sweep_at = max(4096, 2 * len(j._aliases))
        if dead:
            for seg in dead:
                self._delete(seg)
            return True
        if best is None:
            return self.job is not None
        try:
            with j._fd_lock:
                fd = j._fd_locked(best.number)
            data = _read_all(fd, best.durable)
        except OSError as exc:
            log.error("journal: cannot read %s for compaction: %s", best.path, exc)
            best.compacting = False
            return False
        self.job = _Job(best, data)
        return True

    # -- compaction steps ----------------------------------------------------------------------

    def step(self) -> None:
        job = self.job
        assert job is not None
        if job.phase == _SCAN:
            self._copy_step(job)
        else:
            self._finish(job)

    def _copy_step(self, job: _Job) -> None:
        if job.failed:
            job.phase = _WAIT  # stop copying; what was copied and written stays valid
            job.out_seq = -1
            return
        j = self.j
        data, mv, end = job.data, job.mv, job.end
        victim = job.victim
        index = j._index
        segs = j._segs
        pos = job.pos
        deadline = time.monotonic() + _STEP_SECONDS
        unpack_id = rec.MARK_FIXED.unpack_from
        unpack_settle = rec.SETTLE_FIXED.unpack_from
        items: list[tuple[int, rec.Message | None, tuple[int, int, str] | None]] = []
        scanned = 0
        # Parse and pre-filter without the lock: a message or mark that is gone now stays gone,
        # and only this thread deletes segments. What is left is checked again under the lock.
        while pos < end and len(items) < _STEP_RECORDS:
            scanned += 1
            if scanned % 64 == 0 and time.monotonic() > deadline:
                break
            stop = rec.valid_at(data, mv, pos, end, check_layout=False)
            if stop < 0:
                pos = rec.resync(data, mv, pos, end)
                if pos < 0:
                    pos = end
                continue
            typ = data[pos + 8]
            try:
                if typ == rec.T_SETTLE:
                    msg_id, ref = unpack_settle(data, pos + 9)
                    if ref != victim.number and ref in segs:
                        items.append((typ, None, rec.decode_ref(data, pos + 9, stop, typ)))
                else:
                    (msg_id,) = unpack_id(data, pos + 9)
                    value = index.get(msg_id)
                    if value is None or (typ == rec.T_MARK and not isinstance(value, Entry)):
                        pass
                    elif typ == rec.T_MESSAGE:
                        items.append((typ, rec.decode_message(data, pos + 9, stop), None))
                    else:
                        items.append((typ, None, rec.decode_ref(data, pos + 9, stop, typ)))
            except (ValueError, UnicodeDecodeError, struct.error):
                pass  # recovery already reported it; nothing in it can be live
            pos = stop
        job.pos = pos

        with j._lock:
            for typ, msg, ref in items:
                if msg is not None:
                    self._copy_message_locked(job, msg)
                elif typ == rec.T_SETTLE:
                    assert ref is not None
                    self._copy_settle_locked(job, *ref)
                else:
                    assert ref is not None
                    self._copy_mark_locked(job, ref[0], ref[2])
            if (
                not victim.live_msgs
                and not victim.marks
                and not any(t in segs for t in victim.refs)
            ):
                job.pos = end  # nothing left in it that matters: stop reading
            if job.pos >= end:
                pending = j._pending
                if job.first_seq is None:
                    job.out_seq = -1
                elif not pending.empty():
                    job.out_seq = j._flush_locked(None)
                else:
                    job.out_seq = pending.seq - 1
                job.phase = _WAIT
            elif job.out_bytes >= _FLUSH_BYTES:
                j._flush_locked(None)
                job.out_bytes = 0
        _hook("copied" if job.phase == _SCAN else "flushed")

    def _note_output_locked(self, job: _Job, size: int) -> Batch:
        pending = self.j._pending
        if job.first_seq is None:
            job.first_seq = pending.seq
        job.out_bytes += size
        return pending

    def _copy_message_locked(self, job: _Job, msg: rec.Message) -> None:
        j = self.j
        victim = job.victim
        value = j._index.get(msg.msg_id)
        if value is None:
            return
        entry = value if isinstance(value, Entry) else None
        cur = entry.loc if entry is not None else value
        assert isinstance(cur, Location)
        if cur.segment != victim.number or cur.offset != msg.body_offset:
            return  # an older copy; the current one is elsewhere
        if entry is not None:
            queues = entry.queues
            marks = entry.marks
        else:
            queues = msg.queues  # bare Location: its record names exactly its one queue
            marks = None
        delivered = [q for q in queues if q in marks] if marks else []
        body = job.data[msg.body_offset : msg.body_offset + msg.body_len]
        record, body_at = rec.message_record(
            msg.msg_id, queues, delivered, msg.exchange, msg.routing_key, msg.properties, body
        )
        batch = self._note_output_locked(job, len(record))
        head = j._append_locked(record)
        new = Location(head.number, head.alloc - len(record) + body_at, len(body))
        if entry is not None:
            entry.loc = new
        else:
            j._index[msg.msg_id] = new
        victim.live_msgs -= 1
        victim.live_body -= len(body)
        head.live_msgs += 1
        head.live_body += len(body)
        head.total_msgs += 1
        head.total_msg_bytes += len(record)
        head.total_body += len(body)
        moved_marks: list[tuple[str, int]] = []
        if marks:
            for q, where in list(marks.items()):
                if where != head.number:
                    j._segs[where].marks -= 1
                    head.marks += 1
                    marks[q] = head.number
                    moved_marks.append((q, where))
        j._aliases[(victim.number, cur.offset)] = (msg.msg_id, new)
        head.copy_refs[victim.number] = head.copy_refs.get(victim.number, 0) + 1
        batch.moves.append(Move(job, msg.msg_id, cur, new, moved_marks))
        job.moved += 1
        self.moved += 1

    def _copy_settle_locked(self, job: _Job, msg_id: int, ref: int, queue: str) -> None:
        j = self.j
        if ref == job.victim.number or ref == rec.NO_SEGMENT or ref not in j._segs:
            return  # the message record it settles is gone (or goes with this segment)
        record = rec.settle_record(msg_id, ref, j._names.get(queue) or j._name(queue))
        self._note_output_locked(job, len(record))
        head = j._append_locked(record)
        if ref != head.number:
            head.refs[ref] = head.refs.get(ref, 0) + 1

    def _copy_mark_locked(self, job: _Job, msg_id: int, queue: str) -> None:
        j = self.j
        victim = job.victim
        value = j._index.get(msg_id)
        if not isinstance(value, Entry) or not value.marks:
            return
        if value.marks.get(queue) != victim.number:
            return
        record = rec.mark_record(msg_id, j._names.get(queue) or j._name(queue))
        batch = self._note_output_locked(job, len(record))
        head = j._append_locked(record)
        value.marks[queue] = head.number
        victim.marks -= 1
        head.marks += 1
        batch.moves.append(Move(job, msg_id, victim.number, head.number, queue=queue))

    def _finish(self, job: _Job) -> None:
        self.job = None
        victim = job.victim
        if job.failed:
            log.warning("journal: compaction of %s abandoned after a failed write", victim.path)
            victim.compacting = False
            self._pause_until = time.monotonic() + _PAUSE_AFTER_FAILURE
            return
        if job.first_seq is not None:
            try:
                self.w.sync_dirty()  # the copies must be on disk before the original goes
            except StoreError:
                victim.compacting = False
                self._pause_until = time.monotonic() + _PAUSE_AFTER_FAILURE
                return
        _hook("synced")
        with self.j._lock:
            leftover = victim.live_msgs or victim.marks
        if leftover:
            log.error("journal: %s still holds live records after compaction; kept", victim.path)
            victim.compacting = False
            return
        if self._delete(victim):
            self.compactions += 1

    # -- deletion ------------------------------------------------------------------------------

    def _delete(self, seg: Seg) -> bool:
        j = self.j
        number = seg.number
        with j._lock:
            if j._segs.get(number) is not seg:
                return False
            del j._segs[number]
        with j._fd_lock:
            fd = j._fds.pop(number, None)
            if fd is not None:
                os.close(fd)
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("journal: cannot delete %s: %s", seg.path, exc)
            with j._lock:
                j._segs[number] = seg
                seg.compacting = False
            return False
        _hook("unlinked")
        try:
            fsync_dir(j.directory)
        except OSError as exc:
            # The unlink may not be durable: keep the segments that depend on it pinned.
            log.error("journal: directory fsync after deleting %s failed: %s", seg.path, exc)
            return True
        with j._lock:
            for other in j._segs.values():
                other.refs.pop(number, None)
                other.copy_refs.pop(number, None)
        self.w.dirty.discard(seg)
        self.deleted += 1
        self.reclaimed += seg.durable
        _hook("deleted")
        return True

    # -- failure -------------------------------------------------------------------------------

    def batch_failed(self, batch: Batch) -> None:
        job = self.job
        if job is not None and job.first_seq is not None and batch.seq >= job.first_seq:
            job.failed = True

    def undo_locked(self, move: Move) -> None:
        """Put the index back as it was before a copy that never reached the disk."""
        j = self.j
        segs = j._segs
        job = move.job
        if isinstance(job, _Job):
            job.failed = True
        value = j._index.get(move.msg_id)
        if value is None:
            return
        if isinstance(move.new, Location):
            old = move.old
            assert isinstance(old, Location)
            entry = value if isinstance(value, Entry) else None
            cur = entry.loc if entry is not None else value
            if cur != move.new:  # (the index hands out fresh Location objects)
                return
            if entry is not None:
                entry.loc = old
            else:
                j._index[move.msg_id] = old
            new_seg = segs.get(move.new.segment)
            if new_seg is not None:
                new_seg.live_msgs -= 1
                new_seg.live_body -= move.new.length
            old_seg = segs.get(old.segment)
            if old_seg is not None:
                old_seg.live_msgs += 1
                old_seg.live_body += old.length
            j._aliases.pop((old.segment, old.offset), None)
            if entry is not None and entry.marks and move.marks:
                for q, where in move.marks:
                    self._restore_mark_locked(entry, q, move.new.segment, where)
        elif isinstance(value, Entry) and value.marks:
            assert isinstance(move.new, int) and isinstance(move.old, int)
            self._restore_mark_locked(value, move.queue, move.new, move.old)

    def _restore_mark_locked(self, entry: Entry, queue: str, now_in: int, was_in: int) -> None:
        segs = self.j._segs
        assert entry.marks is not None
        if entry.marks.get(queue) != now_in:
            return
        if now_in in segs:
            segs[now_in].marks -= 1
        if was_in in segs:
            entry.marks[queue] = was_in
            segs[was_in].marks += 1
        else:
            del entry.marks[queue]  # its old home is gone: only the redelivered flag is lost


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        chunk = os.pread(fd, size - got, got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
