"""Durable storage: the message journal (segments, group commit, recovery, compaction).

The store knows nothing of AMQP or core: messages are ids, queue names and bytes.
"""

from __future__ import annotations

from ferrymq.store.journal import (
    Journal,
    Location,
    RecoveredMessage,
    Recovery,
    StoreError,
)

__all__ = ["Journal", "Location", "RecoveredMessage", "Recovery", "StoreError"]
