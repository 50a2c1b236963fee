"""A full disk under the store: publishes are nacked, the broker stays up, and resumes.

The data directory lives on a small tmpfs the test mounts (root only; skipped with the reason
otherwise) and removes afterwards. disk_free_limit is 0 so that only real write failures
(ENOSPC) raise the disk alarm.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.server_process import ServerProcess, ferrymq_status


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_nacks_publishes_and_recovers_when_space_returns(small_fs: Path) -> None:
    data = small_fs / "data"
    server = ServerProcess(data, "--config", str(_config(small_fs))).start()
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (3 * 1024 * 1024))  # leave a little room for the journal
    conn = pika.BlockingConnection(
        pika.URLParameters(server.url + "?blocked_connection_timeout=30")
    )
    blocked: list[str] = []
    conn.add_on_connection_blocked_callback(lambda _c, m: blocked.append(m.method.reason))
    ch = conn.channel()
    ch.queue_declare("full.q", durable=True)
    ch.confirm_delivery()
    body = os.urandom(16 * 1024)
    confirmed = 0
    nacked = False
    for _ in range(2000):  # bounded: about 32 MiB, far more than the filesystem holds
        try:
            ch.basic_publish("", "full.q", body, pika.BasicProperties(delivery_mode=2))
        except pika.exceptions.NackError:
            nacked = True
            break
        confirmed += 1
    assert nacked, "a publish that cannot be written must be nacked"
    assert confirmed > 0
    # the node is alive and says why publishers wait
    watcher = pika.BlockingConnection(pika.URLParameters(server.url))
    assert watcher.channel().queue_declare("full.q", passive=True).method.message_count >= confirmed
    status = ferrymq_status(data)
    assert status.returncode == 0, status.stderr
    assert "alarms: disk" in status.stdout
    # space returns: the alarm clears and publishes are confirmed again
    filler.unlink()
    deadline = time.monotonic() + 20
    while True:
        try:
            ch.basic_publish("", "full.q", b"after", pika.BasicProperties(delivery_mode=2))
            break
        except pika.exceptions.NackError:
            assert time.monotonic() < deadline, "publishes still nacked after space returned"
            conn.process_data_events(time_limit=0.2)
    conn.process_data_events(time_limit=0.2)  # pika dispatches connection.blocked callbacks here
    assert blocked == ["low on disk space"]
    assert any("journal write failed" in line for line in server.stderr_lines)
    conn.close()
    watcher.close()
    # nothing confirmed before the disk filled up was damaged
    assert server.stop() == 0
    server2 = ServerProcess(data, "--config", str(_config(small_fs))).start()
    try:
        ch2 = pika.BlockingConnection(pika.URLParameters(server2.url)).channel()
        count = ch2.queue_declare("full.q", durable=True).method.message_count
        assert count >= confirmed + 1
        for _ in range(confirmed):
            _method, _props, got = ch2.basic_get("full.q", auto_ack=True)
            assert got == body
    finally:
        server2.stop()


def _config(fs: Path) -> Path:
    path = fs.parent / "ferrymq.toml"
    path.write_text("disk_free_limit = 0\nsegment_size = 1048576\n")
    return path
