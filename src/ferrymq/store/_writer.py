"""The journal's writer thread: group commit, fsync policy, failure handling, housekeeping.

Each turn of the loop takes every batch queued so far (the caller kept appending to the next
one while the previous fsync ran: group commit), writes one pwrite per segment touched, calls
fdatasync once per segment (policy "always"), then calls each batch's on_done in order. Between
turns, and at a bounded share of the writer's time while under load, it runs the compactor.

A write or fsync error fails the whole group and every batch reserved in the same epoch (their
offsets assumed the failed bytes would exist); the bytes the group wrote are truncated away and
the index forgets the messages those batches carried. See journal.py for the epoch hand-off.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from ferrymq.store._compact import Compactor
from ferrymq.store._model import Batch, Entry, Location, Seg, StoreError, fsync_dir

if TYPE_CHECKING:
    from ferrymq.store.journal import Journal

log = logging.getLogger("ferrymq.store")

STOP = object()
_MAX_GROUP = 4096  # batches per group commit
_SCAN_EVERY = 0.02  # s between looks for segments to delete or compact
_STEP_EVERY_BUSY = 0.01  # s between compaction steps while batches keep arriving


class Writer(threading.Thread):
    def __init__(self, journal: Journal) -> None:
        super().__init__(name="ferrymq-journal-writer", daemon=True)
        self.j = journal
        self.compactor = Compactor(journal, self)
        self.completed_seq = -1  # seq of the last batch completed (written or failed)
        self.dirty: set[Seg] = set()  # written since their last fsync
        self.dir_dirty = False
        self.last_sync = time.monotonic()
        self.last_scan = 0.0
        self.last_step = 0.0
        self.maint_due = True
        self.idle_waiters: list[threading.Event] = []
        self.batches = 0
        self.groups = 0
        self.fsyncs = 0
        self.bytes_written = 0
        self.write_errors = 0

    def counters(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {
            "batches": self.batches,
            "group_commits": self.groups,
            "fsyncs": self.fsyncs,
            "bytes_written": self.bytes_written,
            "write_errors": self.write_errors,
        }
        out.update(self.compactor.counters())
        return out

    # -- loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:  # pragma: no cover - a bug; keep the process alive and say so
            log.exception("journal writer thread died")
            raise
        finally:
            self._shutdown()

    def _loop(self) -> None:
        q = self.j._queue
        while True:
            timeout = self._timeout()
            try:
                item = q.get(timeout=timeout) if timeout is None or timeout > 0 else q.get(False)
            except queue.Empty:
                self._housekeeping(q)
                continue
            group: list[Batch] = []
            stop = False
            while True:
                if item is STOP:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    self.idle_waiters.append(item)
                    self.maint_due = True
                else:
                    group.append(item)
                    if len(group) >= _MAX_GROUP:
                        break
                try:
                    item = q.get(False)
                except queue.Empty:
                    break
            if group:
                self._commit(group)
            if stop:
                return
            self._housekeeping(q)

    def _timeout(self) -> float | None:
        if self.compactor.runnable():
            return 0.0
        now = time.monotonic()
        timeout: float | None = None
        if self.maint_due:
            timeout = 0.0 if self.idle_waiters else max(0.0, self.last_scan + _SCAN_EVERY - now)
        if self.dirty and self.j.fsync_policy == "interval":
            due = max(0.0, self.last_sync + self.j.fsync_interval - now)
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _housekeeping(self, q: queue.SimpleQueue[Any]) -> None:
        now = time.monotonic()
        if (
            self.dirty
            and self.j.fsync_policy == "interval"
            and now - self.last_sync >= self.j.fsync_interval
        ):
            try:
                self.sync_dirty()
            except StoreError:
                pass  # logged; the next flush fails and moves to a fresh segment
        c = self.compactor
        busy = not q.empty()
        if c.runnable():
            if not busy or now - self.last_step >= _STEP_EVERY_BUSY:
                self.last_step = now
                c.step()
        elif self.maint_due and (self.idle_waiters or now - self.last_scan >= _SCAN_EVERY):
            self.last_scan = now
            self.maint_due = c.scan()
        if self.idle_waiters and not busy and not self.maint_due and c.idle():
            for event in self.idle_waiters:
                event.set()
            self.idle_waiters.clear()

    def _shutdown(self) -> None:
        try:
            self.sync_dirty(everything=True)
        except StoreError as exc:
            log.error("journal: final fsync failed: %s", exc)
        for event in self.idle_waiters:
            event.set()
        self.idle_waiters.clear()

    # -- group commit --------------------------------------------------------------------------

    def _commit(self, group: list[Batch]) -> None:
        j = self.j
        i = 0
        while i < len(group) and group[i].epoch <= j._failed_epoch:
            i += 1
        if i:
            assert j._failed_exc is not None
            self._fail(group[:i], j._failed_exc)
        ok = group[i:]
        if not ok:
            return

        writes: list[tuple[Seg, int, list[bytes]]] = []
        for batch in ok:
            for rng in batch.ranges:
                if not rng.chunks:
                    continue
                if writes and writes[-1][0] is rng.seg:
                    writes[-1][2].extend(rng.chunks)
                else:
                    writes.append((rng.seg, rng.start, list(rng.chunks)))

        ends: list[tuple[Seg, int]] = []
        created = False
        try:
            for seg, start, chunks in writes:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                created |= seg.new
                fd = j._fd(seg.number)
                ends.append((seg, start + len(data)))
                _pwrite_all(fd, data, start)
                self.bytes_written += len(data)
            policy = j.fsync_policy
            if policy == "always":
                for seg, _ in ends:
                    os.fdatasync(j._fd(seg.number))
                    self.fsyncs += 1
                if created:
                    fsync_dir(j.directory)
            else:
                self.dirty.update(seg for seg, _ in ends)
                self.dir_dirty |= created
        except OSError as exc:
            self._write_failed(ok, ends, StoreError.from_os(exc, "journal write"))
            return

        with j._lock:
            for seg, end in ends:
                seg.durable = end
                seg.new = False
            for batch in ok:
                for rng in batch.ranges:
                    rng.seg.inflight -= 1
        self.completed_seq = ok[-1].seq
        self.batches += len(ok)
        self.groups += 1
        self.maint_due = True
        for batch in ok:
            if batch.on_done is not None:
                try:
                    batch.on_done(None)
                except Exception:
                    log.exception("journal: error in an on_done callback")

    def _write_failed(
        self, batches: list[Batch], attempted: list[tuple[Seg, int]], exc: StoreError
    ) -> None:
        j = self.j
        self.write_errors += 1
        log.error("journal: write failed, %d batch(es) not stored: %s", len(batches), exc)
        for seg, _ in attempted:
            try:
                os.ftruncate(j._fd(seg.number), seg.durable)
            except OSError as err:
                log.error("journal: cannot truncate %s after a failed write: %s", seg.path, err)
        j._failed_exc = exc
        j._failed_epoch = max(b.epoch for b in batches)
        self._fail(batches, exc)

    def _fail(self, batches: list[Batch], exc: StoreError) -> None:
        j = self.j
        with j._lock:
            for batch in batches:
                for rng in batch.ranges:
                    rng.seg.inflight -= 1
                    if rng.seg is not j._head:
                        rng.seg.alloc = rng.seg.durable
                self._undo(batch)
        self.completed_seq = batches[-1].seq
        for batch in batches:
            self.compactor.batch_failed(batch)
            if batch.on_done is not None:
                try:
                    batch.on_done(exc)
                except Exception:
                    log.exception("journal: error in an on_done callback")

    def _undo(self, batch: Batch) -> None:
        """Take the records of a failed batch back out of the index (caller holds _lock)."""
        j = self.j
        index = j._index
        segs = j._segs
        for msg_id in batch.new_msgs:
            value = index.pop(msg_id, None)
            if value is None:
                continue
            loc = value if isinstance(value, Location) else value.loc
            seg = segs.get(loc.segment)
            if seg is not None:
                seg.live_msgs -= 1
                seg.live_body -= loc.length
                seg.total_msgs -= 1
                seg.total_body -= loc.length
            if isinstance(value, Entry) and value.marks:
                for where in value.marks.values():
                    if where in segs:
                        segs[where].marks -= 1
        for msg_id, queue_name, where in batch.new_marks:
            value = index.get(msg_id)
            if isinstance(value, Entry) and value.marks and value.marks.get(queue_name) == where:
                del value.marks[queue_name]
                segs[where].marks -= 1
        for move in reversed(batch.moves):
            self.compactor.undo_locked(move)

    # -- fsync for policies "interval" and "off", and before deleting a compacted segment ------

    def sync_dirty(self, everything: bool = False) -> None:
        """fdatasync every segment written since its last fsync, and the directory."""
        j = self.j
        segs = list(self.dirty)
        self.dirty.clear()
        try:
            for seg in segs:
                if seg.number in j._segs:
                    os.fdatasync(j._fd(seg.number))
                    self.fsyncs += 1
            if self.dir_dirty or everything:
                fsync_dir(j.directory)
                self.dir_dirty = False
        except OSError as exc:
            err = StoreError.from_os(exc, "journal fsync")
            self.write_errors += 1
            log.error("journal: fsync failed; later batches fail until a new segment: %s", err)
            # What the OS held may be lost: fail what comes next and start a fresh segment.
            j._failed_exc = err
            j._failed_epoch = j._epoch
            raise err from exc
        finally:
            self.last_sync = time.monotonic()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]
