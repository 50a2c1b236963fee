"""The MQTT side of one broker: settings, the session registry, retained messages, shared
subscription groups. One `MQTTBroker` per core `Broker`; every MQTT connection shares it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ferrymq.core.broker import Broker
from ferrymq.core.errors import BrokerError
from ferrymq.core.queue_type import QueueType
from ferrymq.core.vhost import PublishOutcome, VHost
from ferrymq.protocols.mqtt.constants import MAX_PACKET_SIZE
from ferrymq.protocols.mqtt.mapping import MQTTMessage
from ferrymq.protocols.mqtt.retained import FILE_NAME, RetainedStore
from ferrymq.protocols.mqtt.session import (
    QueueSlot,
    Session,
    SessionRegistry,
    Subscription,
    SubscriptionSet,
)

log = logging.getLogger("ferrymq.mqtt")

SHARED_QUEUE_PREFIX = "mqtt-shared-"  # + "<group>-<filter>": one queue per shared group


@dataclass
class MQTTSettings:
    """MQTT settings. `from_settings` reads each from core's Settings as `mqtt_<name>` when
    present, so the server's config (TOML, FERRYMQ_MQTT_*, flags) can set them."""

    exchange: str = "amq.topic"  # RabbitMQ's mqtt.exchange
    default_vhost: str = "/"  # RabbitMQ's mqtt.vhost; a `vhost:user` user name overrides it
    allow_anonymous: bool = True  # RabbitMQ's mqtt.allow_anonymous: log in as default_user
    default_user: str = "guest"
    default_password: str = "guest"
    max_packet_size: int = 0  # 0: the broker's max_message_size (+ headers), capped by MQTT
    max_packet_size_unauthenticated: int = 65_536  # CONNECT (RabbitMQ's default)
    topic_alias_maximum: int = 64  # aliases a v5 client may set up with us
    receive_maximum: int = 65_535  # incoming QoS 2 publishes a client may have unreleased
    max_inflight: int = 1_000  # outgoing QoS 1/2 in flight to a 3.x client (v5: its own)
    max_keepalive: int = 0  # 0: accept any; else the Server Keep Alive cap
    max_session_expiry: int | None = None  # None: no cap

    @classmethod
    def from_settings(cls, settings: Any) -> MQTTSettings:
        out = cls()
        for f in fields(cls):
            value = getattr(settings, "mqtt_" + f.name, None)
            if value is not None:
                setattr(out, f.name, value)
        return out.resolved(settings)

    def resolved(self, settings: Any) -> MQTTSettings:
        """Fill the defaults that depend on the broker's settings."""
        if not self.max_packet_size:
            self.max_packet_size = int(getattr(settings, "max_message_size", 0)) + 65_536
        self.max_packet_size = min(self.max_packet_size, MAX_PACKET_SIZE)
        return self


class _SharedGroup:
    __slots__ = ("binding_key", "members", "queue")

    def __init__(self, queue: QueueType, binding_key: str) -> None:
        self.queue = queue
        self.binding_key = binding_key
        self.members: set[Session] = set()


class MQTTBroker:
    """See the module docstring.

    Args:
        broker: the core broker.
        settings: MQTT settings (default: read from broker.config).
        data_dir: where the retained-message file lives; None keeps them in memory.
        defer: schedules a callable soon (the server's loop.call_soon), for batched writes.
    """

    def __init__(
        self,
        broker: Broker,
        settings: MQTTSettings | None = None,
        data_dir: Path | None = None,
        defer: Any = None,
    ) -> None:
        self.broker = broker
        if settings is None:
            settings = MQTTSettings.from_settings(broker.config)
        self.settings = settings.resolved(broker.config)
        self.exchange = self.settings.exchange
        self.sessions = SessionRegistry()
        self.retained = RetainedStore(
            broker.clock,
            self.exchange,
            None if data_dir is None else Path(data_dir) / FILE_NAME,
            defer,
        )
        self._shared: dict[tuple[str, str], _SharedGroup] = {}

    def publish(self, vhost: VHost, message: MQTTMessage) -> PublishOutcome:
        """Route an MQTT message, storing it first as the topic's retained one if flagged."""
        if message.retain:
            self.retained.set(vhost.name, message)
        return vhost.publish(self.exchange, message)

    # -- shared subscriptions (4.8.2) --------------------------------------------------------------

    def join_shared(self, vhost: VHost, sub: Subscription, session: Session) -> QueueSlot:
        """Add a session to the group of `$share/<group>/<filter>`; the queue is the group's."""
        assert sub.share is not None
        name = f"{SHARED_QUEUE_PREFIX}{sub.share}-{sub.topic_filter}"
        key = (vhost.name, name)
        group = self._shared.get(key)
        if group is None or group.queue.deleted:
            queue = vhost.declare_queue(name, owner=self, durable=True)
            vhost.bind_queue(name, self.exchange, sub.binding_key, None, owner=self)
            group = self._shared[key] = _SharedGroup(queue, sub.binding_key)
        group.members.add(session)
        subs = SubscriptionSet()
        subs.add(sub)
        slot = QueueSlot(name, subs)
        slot.queue = group.queue
        return slot

    def leave_shared(self, vhost: VHost, name: str, session: Session) -> None:
        key = (vhost.name, name)
        group = self._shared.get(key)
        if group is None:
            return
        group.members.discard(session)
        if not group.members:
            del self._shared[key]
            try:
                vhost.delete_queue(name, owner=self)
            except BrokerError:
                pass

    def drop_orphan_shared_queues(self) -> int:
        """After sessions are restored: delete every shared-subscription queue no session joined.

        Its members were clean sessions, which do not outlive a crash; left alone, the durable
        queue would collect every matching message with nobody ever to read them. Returns how
        many were deleted.
        """
        dropped = 0
        for vhost in list(self.broker.vhosts.values()):
            for name in [n for n in vhost.queues if n.startswith(SHARED_QUEUE_PREFIX)]:
                if (vhost.name, name) not in self._shared:
                    try:
                        vhost.delete_queue(name, owner=self)
                        dropped += 1
                    except BrokerError as exc:
                        log.warning("cannot delete orphaned shared queue %r: %s", name, exc)
        return dropped

    def shared_group_size(self, vhost: str, name: str) -> int:
        group = self._shared.get((vhost, name))
        return 0 if group is None else len(group.members)
