"""CPU and memory of processes read from /proc, and the pid behind a listening port.

CPU is utime + stime of a whole process (all threads) from /proc/<pid>/stat, so a
multi-threaded broker such as RabbitMQ's beam.smp is charged in full. 100 % means one core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TCP_LISTEN = "0A"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` in seconds, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_KB / 1024
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class HostCpu:
    """Whole-machine busy and total jiffies from the first line of /proc/stat."""

    busy: int
    total: int

    @classmethod
    def read(cls) -> HostCpu:
        with open("/proc/stat", "rb") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
        total = sum(parts[:8])  # guest time is already inside user/nice
        return cls(busy=total - idle, total=total)


def _listen_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != TCP_LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The pid owning the listening socket on `port` (via /proc/net/tcp and /proc/*/fd).

    Needs permission to read other processes' fd tables (root, or the same user). Returns the
    lowest matching pid when several processes share the socket.
    """
    targets = {f"socket:[{inode}]" for inode in _listen_inodes(port)}
    if not targets:
        return None
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in targets:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return min(found) if found else None
