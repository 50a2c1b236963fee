"""Fixtures for the pika-based integration tests: one connection and channel per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tests.pika_support import connect


@pytest.fixture
def conn(broker: Any) -> Iterator[BlockingConnection]:
    with connect(broker.amqp_url) as c:
        yield c


@pytest.fixture
def ch(conn: BlockingConnection) -> BlockingChannel:
    return conn.channel()
