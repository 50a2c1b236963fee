"""The node's status for `ferrymq status`: a JSON document served on a unix socket.

The socket lives in the data directory (`status.sock`), so only users who can read the node's
data can see it, and nothing listens on the network for it. One connection, one document.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ferrymq

if TYPE_CHECKING:
    from ferrymq.server.node import Node

SOCKET_NAME = "status.sock"


def _mqtt_status(node: Node) -> dict[str, int] | None:
    try:
        from ferrymq.server.mqtt_listener import mqtt_status
    except ImportError:  # a build without MQTT
        return None
    return mqtt_status(node)


def node_status(node: Node) -> dict[str, Any]:
    broker = node.broker
    monitor = node.monitor
    queues = []
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            queues.append(
                {
                    "vhost": vhost.name,
                    "name": queue.name,
                    "durable": queue.durable,
                    "messages": queue.message_count,
                    "unacked": queue.unacked_count,
                    "consumers": queue.consumer_count,
                    "paged": getattr(queue, "paged_count", 0),
                }
            )
    status: dict[str, Any] = {
        "version": ferrymq.__version__,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - node.started_at, 1),
        "listeners": {name: f"{h}:{p}" for name, (h, p) in node.listeners.items()},
        "connections": len(node.connections),
        "alarms": sorted(broker.alarms.active),
        "queues": queues,
    }
    if monitor is not None:
        status["memory"] = {
            "message_bytes": monitor.memory_used,
            "high_watermark_bytes": monitor.memory_limit,
        }
        status["disk"] = {"free_bytes": monitor.disk_free, "free_limit_bytes": monitor.disk_limit}
    mqtt = _mqtt_status(node)
    if mqtt is not None:
        status["mqtt"] = mqtt
    if node.store is not None:
        status["store"] = {
            "fsync": node.config.fsync,
            **node.store.journal.stats(),
            "failed_writes": node.store.failed_writes,
        }
    return status


async def serve_status(node: Node, data_dir: Path) -> asyncio.AbstractServer | None:
    path = data_dir / SOCKET_NAME
    if len(os.fsencode(path)) > 100:  # AF_UNIX path limit; status is optional
        return None
    try:
        path.unlink(missing_ok=True)
    except OSError:
        return None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(node_status(node), default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    try:
        return await asyncio.start_unix_server(handle, path=str(path))
    except OSError:
        return None


def read_status(data_dir: Path, timeout: float = 5.0) -> dict[str, Any]:
    """Client side, for the CLI: raises OSError when no node is running there."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(data_dir / SOCKET_NAME))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result
