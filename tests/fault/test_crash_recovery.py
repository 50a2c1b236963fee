"""kill -9 the broker at random points; every confirmed message must come back, intact, once.

Acks are not confirmed by the broker (as in RabbitMQ), so the test makes them durable the way a
user can: a confirmed persistent publish after the acks on the same connection is on disk only
after everything the broker wrote before it.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.server_process import ServerProcess

QUEUES = ["crash.direct", "crash.f1", "crash.f2", "crash.prio", "crash.dlx", "crash.dead"]


def _body(tag: str, payload: bytes) -> bytes:
    return tag.encode() + b"|" + hashlib.sha256(payload).hexdigest().encode() + b"|" + payload


def _check(body: bytes) -> str:
    tag, digest, payload = body.split(b"|", 2)
    assert hashlib.sha256(payload).hexdigest().encode() == digest, f"corrupt body for {tag!r}"
    return tag.decode()


def _declare(ch: pika.adapters.blocking_connection.BlockingChannel) -> None:
    ch.queue_declare("crash.direct", durable=True)
    ch.queue_bind("crash.direct", "amq.direct", "k")
    ch.exchange_declare("crash.fx", "fanout", durable=True)
    for q in ("crash.f1", "crash.f2"):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "crash.fx")
    ch.queue_declare("crash.prio", durable=True, arguments={"x-max-priority": 5})
    ch.queue_declare("crash.dead", durable=True)
    ch.queue_declare(
        "crash.dlx",
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "crash.dead"},
    )


ROUTES = [
    ("amq.direct", "k", ["crash.direct"]),
    ("crash.fx", "", ["crash.f1", "crash.f2"]),
    ("", "crash.prio", ["crash.prio"]),
    ("", "crash.dlx", ["crash.dlx"]),
]


class Ledger:
    """What the client knows for sure: confirmed bodies per queue, acked tags."""

    def __init__(self) -> None:
        self.confirmed: dict[str, set[str]] = {q: set() for q in QUEUES}
        self.acked: dict[str, set[str]] = {q: set() for q in QUEUES}
        self.lock = threading.Lock()


def _publish(
    ch: pika.adapters.blocking_connection.BlockingChannel,
    ledger: Ledger,
    rnd: random.Random,
    tag: str,
) -> None:
    exchange, key, queues = ROUTES[rnd.randrange(len(ROUTES))]
    payload = rnd.randbytes(rnd.choice([0, 10, 200, 5000]))
    props = pika.BasicProperties(delivery_mode=2, priority=rnd.randrange(6))
    ch.basic_publish(exchange, key, _body(tag, payload), props, mandatory=True)
    with ledger.lock:  # returned only after the broker's confirm
        for q in queues:
            ledger.confirmed[q].add(tag)


def _round(tmp: Path, round_no: int, rnd: random.Random) -> None:
    server = ServerProcess(tmp / f"round{round_no}").start()
    ledger = Ledger()
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    ch = conn.channel()
    _declare(ch)
    ch.confirm_delivery()
    for i in range(200):
        _publish(ch, ledger, rnd, f"a{i}")
    # consume and ack part of every queue; reject some from crash.dlx into crash.dead
    consumer = conn.channel()
    for q in ("crash.direct", "crash.f1", "crash.prio", "crash.dlx"):
        for _ in range(15):
            method, _props, body = consumer.basic_get(q)
            if method is None:
                break
            tag = _check(body)
            if q == "crash.dlx" and int(tag[1:]) % 2:
                consumer.basic_reject(method.delivery_tag, requeue=False)
                ledger.confirmed["crash.dead"].add(tag)
            else:
                consumer.basic_ack(method.delivery_tag)
            ledger.acked[q].add(tag)
    # deliver some without acking: they must come back marked redelivered
    unacked: dict[str, set[str]] = {"crash.f2": set()}
    for _ in range(10):
        method, _props, body = consumer.basic_get("crash.f2")
        if method is None:
            break
        unacked["crash.f2"].add(_check(body))
    _publish(ch, ledger, rnd, "barrier")  # everything before it is now on disk

    # phase B: keep publishing from another connection and kill -9 at a random moment
    stop = threading.Event()

    def publisher() -> None:
        try:
            pconn = pika.BlockingConnection(pika.URLParameters(server.url))
            pch = pconn.channel()
            pch.confirm_delivery()
            i = 0
            while not stop.is_set() and i < 100_000:
                _publish(pch, ledger, rnd, f"b{i}")
                i += 1
        except (pika.exceptions.AMQPError, OSError):
            return  # the broker died mid-publish: those publishes were not confirmed

    thread = threading.Thread(target=publisher)
    thread.start()
    time.sleep(rnd.uniform(0.05, 0.6))
    server.kill()
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    for c in (conn,):
        try:
            c.close()
        except Exception:
            pass

    # restart on the same data directory and read everything back
    server2 = ServerProcess(server.data_dir).start()
    try:
        conn2 = pika.BlockingConnection(pika.URLParameters(server2.url))
        ch2 = conn2.channel()
        for q in QUEUES:
            seen: list[str] = []
            redelivered: set[str] = set()
            while True:
                method, _props, body = ch2.basic_get(q, auto_ack=True)
                if method is None:
                    break
                tag = _check(body)
                seen.append(tag)
                if method.redelivered:
                    redelivered.add(tag)
            assert len(seen) == len(set(seen)), f"{q}: duplicates after recovery"
            expected = ledger.confirmed[q] - ledger.acked[q]
            missing = expected - set(seen)
            assert not missing, f"{q}: confirmed messages lost: {sorted(missing)[:10]}"
            resurrected = ledger.acked[q] & set(seen)
            assert not resurrected, f"{q}: acked messages came back: {sorted(resurrected)[:10]}"
            if q in unacked:
                assert unacked[q] <= redelivered, f"{q}: delivered messages not marked redelivered"
        conn2.close()
        assert any("recovered" in line for line in server2.stderr_lines)
    finally:
        assert server2.stop() == 0


@pytest.mark.timeout(300)
def test_kill_9_at_random_points_loses_no_confirmed_message(tmp_path: Path) -> None:
    rnd = random.Random(20261124)
    for round_no in range(4):
        _round(tmp_path, round_no, rnd)
