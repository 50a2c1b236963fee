"""Paging: what a queue keeps of the messages it moved out of memory, and the journal calls it
makes to move them out and back.

A paged-out message costs its queue 29 bytes in compact arrays (`PagedRun`): the journal id to
read it back by, its sequence number in the queue, its expiry, its body size and a flags byte.
Nothing else of it stays in memory; exchange, routing key, properties and body are read back
from the message's journal record (`Journal.read_messages`) when it nears the head of its queue.

A persistent message on a durable queue is in the journal already (written at publish); its
queue pages it out by keeping only its id. Any other message (transient, or persistent on a
transient queue) is written by `Pager.page_out` under a fresh id and the node-wide key
`PAGED_KEY`. Recovery never restores that key as a queue (it is settled), so a paged transient
message is still gone after a restart; and `Pager.release` settles the record as soon as the
message is back in memory, so the journal reclaims the space as usual.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from ferrymq.store._model import StoredMessage
from ferrymq.store.journal import Journal

PAGED_KEY = "\x00paged"  # the journal "queue" of paged transient messages; never recovered

# flags byte
REDELIVERED = 1
OWN_RECORD = 2  # written by page_out under PAGED_KEY: release it when paged back in
PERSISTENT = 4

CHUNK = 4096
NO_EXPIRY = float("inf")


class _Chunk:
    """Up to CHUNK paged entries in parallel arrays; `pos` is the first one still queued."""

    __slots__ = ("expires", "flags", "ids", "pos", "seqs", "sizes")

    def __init__(self) -> None:
        self.ids = array("q")
        self.seqs = array("q")
        self.expires = array("d")
        self.sizes = array("I")
        self.flags = bytearray()
        self.pos = 0


class PagedRun:
    """A FIFO of paged-out entries, all later in their queue than anything held in memory."""

    __slots__ = ("_chunks", "bytes", "count")

    def __init__(self) -> None:
        self._chunks: deque[_Chunk] = deque()
        self.count = 0
        self.bytes = 0  # body bytes of the entries (on disk, not in memory)

    def __len__(self) -> int:
        return self.count

    def append(
        self, msg_id: int, seq: int, expires_at: float | None, size: int, flags: int
    ) -> None:
        chunks = self._chunks
        if not chunks or len(chunks[-1].ids) >= CHUNK:
            chunks.append(_Chunk())
        c = chunks[-1]
        c.ids.append(msg_id)
        c.seqs.append(seq)
        c.expires.append(NO_EXPIRY if expires_at is None else expires_at)
        c.sizes.append(size)
        c.flags.append(flags)
        self.count += 1
        self.bytes += size

    def head_expiry(self) -> float | None:
        if not self.count:
            return None
        c = self._chunks[0]
        t = c.expires[c.pos]
        return None if t == NO_EXPIRY else t

    def peek(self, limit: int, max_bytes: int) -> list[tuple[int, int, float | None, int, int]]:
        """Up to `limit` entries from the head (at least one), stopping past max_bytes of bodies:
        (msg_id, seq, expires_at, size, flags)."""
        out: list[tuple[int, int, float | None, int, int]] = []
        total = 0
        for c in self._chunks:
            for i in range(c.pos, len(c.ids)):
                t = c.expires[i]
                size = c.sizes[i]
                out.append((c.ids[i], c.seqs[i], None if t == NO_EXPIRY else t, size, c.flags[i]))
                total += size
                if len(out) >= limit or total >= max_bytes:
                    return out
        return out

    def drop(self, n: int) -> None:
        """Remove the first n entries (after peek)."""
        chunks = self._chunks
        while n:
            c = chunks[0]
            take = min(n, len(c.ids) - c.pos)
            self.bytes -= sum(c.sizes[c.pos : c.pos + take])
            c.pos += take
            self.count -= take
            n -= take
            if c.pos >= len(c.ids):
                chunks.popleft()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(msg_id, flags) of every entry, in order."""
        for c in self._chunks:
            for i in range(c.pos, len(c.ids)):
                yield c.ids[i], c.flags[i]

    def clear(self) -> None:
        self._chunks.clear()
        self.count = 0
        self.bytes = 0

    def memory(self) -> int:
        """Bytes the arrays hold (for stats and tests)."""
        return sum(
            c.ids.buffer_info()[1] * 28 + len(c.flags) for c in self._chunks
        )  # 8 + 8 + 8 + 4 per entry


class Pager:
    """The journal calls of paging, for the queues of one node.

    `touch` is the group-commit hook (JournalStore._touch): anything appended here goes out
    with the loop iteration's batch; `after_commit` runs a callback once it has.
    """

    def __init__(
        self,
        journal: Journal,
        touch: Callable[[], None],
        after_commit: Callable[[Callable[[BaseException | None], None]], None],
    ) -> None:
        self.journal = journal
        self._touch = touch
        self.after_commit = after_commit
        self.paged_out = 0  # counters, for status
        self.paged_in = 0
        self.written = 0  # transient messages written by page_out

    def page_out(
        self, msg_id: int, exchange: str, routing_key: str, properties: bytes, body: bytes
    ) -> None:
        """Write a message that is not in the journal yet under PAGED_KEY (msg_id must be new)."""
        self.journal.append_message(msg_id, (PAGED_KEY,), exchange, routing_key, properties, body)
        self.written += 1
        self._touch()

    def release(self, msg_id: int) -> None:
        """A page_out message is back in memory: its record is no longer needed."""
        self.journal.append_settle(msg_id, PAGED_KEY)
        self._touch()

    def read(self, msg_ids: Sequence[int]) -> list[StoredMessage | None]:
        """See Journal.read_messages: a prefix of msg_ids; None for a message that is gone."""
        got = self.journal.read_messages(msg_ids)
        self.paged_in += len(got)
        return got
