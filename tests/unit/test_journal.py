"""The message journal on a real directory: round trips, marks, rolls, compaction, fsync policies.

Helpers at the top are shared with tests/unit/test_journal_model.py and tests/fault/.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferrymq.store import Journal, Location, Recovery, StoreError
from ferrymq.store import _records as rec

# -- helpers -------------------------------------------------------------------------------------


def flush_sync(journal: Journal, timeout: float = 10.0) -> BaseException | None:
    """Flush and wait for on_done; return what it was called with."""
    done = threading.Event()
    result: list[BaseException | None] = []

    def on_done(exc: BaseException | None) -> None:
        result.append(exc)
        done.set()

    journal.flush(on_done)
    assert done.wait(timeout), "flush did not complete"
    return result[0]


def reopen(path: Path, **options: object) -> tuple[Journal, Recovery]:
    journal = Journal(path, **options)  # type: ignore[arg-type]
    return journal, journal.open()


def segment_files(path: Path) -> list[str]:
    return sorted(p for p in os.listdir(path) if p.endswith(rec.SUFFIX))


def body_of(msg_id: int, size: int = 40) -> bytes:
    seed = f"{msg_id}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


def live_view(recovery: Recovery) -> dict[int, tuple[list[str], set[str]]]:
    return {m.msg_id: (list(m.queues), set(m.delivered)) for m in recovery.messages}


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def journal(jdir: Path) -> Iterator[Journal]:
    j = Journal(jdir)
    j.open()
    yield j
    j.close()


# -- round trips ---------------------------------------------------------------------------------


def test_empty_directory_recovers_nothing(jdir: Path) -> None:
    j, r = reopen(jdir)
    assert r.messages == [] and r.next_msg_id == 1 and r.truncated_bytes == 0
    assert r.segments == 0
    j.close()


def test_round_trip(journal: Journal, jdir: Path) -> None:
    props = b"\x80\x00\x02"
    locs = {}
    for i in range(1, 51):
        locs[i] = journal.append_message(i, ["q"], "amq.direct", f"key.{i}", props, body_of(i))
    assert flush_sync(journal) is None
    for i, loc in locs.items():
        assert journal.read_body(loc) == body_of(i)
    journal.close()

    j2, r = reopen(jdir)
    assert [m.msg_id for m in r.messages] == list(range(1, 51))
    assert r.next_msg_id == 51
    for m in r.messages:
        assert m.queues == ["q"]
        assert m.exchange == "amq.direct" and m.routing_key == f"key.{m.msg_id}"
        assert m.properties == props and m.body == body_of(m.msg_id)
        assert m.delivered == set()
        assert j2.read_body(m.location) == m.body
    j2.close()


def test_empty_and_unicode_fields(journal: Journal, jdir: Path) -> None:
    journal.append_message(1, ["q-é"], "", "", b"", b"")
    journal.append_message(2, ["ü", "q"], "ex-ß", "rk/π", b"", b"x")
    assert flush_sync(journal) is None
    journal.close()
    j2, r = reopen(jdir)
    assert live_view(r) == {1: (["q-é"], set()), 2: (["ü", "q"], set())}
    assert r.messages[0].body == b"" and r.messages[1].routing_key == "rk/π"
    j2.close()


def test_load_bodies_false_indexes_only(journal: Journal, jdir: Path) -> None:
    for i in range(1, 11):
        journal.append_message(i, ["q"], "", "q", b"p", body_of(i, 3000))
    assert flush_sync(journal) is None
    journal.close()
    j2, r = reopen(jdir, load_bodies=False)
    assert all(m.body is None for m in r.messages)
    assert [j2.read_body(m.location) for m in r.messages] == [
        body_of(i, 3000) for i in range(1, 11)
    ]
    j2.close()


def test_next_msg_id_survives_when_everything_is_settled(journal: Journal, jdir: Path) -> None:
    for i in range(1, 101):
        journal.append_message(i, ["q"], "", "q", b"", b"x")
    assert flush_sync(journal) is None
    for i in range(1, 101):
        journal.append_settle(i, "q")
    assert flush_sync(journal) is None
    journal.close()
    j2, r = reopen(jdir)
    assert r.messages == [] and r.next_msg_id == 101
    j2.close()


def test_on_done_order_and_empty_flush(journal: Journal) -> None:
    order: list[int] = []
    done = threading.Event()
    for n in range(200):
        if n % 3:
            journal.append_message(n + 1, ["q"], "", "q", b"", b"x" * 10)

        def on_done(exc: BaseException | None, n: int = n) -> None:
            assert exc is None
            order.append(n)
            if n == 199:
                done.set()

        journal.flush(on_done)  # every third flush carries nothing and still completes in order
    assert done.wait(10)
    assert order == list(range(200))
    assert journal.stats()["group_commits"] <= journal.stats()["batches"]


def test_duplicate_msg_id_is_refused(journal: Journal, jdir: Path) -> None:
    journal.append_message(1, ["q"], "", "q", b"", b"first")
    with pytest.raises(ValueError):
        journal.append_message(1, ["q"], "", "q", b"", b"second")
    assert flush_sync(journal) is None
    journal.close()
    j2, r = reopen(jdir)
    assert [m.body for m in r.messages] == [b"first"]
    j2.close()


def test_a_message_needs_a_queue(journal: Journal) -> None:
    with pytest.raises(ValueError):
        journal.append_message(1, [], "", "q", b"", b"x")


def test_directory_is_locked(journal: Journal, jdir: Path) -> None:
    with pytest.raises(StoreError):
        Journal(jdir).open()


def test_closed_journal_refuses_appends(journal: Journal) -> None:
    journal.close()
    with pytest.raises(StoreError):
        journal.append_message(1, ["q"], "", "q", b"", b"x")
    with pytest.raises(StoreError):
        journal.flush(lambda exc: None)
    journal.close()  # idempotent


# -- settles, marks, several queues ----------------------------------------------------------------


def test_settle_and_delivered_marks(journal: Journal, jdir: Path) -> None:
    for i in range(1, 11):
        journal.append_message(i, ["a"], "", "a", b"", body_of(i))
    for i in (1, 2, 3):
        journal.append_settle(i, "a")
    for i in (4, 5):
        journal.append_delivered(i, "a")
        journal.append_delivered(i, "a")  # a second mark is not written again
    journal.append_delivered(6, "a")
    journal.append_settle(6, "a")  # delivered then acked: gone, mark and all
    journal.append_settle(999, "a")  # unknown: ignored
    journal.append_delivered(999, "a")
    assert flush_sync(journal) is None
    journal.close()

    j2, r = reopen(jdir)
    assert live_view(r) == {
        4: (["a"], {"a"}),
        5: (["a"], {"a"}),
        7: (["a"], set()),
        8: (["a"], set()),
        9: (["a"], set()),
        10: (["a"], set()),
    }
    # marks and settles keep working on recovered messages
    j2.append_delivered(7, "a")
    j2.append_settle(4, "a")
    assert flush_sync(j2) is None
    j2.close()
    j3, r = reopen(jdir)
    assert live_view(r)[7] == (["a"], {"a"}) and 4 not in live_view(r)
    j3.close()


def test_multi_queue_message_is_written_once(journal: Journal, jdir: Path) -> None:
    body = b"UNIQUE-BODY-" + os.urandom(16).hex().encode()
    journal.append_message(1, ["q1", "q2", "q3"], "fan", "", b"", body)
    journal.append_delivered(1, "q2")
    assert flush_sync(journal) is None
    data = b"".join((jdir / f).read_bytes() for f in segment_files(jdir))
    assert data.count(body) == 1

    journal.append_settle(1, "q1")
    journal.append_settle(1, "q1")  # twice: no effect
    journal.append_settle(1, "nope")  # not one of its queues: ignored
    assert flush_sync(journal) is None
    journal.close()
    j2, r = reopen(jdir)
    assert live_view(r) == {1: (["q2", "q3"], {"q2"})}
    j2.append_settle(1, "q2")
    j2.append_settle(1, "q3")
    assert flush_sync(j2) is None
    j2.close()
    j3, r = reopen(jdir)
    assert r.messages == []
    j3.close()


# -- segments --------------------------------------------------------------------------------------


def test_segment_roll_and_read_body_after_roll(jdir: Path) -> None:
    j, _ = reopen(jdir, segment_bytes=8192, compact_below=0.0)
    locs = {i: j.append_message(i, ["q"], "", "q", b"", body_of(i, 500)) for i in range(1, 101)}
    assert flush_sync(j) is None
    files = segment_files(jdir)
    assert len(files) >= 5
    for f in files:
        assert (jdir / f).stat().st_size <= 8192
    assert {loc.segment for loc in locs.values()} == {int(f[:10]) for f in files}
    for i, loc in locs.items():
        assert j.read_body(loc) == body_of(i, 500)
    j.close()
    j2, r = reopen(jdir, segment_bytes=8192)
    assert [m.msg_id for m in r.messages] == list(range(1, 101))
    assert all(m.body == body_of(m.msg_id, 500) for m in r.messages)
    j2.close()


def test_large_bodies_and_large_batches(jdir: Path) -> None:
    j, _ = reopen(jdir, segment_bytes=1 << 20)
    big = os.urandom(5 * 1024 * 1024 + 17)  # bigger than a segment: gets one of its own
    j.append_message(1, ["q"], "", "q", b"", big)
    for i in range(2, 20_002):  # many small records in one batch
        j.append_message(i, ["q"], "", "q", b"", b"s")
    loc = j.append_message(20_002, ["q"], "", "q", b"p" * 70_000, big[:100_000])
    assert flush_sync(j) is None
    assert j.read_body(loc) == big[:100_000]
    j.close()
    j2, r = reopen(jdir, segment_bytes=1 << 20)
    assert len(r.messages) == 20_002
    assert r.messages[0].body == big and r.messages[-1].properties == b"p" * 70_000
    j2.close()


def _segment_holding(loc: Location, jdir: Path) -> Path:
    return jdir / rec.segment_name(loc.segment)


def test_fully_settled_segment_is_deleted(jdir: Path) -> None:
    j, _ = reopen(jdir, segment_bytes=8192)
    locs = {i: j.append_message(i, ["q"], "", "q", b"", body_of(i, 400)) for i in range(1, 61)}
    assert flush_sync(j) is None
    first = _segment_holding(locs[1], jdir)
    in_first = [i for i, loc in locs.items() if loc.segment == locs[1].segment]
    for i in in_first:
        j.append_settle(i, "q")
    assert flush_sync(j) is None
    assert j.wait_idle(10)
    assert not first.exists()
    assert j.stats()["segments_deleted"] >= 1 and j.stats()["compactions"] == 0
    j.close()
    j2, r = reopen(jdir, segment_bytes=8192)
    assert [m.msg_id for m in r.messages] == [i for i in range(1, 61) if i not in in_first]
    j2.close()


def test_compaction_keeps_exactly_the_live_messages(jdir: Path) -> None:
    j, _ = reopen(jdir, segment_bytes=16384)
    locs = {}
    for i in range(1, 121):
        queues = ["a", "b"] if i % 10 == 0 else ["a"]
        locs[i] = j.append_message(i, queues, "x", f"k{i}", b"props", body_of(i, 300))
    assert flush_sync(j) is None
    first_seg = locs[1].segment
    victims = [i for i, loc in locs.items() if loc.segment == first_seg]
    keep = set(victims[::8])  # about 1 in 8 stays live: under the 0.3 threshold
    for i in victims:
        if i % 10 == 0:
            j.append_settle(i, "b")  # multi-queue: one queue settled, the other...
            if i not in keep:
                j.append_settle(i, "a")
        elif i not in keep:
            j.append_settle(i, "a")
    for i in keep:
        j.append_delivered(i, "a")
    assert flush_sync(j) is None
    assert j.wait_idle(10)
    assert not _segment_holding(locs[1], jdir).exists()
    assert j.stats()["compactions"] >= 1 and j.stats()["messages_moved"] >= len(keep)
    for i in keep:  # Locations handed out before the move still read the body
        assert j.read_body(locs[i]) == body_of(i, 300)
    j.close()

    j2, r = reopen(jdir, segment_bytes=16384)
    expected = {i for i in range(1, 121) if i not in victims or i in keep}
    assert [m.msg_id for m in r.messages] == sorted(expected)
    for m in r.messages:
        assert m.body == body_of(m.msg_id, 300) and m.routing_key == f"k{m.msg_id}"
        if m.msg_id in keep:
            assert m.queues == ["a"] and m.delivered == {"a"}
            assert m.location.segment != first_seg
        elif m.msg_id % 10 == 0:
            assert m.queues == ["a", "b"]
    j2.close()


def test_settles_are_kept_while_their_message_record_exists(jdir: Path) -> None:
    """The classic trap: a segment of settles must not go while the messages' segment stays."""
    j, _ = reopen(jdir, segment_bytes=8192, compact_below=0.0)  # no compaction: deletion only
    locs = {}
    i = 0
    while not locs or locs[i].segment == locs[1].segment:  # fill segment 1 until the head rolls
        i += 1
        locs[i] = j.append_message(i, ["q"], "", "q", b"", body_of(i, 500))
    assert flush_sync(j) is None
    seg1 = locs[1].segment
    ids1 = [k for k, loc in locs.items() if loc.segment == seg1]
    # settle all but one message of segment 1; the settles land in segment 2
    for k in ids1[1:]:
        j.append_settle(k, "q")
    j.append_settle(i, "q")  # the one message that spilled into segment 2
    # then fill and fully settle the later segments with messages of their own
    later = {k: j.append_message(k, ["q"], "", "q", b"", body_of(k, 500)) for k in range(100, 130)}
    assert flush_sync(j) is None
    for k in later:
        j.append_settle(k, "q")
    assert flush_sync(j) is None
    assert j.wait_idle(10)
    settle_seg = jdir / rec.segment_name(seg1 + 1)
    assert (jdir / rec.segment_name(seg1)).exists()
    assert settle_seg.exists()  # holds settles for segment 1's messages: must stay
    assert not (jdir / rec.segment_name(seg1 + 2)).exists()  # later dead segments did go
    j.close()
    j2, r = reopen(jdir, segment_bytes=8192, compact_below=0.0)
    assert [m.msg_id for m in r.messages] == [ids1[0]]  # nothing resurrected
    j2.append_settle(ids1[0], "q")
    assert flush_sync(j2) is None
    assert j2.wait_idle(10)
    assert not (jdir / rec.segment_name(seg1)).exists() and not settle_seg.exists()
    j2.close()
    j3, r = reopen(jdir)
    assert r.messages == []
    j3.close()


