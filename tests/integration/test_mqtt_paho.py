"""paho-mqtt (its 3.1.1, 3.1 and 5.0 modes) against a live FerryMQ: QoS 0/1/2, retained, wills,
keep alive, persistent sessions with a subscriber disconnecting mid-flow, and the MQTT 5
features (properties, request/response, topic aliases, subscription identifiers, no local,
shared subscriptions, message expiry)."""

from __future__ import annotations

import queue
import socket
import struct
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.mqtt_support import V5, V31, V311, Paho

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("version", [V31, V311, V5], ids=["3.1", "3.1.1", "5.0"])
def test_pubsub_every_qos(port: int, clients: list[Paho], version: Any) -> None:
    sub = Paho(port, "sub", version)
    pub = Paho(port, "pub", version)
    clients += [sub, pub]
    sub.subscribe([("q/0", 0), ("q/1", 1), ("q/2", 2)])
    for granted in (0, 1, 2):
        for qos in (0, 1, 2):
            pub.publish(f"q/{granted}", f"{granted}{qos}".encode(), qos)
            m = sub.get()
            assert m.payload == f"{granted}{qos}".encode()
            assert m.qos == min(granted, qos)


def test_retained_set_replace_clear(port: int, clients: list[Paho]) -> None:
    pub = Paho(port, "pub")
    clients.append(pub)
    pub.publish("status/a", b"on", 1, retain=True)
    pub.publish("status/b", b"off", 1, retain=True)
    pub.publish("status/b", b"on", 1, retain=True)
    pub.publish("status/c", b"x", 1, retain=True)
    pub.publish("status/c", b"", 1, retain=True)
    sub = Paho(port, "sub")
    clients.append(sub)
    sub.subscribe("status/#", 1)
    got = sorted((m.topic, m.payload, m.retain) for m in (sub.get(), sub.get()))
    assert got == [("status/a", b"on", True), ("status/b", b"on", True)]
    assert sub.nothing()


def test_will_on_crash_and_not_on_disconnect(port: int, clients: list[Paho]) -> None:
    watcher = Paho(port, "watcher")
    clients.append(watcher)
    watcher.subscribe("wills/#", 1)
    device = Paho(port, "device", will=("wills/device", b"offline", 1, False))
    device.crash()
    m = watcher.get()
    assert (m.topic, m.payload) == ("wills/device", b"offline")
    polite = Paho(port, "polite", will=("wills/polite", b"offline", 1, False))
    polite.close()
    assert watcher.nothing(0.3)


