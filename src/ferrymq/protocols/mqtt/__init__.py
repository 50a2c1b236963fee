"""MQTT 3.1, 3.1.1 and 5.0 over FerryMQ's core.

`codec` is the sans-IO packet codec (both directions); `connection.MQTTConnection` is the
server's per-connection state machine; `session` maps sessions and subscriptions onto core
queues and bindings; `broker.MQTTBroker` holds what connections share (sessions, retained
messages, shared-subscription groups); `session_store` is the record of persistent sessions
that survives a restart (its file I/O is server/mqtt_sessions_file.py); `topics` and `mapping`
hold the MQTT <-> AMQP naming and property mapping (docs/mqtt.md).
"""

from __future__ import annotations

from ferrymq.protocols.mqtt.broker import MQTTBroker, MQTTSettings
from ferrymq.protocols.mqtt.connection import MQTTConnection, State
from ferrymq.protocols.mqtt.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    ProtocolViolation,
    RemoteProtocolError,
)

__all__ = [
    "LocalProtocolError",
    "MQTTBroker",
    "MQTTConnection",
    "MQTTSettings",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolViolation",
    "RemoteProtocolError",
    "State",
]
