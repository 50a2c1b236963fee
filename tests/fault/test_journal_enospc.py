"""A full disk: the journal on a 2 MB tmpfs (mounted by the test, as root)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferrymq.store import Journal, StoreError
from tests.unit.test_journal import body_of, flush_sync, reopen


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_fails_the_flush_and_the_journal_recovers(small_fs: Path) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * 700_000)
    path = small_fs / "j"
    j, _ = reopen(path, segment_bytes=256 * 1024)
    stored: list[int] = []
    locations = {}
    failed: list[int] = []
    next_id = 1
    error: BaseException | None = None
    for _ in range(200):  # 1.6 MB worth of batches: more than the space left
        ids = list(range(next_id, next_id + 20))
        next_id += 20
        for i in ids:
            locations[i] = j.append_message(i, ["q"], "", "q", b"", body_of(i, 4000))
        error = flush_sync(j)
        if error is None:
            stored.extend(ids)
        else:
            failed.extend(ids)
            break
    assert isinstance(error, StoreError) and error.errno == errno.ENOSPC, error
    assert stored, "nothing fitted before the disk filled up"
    assert j.stats()["write_errors"] >= 1

    # still full: further batches fail too, and nothing crashes
    for _ in range(3):
        ids = list(range(next_id, next_id + 20))
        next_id += 20
        for i in ids:
            j.append_message(i, ["q"], "", "q", b"", body_of(i, 4000))
        if flush_sync(j) is None:
            stored.extend(ids)
        else:
            failed.extend(ids)

    # what was stored before is intact and readable
    for i in stored[:: max(1, len(stored) // 20)]:
        assert j.read_body(locations[i]) == body_of(i, 4000)

    filler.unlink()  # 700 kB come back; write about 480 kB of it
    ok_after = 0
    for _ in range(6):
        ids = list(range(next_id, next_id + 20))
        next_id += 20
        for i in ids:
            j.append_message(i, ["q"], "", "q", b"", body_of(i, 4000))
        if flush_sync(j) is None:
            stored.extend(ids)
            ok_after += 1
        else:
            assert ok_after == 0, "a flush failed after space came back and a flush succeeded"
            failed.extend(ids)
    assert ok_after >= 5  # at most the first batch, reserved while failing, is lost

    # settles and compaction still work on the freed disk
    for i in stored[:100]:
        j.append_settle(i, "q")
    assert flush_sync(j) is None
    assert j.wait_idle(10)
    j.close()

    j2, r = reopen(path, segment_bytes=256 * 1024)
    got = [m.msg_id for m in r.messages]
    assert got == stored[100:]  # exactly what was confirmed, none of what failed
    assert all(m.body == body_of(m.msg_id, 4000) for m in r.messages)
    j2.close()


def test_disk_full_while_creating_a_segment(small_fs: Path) -> None:
    path = small_fs / "j"
    j = Journal(path, segment_bytes=64 * 1024)
    j.open()
    assert flush_sync(j) is None
    free = os.statvfs(small_fs)
    (small_fs / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 8192))
    results = []
    next_id = 1
    for _ in range(30):  # crosses segment boundaries while the disk is full
        for _ in range(5):
            j.append_message(next_id, ["q"], "", "q", b"", body_of(next_id, 3000))
            next_id += 1
        results.append(flush_sync(j))
    assert any(isinstance(r, StoreError) for r in results)
    stored = [
        i for n, res in enumerate(results) if res is None for i in range(5 * n + 1, 5 * n + 6)
    ]
    (small_fs / "filler").unlink()
    j.close()
    j2, r = reopen(path, segment_bytes=64 * 1024)
    assert [m.msg_id for m in r.messages] == stored
    j2.close()
