"""Fixtures shared by every test layer.

`broker` gives each test a fresh FerryMQ started in-process on a free loopback port
(ferrymq.testing.running_broker). Setting FERRYMQ_TEST_AMQP_URL points the same tests at an
external broker instead (for example a RabbitMQ on loopback) so a test's expectations can be
checked against the reference broker; tests that need the virtual clock or broker-side
configuration are skipped in that mode.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

EXTERNAL_URL = os.environ.get("FERRYMQ_TEST_AMQP_URL")


@dataclass
class ExternalBroker:
    amqp_url: str
    host: str
    amqp_port: int
    clock: Any = None


def _external() -> ExternalBroker:
    assert EXTERNAL_URL
    parts = urlsplit(EXTERNAL_URL)
    return ExternalBroker(EXTERNAL_URL, parts.hostname or "127.0.0.1", parts.port or 5672)


@pytest.fixture
def broker() -> Iterator[Any]:
    """A fresh broker with default settings (real clock)."""
    if EXTERNAL_URL:
        yield _external()
        return
    from ferrymq.testing import running_broker

    with running_broker() as b:
        yield b


@pytest.fixture
def clocked_broker() -> Iterator[Any]:
    """A fresh broker on a virtual clock: `clocked_broker.clock.advance(seconds)`."""
    if EXTERNAL_URL:
        pytest.skip("needs FerryMQ's virtual clock")
    from ferrymq.testing import running_broker

    with running_broker(virtual_clock=True) as b:
        yield b


@pytest.fixture
def make_broker() -> Iterator[Callable[..., Any]]:
    """Start brokers with custom settings: `make_broker(frame_max=8192, heartbeat=1)`."""
    if EXTERNAL_URL:
        pytest.skip("needs a FerryMQ with custom settings")
    from contextlib import ExitStack

    from ferrymq.testing import running_broker

    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(running_broker(**kw))


@pytest.fixture
def name() -> str:
    """A unique name for queues and exchanges, so tests never collide on a shared broker."""
    return f"t-{uuid.uuid4().hex[:12]}"