@pytest.mark.parametrize("keep_every", [0, 7])
def test_disk_use_stays_bounded(jdir: Path, keep_every: int) -> None:
    seg_bytes = 32 * 1024
    j, _ = reopen(jdir, segment_bytes=seg_bytes, fsync="off")
    next_id = 1
    kept: list[int] = []
    peaks = []
    for _round in range(20):
        ids = list(range(next_id, next_id + 400))
        next_id += 400
        for i in ids:
            j.append_message(i, ["q"], "", "q", b"", body_of(i, 200))
        assert flush_sync(j) is None
        for i in ids:
            if keep_every and i % keep_every == 0:
                kept.append(i)  # a few stay live for a while
                continue
            j.append_settle(i, "q")
        for i in kept[:-20]:
            j.append_settle(i, "q")
        del kept[:-20]
        assert flush_sync(j) is None
        assert j.wait_idle(10)
        peaks.append(j.stats()["bytes_on_disk"])
    live = len(kept) * 300
    assert max(peaks[5:]) <= 4 * seg_bytes + 2 * live, peaks
    j.close()
    j2, r = reopen(jdir, segment_bytes=seg_bytes)
    assert [m.msg_id for m in r.messages] == sorted(kept)
    assert all(m.body == body_of(m.msg_id, 200) for m in r.messages)
    j2.close()


