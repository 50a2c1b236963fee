"""`ferrymq serve` with MQTT as an operator runs it: the ready line names the MQTT listener,
`--no-mqtt` turns it off, and SIGTERM tells MQTT 5 clients the server is shutting down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ferrymq_status

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
            out = ferrymq_status(tmp_path)
            assert out.returncode == 0, out.stderr
            assert "mqtt: 1 sessions (1 online, 1 persistent)" in out.stdout
    finally:
        proc.terminate()
        proc.wait(15)


def _wait_for(events: list[Any], seconds: float = 5.0) -> None:
    """Until a client callback has appended something to `events` (or the time is up)."""
    deadline = time.monotonic() + seconds
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)


def test_mqtt_settings_from_the_config_file(tmp_path: Path) -> None:
    """An operator turns anonymous MQTT off and picks the vhost in ferrymq.toml: paho without a
    user name is refused, with the configured user it lands in the configured default vhost."""
    import paho.mqtt.client as mqtt
    import pika

    config = tmp_path / "ferrymq.toml"
    config.write_text(
        'vhosts = ["/", "devices"]\n'
        'mqtt_allow_anonymous = false\nmqtt_default_vhost = "devices"\n'
        "mqtt_topic_alias_maximum = 5\n"
        '[[users]]\nname = "sensor"\npassword = "s3cret"\n'
        '[[users]]\nname = "guest"\npassword = "guest"\n'  # anonymous would log in as guest
    )
    proc, listeners = _serve(tmp_path / "data", "--mqtt-port", "0", "--config", str(config))
    try:
        host, port = listeners["mqtt"].rsplit(":", 1)
        anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        assert anonymous.connect(host, int(port)) == 0
        refused: list[int] = []
        anonymous.on_connect = lambda c, u, f, rc, p=None: refused.append(rc.value)
        anonymous.loop_start()
        try:
            _wait_for(refused)
        finally:
            anonymous.loop_stop()
        assert refused == [0x87]  # paho reports the 3.1.1 CONNACK code 5 as 0x87 Not authorized

        amqp_host, amqp_port = listeners["amqp"].rsplit(":", 1)
        conn = pika.BlockingConnection(
            pika.ConnectionParameters(
                amqp_host,
                int(amqp_port),
                virtual_host="devices",
                credentials=pika.PlainCredentials("sensor", "s3cret"),
            )
        )
        channel = conn.channel()
        channel.queue_declare("readings")
        channel.queue_bind("readings", "amq.topic", "plant.temp")

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="s1", protocol=mqtt.MQTTv5)
        client.username_pw_set("sensor", "s3cret")
        granted: list[Any] = []
        client.on_connect = lambda c, u, f, rc, p: granted.append((rc.value, p))
        client.connect(host, int(port))
        client.loop_start()
        try:
            _wait_for(granted)
            assert granted and granted[0][0] == 0
            assert granted[0][1].TopicAliasMaximum == 5
            client.publish("plant/temp", b"21.5", qos=1).wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()
        body = None
        for _ in range(100):
            _, _, body = channel.basic_get("readings", auto_ack=True)
            if body is not None:
                break
            conn.sleep(0.05)
        assert body == b"21.5"  # the publish went to the configured vhost's amq.topic
        conn.close()
    finally:
        proc.terminate()
        proc.wait(15)
