"""Group commit: core's MessageStore over the journal, driven by the event loop.

Everything core writes during one loop iteration is appended to the journal's current batch;
one `call_soon` hands the batch to the journal's writer thread (one write, one fsync), and the
callbacks registered with `after_commit` for that batch run back on the loop when the fsync has
returned. While the writer is busy, the next batch fills up, so the number of fsyncs per second
stays bounded and every fsync carries as many messages as arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence

from ferrymq.core.alarms import Alarms
from ferrymq.store.journal import Journal
from ferrymq.store.paging import Pager

log = logging.getLogger("ferrymq.store")

Callback = Callable[[BaseException | None], None]


class JournalStore:
    """Implements core.persistence.MessageStore."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop, alarms: Alarms) -> None:
        self.journal = journal
        self._loop = loop
        self._alarms = alarms
        self._dirty = False  # appended since the last flush
        self._callbacks: list[Callback] = []  # waiting for the batch being filled
        self._inflight: list[list[Callback]] = []  # batches handed to the writer, oldest first
        self._scheduled = False
        self.failed_writes = 0
        self.write_failed = False  # set on ENOSPC/EIO; the resource monitor clears it
        self.free_at_failure = 0  # bytes free on the journal's filesystem when a write failed
        # queues over their memory limit page messages out through this (queues/classic.py)
        self.pager = Pager(journal, self._touch, self.after_commit)

    # -- MessageStore ----------------------------------------------------------------------------

    def write_message(
        self,
        msg_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> None:
        self.journal.append_message(msg_id, queues, exchange, routing_key, properties, body)
        self._touch()

    def settle(self, msg_id: int, queue: str) -> None:
        self.journal.append_settle(msg_id, queue)
        self._touch()

    def delivered(self, msg_id: int, queue: str) -> None:
        self.journal.append_delivered(msg_id, queue)
        self._touch()

    def after_commit(self, callback: Callback) -> None:
        if self._dirty:
            self._callbacks.append(callback)
        elif self._inflight:
            self._inflight[-1].append(callback)
        else:
            callback(None)

    @property
    def pending(self) -> bool:
        return self._dirty or bool(self._inflight)

    # -- group commit ------------------------------------------------------------------------------

    def _touch(self) -> None:
        self._dirty = True
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._dirty:
            return
        self._dirty = False
        batch, self._callbacks = self._callbacks, []
        self._inflight.append(batch)
        loop = self._loop

        def done(exc: BaseException | None) -> None:  # runs in the writer thread
            loop.call_soon_threadsafe(self._committed, exc)

        self.journal.flush(done)

    def _committed(self, exc: BaseException | None) -> None:
        batch = self._inflight.pop(0)
        if exc is not None:
            self.failed_writes += 1
            log.error("journal write failed, publishes in this batch are nacked: %s", exc)
            if not self.write_failed:
                self.write_failed = True
                try:
                    self.free_at_failure = shutil.disk_usage(self.journal.directory).free
                except OSError:
                    self.free_at_failure = 0
                # The journal moves to a fresh segment on the first flush after a failure, and
                # that flush fails with it; make it now, so no later publish is nacked for it.
                self._dirty = True
                self._flush()
            self._alarms.set("disk")
        for callback in batch:
            try:
                callback(exc)
            except Exception:
                log.exception("error in a commit callback")

    def close(self) -> None:
        self.journal.close()
