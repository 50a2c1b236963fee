"""pytest plugin: the `ferrymq_broker` fixture, a fresh in-process broker per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ferrymq.testing._broker import BrokerHandle, running_broker


@pytest.fixture
def ferrymq_broker() -> Iterator[BrokerHandle]:
    """A fresh FerryMQ on a free loopback port: `ferrymq_broker.amqp_url`."""
    with running_broker() as broker:
        yield broker
