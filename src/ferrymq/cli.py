"""The `ferrymq` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

import ferrymq
from ferrymq.server.config import Config, ConfigError, load_config
from ferrymq.server.node import ListenError, Node


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"ferrymq: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(ferrymq.__version__, prog_name="ferrymq")
def main() -> None:
    """FerryMQ, a message broker."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--bind", help="Address to listen on (default 127.0.0.1).")
@click.option("--amqp-port", type=int, help="AMQP 0-9-1 port (default 5672; 0 picks a free one).")
@click.option("--mqtt-port", type=int, help="MQTT port (default 1883; 0 picks a free one).")
@click.option("--no-mqtt", is_flag=True, help="Do not open the MQTT listener.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the node keeps its data.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    config_path: str | None,
    bind: str | None,
    amqp_port: int | None,
    mqtt_port: int | None,
    no_mqtt: bool,
    data_dir: str | None,
    log_level: str | None,
) -> None:
    """Start a node and serve until SIGTERM or SIGINT."""
    overrides: dict[str, Any] = {
        "bind": bind,
        "amqp_port": amqp_port,
        "mqtt_port": mqtt_port,
        "data_dir": data_dir and Path(data_dir),
        "log_level": log_level,
    }
    try:
        config = load_config(config_path, overrides)
        if no_mqtt:
            config.mqtt_port = None
    except ConfigError as exc:
        _fail(str(exc), 2)
        return
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        runner(_serve(config))
    except ListenError as exc:
        _fail(str(exc))


async def _serve(config: Config) -> None:
    node = Node(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(node.ready_line(), flush=True)
    await stop.wait()
    logging.getLogger("ferrymq.server").info("shutting down")
    await node.stop()


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="The node's data directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
def status(data_dir: str | None, as_json: bool) -> None:
    """Show a running node's listeners, alarms, memory, disk, store and queues."""
    import json

    from ferrymq.server.config import default_data_dir
    from ferrymq.server.status import read_status

    directory = Path(data_dir) if data_dir else default_data_dir()
    try:
        doc = read_status(directory)
    except OSError as exc:
        _fail(f"no running node answers in {directory}: {exc.strerror or exc}")
        return
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    alarms = ", ".join(doc["alarms"]) or "none"
    click.echo(f"FerryMQ {doc['version']} pid {doc['pid']} up {doc['uptime_s']}s")
    click.echo("listeners: " + " ".join(f"{k}={v}" for k, v in doc["listeners"].items()))
    click.echo(f"connections: {doc['connections']}")
    click.echo(f"alarms: {alarms}")
    if "memory" in doc:
        mem = doc["memory"]
        click.echo(
            f"memory: {mem['message_bytes']} bytes of messages "
            f"(high watermark {mem['high_watermark_bytes']})"
        )
    if "disk" in doc:
        disk = doc["disk"]
        click.echo(f"disk: {disk['free_bytes']} bytes free (limit {disk['free_limit_bytes']})")
    if "store" in doc:
        store = doc["store"]
        click.echo(
            f"store: fsync={store['fsync']} "
            + " ".join(f"{k}={v}" for k, v in store.items() if k != "fsync")
        )
    if "mqtt" in doc:
        mqtt = doc["mqtt"]
        click.echo(
            f"mqtt: {mqtt['sessions']} sessions ({mqtt['online']} online, "
            f"{mqtt['persistent']} persistent)"
        )
    click.echo(f"queues: {len(doc['queues'])}")
    for q in doc["queues"]:
        click.echo(
            f"  {q['vhost']} {q['name']}: {q['messages']} ready, {q['unacked']} unacked, "
            f"{q['consumers']} consumers{' (durable)' if q['durable'] else ''}"
            + (f", {q['paged']} paged to disk" if q.get("paged") else "")
        )


if __name__ == "__main__":  # pragma: no cover
    main()
