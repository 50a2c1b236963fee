"""`<data_dir>/mqtt_sessions.json`: the MQTT session registry on disk (the format and what is in
it: protocols/mqtt/session_store.py).

The file is replaced whole and atomically, as the definitions file is: write a temporary file,
fsync it, rename it over the old one, fsync the directory; a crash leaves the old file or the
new one, never a torn one. The snapshot is taken on the event loop (it reads the sessions) and
written by a worker thread, so the loop never waits for the disk. One write is in flight at a
time: requests that arrive meanwhile become one more write when it finishes, so a burst of
connects costs two writes, not one per connect, and the on-disk state trails the live one by
about one write (what a kill -9 can lose). `close` waits for the write in flight and writes
the final state: that is the graceful-shutdown write, with the QoS 2 identifiers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ferrymq.store.files import replace_atomically

log = logging.getLogger("ferrymq.server")


class SessionsFile:
    """See the module docstring. Implements session.SnapshotWriter.

    Args:
        path: the file.
        snapshot: returns the bytes to write (called on the loop, when a write starts).
        loop: the broker's event loop.
    """

    def __init__(
        self, path: Path, snapshot: Callable[[], bytes], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.path = path
        self.snapshot = snapshot
        self.loop = loop
        self.writes = 0  # completed writes (tests and status read it)
        self._scheduled = False
        self._writing: asyncio.Future[None] | None = None
        self._again = False
        self._closed = False

    def read(self) -> bytes | None:
        """The file's bytes; None if there is none (a new data directory)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def set_aside(self) -> Path:
        """Move an unreadable file out of the way (kept for the operator), return its new name."""
        bad = self.path.with_name(self.path.name + ".bad")
        os.replace(self.path, bad)
        return bad

    def request(self) -> None:
        if self._closed:
            return
        if self._writing is not None:
            self._again = True
        elif not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._closed or self._writing is not None:
            return
        data = self.snapshot()
        self._writing = self.loop.run_in_executor(None, replace_atomically, self.path, (data,))
        self._writing.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._writing = None
        exc = future.exception() if not future.cancelled() else None
        again, self._again = self._again, False
        if exc is not None:
            log.error("cannot write MQTT sessions to %s: %s", self.path, exc)
            return  # tried again with the next change, and at shutdown
        self.writes += 1
        if again:
            self.request()

    async def close(self) -> None:
        """Write the final state (after the write in flight) and stop writing."""
        self._closed = True
        writing = self._writing
        if writing is not None:
            try:
                await writing
            except OSError:
                pass  # logged by _done
        data = self.snapshot()
        try:
            await self.loop.run_in_executor(None, replace_atomically, self.path, (data,))
            self.writes += 1
        except OSError as exc:
            log.error("cannot write MQTT sessions to %s: %s", self.path, exc)
