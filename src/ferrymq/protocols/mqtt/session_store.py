"""The durable MQTT session registry: what is recorded of each persistent session, its encoding,
and how recorded sessions come back after a restart. No I/O: the server reads and writes the
bytes (server/mqtt_sessions_file.py).

Theory of operation. A session persists when the client asks (3.x Clean Session 0; 5.0 a
Session Expiry Interval above 0). Its QoS 1/2 queue and the messages in it are already durable
(a durable queue, the journal). Everything else a session is made of is recorded here, as
Mosquitto's persistence file and HiveMQ's session store do:

- the vhost, client id, protocol level and Session Expiry Interval;
- every subscription with its options (QoS, No Local, Retain As Published, Retain Handling,
  Subscription Identifier): QoS 0 ones, whose queue exists only while the client is connected,
  and shared ones (`$share/<group>/<filter>`) included;
- when the client went offline, as wall-clock time, so that expiry continues across a restart;
- the will held for its Will Delay Interval (3.1.3.2.2), with its due time as wall-clock time;
- the QoS 2 packet identifiers: incoming ones awaiting PUBREL (so a re-sent PUBLISH is not
  routed twice and a re-sent PUBREL gets PUBCOMP 0x00), outgoing ones past PUBREC awaiting
  PUBCOMP (so PUBREL is sent again on reconnect, MQTT-4.4.0-1).

Clean sessions are never recorded. The registry (session.SessionRegistry) asks for a rewrite on
each structural change; the writer coalesces requests into one write at a time, so a burst of
connects is one or two writes. QoS 2 identifiers change per message and never cause a write:
they are written with the next structural write and on a graceful shutdown. After a kill -9,
what changed after the last completed write is lost (as with Mosquitto's autosave).

Restore (`restore`): runs after the journal's recovery and before the listeners open. Each
session comes back offline. For QoS 1/2 subscriptions the bindings of the durable queue win
when the queue exists, because definitions are saved at each change and may be newer than the
last session write; QoS 0 and shared subscriptions come from the record. Then, with every
session in place (so a will finds its subscribers), each one's expiry and held will continue:
a session whose expiry passed while the broker was down ends (its queue is deleted, its will
published), a will whose delay passed is published. A session that was connected when the
broker was killed counts as offline from the restart.

File format (JSON, one session per line for a readable diff):
`{"format": "ferrymq-mqtt-sessions", "version": 1, "written_at": <wall>, "sessions": [...]}`
where each session is
`{"vhost", "client_id", "protocol", "expiry", "offline_since" (wall or null), "subscriptions":
[{"filter", "qos", "no_local", "retain_as_published", "retain_handling", "id"}], "will": null
or {"topic", "payload" (base64), "qos", "retain", "properties" (base64 MQTT 5 will property
section), "due" (wall)}, "qos2_in": [ids], "qos2_out": [ids]}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferrymq.core.errors import BrokerError
from ferrymq.protocols.mqtt.constants import (
    MQTT_5,
    MQTT_31,
    SESSION_NEVER_EXPIRES,
    PacketType,
)
from ferrymq.protocols.mqtt.errors import RemoteProtocolError
from ferrymq.protocols.mqtt.mapping import MQTTMessage
from ferrymq.protocols.mqtt.properties import decode_properties, encode_properties
from ferrymq.protocols.mqtt.session import OutFlight, Session, SessionRegistry, Subscription
from ferrymq.protocols.mqtt.topics import parse_shared, topic_filter_error, topic_name_error
from ferrymq.protocols.mqtt.wire import MAX_VARINT

if TYPE_CHECKING:
    from ferrymq.protocols.mqtt.broker import MQTTBroker

log = logging.getLogger("ferrymq.mqtt")

FILE_NAME = "mqtt_sessions.json"
FORMAT = "ferrymq-mqtt-sessions"
VERSION = 1

_PUBREL = PacketType.PUBREL


class SessionFileError(ValueError):
    """The bytes are not a session file this version can read."""


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    key: str  # as subscribed: `$share/<group>/<filter>` for a shared one
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int = 0


@dataclass(frozen=True, slots=True)
class WillRecord:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: bytes  # the will's MQTT 5 property section (length first), b"\0" for none
    due: float  # wall-clock time it is published unless the client comes back first


@dataclass(frozen=True, slots=True)
class SessionRecord:
    vhost: str
    client_id: str
    protocol_level: int
    expiry: int
    offline_since: float | None  # None: connected when written
    subscriptions: tuple[SubscriptionRecord, ...] = ()
    will: WillRecord | None = None
    qos2_in: tuple[int, ...] = ()
    qos2_out: tuple[int, ...] = ()
    # (packet id, journal msg_id) of PUBLISHes sent and not yet acknowledged: written only by
    # the final write of a graceful shutdown (an older pairing could name an identifier the
    # client has since used for another message)
    resume: tuple[tuple[int, int], ...] = ()


# -- session <-> record --------------------------------------------------------------------------


def record_of(session: Session) -> SessionRecord:
    """What is recorded of a live session."""
    subs = tuple(
        SubscriptionRecord(
            s.key, s.qos, s.no_local, s.retain_as_published, s.retain_handling, s.sub_id
        )
        for s in session.subscriptions.values()
    )
    will = None
    held = session.held_will
    if held is not None:
        will = WillRecord(
            held.topic,
            held.body,
            held.qos,
            held.retain,
            encode_properties(held.mqtt_props),
            session.will_due,
        )
    return SessionRecord(
        session.vhost.name,
        session.client_id,
        session.protocol_level,
        session.expiry,
        session.offline_since,
        subs,
        will,
        tuple(sorted(session.incoming_qos2 or ())),
        tuple(sorted(p for p, f in session.inflight.items() if f.state == _PUBREL)),
        _resume_of(session) if session.mqtt.sessions.final else (),
    )


def _resume_of(session: Session) -> tuple[tuple[int, int], ...]:
    out = []
    for pid, flight in session.inflight.items():
        entry = flight.entry
        # a persistent message keeps its id across a restart (it is its journal id)
        if flight.state != _PUBREL and entry is not None and entry.message.persistent:
            out.append((pid, entry.message.id))
    return tuple(sorted(out))


def subscription_of(record: SubscriptionRecord) -> Subscription:
    shared = parse_shared(record.key)
    group, topic_filter = (None, record.key) if shared is None else shared
    return Subscription(
        record.key,
        topic_filter,
        record.qos,
        share=group,
        no_local=record.no_local,
        retain_as_published=record.retain_as_published,
        retain_handling=record.retain_handling,
        sub_id=record.sub_id,
    )


def will_of(exchange: str, client_id: str, record: WillRecord) -> MQTTMessage:
    raw = record.properties
    props, _ = decode_properties(raw, 0, len(raw), "WILL")
    return MQTTMessage(
        exchange,
        record.topic,
        record.payload,
        record.qos,
        retain=record.retain,
        props=props or None,
        origin=client_id,
    )


# -- encoding ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_record(record: SessionRecord) -> bytes:
    """One session as a JSON object (a line of the file)."""
    will: dict[str, Any] | None = None
    if record.will is not None:
        w = record.will
        will = {
            "topic": w.topic,
            "payload": _b64(w.payload),
            "qos": w.qos,
            "retain": w.retain,
            "properties": _b64(w.properties),
            "due": w.due,
        }
    doc = {
        "vhost": record.vhost,
        "client_id": record.client_id,
        "protocol": record.protocol_level,
        "expiry": record.expiry,
        "offline_since": record.offline_since,
        "subscriptions": [
            {
                "filter": s.key,
                "qos": s.qos,
                "no_local": s.no_local,
                "retain_as_published": s.retain_as_published,
                "retain_handling": s.retain_handling,
                "id": s.sub_id,
            }
            for s in record.subscriptions
        ],
        "will": will,
        "qos2_in": list(record.qos2_in),
        "qos2_out": list(record.qos2_out),
    }
    if record.resume:
        doc["resume"] = [list(pair) for pair in record.resume]
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def encode_file(records: Iterable[bytes], written_at: float) -> bytes:
    """The whole file from encoded records (`encode_record`)."""
    head = json.dumps({"format": FORMAT, "version": VERSION, "written_at": written_at})
    body = b",\n".join(records)
    return b"".join((head[:-1].encode(), b', "sessions": [\n', body, b"\n]}\n"))


def snapshot(registry: SessionRegistry, written_at: float) -> bytes:
    """The file for every persistent session of the registry; unchanged sessions reuse their
    cached encoding, so a write after one change encodes one session."""
    parts: list[bytes] = []
    for session in registry:
        if not session.persistent or session.ended:
            continue
        part = session.record_cache
        if part is None:
            part = session.record_cache = encode_record(record_of(session))
        parts.append(part)
    return encode_file(parts, written_at)


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{key!r} is missing or not {kind}")
    return value


def _int(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value: int = _get(doc, key, int)
    if not low <= value <= high:
        raise ValueError(f"{key!r} out of range: {value}")
    return value


def _bytes(doc: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(_get(doc, key, str), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{key!r} is not base64: {exc}") from None


def _packet_ids(doc: dict[str, Any], key: str) -> tuple[int, ...]:
    ids = _get(doc, key, list)
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= 0xFFFF for i in ids):
        raise ValueError(f"{key!r} holds something that is not a packet identifier")
    return tuple(ids)


def decode_record(doc: Any) -> SessionRecord:
    """One session from its JSON object.

    Raises:
        ValueError: a field is missing, of the wrong type or out of range.
    """
    if not isinstance(doc, dict):
        raise ValueError("a session is not an object")
    subs = []
    for item in _get(doc, "subscriptions", list):
        if not isinstance(item, dict):
            raise ValueError("a subscription is not an object")
        key = _get(item, "filter", str)
        try:
            shared = parse_shared(key)
        except RemoteProtocolError as exc:
            raise ValueError(f"bad shared subscription {key!r}: {exc.text}") from None
        if shared is None and topic_filter_error(key) is not None:
            raise ValueError(f"bad topic filter {key!r}")
        subs.append(
            SubscriptionRecord(
                key,
                _int(item, "qos", 0, 2),
                _get(item, "no_local", bool),
                _get(item, "retain_as_published", bool),
                _int(item, "retain_handling", 0, 2),
                _int(item, "id", 0, MAX_VARINT),
            )
        )
    will = None
    raw_will = doc.get("will")
    if raw_will is not None:
        if not isinstance(raw_will, dict):
            raise ValueError("the will is not an object")
        topic = _get(raw_will, "topic", str)
        if topic_name_error(topic) is not None:
            raise ValueError(f"bad will topic {topic!r}")
        props = _bytes(raw_will, "properties")
        try:
            decode_properties(props, 0, len(props), "WILL")
        except RemoteProtocolError as exc:
            raise ValueError(f"bad will properties: {exc.text}") from None
        will = WillRecord(
            topic,
            _bytes(raw_will, "payload"),
            _int(raw_will, "qos", 0, 2),
            _get(raw_will, "retain", bool),
            props,
            float(_get(raw_will, "due", (int, float))),
        )
    offline = doc.get("offline_since")
    if offline is not None and (isinstance(offline, bool) or not isinstance(offline, int | float)):
        raise ValueError("'offline_since' is not a time")
    return SessionRecord(
        _get(doc, "vhost", str),
        _get(doc, "client_id", str),
        _int(doc, "protocol", MQTT_31, MQTT_5),
        _int(doc, "expiry", 1, SESSION_NEVER_EXPIRES),
        None if offline is None else float(offline),
        tuple(subs),
        will,
        _packet_ids(doc, "qos2_in"),
        _packet_ids(doc, "qos2_out"),
        _resume_pairs(doc),
    )


def _resume_pairs(doc: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    pairs = doc.get("resume", [])
    if not isinstance(pairs, list):
        raise ValueError("'resume' is not a list")
    out = []
    for pair in pairs:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
            and 0 < pair[0] <= 0xFFFF
            and pair[1] > 0
        ):
            raise ValueError("'resume' holds something that is not [packet id, message id]")
        out.append((pair[0], pair[1]))
    return tuple(out)


def decode_file(data: bytes) -> list[SessionRecord]:
    """The sessions of a file. A bad session is skipped (logged), the others are kept.

    Raises:
        SessionFileError: not JSON, or not a session file of a version this code reads.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionFileError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SessionFileError("not an MQTT session file")
    if doc.get("version") != VERSION:
        raise SessionFileError(f"unknown version {doc.get('version')!r}")
    items = doc.get("sessions")
    if not isinstance(items, list):
        raise SessionFileError("no session list")
    out: list[SessionRecord] = []
    for item in items:
        try:
            out.append(decode_record(item))
        except ValueError as exc:
            log.warning("skipping a bad MQTT session record: %s", exc)
    return out


