"""`ferrymq serve` as an operator runs it: a real subprocess, real signals, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

FERRYMQ = [sys.executable, "-m", "ferrymq"]


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FERRYMQ, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _ready_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert result, "no ready line"
    return result[0].strip()


def _port(line: str, listener: str) -> int:
    """The port of one listener from `ferrymq ready amqp=127.0.0.1:5672 mqtt=...`."""
    words = line.split()
    assert words[:2] == ["ferrymq", "ready"], line
    listeners = dict(word.split("=", 1) for word in words[2:])
    host, port = listeners[listener].rsplit(":", 1)
    assert host == "127.0.0.1"
    return int(port)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = _start("--amqp-port", "0", "--mqtt-port", "0", "--data-dir", str(tmp_path / "data"))
    try:
        line = _ready_line(proc)
        port = _port(line, "amqp")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_ready_line_names_the_real_port(server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = server
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.queue_declare("serve-q")
    ch.basic_publish("", "serve-q", b"hi")
    assert ch.basic_get("serve-q", auto_ack=True)[2] == b"hi"
    conn.close()


def test_sigterm_closes_clients_with_320_and_exits_0(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = server
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    conn.channel()
    proc.send_signal(signal.SIGTERM)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.process_data_events(time_limit=10)
        conn.process_data_events(time_limit=10)
    assert info.value.reply_code == 320
    assert "CONNECTION_FORCED" in info.value.reply_text
    assert proc.wait(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_sigint_exits_0(server: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start("--amqp-port", str(port), "--no-mqtt", "--data-dir", str(tmp_path))
        out, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert f"cannot listen for AMQP on 127.0.0.1:{port}" in err
    assert out == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read config file"),
        ("amqp_port = [", "cannot parse config file"),
        ("no_such_setting = 1", "unknown setting 'no_such_setting'"),
        ('amqp_port = "many"', "setting 'amqp_port' must be int"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "ferrymq.toml"
    if content is not None:
        path.write_text(content)
    proc = _start("--config", str(path), "--data-dir", str(tmp_path))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert expected in err
    assert len(err.strip().splitlines()) == 1


def test_config_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "ferrymq.toml"
    path.write_text(
        "amqp_port = 0\nmqtt_port = 0\nframe_max = 8192\n"
        '[[users]]\nname = "app"\npassword = "s3cret"\n'
    )
    proc = _start(
        "--config", str(path), "--data-dir", str(tmp_path), env={"FERRYMQ_CHANNEL_MAX": "7"}
    )
    try:
        port = _port(_ready_line(proc), "amqp")
        params = pika.ConnectionParameters(
            "127.0.0.1", port, credentials=pika.PlainCredentials("app", "s3cret")
        )
        conn = pika.BlockingConnection(params)
        assert conn._impl.params.frame_max == 8192
        assert conn._impl.params.channel_max == 7
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    finally:
        proc.terminate()
        proc.wait(15)


def test_status_shows_listeners_alarms_and_queues(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = _start("--amqp-port", "0", "--no-mqtt", "--data-dir", str(data))
    try:
        port = _port(_ready_line(proc), "amqp")
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = conn.channel()
        ch.queue_declare("status-q", durable=True)
        ch.basic_publish("", "status-q", b"x")
        ch.queue_declare("status-q", passive=True)
        out = subprocess.run(
            [*FERRYMQ, "status", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert out.returncode == 0, out.stderr
        assert f"amqp=127.0.0.1:{port}" in out.stdout
        assert "alarms: none" in out.stdout
        assert "connections: 1" in out.stdout
        assert "/ status-q: 1 ready, 0 unacked, 0 consumers (durable)" in out.stdout
        assert "fsync=always" in out.stdout
        conn.close()
    finally:
        proc.terminate()
        proc.wait(15)
    out = subprocess.run(
        [*FERRYMQ, "status", "--data-dir", str(data)], capture_output=True, text=True, timeout=20
    )
    assert out.returncode == 1
    assert "no running node answers in" in out.stderr
