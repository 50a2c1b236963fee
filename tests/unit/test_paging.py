"""Paging's building blocks: reading whole messages back from the journal, and the compact
FIFO a queue keeps of what it paged out."""

from __future__ import annotations

from pathlib import Path

from ferrymq.store.journal import Journal
from ferrymq.store.paging import CHUNK, OWN_RECORD, PagedRun


def _open(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "j", fsync="off", segment_bytes=1 << 20)
    journal.open()
    return journal


def test_read_messages_returns_whole_messages_in_order(tmp_path: Path) -> None:
    journal = _open(tmp_path)
    try:
        ids = list(range(1, 301))
        for i in ids:
            props = bytes([i % 256]) * (i * 37 % 9000)  # some larger than the first read window
            journal.append_message(
                i, ["q", "r"] if i % 7 == 0 else ["q"], "ex", f"k{i}", props, b"%d" % i * 50
            )
        assert journal.read_messages(ids) == []  # nothing written yet: nothing to read
        assert journal.wait_idle(10)
        got = journal.read_messages(ids)
        assert len(got) == len(ids)
        for i, m in zip(ids, got, strict=True):
            assert m is not None
            assert m.exchange == "ex" and m.routing_key == f"k{i}"
            assert m.properties == bytes([i % 256]) * (i * 37 % 9000)
            assert m.body == b"%d" % i * 50
    finally:
        journal.close()


def test_read_messages_gives_none_for_settled_and_unknown_ids(tmp_path: Path) -> None:
    journal = _open(tmp_path)
    try:
        for i in (1, 2, 3):
            journal.append_message(i, ["q"], "", "q", b"", b"body%d" % i)
        journal.append_settle(2, "q")
        assert journal.wait_idle(10)
        got = journal.read_messages([1, 2, 3, 99])
        assert [m.body if m else None for m in got] == [b"body1", None, b"body3", None]
    finally:
        journal.close()


def test_paged_run_is_a_fifo_across_chunks() -> None:
    run = PagedRun()
    n = CHUNK * 2 + 10
    for i in range(n):
        run.append(i + 1, i, None if i % 2 else float(i), 100, OWN_RECORD if i % 3 else 0)
    assert len(run) == n and run.bytes == 100 * n
    assert run.head_expiry() == 0.0
    first = run.peek(5, 1 << 20)
    assert [item[0] for item in first] == [1, 2, 3, 4, 5]
    assert first[1][2] is None
    assert len(run.peek(10_000, 250)) == 3  # stops once past the byte budget
    run.drop(CHUNK + 3)
    assert len(run) == n - CHUNK - 3
    assert run.peek(1, 1)[0][0] == CHUNK + 4
    assert [msg_id for msg_id, _ in run][:2] == [CHUNK + 4, CHUNK + 5]
    run.drop(len(run))
    assert len(run) == 0 and run.bytes == 0 and run.head_expiry() is None
