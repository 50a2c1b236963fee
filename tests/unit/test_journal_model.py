"""Random sequences of appends, settles, marks, flushes, idle periods and reopens against a model.

Small segments and a high compaction threshold make rolls, deletions and compactions happen in
almost every example, so the model also checks that they never lose, duplicate or resurrect.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ferrymq.store import Journal, Location
from tests.unit.test_journal import body_of, flush_sync

QUEUES = ["a", "b", "c"]


class JournalModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="journal-model-"))
        self.journal: Journal | None = None
        self.live: dict[int, tuple[list[str], set[str]]] = {}
        self.sizes: dict[int, int] = {}
        self.locations: dict[int, Location] = {}
        self.readable: set[int] = set()  # flushed, so read_body must work
        self.next_id = 1
        self.options: dict[str, object] = {}
        self.compactions = 0
        self.deletions = 0

    @initialize(
        segment_bytes=st.sampled_from([4096, 8192]),
        compact_below=st.sampled_from([0.3, 0.6]),
        fsync=st.sampled_from(["off", "always"]),
    )
    def start(self, segment_bytes: int, compact_below: float, fsync: str) -> None:
        self.options = {
            "segment_bytes": segment_bytes,
            "compact_below": compact_below,
            "fsync": fsync,
        }
        self.journal = Journal(self.dir, **self.options)  # type: ignore[arg-type]
        assert self.journal.open().messages == []

    @property
    def j(self) -> Journal:
        assert self.journal is not None
        return self.journal

    @rule(
        queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True),
        size=st.sampled_from([0, 10, 300, 1500, 5000]),
        count=st.integers(1, 40),
    )
    def publish(self, queues: list[str], size: int, count: int) -> None:
        for _ in range(count):
            msg_id = self.next_id
            self.next_id += 1
            self.locations[msg_id] = self.j.append_message(
                msg_id, queues, "ex", f"rk{msg_id}", b"p", body_of(msg_id, size)
            )
            self.live[msg_id] = (list(queues), set())
            self.sizes[msg_id] = size

    @precondition(lambda self: self.live)
    @rule(data=st.data(), fraction=st.floats(0.1, 1.0))
    def settle(self, data: st.DataObject, fraction: float) -> None:
        pairs = [(m, q) for m, (qs, _) in self.live.items() for q in qs]
        chosen = data.draw(
            st.lists(st.sampled_from(pairs), max_size=max(1, int(len(pairs) * fraction)))
        )
        for msg_id, queue in chosen:
            self.j.append_settle(msg_id, queue)
            if msg_id in self.live and queue in self.live[msg_id][0]:
                self.live[msg_id][0].remove(queue)
                self.live[msg_id][1].discard(queue)
                if not self.live[msg_id][0]:
                    del self.live[msg_id]

    @precondition(lambda self: self.live)
    @rule(keep_every=st.integers(0, 9), queue=st.sampled_from(QUEUES))
    def drain(self, keep_every: int, queue: str) -> None:
        """Settle one queue of every live message but every keep_every-th: low live shares."""
        for msg_id in list(self.live):
            if keep_every and msg_id % keep_every == 0:
                continue
            queues, marks = self.live[msg_id]
            if queue in queues:
                self.j.append_settle(msg_id, queue)
                queues.remove(queue)
                marks.discard(queue)
                if not queues:
                    del self.live[msg_id]

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        pairs = [(m, q) for m, (qs, _) in self.live.items() for q in qs]
        for msg_id, queue in data.draw(st.lists(st.sampled_from(pairs), max_size=5)):
            self.j.append_delivered(msg_id, queue)
            self.live[msg_id][1].add(queue)

    @rule()
    def flush(self) -> None:
        assert flush_sync(self.j) is None
        self.readable = set(self.live)

    @rule()
    def idle(self) -> None:
        assert self.j.wait_idle(10)
        self.readable = set(self.live)

    def _count(self) -> None:
        stats = self.j.stats()
        self.compactions += int(stats["compactions"])
        self.deletions += int(stats["segments_deleted"])

    @rule()
    def reopen(self) -> None:
        self._count()
        self.j.close()
        self.journal = Journal(self.dir, **self.options)  # type: ignore[arg-type]
        recovery = self.journal.open()
        got = {m.msg_id: (list(m.queues), set(m.delivered)) for m in recovery.messages}
        assert got == self.live
        assert [m.msg_id for m in recovery.messages] == sorted(self.live)
        for m in recovery.messages:
            assert m.body == body_of(m.msg_id, self.sizes[m.msg_id])
            assert m.routing_key == f"rk{m.msg_id}"
            self.locations[m.msg_id] = m.location
        assert recovery.next_msg_id == self.next_id
        assert recovery.truncated_bytes == 0 and recovery.corrupt_bytes == 0
        self.readable = set(self.live)

    @invariant()
    def bodies_readable(self) -> None:
        if self.journal is None:
            return
        for msg_id in sorted(self.readable & set(self.live))[:5]:
            assert self.j.read_body(self.locations[msg_id]) == body_of(msg_id, self.sizes[msg_id])

    def teardown(self) -> None:
        if self.journal is not None:
            self._count()
            event(f"compacted: {self.compactions > 0}")
            event(f"deleted segments: {self.deletions > 0}")
            self.journal.close()
            journal = Journal(self.dir, **self.options)  # type: ignore[arg-type]
            got = {m.msg_id: (list(m.queues), set(m.delivered)) for m in journal.open().messages}
            journal.close()
            assert got == self.live
        shutil.rmtree(self.dir, ignore_errors=True)


JournalModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJournalModel = JournalModel.TestCase
