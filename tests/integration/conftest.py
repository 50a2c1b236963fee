"""Fixtures for the integration tests: a pika connection and channel, the MQTT port and paho
clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tests.mqtt_support import Paho
from tests.pika_support import connect


@pytest.fixture
def conn(broker: Any) -> Iterator[BlockingConnection]:
    with connect(broker.amqp_url) as c:
        yield c


@pytest.fixture
def ch(conn: BlockingConnection) -> BlockingChannel:
    return conn.channel()


@pytest.fixture
def port(broker: Any) -> int:
    """The broker's MQTT port (the MQTT tests' name for it)."""
    if broker.mqtt_port is None:
        pytest.skip("no MQTT listener")
    return int(broker.mqtt_port)


@pytest.fixture
def clients() -> Iterator[list[Paho]]:
    """paho clients a test made; disconnected when it ends, whatever happened."""
    made: list[Paho] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:
            pass