# -- fsync policies --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "interval", "off"])
def test_fsync_policies(jdir: Path, policy: str) -> None:
    j, _ = reopen(jdir, fsync=policy, fsync_interval=0.3)
    started = time.monotonic()
    for i in range(1, 41):
        j.append_message(i, ["q"], "", "q", b"", body_of(i))
        assert flush_sync(j) is None
    elapsed = time.monotonic() - started
    fsyncs = j.stats()["fsyncs"]
    if policy == "always":
        assert fsyncs >= 40
    elif policy == "interval":
        assert fsyncs <= elapsed / 0.3 + 2
        time.sleep(0.5)  # the writer syncs what is dirty once the interval has passed
        assert j.stats()["fsyncs"] >= 1
    else:
        assert fsyncs == 0
    j.close()
    j2, r = reopen(jdir)
    assert [m.msg_id for m in r.messages] == list(range(1, 41))
    j2.close()


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        Journal("/nonexistent", fsync="sometimes")
    with pytest.raises(ValueError):
        Journal("/nonexistent", segment_bytes=100)
    with pytest.raises(ValueError):
        Journal("/nonexistent", compact_below=1.5)


def test_stats_keys(journal: Journal) -> None:
    journal.append_message(1, ["q"], "", "q", b"", b"12345")
    assert flush_sync(journal) is None
    stats = journal.stats()
    for key in ("segments", "bytes_on_disk", "live_messages", "live_bytes", "fsyncs", "batches"):
        assert key in stats
    assert stats["live_messages"] == 1 and stats["bytes_on_disk"] > 0


def test_read_body_from_another_thread_during_compaction(jdir: Path) -> None:
    j, _ = reopen(jdir, segment_bytes=8192, compact_below=0.5, fsync="off")
    locs = {i: j.append_message(i, ["q"], "", "q", b"", body_of(i, 300)) for i in range(1, 401)}
    assert flush_sync(j) is None
    keep = [i for i in locs if i % 5 == 0]  # these stay live and get moved around
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        n = 0
        while not stop.is_set():
            i = keep[n % len(keep)]
            n += 1
            try:
                assert j.read_body(locs[i]) == body_of(i, 300)
            except BaseException as exc:  # report in the main thread
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(4):
            for i in list(locs):
                if i % 5 and i % 4 == round_:
                    j.append_settle(i, "q")
            more = {
                k: j.append_message(k, ["q"], "", "q", b"", body_of(k, 300))
                for k in range(1000 + 100 * round_, 1100 + 100 * round_)
            }
            assert flush_sync(j) is None
            for k in more:
                j.append_settle(k, "q")
            assert flush_sync(j) is None
            assert j.wait_idle(10)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert j.stats()["compactions"] >= 1
    j.close()
    j2, r = reopen(jdir)
    assert [m.msg_id for m in r.messages] == keep
    j2.close()
