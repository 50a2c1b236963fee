"""Run `ferrymq serve` as a real subprocess for tests that restart or kill the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Self


class ServerProcess:
    """A broker subprocess on free loopback ports with a given data directory; MQTT only when
    `mqtt` (then `mqtt_port` is its port)."""

    def __init__(self, data_dir: Path, *extra: str, mqtt: bool = False) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.mqtt = mqtt
        self.proc: subprocess.Popen[str] | None = None
        self.amqp_port = 0
        self.mqtt_port = 0
        self.stderr_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def start(self, timeout: float = 60.0) -> Self:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ferrymq",
                "serve",
                "--amqp-port",
                "0",
                *(("--mqtt-port", "0") if self.mqtt else ("--no-mqtt",)),
                "--data-dir",
                str(self.data_dir),
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        if not lines or not lines[0].startswith("ferrymq ready"):
            self.kill()
            raise AssertionError(f"broker did not start: {lines!r} {self.stderr_lines[-20:]!r}")
        words = dict(w.split("=", 1) for w in lines[0].split()[2:])
        self.amqp_port = int(words["amqp"].rsplit(":", 1)[1])
        if self.mqtt:
            self.mqtt_port = int(words["mqtt"].rsplit(":", 1)[1])
        return self

    def _drain_stderr(self) -> None:
        proc = self.proc
        if proc is None or proc.stderr is None:
            return
        for line in proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as in a power cut of the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM: the graceful shutdown an operator's service manager does."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


def ferrymq_status(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`ferrymq status` for a data directory, as an operator runs it (output as text)."""
    return subprocess.run(
        [sys.executable, "-m", "ferrymq", "status", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=20,
    )
