"""The in-process broker behind ferrymq.testing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.core.settings import User
from ferrymq.server.config import Config
from ferrymq.server.node import Node

T = TypeVar("T")


class ClockControl:
    """Moves a broker's virtual clock from the test's thread."""

    def __init__(self, handle: BrokerHandle, clock: VirtualClock) -> None:
        self._handle = handle
        self._clock = clock

    def advance(self, seconds: float) -> None:
        """Move broker time forward by `seconds`, firing everything that falls due."""
        self._handle.call(lambda: self._clock.advance(seconds))

    def now(self) -> float:
        return self._handle.call(self._clock.now)


class BrokerHandle:
    """A running in-process broker: its address, its clock, and a way to run code on its loop."""

    def __init__(
        self, node: Node, loop: asyncio.AbstractEventLoop, clock: VirtualClock | None
    ) -> None:
        self.node = node
        self.loop = loop
        self.host, self.amqp_port = node.listeners["amqp"]
        self.amqp_url = f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"
        mqtt = node.listeners.get("mqtt")
        self.mqtt_port: int | None = None if mqtt is None else mqtt[1]
        self.clock: ClockControl | None = None if clock is None else ClockControl(self, clock)

    @property
    def broker(self) -> Broker:
        """The core; only touch it through `call`."""
        return self.node.broker

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run fn on the broker's loop and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed back to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)


def _new_loop() -> asyncio.AbstractEventLoop:
    """The same loop `ferrymq serve` runs on: uvloop where installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@contextmanager
def running_broker(
    *,
    virtual_clock: bool = False,
    data_dir: str | Path | None = None,
    users: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> Iterator[BrokerHandle]:
    """Start a broker on 127.0.0.1 on a free port; stop it when the block ends.

    Keyword arguments are broker settings (frame_max, channel_max, heartbeat, max_message_size,
    max_connections, consumer_timeout); `users` is a list of {"name", "password", "tags"}.
    """
    config = Config(bind="127.0.0.1", amqp_port=0, mqtt_port=0)
    if virtual_clock:
        # heartbeat deadlines follow the virtual clock; clients heartbeat in real time, so
        # propose none unless the test asks (it then drives both sides itself)
        config.settings.heartbeat = 0
    for key, value in settings.items():
        if not hasattr(config.settings, key):
            raise TypeError(f"unknown broker setting {key!r}")
        setattr(config.settings, key, value)
    if users is not None:
        config.settings.users = [
            User(u["name"], u["password"], list(u.get("tags", [])), u.get("vhosts")) for u in users
        ]
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ferrymq-test-")
        data_dir = tmp.name
    config.data_dir = Path(data_dir)
    clock = VirtualClock() if virtual_clock else None
    loop = _new_loop()
    node = Node(config, clock)
    started: concurrent.futures.Future[None] = concurrent.futures.Future()
    stopping = asyncio.Event()

    async def main() -> None:
        try:
            await node.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        await stopping.wait()
        await node.stop(grace=1.0)

    thread = threading.Thread(
        target=loop.run_until_complete, args=(main(),), name="ferrymq-broker", daemon=True
    )
    thread.start()
    try:
        started.result(30)
        yield BrokerHandle(node, loop, clock)
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            thread.join(15)
        if not thread.is_alive():
            loop.close()
        if tmp is not None:
            tmp.cleanup()
