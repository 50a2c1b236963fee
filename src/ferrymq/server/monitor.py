"""Samples memory and disk and sets core's alarms, as RabbitMQ's vm_memory_monitor and
disk_monitor do.

A failed journal write (ENOSPC, EIO) also sets the disk alarm; it clears once the filesystem
has at least a mebibyte more free than when the write failed, so publishers are not let loose on
a disk that is still full.

Memory: the bytes of message bodies the broker holds (ready and unacknowledged) against the high
watermark, a fraction of physical RAM or a byte count. We measure what the broker holds rather
than the process RSS because CPython rarely hands freed memory back to the OS: an RSS-based alarm
would not clear after consumers drain the queues. Disk: free bytes on the data directory's
filesystem against disk_free_limit.

Paging: above `memory_paging_ratio` times the memory high watermark (RabbitMQ's
vm_memory_high_watermark_paging_ratio, default 0.5) every queue pages new messages out to the
journal instead of holding them (queues/classic.py); the alarm is the backstop for when paging
cannot keep up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

from ferrymq.core.broker import Broker
from ferrymq.core.settings import Settings
from ferrymq.queues.classic import paging_state

log = logging.getLogger("ferrymq.alarms")

INTERVAL = 0.25


class StoreHealth(Protocol):
    write_failed: bool
    free_at_failure: int


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - not Linux
        return 8 * 1024**3


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


def memory_limits(settings: Settings) -> tuple[int, int]:
    """(memory high watermark, paging threshold) in bytes of held message bodies."""
    wm = settings.memory_high_watermark
    limit = int(wm * physical_memory()) if wm <= 1.0 else int(wm)
    return limit, int(limit * settings.memory_paging_ratio)


class ResourceMonitor:
    def __init__(self, broker: Broker, data_dir: Path) -> None:
        self.broker = broker
        self.data_dir = data_dir
        self.memory_limit, self.paging_limit = memory_limits(broker.config)
        self._paging = paging_state(broker)
        self.disk_limit = broker.config.disk_free_limit
        self._handle: asyncio.TimerHandle | None = None
        self.memory_used = 0
        self.disk_free = 0
        self.store: StoreHealth | None = None

    def start(self) -> None:
        self.check()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def check(self) -> None:
        alarms = self.broker.alarms
        self.memory_used = self.broker.message_bytes()
        over = self.memory_used > self.paging_limit
        if over != self._paging.node_over:
            log.info(
                "paging %s: %d bytes of messages held, paging threshold %d",
                "started" if over else "stopped",
                self.memory_used,
                self.paging_limit,
            )
            self._paging.node_over = over
        if self.memory_used > self.memory_limit:
            if "memory" not in alarms.active:
                log.warning(
                    "memory alarm set: %d bytes of messages held, high watermark %d; "
                    "publishers are blocked",
                    self.memory_used,
                    self.memory_limit,
                )
            alarms.set("memory")
        elif "memory" in alarms.active:
            log.warning("memory alarm cleared: %d bytes of messages held", self.memory_used)
            alarms.clear("memory")
        try:
            self.disk_free = shutil.disk_usage(self.data_dir).free
        except OSError:
            self.disk_free = 0
        store = self.store
        if store is not None and store.write_failed:
            if self.disk_free >= store.free_at_failure + 1024 * 1024:
                log.warning(
                    "disk space returned after a failed write (%d bytes free)", self.disk_free
                )
                store.write_failed = False
        if self.disk_free < self.disk_limit or (store is not None and store.write_failed):
            if "disk" not in alarms.active:
                log.warning(
                    "disk alarm set: %d bytes free on %s, limit %d; publishers are blocked",
                    self.disk_free,
                    self.data_dir,
                    self.disk_limit,
                )
            alarms.set("disk")
        elif "disk" in alarms.active:
            log.warning("disk alarm cleared: %d bytes free", self.disk_free)
            alarms.clear("disk")
        self._handle = asyncio.get_running_loop().call_later(INTERVAL, self.check)
