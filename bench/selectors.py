"""Selector cost in the broker core: one queue, ten consumers, with and without selectors.

Issue 5's target: a queue whose ten consumers have disjoint selectors keeps at least half the
throughput of the same queue whose ten consumers have none. This measures the broker's own
dispatch path (core + classic queue, real messages with AMQP properties and headers) without
sockets, so the figure is the broker's cost alone; sinks only count deliveries.

    .venv/bin/python -m bench.selectors [--messages 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.core.consumer import Consumer
from ferrymq.core.message import Entry, Message
from ferrymq.core.selection import compile_or_refuse, entry_filter
from ferrymq.protocols.amqp.properties import PROPERTY_CODEC, BasicProperties, encode_properties

CONSUMERS = 10


class CountingSink:
    """Takes every delivery at once and acknowledges it (a consumer keeping up)."""

    def __init__(self) -> None:
        self.delivered = 0

    def has_credit(self) -> bool:
        return True

    def deliver(self, consumer: Consumer, entry: Entry, queue: Any) -> None:
        self.delivered += 1
        if queue is not None and not consumer.no_ack:
            queue.ack([entry], consumer)

    def consumer_cancelled(self, consumer: Consumer) -> None:
        pass


def run(messages: int, selectors: bool) -> float:
    broker = Broker(VirtualClock())
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("sel", owner=object())
    sink = CountingSink()
    for i in range(CONSUMERS):
        consumer = Consumer(f"c{i}", sink, prefetch=100)
        if selectors:
            consumer.filter = entry_filter(compile_or_refuse(f"region = 'r{i}' AND size > 3"))
        queue.add_consumer(consumer)
    raws = [
        encode_properties(BasicProperties(headers={"region": f"r{i}", "size": 5 + i}))
        for i in range(CONSUMERS)
    ]
    props = [PROPERTY_CODEC.decode(raw) for raw in raws]
    body = b"x" * 100
    started = time.perf_counter()
    for n in range(messages):
        k = n % CONSUMERS
        message = Message("", "sel", raws[k], body, PROPERTY_CODEC, properties=props[k])
        vhost.publish("", message)
    elapsed = time.perf_counter() - started
    assert sink.delivered == messages, (sink.delivered, messages)
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    plain = [run(args.messages, False) for _ in range(args.repeat)]
    selected = [run(args.messages, True) for _ in range(args.repeat)]
    p, s = statistics.median(plain), statistics.median(selected)
    print(f"10 consumers, no selectors:       {p:,.0f} msg/s (median of {args.repeat})")
    print(f"10 consumers, disjoint selectors: {s:,.0f} msg/s (median of {args.repeat})")
    print(f"ratio: {s / p:.2f} (target >= 0.50)")


if __name__ == "__main__":
    main()
