"""The Celery app that test_kombu_celery.py runs in a worker subprocess.

The worker learns where to connect from the environment, because it is a separate process:
FERRYMQ_CELERY_BROKER (an amqp:// URL) and FERRYMQ_CELERY_QUEUE (a queue name unique to the test,
so runs against a shared broker never steal each other's tasks).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue


def make_app(broker_url: str, queue: str, name: str = "ferrymq_tests") -> Celery:
    """A Celery app on the given broker; the worker and the test's client both use this."""
    app = Celery(name, broker=broker_url, backend="rpc://")
    # Transient and auto-deleted, so runs against a shared broker leave nothing behind.
    exchange = Exchange(queue, type="direct", durable=False, auto_delete=True)
    app.conf.update(
        task_queues=[Queue(queue, exchange, routing_key=queue, durable=False, auto_delete=True)],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # No pidbox, events or gossip: fewer broker objects, and nothing shared between tests.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=3,
        worker_prefetch_multiplier=10,
        broker_heartbeat=0,  # else a warm shutdown waits ~9 s on the heartbeat-paced drain
    )
    return app


app = make_app(
    os.environ.get("FERRYMQ_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("FERRYMQ_CELERY_QUEUE", "ferrymq-tests"),
)


@app.task(name="ferrymq_tests.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ferrymq_tests.echo")
def echo(value: object) -> object:
    return value


@app.task(name="ferrymq_tests.fail")
def fail(message: str) -> None:
    raise ValueError(message)
