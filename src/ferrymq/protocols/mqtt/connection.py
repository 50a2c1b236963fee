"""The server side of one MQTT connection (3.1, 3.1.1 or 5.0), over core, with no I/O.

Theory of operation. The server layer feeds received bytes to `data_received` and gives a
`Transport` (write, close, pause_reading, resume_reading); everything here is synchronous. States:

    CONNECT_WAIT --CONNECT accepted--> CONNECTED --DISCONNECT / error / lost--> CLOSED

`_HANDLERS[state][packet type]` is the whole state table: a packet not in the table for the
current state is a protocol error. Before CONNECT that means closing without a word
(MQTT-3.1.0-1); a second CONNECT is a protocol error (MQTT-3.1.0-2); packets only a server
sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) are too, and so is AUTH: we accept no
Authentication Method, and without one a client must not send AUTH (4.12).

Errors, by direction (errors.py): a `RemoteProtocolError` while connecting is answered with a
CONNACK carrying its reason code (5.0) or the matching 3.x return code, if there is one; once
connected, an MQTT 5 client gets a DISCONNECT with the reason code and a reason string, and a
3.x client is just disconnected (3.1.1 4.8). Core's typed errors are mapped per operation (a
refused subscription is a SUBACK failure code). Nothing raised here escapes to the server.

The Will Message (3.1.2.5) is published when the connection ends without a DISCONNECT of
reason 0x00: the network failed, the keep alive expired, a protocol error, a session takeover,
the broker shutting down (as Mosquitto does), or a 5.0 DISCONNECT with any other reason (0x04
asks for it). With a Will Delay Interval the session holds it (session.py), on disk for a
persistent session, so a will held at shutdown is published after the restart when due.

Topic aliases towards the client (3.3.2.3.4) are assigned up to the client's Topic Alias
Maximum and then reused, least recently used first: a new mapping always carries the topic name
with the alias, so the client replaces its mapping for that alias.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Protocol

from ferrymq.core.errors import BrokerError
from ferrymq.protocols.mqtt.broker import MQTTBroker
from ferrymq.protocols.mqtt.codec import (
    PINGRESP,
    Auth,
    Connack,
    Connect,
    Disconnect,
    PacketDecoder,
    Pingreq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    UnsupportedProtocolVersion,
    encode,
    encode_ack,
)
from ferrymq.protocols.mqtt.constants import (
    MAX_PACKET_SIZE,
    MQTT_5,
    MQTT_31,
    MQTT_311,
    SESSION_NEVER_EXPIRES,
    SUBACK_FAILURE,
    V5_TO_V3_CONNACK,
    PacketType,
    PropertyId,
    ReasonCode,
)
from ferrymq.protocols.mqtt.errors import ProtocolViolation, RemoteProtocolError
from ferrymq.protocols.mqtt.mapping import MQTTMessage
from ferrymq.protocols.mqtt.properties import Properties
from ferrymq.protocols.mqtt.session import Session, Subscription
from ferrymq.protocols.mqtt.topics import (
    parse_shared,
    plain_topic,
    topic_filter_error,
    topic_name_error,
    topic_to_routing_key,
)
from ferrymq.protocols.mqtt.wire import U16

log = logging.getLogger("ferrymq.mqtt")


class State(IntEnum):
    CONNECT_WAIT = 0
    CONNECTED = 1
    CLOSED = 2


_CONNECTED = int(State.CONNECTED)
_CLOSED = int(State.CLOSED)
_PUBACK = PacketType.PUBACK
_PUBREC = PacketType.PUBREC
_PUBREL = PacketType.PUBREL
_PUBCOMP = PacketType.PUBCOMP
_ROUTE_CACHE_MAX = 4096


class Transport(Protocol):
    """What the server layer gives a connection."""

    def write(self, data: bytes) -> None:
        """Queue bytes; the server coalesces them into one socket write per loop iteration."""
        ...

    def close(self) -> None:
        """Flush and close the socket."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class MQTTConnection:
    """See the module docstring."""

    __slots__ = (
        "_alarms",
        "_aliases_free",
        "_aliases_in",
        "_aliases_next",
        "_aliases_out",
        "_blocked",
        "_connect_expiry",
        "_counted",
        "_held_acks",
        "_needs_commit",
        "_published",
        "_routes",
        "_waiting_commits",
        "alias_max_out",
        "client_id",
        "decoder",
        "from_loopback",
        "keepalive",
        "max_packet_size",
        "mqtt",
        "peer",
        "problem_info",
        "send",
        "session",
        "state",
        "transport",
        "version",
        "vhost",
        "will",
        "will_delay",
        "writable",
    )

    def __init__(
        self, mqtt: MQTTBroker, transport: Transport, *, from_loopback: bool, peer: str = ""
    ) -> None:
        self.mqtt = mqtt
        self.transport = transport
        self.send: Callable[[bytes], None] = transport.write
        self.from_loopback = from_loopback
        self.peer = peer
        self.state: int = State.CONNECT_WAIT
        self.version = 0
        self.decoder = PacketDecoder(0, mqtt.settings.max_packet_size_unauthenticated)
        self.session: Session | None = None
        self.vhost: Any = None
        self.client_id = ""
        self.keepalive = 0
        self.writable = True
        self.max_packet_size = MAX_PACKET_SIZE  # the client's (3.1.2.11.4)
        self.alias_max_out = 0
        self.problem_info = True
        self.will: MQTTMessage | None = None
        self.will_delay = 0
        self._connect_expiry = 0
        self._counted = False
        self._routes: dict[str, tuple[str, bytes, bool]] | None = None
        self._aliases_in: dict[int, str] | None = None
        self._aliases_out: dict[str, int] | None = None  # in order of last use
        self._aliases_next = 1
        self._aliases_free: list[int] = []
        self._published = False
        self._held_acks: list[bytes] = []
        self._needs_commit = False
        self._waiting_commits = 0
        self._blocked = False
        self._alarms: Any = None

    # -- input -------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state != State.CONNECTED:
            if self.state == State.CLOSED:
                return
            if data and data[0] != 0x10 and not self.decoder.buffered:
                # MQTT-3.1.0-1: the first packet is CONNECT; no need to wait for its end
                log.info("closing MQTT connection %s: first packet is not CONNECT", self.peer)
                self._close(publish_will=False)
                return
        error: RemoteProtocolError | None = None
        try:
            packets = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            packets = exc.packets
            error = exc
        publish = self._publish
        try:
            for packet in packets:
                state = self.state
                if state == _CONNECTED and type(packet) is Publish:
                    publish(packet)
                elif state == _CLOSED:
                    break
                else:
                    handler = _HANDLERS[state].get(type(packet))
                    if handler is None:
                        raise ProtocolViolation(self._unexpected(packet))
                    handler(self, packet)
        except RemoteProtocolError as exc:
            error = exc
        except Exception:
            log.exception("internal error on MQTT connection %s", self.peer)
            error = RemoteProtocolError(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "internal error")
        session = self.session
        if session is not None:
            session.flush_acks()
        if self._held_acks:
            self._commit_acks()
        if error is not None and self.state != State.CLOSED:
            self._protocol_error(error)
        elif self._published and not self._blocked and self._alarms is not None:
            if self._alarms.active:
                self._alarm_changed(self._alarms.active)

    def _unexpected(self, packet: Any) -> str:
        name = type(packet).__name__.upper()
        if self.state == State.CONNECT_WAIT:
            return f"expected CONNECT, got {name} (MQTT-3.1.0-1)"
        if isinstance(packet, Connect):
            return "second CONNECT (MQTT-3.1.0-2)"
        if isinstance(packet, Auth):
            return "AUTH without an authentication method (4.12)"
        return f"{name} may not be sent to a server"

    # -- errors and closing ------------------------------------------------------------------------

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        log.info("closing MQTT connection %s: %s", self.peer, exc.text)
        if self.state == State.CONNECT_WAIT:
            if isinstance(exc, UnsupportedProtocolVersion):
                if exc.level > MQTT_5:
                    self.send(encode(Connack(False, exc.reason), MQTT_5))
                else:
                    self.send(encode(Connack(False, 1), MQTT_311))
            elif self.version == MQTT_5:
                props: Properties = {PropertyId.REASON_STRING: exc.text[:200]}
                self.send(encode(Connack(False, exc.reason, props), MQTT_5))
            elif self.version:
                code = V5_TO_V3_CONNACK.get(ReasonCode(exc.reason))
                if code is not None:
                    self.send(encode(Connack(False, code), self.version))
            self._close(publish_will=False)
            return
        self._disconnect(exc.reason, exc.text)

    def _disconnect(self, reason: int, text: str = "", *, publish_will: bool = True) -> None:
        """Close from our side; an MQTT 5 client is told why (3.14)."""
        if self.state == State.CLOSED:
            return
        if self.version == MQTT_5 and self.state == State.CONNECTED:
            props: Properties = {}
            if text:
                props[PropertyId.REASON_STRING] = text[:200]
            packet = encode(Disconnect(reason, props), MQTT_5)
            if len(packet) > self.max_packet_size:
                packet = encode(Disconnect(reason), MQTT_5)
            self.send(packet)
        self._close(publish_will=publish_will)

    def _close(self, *, publish_will: bool) -> None:
        if self.state == State.CLOSED:
            return
        self.state = State.CLOSED
        self._release(publish_will)
        self.transport.close()

    def _release(self, publish_will: bool) -> None:
        if self._alarms is not None:
            self._alarms.unsubscribe(self._alarm_changed)
            self._alarms = None
        session, self.session = self.session, None
        will, self.will = self.will, None
        try:
            if session is not None and session.conn is self:
                session.flush_acks()
                session.detach()
                if will is not None and publish_will:
                    session.set_will(will, self.will_delay)
        except Exception:
            log.exception("error releasing MQTT connection %s", self.peer)
        if self._counted:
            self._counted = False
            self.mqtt.broker.connection_closed()

    def connection_lost(self) -> None:
        """The socket is gone (client closed, crashed, or we closed it)."""
        if self.state != State.CLOSED:
            self.state = State.CLOSED
            self._release(publish_will=True)

    def shutdown(self) -> None:
        """The broker is stopping (0x8B). The connection ends without the client's DISCONNECT,
        so its will is published (3.1.2.5), or held for its delay (and kept on disk)."""
        self._disconnect(ReasonCode.SERVER_SHUTTING_DOWN, "server shutting down")

    def publish_will_for_shutdown(self) -> None:
        """Publish now a will that `shutdown` would publish at once, so every will of a broker
        shutdown is out before the first connection closes. A delayed will is left to
        `shutdown` (the session holds it)."""
        will = self.will
        session = self.session
        if self.state != State.CONNECTED or will is None or session is None:
            return
        if self.will_delay <= 0 or session.expiry == 0:
            self.will = None
            try:
                self.mqtt.publish(self.vhost, will)
            except Exception:
                log.exception("error publishing the will of %s at shutdown", self.peer)

    def keepalive_expired(self) -> None:
        """Nothing came within 1.5 x Keep Alive (MQTT-3.1.2-22): as if the network failed."""
        self._disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep alive timeout")

    def taken_over(self) -> None:
        """Another connection took this client id (MQTT-3.1.4-3)."""
        self._disconnect(ReasonCode.SESSION_TAKEN_OVER, "session taken over")

    def subscription_queue_lost(self) -> None:
        self._disconnect(ReasonCode.ADMINISTRATIVE_ACTION, "a subscription queue was deleted")

    def set_writable(self, writable: bool) -> None:
        """The socket's send buffer filled up or drained (back-pressure from a slow reader)."""
        self.writable = writable
        if writable and self.session is not None:
            self.session.writable_again()

    def _alarm_changed(self, active: frozenset[str]) -> None:
        """Hold back a publishing client while a resource alarm is set (TCP back-pressure)."""
        if self.state != State.CONNECTED:
            return
        if active and self._published and not self._blocked:
            self._blocked = True
            self.transport.pause_reading()
        elif not active and self._blocked:
            self._blocked = False
            self.transport.resume_reading()

    # -- CONNECT -----------------------------------------------------------------------------------

    def _connect(self, p: Connect) -> None:
        mqtt = self.mqtt
        settings = mqtt.settings
        level = self.version = p.protocol_level
        props = p.properties
        if PropertyId.AUTHENTICATION_METHOD in props:
            raise ProtocolViolation(
                "enhanced authentication is not supported", ReasonCode.BAD_AUTHENTICATION_METHOD
            )
        self.problem_info = bool(props.get(PropertyId.REQUEST_PROBLEM_INFORMATION, 1))
        client_id = p.client_id
        assigned = False
        if not client_id:
            if level == MQTT_31 or (level == MQTT_311 and not p.clean_start):
                raise ProtocolViolation(
                    "a client id is required (MQTT-3.1.3-8)", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
                )
            client_id = "ferrymq-" + base64.urlsafe_b64encode(os.urandom(15)).decode()
            assigned = True
        broker = mqtt.broker
        if p.username is None:
            if not settings.allow_anonymous:
                raise ProtocolViolation("a user name is required", ReasonCode.NOT_AUTHORIZED)
            user_name, password = settings.default_user, settings.default_password
            vhost_name = settings.default_vhost
        else:
            vhost_name, sep, user_name = p.username.partition(":")
            if not sep:
                vhost_name, user_name = settings.default_vhost, p.username
            password = "" if p.password is None else p.password.decode("utf-8", "replace")
        try:
            user = broker.authenticate(user_name, password, from_loopback=self.from_loopback)
        except BrokerError as exc:
            log.info("MQTT authentication failed for user %r from %s", user_name, self.peer)
            raise ProtocolViolation(exc.text, ReasonCode.BAD_USER_NAME_OR_PASSWORD) from None
        try:
            vhost = broker.open_vhost(user, vhost_name)
        except BrokerError as exc:
            raise ProtocolViolation(exc.text, ReasonCode.NOT_AUTHORIZED) from None
        will = None
        if p.will is not None:
            w = p.will
            error = topic_name_error(w.topic)
            if error is not None:
                raise ProtocolViolation("will " + error, ReasonCode.TOPIC_NAME_INVALID)
            self._check_publish_properties(w.properties, w.payload)
            will = MQTTMessage(
                mqtt.exchange,
                w.topic,
                w.payload,
                w.qos,
                retain=w.retain,
                props=w.properties or None,
                origin=client_id,
            )
            self.will_delay = w.properties.get(PropertyId.WILL_DELAY_INTERVAL, 0)
        try:
            broker.connection_opened()
        except BrokerError as exc:
            raise ProtocolViolation(exc.text, ReasonCode.QUOTA_EXCEEDED) from None
        self._counted = True
        keepalive = p.keepalive
        server_keepalive = None
        if settings.max_keepalive and (not keepalive or keepalive > settings.max_keepalive):
            if level == MQTT_5:
                keepalive = server_keepalive = settings.max_keepalive
        self.keepalive = keepalive
        if level == MQTT_5:
            quota = props.get(PropertyId.RECEIVE_MAXIMUM, 65535)
            self.max_packet_size = props.get(PropertyId.MAXIMUM_PACKET_SIZE, MAX_PACKET_SIZE)
            self.alias_max_out = props.get(PropertyId.TOPIC_ALIAS_MAXIMUM, 0)
            expiry = requested = props.get(PropertyId.SESSION_EXPIRY_INTERVAL, 0)
        else:
            quota = settings.max_inflight
            expiry = requested = 0 if p.clean_start else SESSION_NEVER_EXPIRES
        cap = settings.max_session_expiry
        if cap is not None and expiry > cap:
            expiry = cap
        self._connect_expiry = requested
        # Session takeover (MQTT-3.1.4-3), then clean start or resume (3.1.2.4).
        registry = mqtt.sessions
        session = registry.get(vhost.name, client_id)
        if session is not None and session.conn is not None:
            old = session.conn
            if isinstance(old, MQTTConnection):
                old.taken_over()
            session = registry.get(vhost.name, client_id)
        if session is not None and p.clean_start:
            session.end()
            session = None
        present = session is not None
        if session is None:
            session = Session(mqtt, vhost, client_id, expiry)
            registry.add(session)
            if expiry:
                present = session.adopt_queues()
            else:  # a clean start discards whatever a previous session left (3.1.2.4)
                session.discard_leftovers()
        else:
            session.expiry = expiry
        self.vhost = vhost
        self.client_id = client_id
        self.session = session
        self.will = will
        if level == MQTT_5:
            out: Properties = {}
            if assigned:
                out[PropertyId.ASSIGNED_CLIENT_IDENTIFIER] = client_id
            if server_keepalive is not None:
                out[PropertyId.SERVER_KEEP_ALIVE] = server_keepalive
            if expiry != requested:
                out[PropertyId.SESSION_EXPIRY_INTERVAL] = expiry
            if settings.receive_maximum < 65535:
                out[PropertyId.RECEIVE_MAXIMUM] = settings.receive_maximum
            out[PropertyId.TOPIC_ALIAS_MAXIMUM] = settings.topic_alias_maximum
            out[PropertyId.MAXIMUM_PACKET_SIZE] = settings.max_packet_size
            self.send(encode(Connack(present, 0, out), MQTT_5))
        else:
            self.send(encode(Connack(present and level == MQTT_311, 0), level))
        self.state = State.CONNECTED
        self.decoder.max_packet_size = settings.max_packet_size
        session.attach(self, min(quota, 65535))

    def _check_publish_properties(self, props: Properties, payload: bytes) -> None:
        response_topic = props.get(PropertyId.RESPONSE_TOPIC)
        if response_topic is not None and topic_name_error(response_topic) is not None:
            raise ProtocolViolation("Response Topic is not a valid topic name (MQTT-3.3.2-13)")
        if props.get(PropertyId.PAYLOAD_FORMAT_INDICATOR) == 1:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(
                    "payload is not UTF-8 but says it is (3.3.2.3.2)",
                    ReasonCode.PAYLOAD_FORMAT_INVALID,
                ) from None

    # -- PUBLISH -----------------------------------------------------------------------------------

    def _publish(self, p: Publish) -> None:
        topic = p.topic
        props = p.properties
        qos = p.qos
        if props is not None:
            alias = props.pop(PropertyId.TOPIC_ALIAS, None)
            if alias is not None:
                if not 0 < alias <= self.mqtt.settings.topic_alias_maximum:
                    raise ProtocolViolation(
                        f"Topic Alias {alias} out of range (MQTT-3.3.2-9)",
                        ReasonCode.TOPIC_ALIAS_INVALID,
                    )
                aliases = self._aliases_in
                if aliases is None:
                    aliases = self._aliases_in = {}
                if topic:
                    aliases[alias] = topic
                else:
                    known = aliases.get(alias)
                    if known is None:
                        raise ProtocolViolation(f"unknown Topic Alias {alias} (3.3.2.3.4)")
                    topic = known
            if PropertyId.SUBSCRIPTION_IDENTIFIER in props:
                raise ProtocolViolation("PUBLISH from a client with a Subscription Identifier")
            try:
                self._check_publish_properties(props, p.payload)
            except ProtocolViolation as exc:
                if exc.reason != ReasonCode.PAYLOAD_FORMAT_INVALID or not qos:
                    raise
                self._ack_publish(p, qos, exc.reason)
                return
            if not props:
                props = None
        routes = self._routes
        if routes is None:
            routes = self._routes = {}
        route = routes.get(topic)
        if route is None:
            error = topic_name_error(topic)
            if error is not None:
                raise ProtocolViolation(error, ReasonCode.TOPIC_NAME_INVALID)
            raw = topic.encode("utf-8")
            route = (topic_to_routing_key(topic), U16(len(raw)) + raw, plain_topic(topic))
            if len(routes) >= _ROUTE_CACHE_MAX:
                routes.clear()
            routes[topic] = route
        session = self.session
        assert session is not None
        if qos == 2:
            seen = session.incoming_qos2
            if seen is None:
                seen = session.incoming_qos2 = set()
            if p.packet_id in seen:
                self._ack_publish(p, 2, 0)  # a re-sent PUBLISH: not routed twice (4.3.3)
                return
            if len(seen) >= self.mqtt.settings.receive_maximum:
                raise ProtocolViolation(
                    "more unreleased QoS 2 publishes than Receive Maximum (MQTT-3.3.4-8)",
                    ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                )
        message = MQTTMessage(
            self.mqtt.exchange,
            topic,
            p.payload,
            qos,
            retain=p.retain,
            props=props,
            origin=self.client_id,
            routing_key=route[0],
            topic_part=route[1],
            plain=route[2],
        )
        if not self._published:
            self._first_publish()
        if p.retain:
            self.mqtt.retained.set(self.vhost.name, message)
        outcome = self.vhost.publish(self.mqtt.exchange, message)
        if qos:
            if qos == 2:
                session.incoming_qos2.add(p.packet_id)  # type: ignore[union-attr]
                self.mqtt.sessions.changed(session, write=False)
            reason = 0
            if self.version == MQTT_5 and not outcome.routed:
                reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
            if getattr(outcome, "persisted", False):  # written to the store: ack after commit
                self._needs_commit = True
            self._ack_publish(p, qos, reason)

    def _first_publish(self) -> None:
        """A publisher from now on: resource alarms hold it back (subscribers never are)."""
        self._published = True
        alarms = getattr(self.mqtt.broker, "alarms", None)
        if alarms is not None:
            self._alarms = alarms
            alarms.subscribe(self._alarm_changed)

    def _ack_publish(self, p: Publish, qos: int, reason: int) -> None:
        pid = p.packet_id
        if not reason or self.version != MQTT_5:
            packet = bytes((0x40 if qos == 1 else 0x50, 2, pid >> 8, pid & 0xFF))
        else:
            packet = encode_ack(_PUBACK if qos == 1 else _PUBREC, pid, MQTT_5, reason)
        if self._needs_commit or self._waiting_commits or self._held_acks:
            self._held_acks.append(packet)  # PUBACKs go out in PUBLISH order (MQTT-4.6.0-2)
        else:
            self.send(packet)

    def _commit_acks(self) -> None:
        """Acknowledge a batch of QoS 1/2 publishes once the store has them on disk."""
        held, self._held_acks = self._held_acks, []
        store = getattr(self.mqtt.broker, "store", None)
        if store is None or not (self._needs_commit or self._waiting_commits):
            self.send(b"".join(held))
            return
        self._needs_commit = False
        self._waiting_commits += 1

        def committed(exc: BaseException | None) -> None:
            self._waiting_commits -= 1
            if self.state != State.CONNECTED:
                return
            if exc is not None:
                self._disconnect(ReasonCode.UNSPECIFIED_ERROR, "the message store failed")
                return
            self.send(b"".join(held))

        store.after_commit(committed)

    # -- acknowledgements --------------------------------------------------------------------------

    def _puback(self, p: PubAck) -> None:
        assert self.session is not None
        self.session.puback(p.packet_id)

    def _pubrec(self, p: PubRec) -> None:
        assert self.session is not None
        if self.session.pubrec(p.packet_id, p.reason_code):
            if p.reason_code < 0x80:
                self.send(encode_ack(_PUBREL, p.packet_id, self.version))
        else:
            self.send(
                encode_ack(
                    _PUBREL, p.packet_id, self.version, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
                )
            )

    def _pubrel(self, p: PubRel) -> None:
        session = self.session
        assert session is not None
        seen = session.incoming_qos2
        if seen is not None and p.packet_id in seen:
            seen.discard(p.packet_id)
            self.mqtt.sessions.changed(session, write=False)
            self.send(encode_ack(_PUBCOMP, p.packet_id, self.version))
        else:
            self.send(
                encode_ack(
                    _PUBCOMP, p.packet_id, self.version, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
                )
            )

    def _pubcomp(self, p: PubComp) -> None:
        assert self.session is not None
        self.session.pubcomp(p.packet_id)

    # -- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------------

    def _subscribe(self, p: Subscribe) -> None:
        session = self.session
        assert session is not None
        v5 = self.version == MQTT_5
        sub_id = 0
        ids = p.properties.get(PropertyId.SUBSCRIPTION_IDENTIFIER)
        if ids:
            if len(ids) > 1:
                raise ProtocolViolation("more than one Subscription Identifier (3.8.2.1.2)")
            sub_id = ids[0]
        codes: list[int] = []
        retained: list[tuple[Subscription, Any]] = []
        for req in p.subscriptions:
            key = req.topic_filter
            try:
                shared = parse_shared(key)
            except ProtocolViolation:
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else SUBACK_FAILURE)
                continue
            if shared is None:
                if topic_filter_error(key) is not None:
                    codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else SUBACK_FAILURE)
                    continue
                group, topic_filter = None, key
            else:
                if req.no_local:
                    raise ProtocolViolation("No Local on a shared subscription (MQTT-3.8.3-4)")
                group, topic_filter = shared
            sub = Subscription(
                key,
                topic_filter,
                req.qos,
                share=group,
                no_local=req.no_local,
                retain_as_published=req.retain_as_published,
                retain_handling=req.retain_handling,
                sub_id=sub_id,
            )
            try:
                existed, queue = session.subscribe(sub)
            except BrokerError as exc:
                log.info("MQTT subscription %r refused on %s: %s", key, self.peer, exc.text)
                codes.append(ReasonCode.UNSPECIFIED_ERROR if v5 else SUBACK_FAILURE)
                continue
            codes.append(req.qos)
            rh = req.retain_handling
            if group is None and queue is not None and (rh == 0 or (rh == 1 and not existed)):
                retained.append((sub, queue))
        self.send(encode(Suback(p.packet_id, codes), self.version))
        # 3.3.1.3: retained messages follow the SUBACK, RETAIN set, through the session's queue
        # so that flow control and ordering are the queue's.
        store = self.mqtt.retained
        for sub, queue in retained:
            for message, left in store.match(self.vhost.name, sub.topic_filter):
                queue.enqueue(message.retained_copy(sub, left))

    def _unsubscribe(self, p: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        codes: list[int] = []
        for key in p.topic_filters:
            try:
                shared = parse_shared(key)
            except ProtocolViolation:
                codes.append(ReasonCode.TOPIC_FILTER_INVALID)
                continue
            if shared is None and topic_filter_error(key) is not None:
                codes.append(ReasonCode.TOPIC_FILTER_INVALID)
                continue
            found = session.unsubscribe(key)
            codes.append(ReasonCode.SUCCESS if found else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.send(
            encode(Unsuback(p.packet_id, codes if self.version == MQTT_5 else []), self.version),
        )

    # -- the rest ----------------------------------------------------------------------------------

    def _pingreq(self, p: Pingreq) -> None:
        self.send(PINGRESP)

    def _client_disconnect(self, p: Disconnect) -> None:
        publish_will = False
        if self.version == MQTT_5:
            expiry = p.properties.get(PropertyId.SESSION_EXPIRY_INTERVAL)
            if expiry is not None:
                if self._connect_expiry == 0 and expiry != 0:
                    raise ProtocolViolation(
                        "Session Expiry Interval set at DISCONNECT after 0 at CONNECT "
                        "(MQTT-3.14.2-2)"
                    )
                cap = self.mqtt.settings.max_session_expiry
                if self.session is not None:
                    self.session.expiry = expiry if cap is None else min(expiry, cap)
            publish_will = p.reason_code != 0  # MQTT-3.14.4-3: only 0x00 discards the will
        self._close(publish_will=publish_will)

    # -- what the session needs (session.Output) ---------------------------------------------------

    def outgoing_alias(self, topic: str) -> tuple[int, bool]:
        """Topic Aliases we set up with a client that accepts them (3.3.2.3.4): (alias, the
        client knows it). Once all of the client's Topic Alias Maximum are in use, the least
        recently used alias is taken for the new topic; the packet carries the topic name with
        it (known is False), which replaces the client's mapping (MQTT-3.3.2-12 lets the
        sender change a mapping at any time)."""
        if not self.alias_max_out:
            return 0, False
        aliases = self._aliases_out
        if aliases is None:
            aliases = self._aliases_out = {}
        alias = aliases.pop(topic, None)
        if alias is not None:
            aliases[topic] = alias  # now the most recently used (dicts keep insertion order)
            return alias, True
        if self._aliases_free:
            alias = self._aliases_free.pop()
        elif self._aliases_next <= self.alias_max_out:
            alias = self._aliases_next
            self._aliases_next += 1
        else:
            alias = aliases.pop(next(iter(aliases)))  # least recently used
        aliases[topic] = alias
        return alias, False

    def drop_alias(self, topic: str) -> None:
        """The packet that would have mapped `topic` was not sent: the alias is free again (the
        client may still map it to an older topic; the next use sends the topic name)."""
        if self._aliases_out is not None:
            alias = self._aliases_out.pop(topic, None)
            if alias is not None:
                self._aliases_free.append(alias)


_HANDLERS: dict[int, dict[type, Callable[[MQTTConnection, Any], None]]] = {
    State.CONNECT_WAIT: {Connect: MQTTConnection._connect},
    State.CONNECTED: {
        Publish: MQTTConnection._publish,
        PubAck: MQTTConnection._puback,
        PubRec: MQTTConnection._pubrec,
        PubRel: MQTTConnection._pubrel,
        PubComp: MQTTConnection._pubcomp,
        Subscribe: MQTTConnection._subscribe,
        Unsubscribe: MQTTConnection._unsubscribe,
        Pingreq: MQTTConnection._pingreq,
        Disconnect: MQTTConnection._client_disconnect,
    },
    State.CLOSED: {},
}
