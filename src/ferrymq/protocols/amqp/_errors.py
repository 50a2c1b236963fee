"""Errors by direction, carrying the AMQP reply code to close with.

`ChannelError` closes one channel; `ConnectionError_` closes the connection. Core's typed errors
map onto them through `from_broker_error`.
"""

from __future__ import annotations

from ferrymq.core import errors as core_errors


class AMQPError(Exception):
    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id


class ChannelError(AMQPError):
    """Closes only the channel (reply codes 403, 404, 405, 406)."""


class ConnectionError_(AMQPError):
    """Closes the connection (reply codes 5xx, 320, 530)."""


_CODES: dict[type[core_errors.BrokerError], tuple[int, str]] = {
    core_errors.NotFound: (404, "NOT_FOUND"),
    core_errors.AccessRefused: (403, "ACCESS_REFUSED"),
    core_errors.ResourceLocked: (405, "RESOURCE_LOCKED"),
    core_errors.PreconditionFailed: (406, "PRECONDITION_FAILED"),
    core_errors.ResourceError: (506, "RESOURCE_ERROR"),
    core_errors.NotAllowed: (530, "NOT_ALLOWED"),
    core_errors.NotImplementedFeature: (540, "NOT_IMPLEMENTED"),
    core_errors.InternalError: (541, "INTERNAL_ERROR"),
    core_errors.CommandInvalid: (503, "COMMAND_INVALID"),
}


def from_broker_error(
    exc: core_errors.BrokerError, class_id: int = 0, method_id: int = 0
) -> AMQPError:
    code, name = _CODES.get(type(exc), (541, "INTERNAL_ERROR"))
    text = f"{name} - {exc.text}"
    if exc.scope == "connection" or code >= 500:
        return ConnectionError_(code, text, class_id, method_id)
    return ChannelError(code, text, class_id, method_id)
