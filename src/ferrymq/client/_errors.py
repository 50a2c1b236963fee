"""The client's exceptions: JMS's exception types, pythonic names, AMQP reply codes kept.

Every error the broker sends (Channel.Close / Connection.Close) becomes one of these with the
reply code and text attached, so an application can branch on the type and still log what the
broker said. Errors that are our caller's misuse (writing a received message, acknowledging
on a closed session) are raised without touching the wire.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConnectionClosedError",
    "ConnectionLostError",
    "IllegalStateError",
    "InvalidClientIDError",
    "InvalidDestinationError",
    "InvalidSelectorError",
    "JMSError",
    "MessageEOFError",
    "MessageFormatError",
    "MessageNotReadableError",
    "MessageNotWriteableError",
    "ResourceAllocationError",
    "SendRefusedError",
    "TransactionRolledBackError",
    "error_from_reply",
]


class JMSError(Exception):
    """Base of every client error (JMSException).

    Attributes:
        reply_code: the AMQP reply code when the broker raised it, else 0.
        text: the broker's reply text, or our own reason.
    """

    def __init__(self, text: str, reply_code: int = 0) -> None:
        super().__init__(text)
        self.text = text
        self.reply_code = reply_code

    def __str__(self) -> str:
        return f"{self.reply_code} {self.text}" if self.reply_code else self.text


class IllegalStateError(JMSError):
    """The call is not allowed in the object's current state (closed, wrong mode...)."""


class ConnectionClosedError(IllegalStateError):
    """The connection (or session, consumer) was closed by the application."""


class ConnectionLostError(JMSError):
    """The connection to the broker broke (socket error, heartbeat timeout, broker shutdown)."""


class AuthenticationError(JMSError):
    """The broker refused the credentials or the virtual host (JMSSecurityException)."""


class InvalidClientIDError(JMSError):
    """The client id is in use by another connection in this virtual host."""


class InvalidDestinationError(JMSError):
    """The destination does not exist or cannot be used (404, unknown subscription)."""


class InvalidSelectorError(JMSError):
    """The broker refused the message selector (406 at consumer creation)."""


class ResourceAllocationError(JMSError):
    """The broker cannot give what was asked (exclusive queue locked, limits reached)."""


class TransactionRolledBackError(JMSError):
    """commit() could not commit: the transaction was rolled back (e.g. by a failover)."""


class SendRefusedError(JMSError):
    """The broker negatively confirmed a send (queue full with reject-publish, store failure)."""


class MessageFormatError(JMSError, ValueError):
    """A property or body value of the wrong type, or a conversion JMS does not allow."""


class MessageNotReadableError(JMSError):
    """Reading a bytes or stream message body that is in write-only mode."""


class MessageNotWriteableError(JMSError):
    """Writing the body or properties of a received message (call clear_* first)."""


class MessageEOFError(JMSError):
    """Reading past the end of a bytes or stream message body."""


def error_from_reply(code: int, text: str, method_index: int = 0) -> JMSError:
    """Map a Channel.Close or Connection.Close to an exception type."""
    lowered = text.lower()
    if code == 403:
        if "login" in lowered or "authentication" in lowered or method_index >> 16 == 10:
            return AuthenticationError(text, code)
        return ResourceAllocationError(text, code)
    if code == 404:
        return InvalidDestinationError(text, code)
    if code == 405:
        return ResourceAllocationError(text, code)
    if code == 406 and "selector" in lowered:
        return InvalidSelectorError(text, code)
    if code == 530:
        if "client id" in lowered or "client_id" in lowered:
            return InvalidClientIDError(text, code)
        if "vhost" in lowered:
            return AuthenticationError(text, code)
        return ResourceAllocationError(text, code)
    if code in (320, 541):
        return ConnectionLostError(text, code)
    if code == 506:
        return ResourceAllocationError(text, code)
    return JMSError(text, code)
