"""Queues larger than memory: a queue grown far past a small memory limit keeps its resident
size bounded, delivers every message in order and intact, and survives kill -9 while paged.

The broker runs as a subprocess with `queue_memory_limit` of 2 MiB; each queue gets 40,000
messages of 1 KiB (40 MB of bodies, twenty times the limit). The broker's resident size is read
from /proc/<pid>/status (VmRSS) and its own accounting from `status --json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.helpers import wait_for
from tests.server_process import ServerProcess, ferrymq_status

N = 40_000
SIZE = 1024
LIMIT = 2 * 1024 * 1024
# Without paging the bodies alone would add 40 MB (plus ~300 bytes of objects each). Paged, the
# growth is the in-memory window (LIMIT), the queue's index (~30 bytes each), the journal's
# index (~130 bytes each) and allocator slack.
RSS_BOUND = 20 * 1024 * 1024


def _body(i: int) -> bytes:
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return f"{i:08d}|".encode() + (seed * (SIZE // 32 + 1))[: SIZE - 9]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _status(data_dir: Path) -> dict[str, object]:
    out = ferrymq_status(data_dir, "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    monkeypatch.setenv("FERRYMQ_QUEUE_MEMORY_LIMIT", str(LIMIT))
    monkeypatch.setenv("FERRYMQ_FSYNC", "off")  # the test is about paging, not fsync speed
    proc = ServerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.kill()


def _publish(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str, persistent: bool):
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    for i in range(N):
        ch.basic_publish("", queue, _body(i), props)


def _count(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def _consume(
    conn: pika.BlockingConnection, queue: str, start: int, stop: int, *, redelivered: bool = False
) -> None:
    """Take messages start..stop-1 from the queue, checking order and bodies, acking them."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=500)
    expected = start
    for method, _props, body in ch.consume(queue, inactivity_timeout=10):
        assert method is not None, f"{queue}: stalled at message {expected}"
        assert body == _body(expected), f"{queue}: message {expected} wrong or out of order"
        if redelivered:
            assert method.redelivered
        expected += 1
        if expected % 250 == 0 or expected == stop:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if expected == stop:
            break
    ch.cancel()
    ch.close()


def test_transient_queue_pages_and_delivers_in_order(server: ServerProcess) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        ch = conn.channel()
        ch.queue_declare("paged.t")
        before = _rss(pid)
        _publish(ch, "paged.t", persistent=False)
        wait_for(lambda: _count(ch, "paged.t") == N, timeout=30)
        grown = _rss(pid) - before
        assert grown < RSS_BOUND, f"RSS grew {grown} bytes for {N} paged messages"
        status = _status(server.data_dir)
        held = status["memory"]["message_bytes"]  # type: ignore[index]
        assert held <= LIMIT + 64 * 1024, f"the broker holds {held} bytes of bodies"
        (queue,) = [q for q in status["queues"] if q["name"] == "paged.t"]  # type: ignore[attr-defined]
        assert queue["paged"] > N // 2, queue  # most of the queue lives on disk
        _consume(conn, "paged.t", 0, N)
        assert _count(conn.channel(), "paged.t") == 0
    finally:
        conn.close()


def test_persistent_queue_pages_and_survives_kill(server: ServerProcess, tmp_path: Path) -> None:
    assert server.proc is not None
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        ch = conn.channel()
        ch.queue_declare("paged.p", durable=True)
        ch.queue_declare("paged.marker", durable=True)
        before = _rss(server.proc.pid)
        _publish(ch, "paged.p", persistent=True)
        wait_for(lambda: _count(ch, "paged.p") == N, timeout=30)
        grown = _rss(server.proc.pid) - before
        assert grown < RSS_BOUND, f"RSS grew {grown} bytes for {N} paged messages"
        # the first half is consumed and acked; a confirmed publish after the acks makes them
        # durable (batches are written in order)
        _consume(conn, "paged.p", 0, N // 2)
        ch.confirm_delivery()
        ch.basic_publish("", "paged.marker", b"m", pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()

    server.kill()
    started = time.monotonic()
    server.start()
    assert server.proc is not None
    assert time.monotonic() - started < 20
    # recovery put the backlog straight into the paged tail, without reading its bodies
    wait_for(lambda: any("paged, bodies left on disk" in ln for ln in server.stderr_lines))
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        ch = conn.channel()
        assert _count(ch, "paged.p") == N - N // 2
        rss = _rss(server.proc.pid)
        assert rss < 120 * 1024 * 1024, f"recovered broker has an RSS of {rss} bytes"
        _consume(conn, "paged.p", N // 2, N)
        assert _count(conn.channel(), "paged.p") == 0
    finally:
        conn.close()


def test_paged_transient_messages_do_not_survive_restart(server: ServerProcess) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        ch = conn.channel()
        ch.queue_declare("paged.durable-q", durable=True)
        for i in range(6000):  # 6 MB: most of it paged out to the journal
            ch.basic_publish("", "paged.durable-q", _body(i))
        wait_for(lambda: _count(ch, "paged.durable-q") == 6000, timeout=20)
    finally:
        conn.close()
    server.kill()
    server.start()
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        assert _count(conn.channel(), "paged.durable-q") == 0
    finally:
        conn.close()
    assert os.path.isdir(server.data_dir / "journal")
