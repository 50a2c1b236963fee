"""`ferrymq serve` with MQTT as an operator runs it: the ready line names the MQTT listener,
`--no-mqtt` turns it off, and SIGTERM tells MQTT 5 clients the server is shutting down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(40)


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    command = [sys.executable, "-m", "ferrymq", "serve", "--amqp-port", "0"]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(20)
    assert line, "no ready line"
    words = line[0].split()
    assert words[:2] == ["ferrymq", "ready"], line
    return proc, dict(w.split("=", 1) for w in words[2:])


def test_serve_mqtt_and_sigterm(tmp_path: Path) -> None:
    proc, listeners = _serve(tmp_path, "--mqtt-port", "0")
    try:
        host, port = listeners["mqtt"].rsplit(":", 1)
        assert host == "127.0.0.1"
        with socket.create_connection((host, int(port))) as sock:
            body = b"\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x02v5"
            sock.sendall(bytes((0x10, len(body))) + body)
            assert sock.recv(1) == b"\x20"
            sock.recv(sock.recv(1)[0])
            proc.send_signal(signal.SIGTERM)
            sock.settimeout(10)
            head = sock.recv(3)
            assert head[0] == 0xE0 and head[2] == 0x8B  # DISCONNECT: server shutting down
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_no_mqtt(tmp_path: Path) -> None:
    proc, listeners = _serve(tmp_path, "--no-mqtt")
    try:
        assert "mqtt" not in listeners and "amqp" in listeners
    finally:
        proc.terminate()
        proc.wait(15)


def test_status_counts_mqtt_sessions(tmp_path: Path) -> None:
    proc, listeners = _serve(tmp_path, "--mqtt-port", "0")
    try:
        host, port = listeners["mqtt"].rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            # MQTT 3.1.1 CONNECT, Clean Session 0 (a persistent session), client id "st"
            body = b"\x00\x04MQTT\x04\x00\x00\x3c\x00\x02st"
            sock.sendall(bytes((0x10, len(body))) + body)
            assert sock.recv(4) == b"\x20\x02\x00\x00"
            out = subprocess.run(
                [sys.executable, "-m", "ferrymq", "status", "--data-dir", str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert out.returncode == 0, out.stderr
            assert "mqtt: 1 sessions (1 online, 1 persistent)" in out.stdout
    finally:
        proc.terminate()
        proc.wait(15)
