"""How each API flavour waits: the sync client with locks and threads, asyncio with futures.

The client's logic (_core) is written once, as generators that yield whatever they must wait
for (a reply, a confirm, a back-off sleep) and receive its result; `run_sync` drives such a
generator by blocking on each yielded object, `run_async` by awaiting it. A `Flavor` makes the
objects to wait on and the signals consumers sleep on, and runs user callbacks away from the
engine's reader context, where a slow or blocking callback would stall every delivery.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

__all__ = [
    "AioFlavor",
    "AioSignal",
    "Flavor",
    "Op",
    "Signal",
    "SyncFlavor",
    "SyncPending",
    "SyncSignal",
    "run_async",
    "run_sync",
]

log = logging.getLogger("ferrymq.client")

T = TypeVar("T")
Op = Generator[Any, Any, T]

_callback_lock = threading.Lock()


class SyncPending:
    """A one-shot result for threads: resolved once, waited on by any number of threads.

    A pre-acquired lock is the cheapest blocking primitive CPython has (one release wakes
    the waiter; waiting is one acquire), cheaper than an Event's condition variable.
    """

    __slots__ = ("_callbacks", "_done", "_exc", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[SyncPending], None]] | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._finish(value, None)

    def set_exception(self, exc: BaseException) -> None:
        self._finish(None, exc)

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        with _callback_lock:
            if self._done:
                return
            self._value = value
            self._exc = exc
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
        self._lock.release()
        if callbacks:
            for callback in callbacks:
                callback(self)

    def add_done_callback(self, callback: Callable[[SyncPending], None]) -> None:
        """Call `callback(self)` once resolved (at once, in this thread, if it already is)."""
        with _callback_lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def wait(self, timeout: float | None = None) -> Any:
        if not self._done:
            if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
                raise TimeoutError("no reply from the broker in time")
            self._lock.release()
        if self._exc is not None:
            raise self._exc
        return self._value

    def result(self) -> Any:
        """The value (raises the error); only once done."""
        if self._exc is not None:
            raise self._exc
        return self._value

    def exception(self) -> BaseException | None:
        return self._exc


class _SyncSleep:
    """A yielded back-off delay for run_sync."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def wait(self, timeout: float | None = None) -> None:
        time.sleep(self.seconds)


class Signal(Protocol):
    """Wakes whoever sleeps on a consumer or a connection state; notify() from any context."""

    def notify(self) -> None: ...


class SyncSignal:
    """A condition that is cheap to notify when nobody waits (the common case on delivery)."""

    __slots__ = ("_cond", "_waiting")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0

    def notify(self) -> None:
        # Safe without the lock: a waiter raises _waiting before testing its predicate under
        # the lock, so either we see it waiting or it sees what we did before notifying.
        if self._waiting:
            with self._cond:
                self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Sleep until predicate() is true; False if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            try:
                while not predicate():
                    if deadline is None:
                        self._cond.wait(1.0)
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiting -= 1


class AioSignal:
    """The asyncio counterpart of SyncSignal; notify() only on the loop's thread."""

    __slots__ = ("_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        loop = self._loop
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            handle = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                handle = loop.call_later(remaining, _expire, waiter)
            try:
                await waiter
            finally:
                if handle is not None:
                    handle.cancel()
            if deadline is not None and loop.time() >= deadline:
                return predicate()
        return True


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Flavor(Protocol):
    """What _core needs from an API flavour (see the module docstring)."""

    is_async: bool

    def pending(self) -> Any: ...

    def sleep(self, seconds: float) -> Any: ...

    def signal(self) -> Any: ...

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None: ...

    def spawn(self, op: Op[Any], name: str) -> None: ...


class SyncFlavor:
    """Threads: user callbacks run on one callback thread per connection, in order."""

    is_async = False

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._callbacks: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def pending(self) -> SyncPending:
        return SyncPending()

    def sleep(self, seconds: float) -> _SyncSleep:
        return _SyncSleep(seconds)

    def signal(self) -> SyncSignal:
        return SyncSignal()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_callbacks, name="ferrymq-callbacks", daemon=True
                )
                self._thread.start()
        self._callbacks.put((fn, args))

    def _run_callbacks(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("FerryMQ client callback %r raised", fn)

    def spawn(self, op: Op[Any], name: str) -> None:
        def run() -> None:
            try:
                run_sync(op, None)
            except Exception:
                log.exception("FerryMQ client background task %s failed", name)

        threading.Thread(target=run, name=name, daemon=True).start()

    def stop(self) -> None:
        """End the callback thread after the callbacks already queued."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._callbacks.put(None)
            if thread is not threading.current_thread():
                thread.join(5)


class AioFlavor:
    """One event loop: callbacks are scheduled on it, background work is a task."""

    is_async = True

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self._tasks: set[asyncio.Task[Any]] = set()

    def pending(self) -> asyncio.Future[Any]:
        return self.loop.create_future()

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self.loop.call_later(seconds, _expire, future)
        return future

    def signal(self) -> AioSignal:
        return AioSignal(self.loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        def run() -> None:
            try:
                result = fn(*args)
                if asyncio.iscoroutine(result):
                    self._track(self.loop.create_task(result))
            except Exception:
                log.exception("FerryMQ client callback %r raised", fn)

        self.loop.call_soon(run)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, op: Op[Any], name: str) -> None:
        async def run() -> None:
            try:
                await run_async(op, None)
            except Exception:
                log.exception("FerryMQ client background task %s failed", name)

        self._track(self.loop.create_task(run(), name=name))


def run_sync(op: Op[T], timeout: float | None) -> T:
    """Drive a _core generator in this thread, blocking on everything it yields."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            waitable = op.send(value) if error is None else op.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value = waitable.wait(timeout)
            error = None
        except BaseException as exc:  # handed to the generator, which may handle it
            value, error = None, exc


async def run_async(op: Op[T], timeout: float | None) -> T:
    """Drive a _core generator on the running loop, awaiting everything it yields."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            waitable = op.send(value) if error is None else op.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            if timeout is None or waitable.done():
                value = await waitable
            else:
                value = await asyncio.wait_for(asyncio.shield(waitable), timeout)
            error = None
        except asyncio.CancelledError:
            op.close()
            raise
        except BaseException as exc:
            value, error = None, exc
