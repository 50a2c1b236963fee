"""kombu (py-amqp underneath) and a real Celery worker against the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pika
import pika.exceptions
import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.message import Message
from kombu.simple import SimpleQueue

from tests.integration.celery_app import make_app

ROOT = Path(__file__).resolve().parents[2]


def pika_conn(broker: Any) -> pika.BlockingConnection:
    p = pika.URLParameters(broker.amqp_url)
    p.socket_timeout = 5
    return pika.BlockingConnection(p)


def exists(broker: Any, kind: str, entity: str) -> bool:
    """Whether a queue or exchange exists, asked with a passive declare from pika."""
    with pika_conn(broker) as c:
        ch = c.channel()
        try:
            if kind == "queue":
                ch.queue_declare(entity, passive=True)
            else:
                ch.exchange_declare(entity, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return False
        return True


# ---------------------------------------------------------------- kombu


def test_kombu_producer_consumer_direct_exchange(broker: Any, name: str) -> None:
    exchange = kombu.Exchange(f"{name}.x", type="direct", auto_delete=True)
    queue = kombu.Queue(f"{name}.q", exchange, routing_key="orders", auto_delete=True)
    received: list[tuple[Any, dict[str, Any]]] = []

    with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:

        def on_message(body: Any, message: Message) -> None:
            received.append((body, dict(message.headers)))
            message.ack()

        with kombu.Consumer(conn, queues=[queue], callbacks=[on_message], accept=["json"]):
            producer = kombu.Producer(conn)
            for i in range(20):
                producer.publish(
                    {"n": i, "item": "widget"},
                    exchange=exchange,
                    routing_key="orders",
                    serializer="json",
                    headers={"seq": i},
                    declare=[queue],
                )
            for _ in range(200):  # bounded: at most 200 drains of 5 s, normally 20 quick ones
                if len(received) == 20:
                    break
                conn.drain_events(timeout=5)

    assert [b for b, _ in received] == [{"n": i, "item": "widget"} for i in range(20)]
    assert [h["seq"] for _, h in received] == list(range(20))


def test_kombu_simple_queue(broker: Any, name: str) -> None:
    with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:
        sq: SimpleQueue = conn.SimpleQueue(f"{name}.simple")
        try:
            for i in range(5):
                sq.put({"i": i}, serializer="json")
            got = []
            for _ in range(5):
                msg = sq.get(block=True, timeout=5)
                got.append(msg.payload)
                msg.ack()
            assert got == [{"i": i} for i in range(5)]
            with pytest.raises(sq.Empty):
                sq.get(block=True, timeout=0.2)
            assert sq.qsize() == 0
        finally:
            sq.close()  # cancels the consumer first, so the delete below cancels nothing
            cleanup = conn.channel()
            kombu.Queue(f"{name}.simple")(cleanup).delete()
            kombu.Exchange(f"{name}.simple")(cleanup).delete()  # SimpleQueue made it too
    assert not exists(broker, "queue", f"{name}.simple")
    assert not exists(broker, "exchange", f"{name}.simple")


def test_kombu_declare_and_delete(broker: Any, name: str) -> None:
    exchange = kombu.Exchange(f"{name}.topic", type="topic", durable=False)
    queue = kombu.Queue(f"{name}.q", exchange, routing_key="a.#", durable=False)
    with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:
        ch = conn.channel()
        try:
            bound_x = exchange(ch)
            bound_q = queue(ch)
            bound_x.declare()
            bound_q.declare()  # declares the queue and binds it
            assert exists(broker, "exchange", f"{name}.topic")
            assert exists(broker, "queue", f"{name}.q")

            kombu.Producer(ch).publish(b"routed", exchange=exchange, routing_key="a.b.c")
            kombu.Producer(ch).publish(b"not routed", exchange=exchange, routing_key="b.a")
            msg = None
            for _ in range(100):
                msg = bound_q.get(no_ack=True)
                if msg is not None:
                    break
                time.sleep(0.02)  # basic.get may overtake the publish; poll, bounded
            assert msg is not None
            assert msg.body == b"routed"
            assert bound_q.get(no_ack=True) is None

            _, count, consumers = bound_q.queue_declare(passive=True)
            assert (count, consumers) == (0, 0)
        finally:
            queue(ch).delete()
            exchange(ch).delete()
            ch.close()
    assert not exists(broker, "queue", f"{name}.q")
    assert not exists(broker, "exchange", f"{name}.topic")


# ---------------------------------------------------------------- celery


@pytest.fixture
def celery_worker(broker: Any, name: str) -> Iterator[tuple[str, Path]]:
    """A `celery worker` subprocess consuming this test's own queue; stopped at the end."""
    queue = f"{name}.celery"
    env = dict(os.environ)
    env.update(
        FERRYMQ_CELERY_BROKER=broker.amqp_url,
        FERRYMQ_CELERY_QUEUE=queue,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    with tempfile.NamedTemporaryFile("w+b", prefix="celery-worker-", suffix=".log") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.integration.celery_app",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
                "-Q",
                queue,
                "-n",
                f"{name}@localhost",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield queue, Path(log.name)
        finally:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


def test_celery_200_tasks_with_rpc_results(broker: Any, celery_worker: tuple[str, Path]) -> None:
    queue, log = celery_worker
    client = make_app(broker.amqp_url, queue, name="ferrymq_tests_client")
    try:
        results = [client.send_task("ferrymq_tests.add", args=(i, 1000)) for i in range(200)]
        try:
            values = [r.get(timeout=30) for r in results]
        except CeleryTimeout:
            pytest.fail("results did not arrive; worker log:\n" + _tail(log))
        assert values == [i + 1000 for i in range(200)]
        assert all(r.successful() for r in results)

        echoed = client.send_task("ferrymq_tests.echo", args=({"nested": [1, "two", None]},))
        assert echoed.get(timeout=10) == {"nested": [1, "two", None]}

        failed = client.send_task("ferrymq_tests.fail", args=("boom",))
        with pytest.raises(ValueError, match="boom"):
            failed.get(timeout=10)
        assert failed.state == "FAILURE"
    finally:
        client.close()
