"""MQTT persistent sessions across a broker restart, against `ferrymq serve` as a subprocess with
its own data directory: stopped with SIGTERM (graceful) or SIGKILL (kill -9), started again on
the same directory. Clients are paho-mqtt (3.1.1 and 5.0) and, where a test must hold a QoS 2
flow half-way (which no client library lets one do), a raw socket speaking through FerryMQ's
own codec. Each test asserts what a client sees: CONNACK session present, the messages its
subscriptions deliver, the wills its watchers receive, the acknowledgements it gets. Also here:
outgoing topic aliases reused once a paho 5 client's Topic Alias Maximum is reached."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ferrymq.protocols.mqtt.codec import (
    Connack,
    Connect,
    PacketDecoder,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    SubscriptionRequest,
    Will,
    encode,
)
from ferrymq.protocols.mqtt.constants import MQTT_5, PropertyId
from tests.mqtt_support import V5, V311, Paho
from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(60)

SESSIONS_FILE = "mqtt_sessions.json"


class Server(ServerProcess):
    """`ferrymq serve` with MQTT, and the session file it keeps."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, mqtt=True)

    def sessions(self) -> dict[str, Any]:
        """The session file as the operator finds it, by client id."""
        doc = json.loads((self.data_dir / SESSIONS_FILE).read_bytes())
        return {s["client_id"]: s for s in doc["sessions"]}

    def wait_for_file(self, check: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The session file once `check(sessions)` holds (it is written just after a change)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sessions = self.sessions()
            except (FileNotFoundError, ValueError):
                sessions = {}
            if check(sessions):
                return sessions
            if time.monotonic() > deadline:
                raise AssertionError(f"session file never matched: {sessions!r}")
            time.sleep(0.02)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.kill()


def start(servers: list[Server], data_dir: Path) -> Server:
    server = Server(data_dir).start()
    servers.append(server)
    return server


class Raw:
    """An MQTT 5 client over a plain socket, one packet at a time (FerryMQ's codec)."""

    def __init__(
        self, port: int, client_id: str, *, clean: bool, expiry: int, will: Will | None = None
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = PacketDecoder(MQTT_5)
        self.pending: list[Any] = []
        props = {PropertyId.SESSION_EXPIRY_INTERVAL: expiry}
        self.send(Connect(MQTT_5, client_id, clean, 60, will, properties=props))
        ack = self.recv()
        assert isinstance(ack, Connack) and ack.reason_code == 0, ack
        self.connack = ack

    def send(self, *packets: Any) -> None:
        self.sock.sendall(b"".join(encode(p, MQTT_5) for p in packets))

    def recv(self, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def quiet(self, wait: float = 0.3) -> bool:
        try:
            packet = self.recv(wait)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected {packet!r}")

    def close(self) -> None:
        self.sock.close()


def v5_props(packet: int, **values: Any) -> Properties:
    props = Properties(packet)
    for name, value in values.items():
        setattr(props, name, value)
    return props


# -- subscriptions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])
def test_subscriptions_deliver_after_a_graceful_restart(
    tmp_path: Path, servers: list[Server], version: Any
) -> None:
    first = start(servers, tmp_path)
    expiry = 3600 if version == V5 else None
    away = Paho(first.mqtt_port, "away", version, clean=False, expiry=expiry)
    sub_props = v5_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9) if version == V5 else None
    away.subscribe([("zero/#", 0), ("one/#", 1)], properties=sub_props)
    away.close()
    online = Paho(first.mqtt_port, "online", version, clean=False, expiry=expiry)
    online.subscribe("zero/#", 0)  # QoS 0 only, and connected through the shutdown
    pub = Paho(first.mqtt_port, "pub")
    pub.publish("one/queued", b"kept", 1)
    pub.close()
    assert first.stop() == 0
    online.gone()

    second = start(servers, tmp_path)
    again = Paho(second.mqtt_port, "away", version, clean=False, expiry=expiry)
    assert again.session_present
    m = again.get()
    assert (m.topic, m.payload, m.qos) == ("one/queued", b"kept", 1)
    back = Paho(second.mqtt_port, "online", version, clean=False, expiry=expiry)
    assert back.session_present
    pub = Paho(second.mqtt_port, "pub")
    pub.publish("zero/live", b"z", 0)
    pub.publish("one/live", b"o", 1)
    live = [again.get(), again.get()]
    got = sorted((m.topic, m.payload, m.qos) for m in live)
    assert got == [("one/live", b"o", 1), ("zero/live", b"z", 0)]
    if version == V5:  # the options came back too
        assert [m.properties.SubscriptionIdentifier for m in live] == [[9], [9]]
    m = back.get()
    assert (m.topic, m.payload, m.qos) == ("zero/live", b"z", 0)
    for c in (again, back, pub):
        c.close()


def test_subscriptions_survive_kill_9(tmp_path: Path, servers: list[Server]) -> None:
    first = start(servers, tmp_path)
    c = Paho(first.mqtt_port, "k", V5, clean=False, expiry=3600)
    opts = mqtt.SubscribeOptions(qos=0, noLocal=True)
    c.subscribe([("k/zero", opts), ("k/one", mqtt.SubscribeOptions(qos=1))])
    c.close()
    connected = Paho(first.mqtt_port, "k-online", V5, clean=False, expiry=3600)
    connected.subscribe("k/zero", 0)
    first.wait_for_file(
        lambda s: (
            len(s.get("k", {}).get("subscriptions", [])) == 2
            and s["k"]["offline_since"] is not None
            and "k-online" in s
            and s["k-online"]["subscriptions"]
        )
    )
    first.kill()
    connected.gone()

    second = start(servers, tmp_path)
    again = Paho(second.mqtt_port, "k", V5, clean=False, expiry=3600)
    assert again.session_present
    other = Paho(second.mqtt_port, "k-online", V5, clean=False, expiry=3600)
    assert other.session_present
    again.publish("k/zero", b"mine", 0)  # No Local: not back to its own session
    pub = Paho(second.mqtt_port, "pub")
    pub.publish("k/zero", b"z", 0)
    pub.publish("k/one", b"o", 1)
    got = sorted((m.topic, m.payload, m.qos) for m in (again.get(), again.get()))
    assert got == [("k/one", b"o", 1), ("k/zero", b"z", 0)]
    assert again.nothing()
    assert sorted(other.get().payload for _ in range(2)) == [b"mine", b"z"]
    for x in (again, other, pub):
        x.close()


# -- expiry ----------------------------------------------------------------------------------------


def _queue_exists(server: Server, name: str) -> bool:
    conn = pika.BlockingConnection(
        pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{server.amqp_port}/%2F")
    )
    try:
        conn.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    finally:
        if conn.is_open:
            conn.close()


def test_session_expiry_continues_across_the_restart(tmp_path: Path, servers: list[Server]) -> None:
    first = start(servers, tmp_path)
    brief = Paho(first.mqtt_port, "brief", V5, clean=False, expiry=3)
    brief.subscribe("e/+", 1)
    brief.close()
    went_away = time.monotonic()
    lasting = Paho(first.mqtt_port, "lasting", V5, clean=False, expiry=3600)
    lasting.subscribe("e/+", 1)
    lasting.close()
    pub = Paho(first.mqtt_port, "pub")
    pub.publish("e/x", b"queued", 1)
    pub.close()
    assert first.stop() == 0
    assert time.monotonic() - went_away < 3, "the broker must stop before the expiry passes"
    assert first.sessions()["brief"]["expiry"] == 3  # still there when the broker stopped
    time.sleep(max(0.0, 3.5 - (time.monotonic() - went_away)))

    second = start(servers, tmp_path)
    second.wait_for_file(lambda s: "brief" not in s and "lasting" in s)
    assert not _queue_exists(second, "mqtt-subscription-briefqos1")
    again = Paho(second.mqtt_port, "brief", V5, clean=False, expiry=3)
    assert not again.session_present
    assert again.nothing()
    kept = Paho(second.mqtt_port, "lasting", V5, clean=False, expiry=3600)
    assert kept.session_present
    assert kept.get().payload == b"queued"
    again.close()
    kept.close()


# -- wills -----------------------------------------------------------------------------------------


def _will(topic: str, payload: bytes, delay: int | None) -> tuple[str, bytes, int, bool, Any]:
    props = None
    if delay is not None:
        props = v5_props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay)
    return topic, payload, 1, False, props


def test_held_wills_are_published_after_the_restart(tmp_path: Path, servers: list[Server]) -> None:
    first = start(servers, tmp_path)
    watcher = Paho(first.mqtt_port, "watcher", V311, clean=False)
    watcher.subscribe("status/#", 1)
    watcher.close()
    delays = {"passed": 2, "later": 5, "back": 6}
    devices = []
    for name, delay in delays.items():
        will = Will(f"status/{name}", b"offline", 1, False, {PropertyId.WILL_DELAY_INTERVAL: delay})
        devices.append(Raw(first.mqtt_port, name, clean=True, expiry=3600, will=will))
    for d in devices:
        d.close()  # the network drops: no DISCONNECT
    crashed = time.monotonic()
    first.wait_for_file(lambda s: all(s.get(n, {}).get("will") for n in delays))
    assert first.stop() == 0
    assert time.monotonic() - crashed < 1.8, "the broker must be down before the first is due"
    time.sleep(max(0.0, 2.3 - (time.monotonic() - crashed)))

    second = start(servers, tmp_path)
    back = Raw(second.mqtt_port, "back", clean=False, expiry=3600)  # well before its 6 s
    assert back.connack.session_present
    w = Paho(second.mqtt_port, "watcher", V311, clean=False)
    assert w.session_present
    m = w.get()  # its delay passed while the broker was down: published at the start
    assert (m.topic, m.payload) == ("status/passed", b"offline")
    m = w.get(timeout=5)  # due 5 s after the crash, on the restarted broker
    assert (m.topic, m.payload) == ("status/later", b"offline")
    assert time.monotonic() - crashed >= 4.8
    time.sleep(max(0.0, 6.5 - (time.monotonic() - crashed)))
    assert w.nothing()  # "back" came back in time: its will is gone
    w.close()
    back.close()


def test_wills_on_a_graceful_shutdown(tmp_path: Path, servers: list[Server]) -> None:
    """As Mosquitto: the broker closing a connection publishes its will. Undelayed wills are
    all out before the first connection closes; a delayed one is kept for after the restart."""
    first = start(servers, tmp_path)
    offline = Paho(first.mqtt_port, "offline-watcher", V311, clean=False)
    offline.subscribe("lw/#", 1)
    offline.close()
    live = Paho(first.mqtt_port, "live-watcher", V5)
    live.subscribe("lw/#", 0)
    plain = Paho(first.mqtt_port, "plain", V311, will=("lw/plain", b"bye", 1, False, None))
    delayed = Paho(
        first.mqtt_port,
        "delayed",
        V5,
        clean=False,
        expiry=3600,
        will=_will("lw/delayed", b"later", 2),
    )
    stopping = time.monotonic()
    assert first.stop() == 0
    assert live.disconnected.wait(5)
    # the will reached the connected watcher before its own DISCONNECT (0x8B)
    assert live.events == ["message lw/plain", "disconnect"]
    assert str(live.disconnect_reason) == "Server shutting down"
    for c in (live, plain, delayed):
        c.gone()

    second = start(servers, tmp_path)
    w = Paho(second.mqtt_port, "offline-watcher", V311, clean=False)
    assert w.session_present
    m = w.get()
    assert (m.topic, m.payload) == ("lw/plain", b"bye")
    m = w.get(timeout=5)
    assert (m.topic, m.payload) == ("lw/delayed", b"later")
    assert time.monotonic() - stopping >= 1.8  # held for its 2 s across the restart
    assert w.nothing()
    w.close()


# -- QoS 2 -----------------------------------------------------------------------------------------


def test_qos2_flows_resume_after_a_graceful_restart(tmp_path: Path, servers: list[Server]) -> None:
    first = start(servers, tmp_path)
    sub = Raw(first.mqtt_port, "q2-sub", clean=True, expiry=3600)
    sub.send(Subscribe(1, [SubscriptionRequest("q2", 2)]))
    assert sub.recv().reason_codes == [2]
    pub = Raw(first.mqtt_port, "q2-pub", clean=True, expiry=3600)
    pub.send(Publish("q2", b"exactly once", 2, packet_id=7))
    assert pub.recv() == PubRec(7)  # the publisher stops here: no PUBREL yet
    delivery = sub.recv()
    assert isinstance(delivery, Publish) and delivery.payload == b"exactly once"
    sub.send(PubRec(delivery.packet_id))
    assert sub.recv() == PubRel(delivery.packet_id)  # the subscriber stops here: no PUBCOMP
    assert first.stop() == 0
    pub.close()
    sub.close()

    second = start(servers, tmp_path)
    sub = Raw(second.mqtt_port, "q2-sub", clean=False, expiry=3600)
    assert sub.connack.session_present
    assert sub.recv() == PubRel(delivery.packet_id)  # asked again (MQTT-4.4.0-1)
    sub.send(PubComp(delivery.packet_id))
    pub = Raw(second.mqtt_port, "q2-pub", clean=False, expiry=3600)
    assert pub.connack.session_present
    pub.send(Publish("q2", b"exactly once", 2, dup=True, packet_id=7))
    assert pub.recv() == PubRec(7)
    pub.send(PubRel(7))
    assert pub.recv() == PubComp(7)  # reason 0x00, not 0x92 (identifier not found)
    assert sub.quiet()  # the re-sent PUBLISH was not routed a second time
    pub.send(Publish("q2", b"next", 2, packet_id=8))
    assert pub.recv() == PubRec(8)
    nxt = sub.recv()
    assert isinstance(nxt, Publish) and nxt.payload == b"next" and not nxt.dup
    pub.close()
    sub.close()


def test_unacknowledged_deliveries_keep_their_packet_ids_across_a_graceful_restart(
    tmp_path: Path, servers: list[Server]
) -> None:
    """MQTT-4.4.0-1: unacknowledged PUBLISHes are sent again with their original identifiers,
    so a client that hands a QoS 2 message over on PUBLISH sees the re-send as the duplicate it
    is, and not as a second message."""
    first = start(servers, tmp_path)
    sub = Raw(first.mqtt_port, "pid-sub", clean=True, expiry=3600)
    sub.send(Subscribe(1, [SubscriptionRequest("pid/+", 2)]))
    assert sub.recv().reason_codes == [2]
    pub = Raw(first.mqtt_port, "pid-pub", clean=True, expiry=0)
    pub.send(Publish("pid/a", b"answered", 2, packet_id=2))
    assert pub.recv() == PubRec(2)
    pub.send(PubRel(2))
    assert pub.recv() == PubComp(2)
    done = sub.recv()
    assert isinstance(done, Publish) and done.payload == b"answered"
    sub.send(PubRec(done.packet_id))
    assert sub.recv() == PubRel(done.packet_id)
    sub.send(PubComp(done.packet_id))  # so the next delivery's identifier is not the first
    pub.send(Publish("pid/a", b"unanswered", 2, packet_id=3))
    assert pub.recv() == PubRec(3)
    pub.send(PubRel(3))
    assert pub.recv() == PubComp(3)
    first_try = sub.recv()
    assert isinstance(first_try, Publish) and first_try.payload == b"unanswered"
    assert first_try.packet_id != done.packet_id
    # the subscriber sends no PUBREC: the broker still owns the message when it stops
    assert first.stop() == 0
    pub.close()
    sub.close()

    second = start(servers, tmp_path)
    sub = Raw(second.mqtt_port, "pid-sub", clean=False, expiry=3600)
    assert sub.connack.session_present
    again = sub.recv()
    assert isinstance(again, Publish) and again.payload == b"unanswered"
    assert again.packet_id == first_try.packet_id and again.dup
    sub.send(PubRec(again.packet_id))
    assert sub.recv() == PubRel(again.packet_id)
    sub.send(PubComp(again.packet_id))
    assert sub.quiet()  # once
    pub = Raw(second.mqtt_port, "pid-pub2", clean=True, expiry=0)
    pub.send(Publish("pid/b", b"fresh", 2, packet_id=4))
    assert pub.recv() == PubRec(4)
    pub.send(PubRel(4))
    assert pub.recv() == PubComp(4)
    fresh = sub.recv()
    assert isinstance(fresh, Publish) and fresh.payload == b"fresh" and not fresh.dup
    sub.close()
    pub.close()


# -- nothing left behind ---------------------------------------------------------------------------


def test_a_shared_group_of_clean_sessions_is_gone_after_kill_9(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Its members' sessions do not survive the crash, so neither does the group's queue: it
    would otherwise collect every matching message with nobody ever to read them."""
    first = start(servers, tmp_path)
    clean = Paho(first.mqtt_port, "sh-clean", V5, clean=True, expiry=0)
    clean.subscribe("$share/g1/sh/t", 1)
    kept = Paho(first.mqtt_port, "sh-kept", V5, clean=False, expiry=3600)
    kept.subscribe("$share/g2/sh/t", 1)
    first.wait_for_file(lambda s: "sh-kept" in s and s["sh-kept"]["subscriptions"])
    assert _queue_exists(first, "mqtt-shared-g1-sh/t")
    first.kill()
    clean.gone()
    kept.gone()

    second = start(servers, tmp_path)
    assert not _queue_exists(second, "mqtt-shared-g1-sh/t")
    assert _queue_exists(second, "mqtt-shared-g2-sh/t")  # its member's session is restored
    pub = Paho(second.mqtt_port, "sh-pub", V5, clean=True, expiry=0)
    pub.publish("sh/t", b"for g2", 1)
    back = Paho(second.mqtt_port, "sh-kept", V5, clean=False, expiry=3600)
    assert back.get().payload == b"for g2"
    back.close()
    pub.close()


def test_clean_sessions_leave_nothing_in_the_file(tmp_path: Path, servers: list[Server]) -> None:
    first = start(servers, tmp_path)
    for c in (
        Paho(first.mqtt_port, "c311", V311, clean=True),
        Paho(first.mqtt_port, "c5", V5, clean=False, expiry=0),
    ):
        c.subscribe("x/#", 1)
        c.close()
    ended = Paho(first.mqtt_port, "ended", V5, clean=False, expiry=3600)
    ended.subscribe("x/#", 1)
    ended.close()
    first.wait_for_file(lambda s: "ended" in s)
    Paho(first.mqtt_port, "ended", V5, clean=True, expiry=0).close()  # Clean Start ends it
    zeroed = Paho(first.mqtt_port, "zeroed", V5, clean=False, expiry=3600)
    zeroed.subscribe("x/#", 0)
    zeroed.client.disconnect(properties=v5_props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    zeroed.client.loop_stop()
    first.wait_for_file(lambda s: not s)
    assert first.stop() == 0
    assert first.sessions() == {}

    second = start(servers, tmp_path)
    for cid, version in (("c311", V311), ("c5", V5), ("ended", V5), ("zeroed", V5)):
        c = Paho(second.mqtt_port, cid, version, clean=version == V311, expiry=0)
        assert not c.session_present
        c.close()
    assert not _queue_exists(second, "mqtt-subscription-endedqos1")


# -- topic aliases -------------------------------------------------------------------------------


def test_topic_aliases_are_reused_past_the_clients_maximum(broker: Any) -> None:
    """A paho 5 client that allows 3 aliases receives 12 topics: every message arrives with its
    own topic. paho hands over the packet's topic and Topic Alias as they are; the test keeps
    the alias map a client must keep (3.3.2.3.4)."""
    if getattr(broker, "mqtt_port", None) is None:
        pytest.skip("no MQTT listener")
    port = int(broker.mqtt_port)
    sub = Paho(
        port, "aliased", V5, connect_props=v5_props(PacketTypes.CONNECT, TopicAliasMaximum=3)
    )
    sub.subscribe("al/#", 1)
    pub = Paho(port, "alias-pub", V5)
    topics = [f"al/{i % 12}/a/rather/long/topic/name" for i in range(40)]
    for i, topic in enumerate(topics):
        pub.publish(topic, topic.encode(), i % 2)
    aliases: dict[int, str] = {}
    used: dict[int, set[str]] = {}
    for _ in topics:
        m = sub.get()
        alias = getattr(m.properties, "TopicAlias", None)
        topic = m.topic
        if alias is not None:
            assert 1 <= alias <= 3
            if topic:
                aliases[alias] = topic  # a new mapping carries the topic name
            else:
                topic = aliases[alias]
            used.setdefault(alias, set()).add(topic)
        assert topic == m.payload.decode()
    assert sub.nothing()
    assert set(used) == {1, 2, 3}
    assert all(len(t) > 1 for t in used.values())  # each alias served several topics
    sub.close()
    pub.close()
