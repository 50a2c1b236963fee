"""Retained messages (3.3.1.3): one per topic per vhost, kept durably in one file.

Theory of operation. The index is a `TopicTree` per vhost, searched by topic filter when a
subscription is made (so wildcards find retained messages too, as Mosquitto does and RabbitMQ's
default ETS store does not). Every change marks the store dirty and asks the server, through
the `defer` callable it gave, to call `flush()` soon: a burst of retained publishes in one loop
iteration becomes one rewrite. `flush` rewrites the whole file atomically (write a temporary
file, fsync it, rename it over the old one, fsync the directory), so a crash leaves either the
old or the new file, never a torn one. That is the interim design until the journal (the store
issue) lands; `RetainedStore` is the seam it will replace.

File format: the 8-byte magic `FMQRET1\\n`, then records of
`u32 length | u32 crc32(body) | body`, where the body is
`utf8 vhost | utf8 topic | u8 qos | f64 expiry (wall-clock seconds, 0 for none) |
u32 n | n bytes of MQTT 5 property body (the forwarded properties) | payload`.
Loading stops at the first record whose length or CRC is wrong (a torn tail) and keeps the rest.

Expiry: a retained message with a Message Expiry Interval is dropped once it expires
(MQTT-3.3.2-5); the copy sent to a new subscriber carries the time left.
"""

from __future__ import annotations

import logging
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ferrymq.core.clock import Clock
from ferrymq.protocols.mqtt.constants import PropertyId
from ferrymq.protocols.mqtt.errors import RemoteProtocolError
from ferrymq.protocols.mqtt.mapping import MQTTMessage, forwarded_property_body
from ferrymq.protocols.mqtt.properties import Properties, decode_properties
from ferrymq.protocols.mqtt.topics import TopicTree
from ferrymq.protocols.mqtt.wire import U16, U32, varint
from ferrymq.store.files import replace_atomically

log = logging.getLogger("ferrymq.mqtt")

MAGIC = b"FMQRET1\n"
FILE_NAME = "mqtt_retained.bin"
_HEAD = struct.Struct(">II")
_F64 = struct.Struct(">d")


class _Retained:
    """A stored retained message and its expiry on the broker clock (None: never)."""

    __slots__ = ("expires_at", "message")

    def __init__(self, message: MQTTMessage, expires_at: float | None) -> None:
        self.message = message
        self.expires_at = expires_at


