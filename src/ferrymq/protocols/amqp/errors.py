"""Codec errors, split by direction as h11 does.

`CodecError` means the peer sent bytes we cannot accept; it carries the reply code the connection
closes with. `EncodeError` means our own caller asked for something the wire cannot carry (a short
string over 255 bytes, an int too large for its type); it is a ValueError because it is a bug on
our side, never the peer's.
"""

from __future__ import annotations

from ferrymq.protocols.amqp.constants import ReplyCode


class CodecError(Exception):
    """The peer sent bytes that break the AMQP 0-9-1 framing or field syntax.

    Attributes:
        reply_code: the code for Connection.Close (501 frame errors, 502 bad field values,
            540 unknown methods).
        text: a readable reason, safe to put in reply-text (it is cut to fit a short string).
        class_id: class of the offending method, 0 when unknown.
        method_id: method of the offending method, 0 when unknown.
    """

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(reply_code, text, class_id, method_id)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    def __str__(self) -> str:
        where = f" (method {self.class_id}.{self.method_id})" if self.class_id else ""
        return f"{self.reply_code} {self.text}{where}"


class ProtocolHeaderMismatch(CodecError):
    """The first 8 bytes were not `AMQP\\x00\\x00\\x09\\x01`.

    AMQP 0-9-1 4.2.2: the server answers with its own protocol header and closes the socket;
    no Connection.Close is sent, so `reply_code` is informational only. `received` holds the
    bytes that were seen instead.
    """

    def __init__(self, received: bytes) -> None:
        if received[:4] == b"AMQP":
            text = f"unsupported AMQP protocol version {tuple(received[4:8])}"
        else:
            text = f"not an AMQP 0-9-1 protocol header: {received!r}"
        super().__init__(ReplyCode.FRAME_ERROR, text)
        self.received = received


class EncodeError(ValueError):
    """A value cannot be encoded (our own misuse, never the peer's)."""
