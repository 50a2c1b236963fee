"""Durable definitions as plain data: what survives a restart, in RabbitMQ's own terms.

Durable vhosts' durable exchanges, durable non-exclusive queues with their arguments, and the
bindings between durable ends. Transient and exclusive things are not exported, so they are gone
after a restart, as in RabbitMQ. The format is close to RabbitMQ's definitions export so that it
reads familiar; the server writes it atomically (store/definitions.py).
"""

from __future__ import annotations

from typing import Any, cast

from ferrymq.core.broker import Broker
from ferrymq.core.vhost import PREDECLARED

FORMAT_VERSION = 1


def export_definitions(broker: Broker) -> dict[str, Any]:
    vhosts: list[dict[str, Any]] = []
    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in broker.vhosts.values():
        vhosts.append({"name": vhost.name})
        for exchange in vhost.exchanges.values():
            if exchange.name in PREDECLARED:
                durable_source = True
            elif exchange.durable:
                durable_source = True
                exchanges.append(
                    {
                        "vhost": vhost.name,
                        "name": exchange.name,
                        "type": exchange.type,
                        "durable": True,
                        "auto_delete": exchange.auto_delete,
                        "internal": exchange.internal,
                        "arguments": dict(exchange.arguments),
                    }
                )
            else:
                durable_source = False
            if not durable_source:
                continue
            for binding in exchange.bindings:
                kind, name = cast(tuple[str, str], binding.destination)
                if kind == "queue":
                    queue = vhost.queues.get(name)
                    if queue is None or not queue.durable or queue.exclusive_owner is not None:
                        continue
                else:
                    target = vhost.exchanges.get(name)
                    if target is None or not target.durable:
                        continue
                bindings.append(
                    {
                        "vhost": vhost.name,
                        "source": exchange.name,
                        "destination": name,
                        "destination_type": kind,
                        "routing_key": binding.routing_key,
                        "arguments": dict(binding.arguments),
                    }
                )
        for queue in vhost.queues.values():
            if queue.durable and queue.exclusive_owner is None:
                queues.append(
                    {
                        "vhost": vhost.name,
                        "name": queue.name,
                        "durable": True,
                        "auto_delete": queue.auto_delete,
                        "arguments": dict(queue.arguments),
                    }
                )
    return {
        "ferrymq_definitions": FORMAT_VERSION,
        "vhosts": vhosts,
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }


def import_definitions(broker: Broker, data: dict[str, Any], owner: object) -> None:
    """Recreate exported definitions (on a broker that has not started listening yet)."""
    for item in data.get("vhosts", []):
        broker.add_vhost(item["name"])
    for item in data.get("exchanges", []):
        vhost = broker.add_vhost(item["vhost"])
        vhost.declare_exchange(
            item["name"],
            item["type"],
            durable=True,
            auto_delete=item.get("auto_delete", False),
            internal=item.get("internal", False),
            arguments=item.get("arguments") or {},
        )
    for item in data.get("queues", []):
        vhost = broker.add_vhost(item["vhost"])
        vhost.declare_queue(
            item["name"],
            owner=owner,
            durable=True,
            auto_delete=item.get("auto_delete", False),
            arguments=item.get("arguments") or {},
        )
    for item in data.get("bindings", []):
        vhost = broker.add_vhost(item["vhost"])
        if item["destination_type"] == "queue":
            vhost.bind_queue(
                item["destination"],
                item["source"],
                item["routing_key"],
                item.get("arguments") or {},
                owner=owner,
            )
        else:
            vhost.bind_exchange(
                item["destination"], item["source"], item["routing_key"], item.get("arguments")
            )