class RetainedStore:
    """See the module docstring.

    Args:
        clock: the broker's clock (expiry).
        exchange: the exchange MQTT publishes to, stamped on reloaded messages.
        path: the file; None keeps retained messages in memory only.
        defer: schedules a call soon (the server passes loop.call_soon); None flushes at once.
    """

    def __init__(
        self,
        clock: Clock,
        exchange: str,
        path: Path | None = None,
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.clock = clock
        self.exchange = exchange
        self.path = path
        self.defer = defer
        self._trees: dict[str, TopicTree[_Retained]] = {}
        self._dirty = False
        self._scheduled = False
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return sum(len(t) for t in self._trees.values())

    # -- use -------------------------------------------------------------------------------------

    def set(self, vhost: str, message: MQTTMessage) -> None:
        """Store, replace or (empty payload) clear the retained message of a topic."""
        tree = self._trees.get(vhost)
        if not message.body:
            if tree is None or tree.discard(message.topic) is None:
                return  # MQTT-3.3.1-7: an empty retained message is never stored
        else:
            if tree is None:
                tree = self._trees[vhost] = TopicTree()
            expires_at = None
            if message.expiry_interval is not None:
                expires_at = self.clock.now() + message.expiry_interval
            tree.set(message.topic, _Retained(message, expires_at))
        self._changed()

    def get(self, vhost: str, topic: str) -> MQTTMessage | None:
        tree = self._trees.get(vhost)
        item = None if tree is None else tree.get(topic)
        if item is None or self._expired(vhost, topic, item):
            return None
        return item.message

    def match(self, vhost: str, topic_filter: str) -> list[tuple[MQTTMessage, int | None]]:
        """Retained messages whose topic `topic_filter` matches, with their expiry left."""
        tree = self._trees.get(vhost)
        if tree is None:
            return []
        out: list[tuple[MQTTMessage, int | None]] = []
        expired: list[str] = []
        now = self.clock.now()
        for topic, item in tree.match(topic_filter):
            if item.expires_at is None:
                out.append((item.message, None))
            elif item.expires_at > now:
                out.append((item.message, max(1, math.ceil(item.expires_at - now))))
            else:
                expired.append(topic)
        for topic in expired:
            tree.discard(topic)
        if expired:
            self._changed()
        return out

    def _expired(self, vhost: str, topic: str, item: _Retained) -> bool:
        if item.expires_at is None or item.expires_at > self.clock.now():
            return False
        self._trees[vhost].discard(topic)
        self._changed()
        return True

    # -- durability ------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.path is None:
            return
        self._dirty = True
        if self._scheduled:
            return
        if self.defer is None:
            self.flush()
        else:
            self._scheduled = True
            self.defer(self.flush)

    def flush(self) -> None:
        """Rewrite the file if anything changed (atomic: temp, fsync, rename, fsync dir)."""
        self._scheduled = False
        if not self._dirty or self.path is None:
            return
        self._dirty = False
        path = self.path
        try:
            replace_atomically(path, self._file_chunks())
        except OSError as exc:
            self._dirty = True
            log.error("cannot write retained messages to %s: %s", path, exc)

    def _file_chunks(self) -> Iterator[bytes]:
        yield MAGIC
        for record in self._records():
            yield _HEAD.pack(len(record), zlib.crc32(record))
            yield record

    def _records(self) -> list[bytes]:
        now = self.clock.now()
        wall = self.clock.wall()
        out = []
        for vhost, tree in self._trees.items():
            vraw = vhost.encode("utf-8")
            for topic, item in tree.items():
                if item.expires_at is not None and item.expires_at <= now:
                    continue
                m = item.message
                expiry_wall = 0.0 if item.expires_at is None else wall + (item.expires_at - now)
                props = forwarded_property_body(m.mqtt_props) if m.mqtt_props else b""
                traw = topic.encode("utf-8")
                out.append(
                    b"".join(
                        (
                            U16(len(vraw)),
                            vraw,
                            U16(len(traw)),
                            traw,
                            bytes((m.qos,)),
                            _F64.pack(expiry_wall),
                            U32(len(props)),
                            props,
                            m.body,
                        )
                    )
                )
        return out

    def _load(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read retained messages from %s: %s", path, exc)
            return
        if not data.startswith(MAGIC):
            log.error("%s is not a retained-message file; ignoring it", path)
            return
        o = len(MAGIC)
        n = len(data)
        count = 0
        now = self.clock.now()
        wall = self.clock.wall()
        while o < n:
            if o + 8 > n:
                break
            length, crc = _HEAD.unpack_from(data, o)
            body = data[o + 8 : o + 8 + length]
            if len(body) != length or zlib.crc32(body) != crc:
                break
            o += 8 + length
            try:
                self._load_record(body, now, wall)
                count += 1
            except (ValueError, IndexError, struct.error, RemoteProtocolError) as exc:
                log.warning("skipping a bad retained-message record in %s: %s", path, exc)
        if o < n:
            log.warning("retained-message file %s has a torn tail after %d records", path, count)

    def _load_record(self, body: bytes, now: float, wall: float) -> None:
        o = 0
        vlen = (body[o] << 8) | body[o + 1]
        vhost = body[o + 2 : o + 2 + vlen].decode("utf-8")
        o += 2 + vlen
        tlen = (body[o] << 8) | body[o + 1]
        topic = body[o + 2 : o + 2 + tlen].decode("utf-8")
        o += 2 + tlen
        qos = body[o]
        expiry_wall = _F64.unpack_from(body, o + 1)[0]
        o += 9
        plen = struct.unpack_from(">I", body, o)[0]
        o += 4
        props_raw = body[o : o + plen]
        o += plen
        payload = body[o:]
        props: Properties = {}
        if props_raw:
            section = varint(len(props_raw)) + props_raw
            props, _ = decode_properties(section, 0, len(section), 3)
        expires_at = None
        if expiry_wall:
            left = expiry_wall - wall
            if left <= 0:
                return
            props[PropertyId.MESSAGE_EXPIRY_INTERVAL] = max(1, math.ceil(left))
            expires_at = now + left
        message = MQTTMessage(self.exchange, topic, payload, qos, retain=True, props=props or None)
        tree = self._trees.get(vhost)
        if tree is None:
            tree = self._trees[vhost] = TopicTree()
        tree.set(topic, _Retained(message, expires_at))
