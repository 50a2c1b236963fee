"""Validation of queue x-arguments, with RabbitMQ's rules and error texts.

Unknown x-arguments are accepted and ignored, as RabbitMQ does; known ones are checked for type
and range (406 PRECONDITION_FAILED otherwise). A redeclaration must be equivalent in the flags
and in the arguments RabbitMQ compares.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ferrymq.core.errors import PreconditionFailed
from ferrymq.queues.classic import QueueSettings

# Arguments that must be equal on redeclaration (RabbitMQ's rabbit_queue_type equivalence list).
EQUIVALENCE_ARGS = (
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-queue-type",
    # FerryMQ: a JMS durable subscription's topic, selector and noLocal; a change is a 406, so the
    # client knows to delete and recreate the subscription (JMS 2.0 6.11.1)
    "x-jms-subscription",
)

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_PRIORITY = 255


def type_name(value: Any) -> str:
    """The AMQP field type name RabbitMQ prints in its messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    if value is None:
        return "void"
    return type(value).__name__


def _invalid(arg: str, queue: str, vhost: str, reason: str) -> PreconditionFailed:
    return PreconditionFailed(
        f"invalid arg '{arg}' for queue '{queue}' in vhost '{vhost}': {reason}"
    )


def _int(args: dict[str, Any], key: str, queue: str, vhost: str, minimum: int) -> int | None:
    if key not in args:
        return None
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(key, queue, vhost, f"{{unacceptable_type,{type_name(value)}}}")
    if value < minimum:
        reason = "value_negative" if value < 0 else "value_zero"
        raise _invalid(key, queue, vhost, f"{{{reason},{value}}}")
    return int(value)


def _str(args: dict[str, Any], key: str, queue: str, vhost: str) -> str | None:
    if key not in args:
        return None
    value = args[key]
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        raise _invalid(key, queue, vhost, f"{{unacceptable_type,{type_name(value)}}}")
    return value


def queue_settings(
    args: dict[str, Any], queue: str, vhost: str, default_consumer_timeout: float | None = None
) -> QueueSettings:
    """Validate `args` and turn them into the queue's settings."""
    s = QueueSettings()
    ttl = _int(args, "x-message-ttl", queue, vhost, 0)
    s.message_ttl = None if ttl is None else ttl / 1000.0
    expires = _int(args, "x-expires", queue, vhost, 1)
    s.expires = None if expires is None else expires / 1000.0
    s.max_length = _int(args, "x-max-length", queue, vhost, 0)
    s.max_length_bytes = _int(args, "x-max-length-bytes", queue, vhost, 0)
    overflow = _str(args, "x-overflow", queue, vhost)
    if overflow is not None:
        if overflow not in OVERFLOW_MODES:
            raise _invalid("x-overflow", queue, vhost, f'{{unknown_overflow,<<"{overflow}">>}}')
        s.overflow = overflow
    s.dead_letter_exchange = _str(args, "x-dead-letter-exchange", queue, vhost)
    s.dead_letter_routing_key = _str(args, "x-dead-letter-routing-key", queue, vhost)
    if s.dead_letter_routing_key is not None and s.dead_letter_exchange is None:
        raise PreconditionFailed(
            f"invalid arg 'x-dead-letter-routing-key' for queue '{queue}' in vhost '{vhost}': "
            "{routing_key_but_no_dlx_defined}"
        )
    priority = _int(args, "x-max-priority", queue, vhost, 0)
    if priority is not None:
        if priority > MAX_PRIORITY:
            raise _invalid("x-max-priority", queue, vhost, f"{{max_value_exceeded,{priority}}}")
        s.max_priority = priority
    if "x-single-active-consumer" in args:
        sac = args["x-single-active-consumer"]
        if not isinstance(sac, bool):
            raise _invalid(
                "x-single-active-consumer", queue, vhost, f"{{unacceptable_type,{type_name(sac)}}}"
            )
        s.single_active_consumer = sac
    s.delivery_limit = _int(args, "x-delivery-limit", queue, vhost, 0)
    timeout = _int(args, "x-consumer-timeout", queue, vhost, 1)
    if timeout is not None:
        s.consumer_timeout = timeout / 1000.0
    else:
        s.consumer_timeout = default_consumer_timeout
    queue_type = _str(args, "x-queue-type", queue, vhost)
    if queue_type not in (None, "classic"):
        raise _invalid("x-queue-type", queue, vhost, f'{{unsupported_queue_type,"{queue_type}"}}')
    return s


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_equivalent(
    kind: str, name: str, vhost: str, current: dict[str, Any], requested: dict[str, Any]
) -> None:
    """Raise 406 unless every compared argument is equal (absent on both sides counts as equal)."""
    for key in EQUIVALENCE_ARGS:
        have, want = current.get(key), requested.get(key)
        if have == want and type(have) is type(want):
            continue
        if isinstance(have, int) and isinstance(want, int) and not isinstance(have, bool):
            if have == want and not isinstance(want, bool):
                continue
        if isinstance(have, str) and isinstance(want, (bytes, bytearray)):
            if have.encode() == want:
                continue
        received = (
            "none" if want is None else f"the value '{_fmt(want)}' of type '{type_name(want)}'"
        )
        current_text = (
            "none" if have is None else f"the value '{_fmt(have)}' of type '{type_name(have)}'"
        )
        raise PreconditionFailed(
            f"inequivalent arg '{key}' for {kind} '{name}' in vhost '{vhost}': "
            f"received {received} but current is {current_text}"
        )


def check_flag(kind: str, name: str, vhost: str, flag: str, current: bool, requested: bool) -> None:
    if current != requested:
        raise PreconditionFailed(
            f"inequivalent arg '{flag}' for {kind} '{name}' in vhost '{vhost}': "
            f"received '{_fmt(requested)}' but current is '{_fmt(current)}'"
        )