# -- restore -------------------------------------------------------------------------------------


def _rebuild(session: Session, rec: SessionRecord) -> None:
    """Subscriptions and QoS 2 state of a session being restored (still offline)."""
    adopted = session.adopt_queues()
    for sub in rec.subscriptions:
        shared = sub.key.startswith("$share/")
        if adopted and sub.qos and not shared:
            continue  # the durable queue's bindings are the newer word (module docstring)
        try:
            session.subscribe(subscription_of(sub))
        except BrokerError as exc:
            log.warning("MQTT session %r: cannot restore %r: %s", rec.client_id, sub.key, exc)
    if rec.qos2_in:
        session.incoming_qos2 = set(rec.qos2_in)
    for pid in rec.qos2_out:
        session.inflight[pid] = OutFlight.released()
    for pid, msg_id in rec.resume:
        if pid not in session.inflight:
            session.resume_pids[msg_id] = pid


def restore(mqtt: MQTTBroker, records: Iterable[SessionRecord]) -> list[Session]:
    """Recreate recorded sessions, offline (see the module docstring). Returns those that did
    not end at once (expired while the broker was down)."""
    cap = mqtt.settings.max_session_expiry
    wall = mqtt.broker.clock.wall()
    made: list[tuple[Session, SessionRecord]] = []
    for rec in records:
        vhost = mqtt.broker.vhosts.get(rec.vhost)
        if vhost is None:
            log.warning("MQTT session %r: vhost %r is gone; dropping it", rec.client_id, rec.vhost)
            continue
        if mqtt.sessions.get(rec.vhost, rec.client_id) is not None:
            continue  # recorded twice: the first one wins
        expiry = rec.expiry if cap is None else min(rec.expiry, cap)
        session = Session(mqtt, vhost, rec.client_id, expiry)
        session.protocol_level = rec.protocol_level
        mqtt.sessions.add(session)
        try:
            _rebuild(session, rec)
        except Exception:  # one bad session must not keep the broker from starting
            log.exception("MQTT session %r could not be restored; dropping it", rec.client_id)
            session.end()
            continue
        made.append((session, rec))
    # Second pass, with every session back: expiry and held wills continue.
    for session, rec in made:
        will = None
        due = 0.0
        if rec.will is not None:
            will = will_of(mqtt.exchange, rec.client_id, rec.will)
            due = rec.will.due
        offline = wall if rec.offline_since is None else rec.offline_since
        try:
            session.resume_offline(offline, will, due)
        except Exception:
            log.exception("MQTT session %r could not be resumed", rec.client_id)
    alive = [s for s, _ in made if not s.ended]
    if made:
        log.info(
            "restored %d MQTT sessions (%d expired while the broker was down)",
            len(alive),
            len(made) - len(alive),
        )
    return alive
