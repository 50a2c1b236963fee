"""The durable MQTT session registry without sockets: its record codec (round trips with
hypothesis, rejection of damaged input), what a live registry records, and a restore into a
fresh broker core driven through bytes by the same client state machines as
test_mqtt_session.py. Time is a virtual clock whose wall time a test sets, so "the broker was
down for ten seconds" is a restore on a clock ten seconds later. The file writer runs for real
(a loop, a thread, the disk) to show what causes a write and what does not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.protocols.mqtt import session_store
from ferrymq.protocols.mqtt.broker import MQTTBroker
from ferrymq.protocols.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    SubscriptionRequest,
    Will,
)
from ferrymq.protocols.mqtt.constants import MQTT_5, MQTT_311, PropertyId
from ferrymq.protocols.mqtt.properties import encode_properties
from ferrymq.protocols.mqtt.session_store import (
    SessionFileError,
    SessionRecord,
    SubscriptionRecord,
    WillRecord,
    decode_file,
    decode_record,
    encode_file,
    encode_record,
    record_of,
    snapshot,
)
from ferrymq.server.mqtt_sessions_file import SessionsFile
from tests.unit.test_mqtt_session import Client, publishes

P = PropertyId
WALL = 1_700_000_000.0


def new_mqtt(wall: float = WALL) -> MQTTBroker:
    """A fresh broker core (nothing carried over but what the records say)."""
    return MQTTBroker(Broker(VirtualClock(wall_start=wall)))


def advance(mqtt: MQTTBroker, seconds: float) -> None:
    clock = mqtt.broker.clock
    assert isinstance(clock, VirtualClock)
    clock.advance(seconds)


def resume(client: Client, client_id: str, **kw: Any) -> tuple[Connack, list[Any]]:
    """CONNECT with Clean Start 0; the CONNACK and what the session sent right after it."""
    first, *rest = client.send(Connect(client.version, client_id, False, 0, **kw))
    assert isinstance(first, Connack), first
    return first, rest


def restart(mqtt: MQTTBroker, down_for: float) -> MQTTBroker:
    """What the file would hold now, restored by a broker started `down_for` seconds later."""
    data = snapshot(mqtt.sessions, mqtt.broker.clock.wall())
    after = new_mqtt(mqtt.broker.clock.wall() + down_for)
    session_store.restore(after, decode_file(data))
    return after


# -- the codec -----------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20)
_level = st.text(st.sampled_from("abc$é"), min_size=1, max_size=4)
_filters = st.one_of(
    st.lists(_level, min_size=1, max_size=3).map("/".join),
    st.sampled_from(["#", "+/x", "a/+/c", "a/#", "$share/g/a/+", "$share/grp/#"]),
)
_times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_ids = st.lists(st.integers(1, 0xFFFF), max_size=5, unique=True).map(lambda x: tuple(sorted(x)))
_subs = st.builds(
    SubscriptionRecord,
    _filters,
    st.integers(0, 2),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2),
    st.integers(0, 268_435_455),
)
_wills = st.builds(
    WillRecord,
    st.lists(_level, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=64),
    st.integers(0, 2),
    st.booleans(),
    st.one_of(
        st.just(b"\x00"),
        st.integers(1, 1000).map(lambda d: encode_properties({P.WILL_DELAY_INTERVAL: d})),
        st.just(encode_properties({P.CONTENT_TYPE: "text/plain", P.MESSAGE_EXPIRY_INTERVAL: 9})),
    ),
    _times,
)
_records = st.builds(
    SessionRecord,
    _text,
    _text,
    st.sampled_from([3, 4, 5]),
    st.integers(1, 0xFFFFFFFF),
    st.one_of(st.none(), _times),
    st.lists(_subs, max_size=4).map(tuple),
    st.one_of(st.none(), _wills),
    _ids,
    _ids,
    st.lists(st.tuples(st.integers(1, 0xFFFF), st.integers(1, 2**40)), max_size=3).map(tuple),
)


@given(_records)
@settings(max_examples=200, deadline=None)
def test_record_round_trip(record: SessionRecord) -> None:
    assert decode_record(json.loads(encode_record(record))) == record


@given(st.lists(_records, max_size=5))
@settings(max_examples=50, deadline=None)
def test_file_round_trip(records: list[SessionRecord]) -> None:
    data = encode_file((encode_record(r) for r in records), WALL)
    assert decode_file(data) == records
    assert json.loads(data)["written_at"] == WALL


def test_damaged_files_are_refused_and_bad_records_skipped() -> None:
    for data in (b"", b"{", b"[]", b'{"format": "other"}', b'{"format": "x", "version": 1}'):
        with pytest.raises(SessionFileError):
            decode_file(data)
    with pytest.raises(SessionFileError):
        decode_file(json.dumps({"format": session_store.FORMAT, "version": 99}).encode())
    good = SessionRecord("/", "ok", 5, 60, WALL, (SubscriptionRecord("a/#", 1),))
    bad_parts = [
        b'{"vhost": "/"}',  # fields missing
        encode_record(SessionRecord("/", "q", 5, 60, None, (SubscriptionRecord("a/#/b", 1),))),
        encode_record(SessionRecord("/", "s", 5, 60, None, (SubscriptionRecord("$share/g", 0),))),
        encode_record(SessionRecord("/", "p", 5, 60, None, qos2_in=(0,))),
        encode_record(
            SessionRecord(
                "/", "w", 5, 60, None, will=WillRecord("a/+", b"", 0, False, b"\x00", WALL)
            )
        ),
        encode_record(SessionRecord("/", "e", 5, 60, None)).replace(b'"expiry":60', b'"expiry":0'),
        encode_record(SessionRecord("/", "t", 5, 60, True)),  # type: ignore[arg-type]
        encode_record(SessionRecord("/", "r", 5, 60, None, resume=((0, 5),))),  # id 0
        encode_record(SessionRecord("/", "m", 5, 60, None, resume=((7, -1),))),  # msg id < 1
    ]
    data = encode_file([bad_parts[0], encode_record(good), *bad_parts[1:]], WALL)
    assert decode_file(data) == [good]


# -- what is recorded ----------------------------------------------------------------------------


def test_clean_sessions_are_not_recorded() -> None:
    mqtt = new_mqtt()
    old = Client(mqtt)
    old.connect("clean311", clean=True)
    old.subscribe(("a", 1))
    v5 = Client(mqtt, MQTT_5)
    v5.connect("clean5", clean=False)  # no Session Expiry Interval: ends with the connection
    v5.subscribe(("a", 0))
    assert json.loads(snapshot(mqtt.sessions, WALL))["sessions"] == []


def test_a_persistent_session_records_everything_it_is_made_of() -> None:
    mqtt = new_mqtt()
    c = Client(mqtt, MQTT_5)
    will = Will("status/c", b"gone", 1, True, {P.WILL_DELAY_INTERVAL: 30, P.CONTENT_TYPE: "t"})
    c.connect("c", clean=False, will=will, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    c.send(
        Subscribe(
            1,
            [
                SubscriptionRequest("zero/+", 0, no_local=True, retain_handling=2),
                SubscriptionRequest("one/#", 1, retain_as_published=True),
                SubscriptionRequest("$share/g/jobs", 2),
            ],
            {P.SUBSCRIPTION_IDENTIFIER: [7]},
        )
    )
    c.send(Publish("in", b"x", 2, packet_id=11))  # awaiting PUBREL
    session = mqtt.sessions.get("/", "c")
    assert session is not None
    online = record_of(session)
    assert online.offline_since is None and online.will is None  # the will is the connection's
    assert online.qos2_in == (11,) and online.protocol_level == MQTT_5 and online.expiry == 600
    assert [
        (s.key, s.qos, s.no_local, s.retain_as_published, s.retain_handling, s.sub_id)
        for s in online.subscriptions
    ] == [
        ("zero/+", 0, True, False, 2, 7),
        ("one/#", 1, False, True, 0, 7),
        ("$share/g/jobs", 2, False, False, 0, 7),
    ]
    c.conn.connection_lost()  # without DISCONNECT: the will is held for 30 s
    offline = record_of(session)
    wall = mqtt.broker.clock.wall()
    assert offline.offline_since == wall
    assert offline.will is not None and offline.will.due == wall + 30
    assert (offline.will.topic, offline.will.payload, offline.will.retain) == (
        "status/c",
        b"gone",
        True,
    )


# -- restore -------------------------------------------------------------------------------------


def test_restored_session_is_present_and_its_subscriptions_deliver() -> None:
    mqtt = new_mqtt()
    c = Client(mqtt, MQTT_5)
    c.connect("keep", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    c.send(
        Subscribe(
            1,
            [SubscriptionRequest("zero", 0), SubscriptionRequest("one", 1)],
            {P.SUBSCRIPTION_IDENTIFIER: [5]},
        )
    )
    c.send(Disconnect())
    old_311 = Client(mqtt)
    old_311.connect("keep311", clean=False)
    old_311.subscribe(("zero", 0))
    old_311.conn.connection_lost()

    after = restart(mqtt, down_for=60)
    again = Client(after, MQTT_5)
    ack = again.connect("keep", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    assert (ack.session_present, ack.reason_code) == (True, 0)
    again311 = Client(after)
    assert again311.connect("keep311", clean=False) == Connack(True, 0)
    pub = Client(after)
    pub.connect("pub")
    pub.send(Publish("zero", b"0"), Publish("one", b"1", 1, packet_id=1))
    got = publishes(again.received())
    assert sorted(
        (p.topic, p.payload, p.qos, p.properties[P.SUBSCRIPTION_IDENTIFIER]) for p in got
    ) == [("one", b"1", 1, [5]), ("zero", b"0", 0, [5])]
    assert [(p.topic, p.payload) for p in publishes(again311.received())] == [("zero", b"0")]


def test_shared_subscriptions_rejoin_their_group() -> None:
    mqtt = new_mqtt()
    for cid in ("w1", "w2"):
        c = Client(mqtt, MQTT_5)
        c.connect(cid, clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
        c.subscribe(("$share/workers/jobs/+", 1))
        c.send(Disconnect())
    after = restart(mqtt, down_for=1)
    assert after.shared_group_size("/", "mqtt-shared-workers-jobs/+") == 2
    pub = Client(after)
    pub.connect("pub")
    for i in range(4):  # held by the group's queue while no member is online
        pub.send(Publish("jobs/new", b"%d" % i, 1, packet_id=i + 1))
    w1 = Client(after, MQTT_5)
    _, got = resume(w1, "w1", properties={P.SESSION_EXPIRY_INTERVAL: 600})
    assert [p.payload for p in publishes(got)] == [b"0", b"1", b"2", b"3"]


def test_expiry_continues_across_the_restart() -> None:
    mqtt = new_mqtt()
    watcher = Client(mqtt)
    watcher.connect("watcher", clean=False)
    watcher.subscribe(("status/#", 1))
    watcher.conn.connection_lost()
    for cid, expiry in (("short", 10), ("long", 100)):
        c = Client(mqtt, MQTT_5)
        c.connect(
            cid,
            clean=False,
            will=Will(f"status/{cid}", b"dead", 1, False, {P.WILL_DELAY_INTERVAL: 1000}),
            properties={P.SESSION_EXPIRY_INTERVAL: expiry},
        )
        c.subscribe((f"{cid}/x", 1))
        c.conn.connection_lost()
    advance(mqtt, 4)

    after = restart(mqtt, down_for=8)  # 12 s offline: "short" (10 s) is over, "long" is not
    assert after.sessions.get("/", "short") is None
    assert "mqtt-subscription-shortqos1" not in after.broker.vhosts["/"].queues
    assert after.sessions.get("/", "long") is not None
    w = Client(after)
    ack, queued = resume(w, "watcher")
    assert ack == Connack(True, 0)
    # the session ended before its will delay: the will went out when it ended (3.1.3.2.2)
    assert [(p.topic, p.payload) for p in publishes(queued)] == [("status/short", b"dead")]
    advance(after, 87)  # 99 s after it went away
    assert after.sessions.get("/", "long") is not None
    advance(after, 1.5)
    assert after.sessions.get("/", "long") is None
    assert [(p.topic, p.payload) for p in publishes(w.received())] == [("status/long", b"dead")]


def test_held_will_is_published_when_due_unless_the_client_returns() -> None:
    mqtt = new_mqtt()
    watcher = Client(mqtt)
    watcher.connect("watcher", clean=False)
    watcher.subscribe(("status/#", 1))
    watcher.conn.connection_lost()
    for cid, delay in (("late", 20), ("passed", 5), ("back", 20)):
        c = Client(mqtt, MQTT_5)
        c.connect(
            cid,
            clean=False,
            will=Will(f"status/{cid}", b"off", 1, False, {P.WILL_DELAY_INTERVAL: delay}),
            properties={P.SESSION_EXPIRY_INTERVAL: 3600},
        )
        c.conn.connection_lost()

    after = restart(mqtt, down_for=10)  # "passed" is due while down: published at the restore
    w = Client(after)
    _, queued = resume(w, "watcher")
    assert [(p.topic, p.payload) for p in publishes(queued)] == [("status/passed", b"off")]
    back = Client(after, MQTT_5)
    assert back.connect(
        "back", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 3600}
    ).session_present
    advance(after, 9)
    assert publishes(w.received()) == []
    advance(after, 1.5)
    assert [(p.topic, p.payload) for p in publishes(w.received())] == [("status/late", b"off")]


def test_qos2_state_survives_the_restart() -> None:
    mqtt = new_mqtt()
    sub = Client(mqtt, MQTT_5)
    sub.connect("sub", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    sub.subscribe(("q2", 2))
    pub = Client(mqtt, MQTT_5)
    pub.connect("pub", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    assert pub.send(Publish("q2", b"once", 2, packet_id=7)) == [PubRec(7)]
    (delivery,) = publishes(sub.received())
    assert sub.send(PubRec(delivery.packet_id)) == [PubRel(delivery.packet_id)]
    pub.conn.connection_lost()
    sub.conn.connection_lost()

    after = restart(mqtt, down_for=1)
    pub2 = Client(after, MQTT_5)
    assert pub2.connect(
        "pub", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 600}
    ).session_present
    sub2 = Client(after, MQTT_5)
    _, resent = resume(sub2, "sub", properties={P.SESSION_EXPIRY_INTERVAL: 600})
    # the subscriber is asked again for the PUBCOMP it owes (MQTT-4.4.0-1)
    assert resent == [PubRel(delivery.packet_id)]
    assert sub2.send(PubComp(delivery.packet_id)) == []
    # the publisher re-sends PUBLISH (DUP) then PUBREL: not routed twice, released cleanly
    assert pub2.send(Publish("q2", b"once", 2, dup=True, packet_id=7)) == [PubRec(7)]
    assert pub2.send(PubRel(7)) == [PubComp(7)]
    assert publishes(sub2.received()) == []
    assert pub2.send(PubRel(7)) == [PubComp(7, 0x92)]  # released now: unknown


def test_a_clean_start_after_the_restart_discards_the_session() -> None:
    mqtt = new_mqtt()
    c = Client(mqtt)
    c.connect("gone", clean=False)
    c.subscribe(("x", 1))
    c.conn.connection_lost()
    after = restart(mqtt, down_for=1)
    again = Client(after)
    assert again.connect("gone", clean=True) == Connack(False, 0)
    assert json.loads(snapshot(after.sessions, WALL))["sessions"] == []
    assert "mqtt-subscription-goneqos1" not in after.broker.vhosts["/"].queues


def test_max_session_expiry_applies_to_restored_sessions() -> None:
    mqtt = new_mqtt()
    c = Client(mqtt)
    c.connect("forever", clean=False)  # 3.x: never expires
    c.conn.connection_lost()
    data = snapshot(mqtt.sessions, WALL)
    after = new_mqtt(WALL + 100)
    after.settings.max_session_expiry = 50
    session_store.restore(after, decode_file(data))
    assert after.sessions.get("/", "forever") is None


# -- the file writer -----------------------------------------------------------------------------


async def test_writes_follow_structure_not_messages(tmp_path: Path) -> None:
    """Subscribes and disconnects are written (coalesced); QoS 2 publishes never cause a write
    but their identifiers are in the next one."""
    mqtt = new_mqtt()
    path = tmp_path / session_store.FILE_NAME
    writer = SessionsFile(path, lambda: snapshot(mqtt.sessions, WALL), asyncio.get_running_loop())
    mqtt.sessions.writer = writer

    async def settle() -> None:
        for _ in range(200):  # bounded: a write is a thread round trip
            await asyncio.sleep(0.01)
            if writer._writing is None and not writer._scheduled:
                return

    c = Client(mqtt, MQTT_5)
    c.connect("w", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    for i in range(20):
        c.subscribe((f"t/{i}", 1), pid=i + 1)
    await settle()
    assert 1 <= writer.writes <= 2
    assert len(json.loads(path.read_bytes())["sessions"][0]["subscriptions"]) == 20
    before = writer.writes
    for pid in range(1, 101):
        c.send(Publish("elsewhere", b"m", 2, packet_id=pid))
    await settle()
    assert writer.writes == before
    c.conn.connection_lost()
    await settle()
    assert writer.writes == before + 1
    stored = json.loads(path.read_bytes())["sessions"][0]
    assert stored["qos2_in"] == list(range(1, 101)) and stored["offline_since"] is not None
    clean = Client(mqtt, MQTT_311)
    clean.connect("clean")
    clean.subscribe(("x", 0))
    clean.conn.connection_lost()
    await settle()
    assert writer.writes == before + 1  # clean sessions cost no write
    await writer.close()
    assert not path.with_name(path.name + ".tmp").exists()


async def test_close_writes_the_final_state(tmp_path: Path) -> None:
    mqtt = new_mqtt()
    path = tmp_path / session_store.FILE_NAME
    writer = SessionsFile(path, lambda: snapshot(mqtt.sessions, WALL), asyncio.get_running_loop())
    mqtt.sessions.writer = writer
    c = Client(mqtt, MQTT_5)
    c.connect("f", clean=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    c.send(Publish("x", b"m", 2, packet_id=3))
    await writer.close()
    (stored,) = json.loads(path.read_bytes())["sessions"]
    assert stored["client_id"] == "f" and stored["qos2_in"] == [3]
    c.subscribe(("late", 0))  # after close: nothing more is written
    await asyncio.sleep(0.05)
    assert json.loads(path.read_bytes())["sessions"][0]["subscriptions"] == []