def test_keep_alive_timeout_publishes_the_will(port: int, clients: list[Paho]) -> None:
    watcher = Paho(port, "watcher")
    clients.append(watcher)
    watcher.subscribe("wills/#", 0)
    # a raw client that says keep alive 1 s and then goes silent: closed after 1.5 s
    sock = socket.create_connection(("127.0.0.1", port))
    body = (
        b"\x00\x04MQTT\x04\x06\x00\x01"  # clean, will flag, keep alive 1
        + b"\x00\x06silent"
        + b"\x00\x0cwills/silent"
        + b"\x00\x04gone"
    )
    sock.sendall(bytes((0x10, len(body))) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    started = time.monotonic()
    sock.settimeout(5)
    assert sock.recv(10) == b""  # closed by the server
    assert 1.4 <= time.monotonic() - started < 3.5
    assert watcher.get().payload == b"gone"
    sock.close()


@pytest.mark.parametrize("qos", [1, 2])
def test_subscriber_disconnecting_mid_flow_loses_nothing(
    port: int, clients: list[Paho], qos: int
) -> None:
    """QoS 1: what was not acknowledged comes again, marked DUP. QoS 2: paho hands a message
    to the application only after PUBREL, when it is already the client's (4.3.3), so after
    the crash the server only completes those flows and nothing is delivered twice."""
    sub = Paho(port, "mid", clean=False, manual_ack=True)
    sub.subscribe("flow", qos)
    pub = Paho(port, "pub")
    clients.append(pub)
    for i in range(20):
        pub.publish("flow", b"%d" % i, qos)
    first = [sub.get() for _ in range(20)]
    assert [int(m.payload) for m in first] == list(range(20))
    for m in first[:5]:
        sub.client.ack(m.mid, m.qos)
    time.sleep(0.2)
    sub.crash()  # 15 not acknowledged (QoS 1: no PUBACK; QoS 2: no PUBCOMP)
    for i in range(20, 30):
        pub.publish("flow", b"%d" % i, qos)
    again = Paho(port, "mid", clean=False)
    clients.append(again)
    assert again.session_present
    start = 5 if qos == 1 else 20
    got = [again.get() for _ in range(30 - start)]
    assert [int(m.payload) for m in got] == list(range(start, 30))
    if qos == 1:
        assert all(m.dup for m in got[:15]) and not any(m.dup for m in got[15:])
    assert again.nothing()


def test_qos0_subscriber_disconnecting_mid_flow(port: int, clients: list[Paho]) -> None:
    """QoS 0 is at most once: what was sent before the crash is gone, later ones arrive."""
    sub = Paho(port, "q0", clean=False)
    sub.subscribe("flow0", 0)
    pub = Paho(port, "pub")
    clients.append(pub)
    for i in range(5):
        pub.publish("flow0", b"%d" % i, 0)
    assert [int(sub.get().payload) for _ in range(5)] == list(range(5))
    sub.crash()
    pub.publish("flow0", b"lost", 0)
    again = Paho(port, "q0", clean=False)
    clients.append(again)
    assert again.session_present
    pub.publish("flow0", b"after", 0)
    assert again.get().payload == b"after"


def test_session_resumption_v5_with_expiry(port: int, clients: list[Paho]) -> None:
    sub = Paho(port, "s5", V5, clean=False, expiry=60)
    sub.subscribe("r5/+", qos=1)
    sub.close()
    pub = Paho(port, "p5", V5)
    clients.append(pub)
    pub.publish("r5/x", b"queued", 1)
    again = Paho(port, "s5", V5, clean=False, expiry=60)
    clients.append(again)
    assert again.session_present
    assert again.get().payload == b"queued"
    fresh = Paho(port, "s5", V5, clean=True)  # takes over and discards the session
    clients.append(fresh)
    assert not fresh.session_present
    assert again.disconnected.wait(5)


def test_v5_properties_and_request_response(port: int, clients: list[Paho]) -> None:
    responder = Paho(port, "responder", V5)
    requester = Paho(port, "requester", V5)
    clients += [responder, requester]
    responder.subscribe("rpc/add", qos=1)
    requester.subscribe("rpc/replies/requester", qos=1)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "rpc/replies/requester"
    props.CorrelationData = b"\x00req-1"
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.UserProperty = [("trace", "abc"), ("trace", "def")]
    requester.publish("rpc/add", b"[1, 2]", 1, properties=props)
    request = responder.get()
    rp = request.properties
    assert rp.ResponseTopic == "rpc/replies/requester"
    assert rp.CorrelationData == b"\x00req-1"
    assert rp.ContentType == "application/json"
    assert rp.UserProperty == [("trace", "abc"), ("trace", "def")]
    reply_props = Properties(PacketTypes.PUBLISH)
    reply_props.CorrelationData = rp.CorrelationData
    responder.publish(rp.ResponseTopic, b"3", 1, properties=reply_props)
    reply = requester.get()
    assert reply.payload == b"3" and reply.properties.CorrelationData == b"\x00req-1"


def test_v5_subscription_options(port: int, clients: list[Paho]) -> None:
    c = Paho(port, "opts", V5)
    clients.append(c)
    sub_props = Properties(PacketTypes.SUBSCRIBE)
    sub_props.SubscriptionIdentifier = 17
    c.subscribe("mine/#", options=SubscribeOptions(qos=1, noLocal=True), properties=sub_props)
    c.subscribe("keep", options=SubscribeOptions(qos=0, retainAsPublished=True))
    c.publish("mine/x", b"not to me", 1)
    other = Paho(port, "other", V5)
    clients.append(other)
    other.publish("mine/x", b"from other", 1)
    m = c.get()
    assert m.payload == b"from other"
    assert m.properties.SubscriptionIdentifier == [17]
    other.publish("keep", b"r", 0, retain=True)
    assert c.get().retain  # retain as published


def test_v5_topic_alias_from_paho(port: int, clients: list[Paho]) -> None:
    sub = Paho(port, "sub", V5)
    pub = Paho(port, "pub", V5)
    clients += [sub, pub]
    sub.subscribe("very/long/topic/name/for/aliases", 0)
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 4
    pub.publish("very/long/topic/name/for/aliases", b"1", 0, properties=first)
    pub.publish("", b"2", 0, properties=first)
    assert [sub.get().topic for _ in range(2)] == ["very/long/topic/name/for/aliases"] * 2


def test_v5_shared_subscription_spreads_load(port: int, clients: list[Paho]) -> None:
    workers = [Paho(port, f"w{i}", V5) for i in range(3)]
    clients += workers
    for w in workers:
        w.subscribe("$share/workers/jobs/#", qos=1)
    pub = Paho(port, "pub", V5)
    clients.append(pub)
    for i in range(30):
        pub.publish("jobs/new", b"%d" % i, 1)
    time.sleep(0.5)
    counts = [w.messages.qsize() for w in workers]
    assert sum(counts) == 30
    assert all(c >= 5 for c in counts), counts


def test_v5_message_expiry_while_offline(port: int, clients: list[Paho]) -> None:
    sub = Paho(port, "exp", V5, clean=False, expiry=60)
    sub.subscribe("exp", qos=1)
    sub.close()
    pub = Paho(port, "pub", V5)
    clients.append(pub)
    short = Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    long = Properties(PacketTypes.PUBLISH)
    long.MessageExpiryInterval = 100
    pub.publish("exp", b"short", 1, properties=short)
    pub.publish("exp", b"long", 1, properties=long)
    time.sleep(1.3)
    again = Paho(port, "exp", V5, clean=False, expiry=60)
    clients.append(again)
    m = again.get()
    assert m.payload == b"long"
    assert 95 <= m.properties.MessageExpiryInterval <= 100
    assert again.nothing()


def test_v5_connack_properties(port: int, clients: list[Paho]) -> None:
    c = Paho(port, "", V5)
    clients.append(c)
    rc, props = c.connack
    assert rc == 0
    assert props.AssignedClientIdentifier.startswith("ferrymq-")
    assert props.TopicAliasMaximum > 0
    assert props.MaximumPacketSize > 0


def test_bad_password_is_refused(port: int) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="x", protocol=V5)
    c.username_pw_set("guest", "wrong")
    result: queue.Queue[Any] = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: result.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert result.get(timeout=5) == "Bad user name or password"
    finally:
        c.loop_stop()


def test_vhost_in_user_name(port: int, clients: list[Paho]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="vh", protocol=V311)
    c.username_pw_set("/:guest", "guest")
    ok: queue.Queue[Any] = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: ok.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert ok.get(timeout=5) == 0
    finally:
        c.disconnect()
        c.loop_stop()


def test_many_messages_in_order(port: int, clients: list[Paho]) -> None:
    sub = Paho(port, "bulk-sub")
    pub = Paho(port, "bulk-pub")
    clients += [sub, pub]
    sub.subscribe("bulk", 1)
    n = 2000
    infos = [pub.client.publish("bulk", struct.pack(">I", i), 1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    got = [struct.unpack(">I", sub.get().payload)[0] for _ in range(n)]
    assert got == list(range(n))


def test_keep_alive_is_kept_by_pings(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        body = b"\x00\x04MQTT\x04\x02\x00\x01\x00\x06pinger"  # keep alive 1 s
        sock.sendall(bytes((0x10, len(body))) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        sock.settimeout(2)
        for _ in range(5):  # 2.5 s, longer than 1.5 x keep alive
            time.sleep(0.5)
            sock.sendall(b"\xc0\x00")
            assert sock.recv(2) == b"\xd0\x00"
