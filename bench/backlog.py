"""Deep queue: resident memory with millions of queued persistent messages, and recovery of them.

    python -m bench.backlog --messages 10000000 --size 1024 [--restart]

Starts FerryMQ (default settings, a fresh data dir), publishes `messages` persistent messages of
`size` bytes to one durable queue with no consumer (publisher confirms, window 1000), sampling
the broker's RSS as it goes; then, with --restart, stops it (SIGTERM), starts it again on the
same data dir and reports the time to ready and the RSS after recovery. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import sys
import time
from typing import Any

from bench.amqp import AmqpUrl, BlockingConnection, publish_template
from bench.brokers import ManagedFerryMQ, resolve_pid
from bench.loadgen import _Confirms
from bench.procstat import rss_mb

QUEUE = "bench-backlog"
WINDOW = 1000


def _publish(url: Any, pid: int, messages: int, size: int) -> dict[str, Any]:
    conn = BlockingConnection(url)
    conn.open_channel()
    conn.confirm_select()
    conn.queue_declare(QUEUE, durable=True)
    frames, _ = publish_template(
        channel=1,
        exchange="",
        routing_key=QUEUE,
        body=b"x" * size,
        persistent=True,
        frame_max=conn.frame_max,
    )
    sock: socket.socket = conn.sock
    confirms = _Confirms()
    batch = 100
    chunk = frames * batch
    sent = 0
    samples: list[tuple[int, float]] = []
    next_sample = 1_000_000
    started = time.monotonic()
    while sent < messages or confirms.confirmed < sent:
        if sent < messages and sent - confirms.confirmed < WINDOW:
            n = min(batch, messages - sent)
            sock.sendall(chunk if n == batch else frames * n)
            sent += n
        elif not confirms.pump(sock):
            select.select([sock], [], [], 0.05)
        if confirms.confirmed >= next_sample:
            samples.append((confirms.confirmed, rss_mb(pid) or 0.0))
            print(
                f"  {confirms.confirmed:>11,} confirmed, broker RSS {samples[-1][1]:,.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            next_sample += 1_000_000
    elapsed = time.monotonic() - started
    conn.close()
    time.sleep(2.0)  # let the last paging and the resource monitor settle
    rss = rss_mb(pid) or 0.0
    return {
        "published": messages,
        "nacked": confirms.nacks,
        "publish_seconds": round(elapsed, 1),
        "publish_rate": round(messages / elapsed),
        "rss_mb": round(rss, 1),
        "rss_bytes_per_message": round(rss * 1e6 / messages, 1),
        "samples": samples,
    }


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--restart", action="store_true", help="measure recovery too")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument(
        "--reference",
        metavar="URL",
        help="measure an already running broker instead (e.g. RabbitMQ): publish and RSS only; "
        "its queue is deleted afterwards",
    )
    parser.add_argument("--reference-pid", type=int, help="pid to measure (default: port owner)")
    parser.add_argument(
        "--keep-queue",
        action="store_true",
        help="with --reference: leave the queue (a restart follows)",
    )
    args = parser.parse_args()
    if args.reference:
        url = AmqpUrl.parse(args.reference)
        pid = resolve_pid(url, args.reference_pid)
        if pid is None:
            parser.error("cannot find the reference broker's pid: pass --reference-pid")
        ref: dict[str, Any] = {"broker": args.reference, "idle_rss_mb": rss_mb(pid)}
        try:
            ref.update(_publish(url, pid, args.messages, args.size))
        finally:
            if not args.keep_queue:
                conn = BlockingConnection(url)
                conn.open_channel()
                conn.queue_delete(QUEUE)
                conn.close()
        print(json.dumps(ref, indent=2))
        return

    broker = ManagedFerryMQ(start_timeout=600)
    url = broker.start()
    assert broker.pid is not None
    idle = rss_mb(broker.pid) or 0.0
    result: dict[str, Any] = {"messages": args.messages, "size": args.size, "idle_rss_mb": idle}
    try:
        result.update(_publish(url, broker.pid, args.messages, args.size))
        result["journal_bytes"] = _dir_bytes(broker.data_dir)
        data_dir = broker.data_dir
        if args.restart:
            broker.stop(keep_data=True)
            broker = ManagedFerryMQ(start_timeout=600)
            started = time.monotonic()
            broker.start(data_dir)
            result["restart_to_ready_seconds"] = round(time.monotonic() - started, 2)
            assert broker.pid is not None
            result["rss_after_recovery_mb"] = round(rss_mb(broker.pid) or 0.0, 1)
            result["recovery_log"] = [line for line in broker.tail if "recovered" in line]
    finally:
        data_dir = broker.data_dir
        broker.stop(keep_data=True)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
