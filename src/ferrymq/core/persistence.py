"""The seam between core and durable storage (the embedded journal now, PostgreSQL later).

Core tells the store what must survive a restart: a persistent message routed to durable queues
(written once, however many queues), its settlement in each queue, and its first delivery (so it
comes back marked redelivered). `after_commit` runs a callback once everything written so far is
on disk, which is when publisher confirms and tx.commit-ok may be sent. Definitions (durable
vhosts, exchanges, queues, bindings) go through `definitions_changed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class MessageStore(Protocol):
    def write_message(
        self,
        msg_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> None: ...

    def settle(self, msg_id: int, queue: str) -> None: ...

    def delivered(self, msg_id: int, queue: str) -> None: ...

    def after_commit(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call back (on the broker's loop) once all writes so far are durable, or failed."""
        ...

    @property
    def pending(self) -> bool:
        """True while writes made since the last commit are not yet durable."""
        ...
