"""Damaged journals: torn tails at every byte, flipped bytes in the middle, damaged headers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ferrymq.store import Journal
from ferrymq.store import _records as rec
from tests.unit.test_journal import body_of, flush_sync, reopen, segment_files


def _build(path: Path, count: int, segment_bytes: int = 1 << 20, settle_last: bool = False) -> None:
    j, _ = reopen(path, segment_bytes=segment_bytes)
    for i in range(1, count + 1):
        j.append_message(i, ["q"], "x", f"k{i}", b"props", body_of(i, 20 + i % 50))
    if settle_last:
        j.append_settle(1, "q")
    assert flush_sync(j) is None
    j.close()


def _records(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, type) of every record in a segment file."""
    data = path.read_bytes()
    out = []
    for item in rec.iter_records(data):
        assert not isinstance(item, rec.BadRegion)
        pos, typ, _, stop = item
        out.append((pos, stop, typ))
    return out


def _recovered_ids(path: Path) -> tuple[list[int], int, int]:
    j, r = reopen(path)
    ids = [m.msg_id for m in r.messages]
    for m in r.messages:
        assert m.body == body_of(m.msg_id, 20 + m.msg_id % 50)
    j.close()
    return ids, r.truncated_bytes, r.corrupt_bytes


@pytest.mark.parametrize("settle_last", [False, True])
def test_truncating_the_last_record_at_every_byte(tmp_path: Path, settle_last: bool) -> None:
    pristine = tmp_path / "pristine"
    _build(pristine, 30, settle_last=settle_last)
    (seg_name,) = segment_files(pristine)
    start, end, typ = _records(pristine / seg_name)[-1]
    assert typ == (rec.T_SETTLE if settle_last else rec.T_MESSAGE)
    # without its last record: message 30 is missing, or the settle of message 1 never happened
    expected = list(range(1, 31)) if settle_last else list(range(1, 30))

    for cut in range(start, end):
        work = tmp_path / f"cut-{cut}"
        shutil.copytree(pristine, work)
        os.truncate(work / seg_name, cut)
        ids, truncated, corrupt = _recovered_ids(work)
        assert ids == expected, cut
        assert truncated == cut - start and corrupt == 0
        if (cut - start) % 7 == 0:
            # the journal continues after the cut, and the next recovery is clean
            j, _ = reopen(work)
            j.append_message(100, ["q"], "x", "k100", b"props", body_of(100, 20))
            assert flush_sync(j) is None
            j.close()
            ids, truncated, _ = _recovered_ids(work)
            assert ids == [*expected, 100] and truncated == 0
        shutil.rmtree(work)


def test_torn_header_of_a_new_segment(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path, 5)
    (seg_name,) = segment_files(path)
    for size in (0, 5, rec.HEADER_SIZE - 1):
        (path / rec.segment_name(int(seg_name[:10]) + 1)).write_bytes(b"\0" * size)
        ids, truncated, _ = _recovered_ids(path)
        assert ids == [1, 2, 3, 4, 5] and truncated == size
        assert segment_files(path) == [seg_name]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("which", ["middle segment", "last segment"])
def test_a_flipped_byte_loses_only_that_record(tmp_path: Path, which: str) -> None:
    pristine = tmp_path / "pristine"
    _build(pristine, 120, segment_bytes=4096)
    files = segment_files(pristine)
    assert len(files) >= 3
    seg_name = files[len(files) // 2] if which == "middle segment" else files[-1]
    records = _records(pristine / seg_name)
    assert len(records) >= 3
    start, end, _ = records[len(records) // 2]
    # which message that record holds
    data = (pristine / seg_name).read_bytes()
    lost = rec.decode_message(data, start + rec.FRAME_SIZE, end).msg_id

    offsets = sorted(
        {
            start,
            start + 1,
            start + 3,
            start + 4,
            start + 8,
            start + 9,
            start + 12,
            start + 30,
            (start + end) // 2,
            end - 1,
        }
    )
    for offset in offsets:
        work = tmp_path / f"flip-{offset}"
        shutil.copytree(pristine, work)
        _flip(work / seg_name, offset)
        ids, truncated, corrupt = _recovered_ids(work)
        assert ids == [i for i in range(1, 121) if i != lost], offset
        assert truncated == 0 and corrupt >= end - start, offset
        shutil.rmtree(work)


def test_a_flipped_byte_in_a_settle_brings_only_that_message_back(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j, _ = reopen(path)
    for i in range(1, 11):
        j.append_message(i, ["q"], "x", f"k{i}", b"props", body_of(i, 20 + i % 50))
    for i in range(1, 11):
        j.append_settle(i, "q")
    j.append_message(11, ["q"], "x", "k11", b"props", body_of(11, 20 + 11 % 50))
    assert flush_sync(j) is None
    j.close()
    (seg_name,) = segment_files(path)
    settles = [(s, e) for s, e, t in _records(path / seg_name) if t == rec.T_SETTLE]
    start, end = settles[4]  # the settle of message 5
    _flip(path / seg_name, start + 14)
    ids, truncated, corrupt = _recovered_ids(path)
    assert ids == [5, 11] and truncated == 0 and corrupt == end - start


def test_a_damaged_header_keeps_the_records(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path, 20, segment_bytes=4096)
    first = segment_files(path)[0]
    _flip(path / first, 2)
    ids, truncated, corrupt = _recovered_ids(path)
    assert ids == list(range(1, 21)) and truncated == 0 and corrupt == rec.HEADER_SIZE


def test_garbage_and_zeros_after_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path, 10)
    (seg_name,) = segment_files(path)
    size = (path / seg_name).stat().st_size
    with open(path / seg_name, "ab") as f:
        f.write(b"\0" * 5000 + os.urandom(3000))
    ids, truncated, _ = _recovered_ids(path)
    assert ids == list(range(1, 11)) and truncated == 8000
    assert (path / seg_name).stat().st_size == size


def test_foreign_files_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _build(path, 3)
    (path / "notes.txt").write_text("hello")
    (path / "12.seg").write_bytes(b"not ours")  # wrong name pattern
    j = Journal(path)
    assert [m.msg_id for m in j.open().messages] == [1, 2, 3]
    j.close()
