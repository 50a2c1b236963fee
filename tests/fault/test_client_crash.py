"""Clients killed with SIGKILL mid-publish and mid-consume.

The client is a real pika program in a subprocess that reports progress on stdout; the test
kills it at a known point. Confirmed messages must survive, unacked deliveries must come back
to another consumer marked redelivered, nothing half-sent may be enqueued, and the broker keeps
serving.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.helpers import wait_for
from tests.integration.test_connection import assert_healthy, params

ROOT = Path(__file__).resolve().parents[2]

PUBLISHER = textwrap.dedent(
    """
    import sys, pika
    url, queue, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    if mode == "confirm":
        ch.confirm_delivery()  # basic_publish now returns only once the broker has acked
    for i in range(1_000_000):  # bounded; the test kills it long before the end
        body = (f"msg-{i:07d}-" + "x" * (i % 7 * 20_000)).encode()
        ch.basic_publish("", queue, body, pika.BasicProperties(message_id=str(i)))
        if i % 25 == 24:
            print(f"published {i + 1}", flush=True)
    """
)


def expected_body(i: int) -> bytes:
    return (f"msg-{i:07d}-" + "x" * (i % 7 * 20_000)).encode()


CONSUMER = textwrap.dedent(
    """
    import sys, pika
    url, queue = sys.argv[1], sys.argv[2]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=20)
    seen = 0
    for method, props, body in ch.consume(queue, auto_ack=False, inactivity_timeout=30):
        if method is None:
            break
        seen += 1
        if seen <= 10:
            ch.basic_ack(method.delivery_tag)
            if seen == 10:
                ch.queue_declare(queue, passive=True)  # a round trip: the acks are in
                print("acked 10", flush=True)
        else:
            print(f"held {body.decode()}", flush=True)
    """
)


class Child:
    """A subprocess whose stdout lines are read with a deadline, never blocking forever."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.buf = b""

    def lines_until(self, pred: Any, timeout: float = 15.0) -> list[str]:
        """Read lines until pred(lines) holds; fail with the child's stderr otherwise."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while not pred(lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(f"child stuck after {lines[-3:]}: {self.stderr()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited after {lines[-3:]}: {self.stderr()}")
            self.buf += chunk
            *complete, self.buf = self.buf.split(b"\n")
            lines.extend(x.decode() for x in complete)
        return lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        assert self.proc.returncode == -signal.SIGKILL or self.proc.returncode is not None

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def queue(broker: Any, name: str) -> Iterator[str]:
    """A plain queue the children can reach, deleted at the end."""
    q = f"{name}.crash"
    with pika.BlockingConnection(params(broker)) as c:
        c.channel().queue_declare(q)
    yield q
    with pika.BlockingConnection(params(broker)) as c:
        c.channel().queue_delete(q)


def drain_all(broker: Any, q: str, expected: int) -> list[tuple[Any, Any, bytes]]:
    """Consume exactly `expected` messages (with acks), then check the queue is empty."""
    got: list[tuple[Any, Any, bytes]] = []
    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        ch.basic_qos(prefetch_count=200)
        if expected:
            for method, props, body in ch.consume(q, inactivity_timeout=5):
                assert method is not None, f"only {len(got)} of {expected} messages"
                got.append((method, props, body))
                ch.basic_ack(method.delivery_tag)
                if len(got) == expected:
                    break
            ch.cancel()
        assert ch.queue_declare(q, passive=True).method.message_count == 0
    return got


@pytest.mark.parametrize("mode", ["confirm", "fire-and-forget"])
def test_publisher_killed_mid_publish(broker: Any, name: str, queue: str, mode: str) -> None:
    """Bodies up to 120 kB span many frames, so the kill likely lands mid-message."""
    child = Child(PUBLISHER, broker.amqp_url, queue, mode)
    try:
        lines = child.lines_until(lambda ls: sum(ln.startswith("published") for ln in ls) >= 8)
        child.kill()
    finally:
        child.close()
    published = max(int(ln.split()[1]) for ln in lines if ln.startswith("published"))

    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        if mode == "confirm":
            wait_for(
                lambda: ch.queue_declare(queue, passive=True).method.message_count >= published
            )
        else:
            wait_for(lambda: ch.queue_declare(queue, passive=True).method.message_count > 0)
        time.sleep(0.2)  # let the broker finish whatever complete frames reached it
        count = ch.queue_declare(queue, passive=True).method.message_count

    messages = drain_all(broker, queue, count)
    ids = [int(props.message_id) for _, props, _ in messages]
    # What arrived is a gap-free prefix of what was sent, every body intact: the message cut
    # off by the kill is dropped whole.
    assert ids == list(range(len(ids)))
    for i, (_, _, body) in zip(ids, messages, strict=True):
        assert body == expected_body(i)
    if mode == "confirm":
        # Every confirmed message survived; at most the one in flight is extra.
        assert published <= len(ids) <= published + 25
    assert_healthy(broker, name)


def test_consumer_killed_mid_consume(broker: Any, name: str, queue: str) -> None:
    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        ch.confirm_delivery()
        for i in range(100):
            ch.basic_publish("", queue, f"m{i:03d}".encode())

    child = Child(CONSUMER, broker.amqp_url, queue)
    try:
        # Prefetch 20: once 20 are held unacked the broker sends no more, so the printed
        # set is exactly what the child holds when it dies.
        lines = child.lines_until(lambda ls: sum(ln.startswith("held") for ln in ls) >= 20)
        child.kill()
    finally:
        child.close()
    assert "acked 10" in lines
    held = {ln.split()[1].encode() for ln in lines if ln.startswith("held")}
    assert len(held) == 20

    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        wait_for(lambda: ch.queue_declare(queue, passive=True).method.message_count == 90, 10)

    messages = drain_all(broker, queue, 90)
    bodies = [b for _, _, b in messages]
    assert sorted(bodies) == [f"m{i:03d}".encode() for i in range(10, 100)]
    redelivered = {b for m, _, b in messages if m.redelivered}
    assert redelivered == held
    assert_healthy(broker, name)


def test_several_consumers_killed_at_once(broker: Any, name: str, queue: str) -> None:
    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        ch.confirm_delivery()
        for i in range(200):
            ch.basic_publish("", queue, f"m{i:03d}".encode())

    children = [Child(CONSUMER, broker.amqp_url, queue) for _ in range(3)]
    try:
        for child in children:
            child.lines_until(lambda ls: sum(ln.startswith("held") for ln in ls) >= 20)
        for child in children:
            child.proc.send_signal(signal.SIGKILL)
    finally:
        for child in children:
            child.close()

    with pika.BlockingConnection(params(broker)) as c:
        ch = c.channel()
        wait_for(lambda: ch.queue_declare(queue, passive=True).method.message_count == 170, 10)
    messages = drain_all(broker, queue, 170)
    assert sum(m.redelivered for m, _, _ in messages) == 60
    assert len({b for _, _, b in messages}) == 170
    assert_healthy(broker, name)
