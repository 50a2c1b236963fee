"""Bad input from raw sockets: each case gets the spec's answer (a CONNACK or DISCONNECT reason
code, or a plain close) and nothing else on the broker is disturbed; plus a broker restart
keeping retained messages and persistent sessions."""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ferrymq.testing import running_broker

pytestmark = pytest.mark.timeout(60)


def connect_packet(client_id: bytes = b"raw", level: int = 4, flags: int = 0x02) -> bytes:
    body = b"\x00\x04MQTT" + bytes((level, flags)) + b"\x00\x00"
    if level == 5:
        body += b"\x00"
    body += struct.pack(">H", len(client_id)) + client_id
    return bytes((0x10, len(body))) + body


def recv_all(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        except TimeoutError:
            return out + b"<still open>"
        if not chunk:
            return out
        out += chunk


def session(port: int, level: int = 4, client_id: bytes = b"raw") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(connect_packet(client_id, level))
    expected = b"\x20\x02\x00\x00" if level != 5 else b"\x20"
    head = sock.recv(2 if level == 5 else 4)
    assert head.startswith(expected), head
    if level == 5:
        sock.recv(head[1])
    return sock


class Bystander:
    """A healthy paho client that must keep working whatever the others do."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bystander")
        self.got: list[bytes] = []
        self.event = threading.Event()
        ready = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("health", 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, c: Any, u: Any, m: Any) -> None:
        self.got.append(m.payload)
        self.event.set()

    def check(self) -> None:
        self.event.clear()
        token = os.urandom(4)
        self.client.publish("health", token, 1)
        assert self.event.wait(5) and self.got[-1] == token

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def live() -> Iterator[Any]:
    with running_broker(max_message_size=10_000) as b:
        yield b


@pytest.fixture(scope="module")
def bystander(live: Any) -> Iterator[Bystander]:
    by = Bystander(live.mqtt_port)
    yield by
    by.close()


CASES_BEFORE_CONNECT = {
    "not a CONNECT first": (b"\xc0\x00", b""),
    "HTTP instead of MQTT": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
    "CONNECT reserved flag": (connect_packet(flags=0x03), b""),
    "unknown protocol name": (b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x00\x00\x01c", b""),
    "3.x protocol level 2": (connect_packet(level=2), b"\x20\x02\x00\x01"),
    "protocol level 6": (connect_packet(level=6), b"\x20\x03\x00\x84\x00"),
    "client id not UTF-8": (connect_packet(client_id=b"\xff\xfe"), b""),
    "client id with U+0000": (connect_packet(client_id=b"a\x00"), b""),
    "oversized CONNECT": (b"\x10\xff\xff\x7f" + b"\x00" * 1000, b""),
    "remaining length of 5 bytes": (b"\x10\xff\xff\xff\xff\x01", b""),
}


@pytest.mark.parametrize("case", CASES_BEFORE_CONNECT, ids=list(CASES_BEFORE_CONNECT))
def test_before_connect(live: Any, bystander: Bystander, case: str) -> None:
    data, answer = CASES_BEFORE_CONNECT[case]
    with socket.create_connection(("127.0.0.1", live.mqtt_port)) as sock:
        sock.sendall(data)
        assert recv_all(sock) == answer
    bystander.check()


CASES_AFTER_CONNECT_311 = {
    "second CONNECT": connect_packet(b"again"),
    "PUBLISH QoS 3": b"\x36\x05\x00\x01a\x00\x01",
    "PUBLISH QoS 0 with DUP": b"\x38\x03\x00\x01a",
    "topic not UTF-8": b"\x30\x04\x00\x02\xc3\x28",
    "topic with a wildcard": b"\x30\x05\x00\x03a/#",
    "empty topic": b"\x30\x02\x00\x00",
    "PUBREL with flags 0000": b"\x60\x02\x00\x01",
    "SUBSCRIBE with flags 0000": b"\x80\x06\x00\x01\x00\x01a\x00",
    "SUBSCRIBE without filters": b"\x82\x02\x00\x01",
    "SUBSCRIBE reserved QoS bits": b"\x82\x06\x00\x01\x00\x01a\x04",
    "packet type 0": b"\x00\x00",
    "AUTH in 3.1.1": b"\xf0\x00",
    "CONNACK from a client": b"\x20\x02\x00\x00",
    "oversized PUBLISH": b"\x30\xff\xff\x7f",
    "packet identifier 0": b"\x32\x05\x00\x01a\x00\x00",
}


@pytest.mark.parametrize("case", CASES_AFTER_CONNECT_311, ids=list(CASES_AFTER_CONNECT_311))
def test_after_connect_311_closes(live: Any, bystander: Bystander, case: str) -> None:
    with session(live.mqtt_port) as sock:
        sock.sendall(CASES_AFTER_CONNECT_311[case])
        assert recv_all(sock) == b""  # 3.1.1 4.8: close the connection, say nothing
    bystander.check()


CASES_AFTER_CONNECT_5 = {
    "second CONNECT": (connect_packet(b"again", 5), 0x82),
    "topic not UTF-8": (b"\x30\x05\x00\x02\xc3\x28\x00", 0x81),
    "topic with a wildcard": (b"\x30\x06\x00\x03a/+\x00", 0x90),
    "unknown topic alias": (b"\x30\x06\x00\x00\x03\x23\x00\x05", 0x82),
    "topic alias 0": (b"\x30\x07\x00\x01a\x03\x23\x00\x00", 0x94),
    "property not allowed": (b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01", 0x82),
    "property twice": (b"\x30\x0a\x00\x01a\x06\x01\x00\x01\x00\x00\x00", 0x82),
    "subscription identifier from a client": (b"\x30\x06\x00\x01a\x02\x0b\x01", 0x82),
    "oversized PUBLISH": (b"\x30\xff\xff\x7f", 0x95),
    "AUTH": (b"\xf0\x00", 0x82),
    "retain handling 3": (b"\x82\x07\x00\x01\x00\x00\x01a\x30", 0x82),
    "no local on a shared subscription": (b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04", 0x82),
    "reason code DISCONNECT may not carry": (b"\xe0\x01\x05", 0x82),
    "reason code PUBACK may not carry": (b"\x40\x03\x00\x01\x05", 0x82),
}


@pytest.mark.parametrize("case", CASES_AFTER_CONNECT_5, ids=list(CASES_AFTER_CONNECT_5))
def test_after_connect_5_disconnects_with_reason(
    live: Any, bystander: Bystander, case: str
) -> None:
    data, reason = CASES_AFTER_CONNECT_5[case]
    with session(live.mqtt_port, 5) as sock:
        sock.sendall(data)
        answer = recv_all(sock)
        assert answer[:1] == b"\xe0" and answer[2] == reason, answer
        # properties: length (< 128 here), then a Reason String (0x1F) saying what was wrong
        assert answer[4] == 0x1F, answer
        text_length = int.from_bytes(answer[5:7], "big")
        assert text_length > 0 and len(answer[7 : 7 + text_length].decode()) == text_length
    bystander.check()


def test_half_a_packet_then_gone(live: Any, bystander: Bystander) -> None:
    with session(live.mqtt_port, client_id=b"half") as sock:
        sock.sendall(b"\x30\x10\x00\x06health")  # topic, then no payload ever
    bystander.check()
    assert bystander.got.count(b"") == 0


def test_random_garbage_after_connect(live: Any, bystander: Bystander) -> None:
    rng = random.Random(7)
    deadline = time.monotonic() + 5
    for i in range(60):
        if time.monotonic() > deadline:
            break
        level = 5 if i % 2 else 4
        with session(live.mqtt_port, level, client_id=b"fuzz%d" % i) as sock:
            sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
            sock.shutdown(socket.SHUT_WR)
            recv_all(sock, 1.0)
    bystander.check()
    assert live.call(lambda: live.broker.connections) == 1  # only the bystander is left


def test_restart_keeps_retained_messages_and_sessions(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    def client(port: int, cid: str, clean: bool) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
        c.connect("127.0.0.1", port)
        c.loop_start()
        return c

    with running_broker(data_dir=data_dir) as first:
        port = first.mqtt_port
        durable = client(port, "keeper", False)
        done = threading.Event()
        durable.on_subscribe = lambda *a: done.set()
        durable.subscribe("jobs", 1)
        assert done.wait(5)
        durable.disconnect()
        durable.loop_stop()
        pub = client(port, "pub", True)
        pub.publish("config/mode", b"eco", 1, retain=True).wait_for_publish(5)
        pub.publish("jobs", b"job-1", 1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        has_store = first.call(lambda: getattr(first.broker, "store", None)) is not None
    with running_broker(data_dir=data_dir) as second:
        port = second.mqtt_port
        got: list[tuple[str, bytes, bool]] = []
        event = threading.Event()

        def on_message(c: Any, u: Any, m: Any) -> None:
            got.append((m.topic, m.payload, m.retain))
            event.set()

        late = client(port, "late", True)
        late.on_message = on_message
        late.subscribe("config/#", 1)
        assert event.wait(5)
        assert got == [("config/mode", b"eco", True)]
        late.disconnect()
        late.loop_stop()
        if not has_store:
            return  # persistent messages need the journal
        event.clear()
        got.clear()
        again = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="keeper", clean_session=False)
        flags: list[Any] = []
        again.on_connect = lambda c, u, f, rc, p: flags.append(f.session_present)
        again.on_message = on_message
        again.connect("127.0.0.1", port)
        again.loop_start()
        try:
            assert event.wait(5), "the queued QoS 1 message did not survive the restart"
            assert got == [("jobs", b"job-1", False)] and flags == [True]
        finally:
            again.disconnect()
            again.loop_stop()
