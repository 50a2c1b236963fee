"""Errors core raises, by meaning; each protocol maps them onto its own wire codes.

`scope` says what a protocol should close: a channel-level problem ("channel") or the whole
connection ("connection"). AMQP maps these to reply codes 403-406 and 530/540/541.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base class: `text` is shown to the client."""

    scope = "channel"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class NotFound(BrokerError):
    """A queue, exchange or vhost that does not exist."""


class AccessRefused(BrokerError):
    """The operation is not permitted (internal exchange, reserved name, permissions)."""


class ResourceLocked(BrokerError):
    """An exclusive resource held by someone else."""


class PreconditionFailed(BrokerError):
    """The request conflicts with the current state or with its own arguments."""


class ResourceError(BrokerError):
    """The broker cannot take more of something."""


class NotAllowed(BrokerError):
    """A connection-level refusal (vhost access, limits)."""

    scope = "connection"


class NotImplementedFeature(BrokerError):
    """A valid request that the broker does not support."""

    scope = "connection"


class InternalError(BrokerError):
    """A bug: the connection is closed, the broker goes on."""

    scope = "connection"


class CommandInvalid(BrokerError):
    """A request that is malformed at the protocol level (unknown exchange type...)."""

    scope = "connection"
