"""Benchmark targets: a FerryMQ the tool starts itself, or any broker given by URL.

A started FerryMQ runs as `<this python> -m ferrymq serve --amqp-port 0 --data-dir <tmp>`; we read
its stdout until `ferrymq ready amqp=127.0.0.1:PORT`, keep draining it afterwards (so a chatty
broker never blocks on a full pipe) and stop it with SIGTERM, then SIGKILL of that same pid.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from bench.amqp import AmqpUrl
from bench.procstat import pid_listening_on

READY_RE = re.compile(r"ferrymq ready amqp=([0-9.]+):(\d+)")


@dataclass(frozen=True, slots=True)
class Target:
    """A broker under test: display name, AMQP URL, and the pid whose CPU we charge to it."""

    name: str
    url: AmqpUrl
    pid: int | None


def resolve_pid(url: AmqpUrl, given: int | None) -> int | None:
    """--pid wins; otherwise the owner of the listening port (None if /proc does not say)."""
    if given:
        return given
    return pid_listening_on(url.port)


class ManagedFerryMQ:
    """A FerryMQ subprocess with a private data dir, for one bench run."""

    def __init__(self, *, python: str = sys.executable, start_timeout: float = 60.0):
        self.python = python
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.data_dir = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ready = threading.Event()

    @property
    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "ferrymq",
            "serve",
            "--amqp-port",
            "0",
            "--data-dir",
            self.data_dir or "<tmpdir>",
        ]

    def start(self, data_dir: str | None = None) -> AmqpUrl:
        """Start on a fresh temporary data dir, or on `data_dir` (a restart)."""
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="ferrymq-bench-")
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the broker
        )
        threading.Thread(target=self._drain, name="ferrymq-stdout", daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            m = READY_RE.search(line)
            if m:
                self._ready.set()
                return AmqpUrl(host=m.group(1), port=int(m.group(2)))
        code = self.proc.poll()
        status = f"exited with {code}" if code is not None else "did not get ready in time"
        command = " ".join(self.command)
        self.stop()
        tail = "\n".join(self.tail) or "(no output)"
        raise RuntimeError(f"ferrymq {status}: {command}\n{tail}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if not self._ready.is_set():
                self._lines.put(line)
        self._lines.put(None)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 15.0, keep_data: bool = False) -> int | None:
        """SIGTERM, wait, SIGKILL the same pid; returns the exit code. Removes the data dir
        unless keep_data (a restart follows)."""
        proc, self.proc = self.proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            code = proc.returncode
        if self.data_dir and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = ""
        return code
