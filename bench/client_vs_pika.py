"""Client send+receive throughput: ferrymq.client next to pika, against one FerryMQ process.

Issue 5's target: ferrymq.client within 20 % of pika, or ahead, persistent and not. Both clients
publish N 100-byte messages to a durable queue (persistent ones wait for the publisher confirm of
each send) and then consume them with prefetch 1,000 and acknowledgements.

    .venv/bin/python -m bench.client_vs_pika [N] [REPEAT]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import pika

from ferrymq.client import DeliveryMode, aio, connect

BODY = b"x" * 100


def start_broker(data: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrymq", "serve", "--amqp-port", "0", "--no-mqtt",
         "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = int(line.split("amqp=")[1].split()[0].rsplit(":", 1)[1])
    return proc, f"amqp://guest:guest@127.0.0.1:{port}/%2F"


def pika_run(url: str, q: str, persistent: bool, n: int) -> tuple[float, float]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1, content_type="text/plain")
    if persistent:
        ch.confirm_delivery()
    t = time.perf_counter()
    for _ in range(n):
        ch.basic_publish("", q, BODY, props)
    ch.queue_declare(q, durable=True, passive=True)  # a round trip: everything was taken
    t_send = time.perf_counter() - t
    ch.basic_qos(prefetch_count=1000)
    t = time.perf_counter()
    for got, (method, _props, _body) in enumerate(ch.consume(q, auto_ack=False), 1):
        ch.basic_ack(method.delivery_tag)
        if got == n:
            break
    ch.cancel()
    t_recv = time.perf_counter() - t
    conn.close()
    return t_send, t_recv


def ferry_run(url: str, q: str, persistent: bool, n: int) -> tuple[float, float]:
    mode = DeliveryMode.PERSISTENT if persistent else DeliveryMode.NON_PERSISTENT
    with connect(url) as conn:
        session = conn.session()
        queue = session.queue(q)
        producer = session.producer(queue, delivery_mode=mode)
        t = time.perf_counter()
        for _ in range(n):
            producer.send(BODY)
        conn.session().close()  # a round trip: everything was taken
        t_send = time.perf_counter() - t
        consumer = session.consumer(queue)
        conn.start()
        t = time.perf_counter()
        for _ in range(n):
            assert consumer.receive(10) is not None
        t_recv = time.perf_counter() - t
        consumer.close()
    return t_send, t_recv


async def aio_run(url: str, q: str, persistent: bool, n: int) -> tuple[float, float]:
    mode = DeliveryMode.PERSISTENT if persistent else DeliveryMode.NON_PERSISTENT
    async with aio.connect(url) as conn:
        session = await conn.session()
        producer = await session.producer(session.queue(q), delivery_mode=mode)
        t = time.perf_counter()
        for _ in range(n):
            await producer.send(BODY)
        await (await conn.session()).close()
        t_send = time.perf_counter() - t
        consumer = await session.consumer(session.queue(q))
        conn.start()
        t = time.perf_counter()
        for _ in range(n):
            assert (await consumer.receive(10)) is not None
        return t_send, time.perf_counter() - t


def aio_case(url: str, q: str, persistent: bool, n: int) -> tuple[float, float]:
    return asyncio.run(aio_run(url, q, persistent, n))


CASES: list[tuple[str, Callable[[str, str, bool, int], tuple[float, float]]]] = [
    ("pika BlockingConnection", pika_run),
    ("ferrymq.client (sync)", ferry_run),
    ("ferrymq.client.aio", aio_case),
]


def main() -> None:
    n_total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as data:
        proc, url = start_broker(data)
        try:
            results: dict[tuple[bool, str], list[float]] = {}
            for rep in range(repeat):
                for persistent in (False, True):
                    n = n_total if not persistent else n_total // 4
                    for i, (label, run) in enumerate(CASES):
                        send, recv = run(url, f"bench-{rep}-{int(persistent)}-{i}", persistent, n)
                        results.setdefault((persistent, label), []).append(n / (send + recv))
            for (persistent, label), rates in results.items():
                kind = "persistent" if persistent else "transient"
                print(f"{kind:10} {label:26} send+receive {statistics.median(rates):9,.0f} msg/s")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
