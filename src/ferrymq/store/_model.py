"""The journal's public value types and the bookkeeping objects its threads share.

Everything here is plain data. The invariant that makes the journal work lives in journal.py:
every change to the index happens under one lock, in the same step that reserves the record's
place in the log, so the order of records on disk is the order in which the index changed, and
replaying the segments in order rebuilds exactly the index the journal had.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

OnDone = Callable[[BaseException | None], None]
NO_MARKS: frozenset[str] = frozenset()


class StoreError(Exception):
    """The store could not do what was asked: disk full, I/O error, damaged or locked directory.

    `errno` carries the operating system's error number when there is one (ENOSPC, EIO).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @classmethod
    def from_os(cls, exc: OSError, doing: str) -> StoreError:
        code = exc.errno
        name = _errno.errorcode.get(code, "?") if code is not None else "?"
        err = cls(f"{doing}: [{name}] {exc.strerror or exc}", code)
        err.__cause__ = exc
        return err


@dataclass(frozen=True, slots=True)
class Location:
    """Where a message's body lives: segment number, byte offset of the body, body length."""

    segment: int
    offset: int
    length: int

    def __init__(self, segment: int, offset: int, length: int) -> None:
        # Same result as the generated frozen __init__, at half the cost (one per message).
        _set_segment(self, segment)
        _set_offset(self, offset)
        _set_length(self, length)


_set_segment = Location.__dict__["segment"].__set__  # slot descriptors: no frozen check
_set_offset = Location.__dict__["offset"].__set__
_set_length = Location.__dict__["length"].__set__


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message read back from the journal (a queue paging it in)."""

    exchange: str
    routing_key: str
    properties: bytes
    body: bytes


@dataclass(slots=True)
class RecoveredMessage:
    """One live message found by recovery."""

    msg_id: int
    queues: list[str]  # the queues it is still live (unsettled) in, in publish order
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes | None  # None when the journal was opened with load_bodies=False
    location: Location
    # Queues where a first-delivery mark was recorded. Read-only: messages without marks share
    # one empty frozenset (an empty set per message would cost 216 bytes each).
    delivered: AbstractSet[str]


class Recovery:
    """What `Journal.open` found.

    `stream()` yields the live messages in msg_id order, reading each record from its segment
    as it goes, so a backlog larger than memory is fed to its queues one message at a time;
    call it once, and settle or keep each message as it comes. `messages` is the same as a list
    (for small journals and tests).
    """

    def __init__(
        self,
        stream: Callable[[], Iterator[RecoveredMessage]],
        *,
        count: int,
        next_msg_id: int,
        truncated_bytes: int,
        segments: int,
        elapsed: float,
        corrupt_bytes: int = 0,
    ) -> None:
        self._stream = stream
        self._messages: list[RecoveredMessage] | None = None
        self.count = count  # live messages found
        self.next_msg_id = next_msg_id  # one more than the largest id ever seen
        self.truncated_bytes = truncated_bytes  # bytes cut from torn tails (0 if none)
        self.segments = segments
        self.elapsed = elapsed  # seconds of the scan (the stream reads as it is consumed)
        self.corrupt_bytes = corrupt_bytes  # bytes skipped as corruption inside a segment

    def stream(self) -> Iterator[RecoveredMessage]:
        if self._messages is not None:
            return iter(self._messages)
        return self._stream()

    @property
    def messages(self) -> list[RecoveredMessage]:
        if self._messages is None:
            self._messages = list(self._stream())
        return self._messages


# -- shared bookkeeping --------------------------------------------------------------------------


class Seg:
    """One segment file and the counts that decide when it can be compacted or deleted.

    refs: segment number -> how many SETTLE records here settle a message whose record lives
    there; while that segment exists, deleting this one would resurrect those messages.
    copy_refs: segment number -> message records here that supersede an older copy there; this
    segment must outlive that one, or the older copy would come back with its old queue set.
    """

    __slots__ = (
        "alloc",
        "compacting",
        "copy_refs",
        "dirty",
        "durable",
        "inflight",
        "live_body",
        "live_msgs",
        "marks",
        "new",
        "number",
        "path",
        "refs",
        "total_body",
        "total_msg_bytes",
        "total_msgs",
    )

    def __init__(self, number: int, path: str) -> None:
        self.number = number
        self.path = path
        self.alloc = 0  # bytes reserved by appends (caller side)
        self.durable = 0  # bytes the writer has written (and synced, per policy)
        self.inflight = 0  # batch ranges reserved here and not yet completed by the writer
        self.new = False  # file not created yet: its creation needs a directory fsync
        self.dirty = False  # written since its last fsync
        self.compacting = False
        self.total_msgs = 0
        self.total_msg_bytes = 0
        self.total_body = 0
        self.live_msgs = 0
        self.live_body = 0
        self.marks = 0  # delivered marks stored here that still matter
        self.refs: dict[int, int] = {}
        self.copy_refs: dict[int, int] = {}

    def est_live_bytes(self) -> int:
        """Live message bytes, estimated from the average record overhead in this segment."""
        if not self.live_msgs:
            return 0
        overhead = (self.total_msg_bytes - self.total_body) // max(self.total_msgs, 1)
        return self.live_body + self.live_msgs * overhead


class Entry:
    """Index entry for a message in several queues or with delivered marks.

    A message in one queue without marks (the common, backlog case) is indexed by its bare
    `Location`, which the queue holds anyway, so a deep queue costs the journal one dict slot
    per message.
    """

    __slots__ = ("loc", "marks", "queues")

    def __init__(self, loc: Location, queues: list[str], marks: dict[str, int] | None) -> None:
        self.loc = loc
        self.queues = queues
        self.marks = marks  # queue -> segment holding the delivered mark


IndexValue = Location | Entry


class Range:
    """Bytes a batch will write into one segment, starting at `start`."""

    __slots__ = ("chunks", "seg", "start")

    def __init__(self, seg: Seg, start: int, chunks: list[bytes]) -> None:
        self.seg = seg
        self.start = start
        self.chunks = chunks


class Move:
    """Compaction relocated a message (new is its new Location) or a delivered mark (new None).

    Kept on the batch that carries the rewrite, so a failed write can put the index back.
    """

    __slots__ = ("job", "marks", "msg_id", "new", "old", "queue")

    def __init__(
        self,
        job: Any,
        msg_id: int,
        old: Location | int,
        new: Location | int,
        marks: list[tuple[str, int]] | None = None,
        queue: str = "",
    ) -> None:
        self.job = job
        self.msg_id = msg_id
        self.old = old  # Location for a message move; the old segment number for a mark move
        self.new = new
        self.marks = marks  # (queue, old segment) of marks folded into the rewritten record
        self.queue = queue  # for a mark move


class Batch:
    """Everything appended between two flushes, plus what the writer needs to undo it."""

    __slots__ = ("epoch", "moves", "new_marks", "new_msgs", "on_done", "ranges", "seq")

    def __init__(self, seq: int, epoch: int) -> None:
        self.seq = seq
        self.epoch = epoch
        self.ranges: list[Range] = []
        self.on_done: OnDone | None = None
        self.new_msgs: list[int] = []
        self.new_marks: list[tuple[int, str, int]] = []
        self.moves: list[Move] = []

    def empty(self) -> bool:
        return not any(r.chunks for r in self.ranges)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
