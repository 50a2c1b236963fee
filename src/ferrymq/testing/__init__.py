"""A real FerryMQ inside your tests.

`running_broker()` starts the same engine `ferrymq serve` runs, in-process on a free loopback
port, in a background thread with its own event loop, so synchronous clients (pika, kombu,
Celery) and asyncio clients alike can use it:

    from ferrymq.testing import running_broker

    with running_broker() as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))

With `virtual_clock=True` broker time stands still until the test moves it:
`broker.clock.advance(30)` expires TTLs and fires x-expires and consumer timeouts at once.
The pytest plugin (installed with the package) offers the same as the `ferrymq_broker` fixture.
"""

from __future__ import annotations

from ferrymq.testing._broker import BrokerHandle, running_broker

__all__ = ["BrokerHandle", "running_broker"]
