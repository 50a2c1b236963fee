"""Errors by direction (as in h11), each carrying the MQTT 5 reason code to answer with.

`RemoteProtocolError`: the peer broke the protocol (a malformed packet, a protocol error). The
server answers an MQTT 5 client with that reason code (CONNACK before the session exists,
DISCONNECT after) and closes; a 3.x client is simply disconnected, as 3.1.1 4.8 requires.
`LocalProtocolError`: we were asked to encode something the protocol forbids (our bug, or a
caller's); nothing is sent.
"""

from __future__ import annotations

from typing import Any

from ferrymq.protocols.mqtt.constants import ReasonCode


class MQTTError(Exception):
    def __init__(self, reason: int, text: str) -> None:
        super().__init__(f"0x{reason:02X} {text}")
        self.reason = reason
        self.text = text


class RemoteProtocolError(MQTTError):
    """The peer sent something the protocol forbids; close with `reason`.

    `packets`: when the decoder raises, the whole packets it parsed before the bad one, which
    the connection still acts on (they were valid).
    """

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(reason, text)
        self.packets: list[Any] = []


class MalformedPacket(RemoteProtocolError):
    """The bytes do not parse as the packet they claim to be (1.5, 2.1; reason 0x81)."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.MALFORMED_PACKET, text)


class ProtocolViolation(RemoteProtocolError):
    """A well-formed packet that breaks a rule of the protocol (reason 0x82 unless given)."""

    def __init__(self, text: str, reason: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason, text)


class PacketTooLarge(RemoteProtocolError):
    """A packet over the maximum size we announced (3.2.2.3.6; reason 0x95)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            ReasonCode.PACKET_TOO_LARGE, f"packet of {size} bytes exceeds the limit of {limit}"
        )
        self.size = size
        self.limit = limit


class LocalProtocolError(MQTTError):
    """We were asked to send something the protocol forbids."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, text)
