"""kill -9 in the middle of compaction and in the middle of a publish/settle run.

The child side of each test is this file run as a script (see `main` at the bottom), so what
the child does is ordinary, linted code. The children import only ferrymq (not pytest or the
shared test helpers), to start fast.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ferrymq.store import Journal, _compact

HERE = Path(__file__)
ROOT = HERE.parents[2]


def _child(*args: str, timeout: float = 60) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# -- compaction, killed at each step -------------------------------------------------------------

SEGMENT = 16 * 1024


def _size(msg_id: int) -> int:
    return 100 + (msg_id * 37) % 900


def body_of(msg_id: int, size: int) -> bytes:
    seed = f"{msg_id}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


def _expected_after_setup() -> dict[int, tuple[list[str], set[str]]]:
    live = {}
    for i in range(1, 301):
        if i % 9 == 0:
            live[i] = (["a", "b"], {"a"})
        elif i % 13 == 0:
            live[i] = (["b"], set())
        elif i > 280:
            live[i] = (["a"], set())
    return live


def _setup(path: Path) -> None:
    """Segments whose live share is low, with multi-queue messages, marks and settles."""
    from tests.unit.test_journal import flush_sync, reopen

    j, _ = reopen(path, segment_bytes=SEGMENT, compact_below=0.0)
    for i in range(1, 301):
        queues = ["a", "b"] if i % 9 == 0 or i % 13 == 0 else ["a"]
        j.append_message(i, queues, "x", f"k{i}", b"props", body_of(i, _size(i)))
    assert flush_sync(j) is None
    for i in range(1, 301):
        if i % 9 == 0:
            j.append_delivered(i, "a")
        elif i % 13 == 0:
            j.append_delivered(i, "a")
            j.append_settle(i, "a")
        elif i <= 280:
            j.append_settle(i, "a")
    assert flush_sync(j) is None
    j.close()


def _check(path: Path, expected: dict[int, tuple[list[str], set[str]]]) -> Journal:
    j = Journal(path, segment_bytes=SEGMENT, compact_below=0.0)
    r = j.open()
    got = {m.msg_id: (list(m.queues), set(m.delivered)) for m in r.messages}
    assert got == expected
    assert len(r.messages) == len(expected)  # no duplicates
    for m in r.messages:
        assert m.body == body_of(m.msg_id, _size(m.msg_id))
        assert j.read_body(m.location) == m.body
    return j


def _bytes_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.seg"))


def test_kill_at_every_compaction_step(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    _setup(pristine)
    expected = _expected_after_setup()
    _check(pristine, expected).close()

    # How many crash points does one uninterrupted run have?
    probe = tmp_path / "probe"
    shutil.copytree(pristine, probe)
    child = _child("compact", str(probe), "0")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    steps = int(out.split()[-1])
    assert steps >= 8, steps  # several compactions and deletions happen
    _check(probe, expected).close()
    assert _bytes_on_disk(probe) < _bytes_on_disk(pristine) / 2

    rng = random.Random(7)
    points = list(range(1, steps + 1))
    if len(points) > 12:
        points = sorted(rng.sample(points, 12))
    for k in points:
        work = tmp_path / f"kill-{k}"
        shutil.copytree(pristine, work)
        child = _child("compact", str(work), str(k))
        _, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, (k, err.decode())
        _check(work, expected).close()
        # and a second crash further on, in the run that picks up after the first
        k2 = rng.randint(1, 6)
        child = _child("compact", str(work), str(k2))
        child.communicate(timeout=60)
        j = _check(work, expected)
        assert j.wait_idle(30)  # finish the job in this process; still exact
        j.close()
        _check(work, expected).close()
        shutil.rmtree(work)


def _compact_child(path: str, kill_at: int) -> None:
    calls = 0

    def hook(step: str) -> None:
        nonlocal calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    _compact.crash_hook = hook
    j = Journal(path, segment_bytes=SEGMENT, compact_below=0.6)
    j.open()
    assert j.wait_idle(60)
    j.close()
    print("steps", calls, flush=True)


# -- kill -9 while publishing and settling -------------------------------------------------------


def _publish_child(path: str, seed: int) -> None:
    """Publish and settle forever; print each batch once on_done(None) confirmed it."""
    rng = random.Random(seed)
    j = Journal(path, segment_bytes=64 * 1024, compact_below=0.5)
    recovery = j.open()
    live = [m.msg_id for m in recovery.messages]
    next_id = recovery.next_msg_id
    out = sys.stdout.fileno()
    window = threading.Semaphore(8)
    while True:
        appended = []
        for _ in range(rng.randint(1, 60)):
            j.append_message(next_id, ["q"], "", "q", b"", body_of(next_id, _size(next_id)))
            appended.append(next_id)
            next_id += 1
        settled = []
        if live and rng.random() < 0.8:
            for _ in range(rng.randint(1, 60)):
                if not live:
                    break
                settled.append(live.pop(rng.randrange(len(live))))
        # A settle may reach the disk before its on_done runs, even before flush(): the
        # compactor hands the pending batch to the writer when its copies fill it. So say that
        # it was tried before appending it.
        os.write(out, f"T {' '.join(map(str, settled))}\n".encode())
        for msg_id in settled:
            j.append_settle(msg_id, "q")
        line = f"A {' '.join(map(str, appended))}\nS {' '.join(map(str, settled))}\n".encode()

        def on_done(exc: BaseException | None, line: bytes = line) -> None:
            if exc is None:
                os.write(out, line)
            window.release()

        window.acquire()
        j.flush(on_done)
        live.extend(appended)  # settle only what was published before (maybe not yet confirmed)


def test_kill_9_during_publish_and_settle(tmp_path: Path) -> None:
    from tests.unit.test_journal import reopen

    path = tmp_path / "j"
    confirmed: set[int] = set()
    settled: set[int] = set()
    tried: set[int] = set()
    rng = random.Random(11)
    for round_ in range(5):
        child = _child("publish", str(path), str(round_))
        time.sleep(rng.uniform(0.4, 1.5))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err.decode()
        text = out.decode()
        lines = text.split("\n")[: text.count("\n")]  # only complete lines
        for line in lines:
            kind, _, ids = line.partition(" ")
            target = {"A": confirmed, "S": settled, "T": tried}[kind]
            target.update(int(x) for x in ids.split())
        assert confirmed, err.decode()

        j, r = reopen(path)
        got = [m.msg_id for m in r.messages]
        assert len(got) == len(set(got))
        missing = (confirmed - tried) - set(got)
        assert not missing, sorted(missing)[:10]
        assert not (settled & set(got))  # a confirmed settle never comes back
        assert r.next_msg_id > max(settled | confirmed)  # ids are never handed out twice
        for m in r.messages:
            assert m.body == body_of(m.msg_id, _size(m.msg_id))
        assert r.next_msg_id > max(confirmed)
        j.close()


def main() -> None:
    what, path, arg = sys.argv[1:4]
    if what == "compact":
        _compact_child(path, int(arg))
    else:
        _publish_child(path, int(arg))


if __name__ == "__main__":
    main()
