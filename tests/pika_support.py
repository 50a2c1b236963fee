"""Helpers shared by the pika-based integration tests (routing, queues, consumers, DLX).

Each of these tests is also run against RabbitMQ (FERRYMQ_TEST_AMQP_URL) to check that the
expectations are the reference broker's; the cleanup fixture keeps that shared broker tidy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker

EXTERNAL = bool(os.environ.get("FERRYMQ_TEST_AMQP_URL"))


def params(url: str) -> pika.URLParameters:
    """Short timeouts: a broker that stops answering fails the test instead of stalling it."""
    result = pika.URLParameters(url)
    result.socket_timeout = 5
    result.blocked_connection_timeout = 5
    result.connection_attempts = 1
    return result


@contextmanager
def connect(url: str) -> Iterator[BlockingConnection]:
    """A pika connection that is closed even when the test fails."""
    conn = pika.BlockingConnection(params(url))
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


def shared_broker_cleanup(
    queue_suffixes: tuple[str, ...], exchange_suffixes: tuple[str, ...]
) -> Callable[[str], Iterator[None]]:
    """An autouse fixture deleting a test's `{name}.<suffix>` queues and exchanges afterwards
    from a shared external broker (nothing to do on a fresh FerryMQ)."""

    @pytest.fixture(autouse=True)
    def _cleanup_shared_broker(name: str) -> Iterator[None]:
        yield
        url = os.environ.get("FERRYMQ_TEST_AMQP_URL")
        if not url:
            return
        with connect(url) as conn:
            ch = conn.channel()
            for suffix in queue_suffixes:
                ch.queue_delete(f"{name}.{suffix}")
            for suffix in exchange_suffixes:
                ch.exchange_delete(f"{name}.{suffix}")

    return _cleanup_shared_broker


@contextmanager
def channel_error(code: int, text: str, *fragments: str) -> Iterator[None]:
    """Expect the broker to close the channel with `code` and a RabbitMQ-style reply text."""
    with pytest.raises(ChannelClosedByBroker) as info:
        yield
    assert info.value.reply_code == code
    assert info.value.reply_text.startswith(f"{text} - "), info.value.reply_text
    for fragment in fragments:
        assert fragment in info.value.reply_text, info.value.reply_text


def get_body(ch: BlockingChannel, queue: str) -> bytes | None:
    """basic.get with auto-ack: the body, or None on get-empty."""
    method, _props, body = ch.basic_get(queue, auto_ack=True)
    return None if method is None else body


def drain_bodies(ch: BlockingChannel, queue: str, limit: int = 100) -> list[bytes]:
    """Every ready message of `queue`, in order (bounded)."""
    bodies: list[bytes] = []
    for _ in range(limit):
        body = get_body(ch, queue)
        if body is None:
            break
        bodies.append(body)
    return bodies


def queue_exists(conn: BlockingConnection, queue: str) -> bool:
    """Passive declare on a throwaway channel: a 404 closes only that channel."""
    probe = conn.channel()
    try:
        probe.queue_declare(queue, passive=True)
    except ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return False
    probe.close()
    return True


def exchange_exists(conn: BlockingConnection, exchange: str) -> bool:
    """Passive declare on a throwaway channel: a 404 closes only that channel."""
    probe = conn.channel()
    try:
        probe.exchange_declare(exchange, passive=True)
    except ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    probe.close()
    return True


def pump_until(conn: BlockingConnection, pred: Callable[[], bool], timeout: float = 5.0) -> None:
    """Process pika events until `pred` holds; fail if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        conn.process_data_events(time_limit=0.02)
