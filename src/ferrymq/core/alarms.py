"""Resource alarms (memory, disk). While any is set, publishers are held back.

Core only keeps the state and tells listeners when it changes; the server measures memory and
disk and sets or clears alarms, and each protocol decides what blocking means on its wire
(AMQP: connection.blocked and a paused socket; others: TCP back-pressure).
"""

from __future__ import annotations

from collections.abc import Callable

AlarmListener = Callable[[frozenset[str]], None]


class Alarms:
    def __init__(self) -> None:
        self.active: frozenset[str] = frozenset()
        self._listeners: set[AlarmListener] = set()

    def subscribe(self, listener: AlarmListener) -> None:
        self._listeners.add(listener)

    def unsubscribe(self, listener: AlarmListener) -> None:
        self._listeners.discard(listener)

    def set(self, name: str) -> None:
        if name not in self.active:
            self._change(self.active | {name})

    def clear(self, name: str) -> None:
        if name in self.active:
            self._change(self.active - {name})

    def _change(self, active: frozenset[str]) -> None:
        self.active = active
        for listener in list(self._listeners):
            listener(active)
