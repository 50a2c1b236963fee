"""Topic names and filters: validation (4.7), shared subscriptions (4.8.2), MQTT matching, and
the mapping onto AMQP routing keys.

The mapping is RabbitMQ's (rabbit_mqtt_util): `/` becomes `.`, and in filters `+` becomes `*`
while `#` stays `#`; MQTT publishes go to `amq.topic`. RabbitMQ leaves a `.` inside an MQTT level
alone, so it becomes an extra AMQP word: MQTT topic `a.b` is routing key `a.b`, the same as
MQTT topic `a/b`. AMQP consumers see exactly that, as on RabbitMQ. Between MQTT clients we
follow Mosquitto instead: a session checks every message against its subscriptions with MQTT's
own rules (`FilterTree`) before sending it, so a subscriber to `a/b` does not get a message
published to `a.b`, and topic names reach MQTT subscribers exactly as published. The same
check implements MQTT-4.7.2-1 (`#` and `+` at the first level do not match `$` topics), which an
AMQP topic exchange knows nothing about.

Routing keys of AMQP publishes become MQTT topic names by the reverse rule (`.` to `/`).
RabbitMQ also turns `*` into `+` there; we do not, since a topic name with `+` is invalid and
clients reject it, while `*` is an ordinary character in MQTT.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from ferrymq.protocols.mqtt.constants import ReasonCode
from ferrymq.protocols.mqtt.errors import ProtocolViolation

T = TypeVar("T")

SHARE_PREFIX = "$share/"

_TO_AMQP_NAME = str.maketrans({"/": "."})
_TO_AMQP_FILTER = str.maketrans({"/": ".", "+": "*"})


def topic_name_error(topic: str) -> str | None:
    """Why `topic` is not a valid topic name (4.7.3), or None."""
    if not topic:
        return "topic name is empty (MQTT-4.7.3-1)"
    if "+" in topic or "#" in topic:
        return "topic name contains a wildcard (MQTT-3.3.2-2)"
    if len(topic.encode("utf-8")) > 0xFFFF:
        return "topic name longer than 65535 bytes"
    return None


def topic_filter_error(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid topic filter (4.7.1, 4.7.3), or None."""
    if not topic_filter:
        return "topic filter is empty (MQTT-4.7.3-1)"
    if "+" not in topic_filter and "#" not in topic_filter:
        return None
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return "'#' must be the last level and alone in it (MQTT-4.7.1-1)"
        if "+" in level and level != "+":
            return "'+' must occupy a whole level (MQTT-4.7.1-2)"
    return None


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """(share name, filter) of a `$share/{ShareName}/{filter}` subscription, else None.

    Raises:
        ProtocolViolation: a malformed shared subscription (0x8F, MQTT-4.8.2-1, -2).
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    rest = topic_filter[len(SHARE_PREFIX) :]
    group, sep, inner = rest.partition("/")
    if not group or not sep or "+" in group or "#" in group:
        raise ProtocolViolation(
            "shared subscription needs $share/{ShareName}/{filter} (MQTT-4.8.2-1, -2)",
            ReasonCode.TOPIC_FILTER_INVALID,
        )
    error = topic_filter_error(inner)
    if error is not None:
        raise ProtocolViolation(error, ReasonCode.TOPIC_FILTER_INVALID)
    return group, inner


def topic_to_routing_key(topic: str) -> str:
    """MQTT topic name -> AMQP routing key on amq.topic (RabbitMQ's mqtt_to_amqp)."""
    return topic.translate(_TO_AMQP_NAME)


def filter_to_binding_key(topic_filter: str) -> str:
    """MQTT topic filter -> AMQP binding key (`/` to `.`, `+` to `*`)."""
    return topic_filter.translate(_TO_AMQP_FILTER)


def routing_key_to_topic(routing_key: str) -> str:
    """AMQP routing key -> MQTT topic name (`.` to `/`)."""
    return routing_key.replace(".", "/")


def needs_mqtt_check(topic_filter: str) -> bool:
    """True when AMQP matching of the filter's binding key can differ from MQTT matching."""
    return "." in topic_filter or "*" in topic_filter


def plain_topic(topic: str) -> bool:
    """True when AMQP routing of the topic is exactly MQTT matching (see module docstring)."""
    return "." not in topic and "*" not in topic and not topic.startswith("$")


# -- MQTT matching -----------------------------------------------------------------------------


class _Node(Generic[T]):
    __slots__ = ("children", "hash", "plus", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] | None = None
        self.plus: _Node[T] | None = None
        self.hash: dict[str, T] | None = None  # filter -> value, for filters ending in '#'
        self.values: dict[str, T] | None = None  # filter -> value, for filters ending here

    def empty(self) -> bool:
        return not (self.children or self.plus or self.hash or self.values)


class FilterTree(Generic[T]):
    """Topic filters -> values, matched against topic names with MQTT's rules (4.7).

    `match` honours MQTT-4.7.2-1: a filter whose first level is a wildcard does not match a
    topic starting with `$`. One value per filter: adding a filter again replaces its value.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, topic_filter: str, value: T) -> None:
        node = self._root
        levels = topic_filter.split("/")
        for level in levels[:-1] if levels[-1] == "#" else levels:
            if level == "+":
                if node.plus is None:
                    node.plus = _Node()
                node = node.plus
            else:
                if node.children is None:
                    node.children = {}
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
        if levels[-1] == "#":
            if node.hash is None:
                node.hash = {}
            table = node.hash
        else:
            if node.values is None:
                node.values = {}
            table = node.values
        if topic_filter not in table:
            self._size += 1
        table[topic_filter] = value

    def remove(self, topic_filter: str) -> bool:
        levels = topic_filter.split("/")
        hashed = levels[-1] == "#"
        path: list[tuple[_Node[T], str]] = []
        node: _Node[T] | None = self._root
        for level in levels[:-1] if hashed else levels:
            assert node is not None
            path.append((node, level))
            if level == "+":
                node = node.plus
            else:
                node = node.children.get(level) if node.children else None
            if node is None:
                return False
        assert node is not None
        table = node.hash if hashed else node.values
        if not table or topic_filter not in table:
            return False
        del table[topic_filter]
        self._size -= 1
        while path and node.empty():
            parent, level = path.pop()
            if level == "+":
                parent.plus = None
            else:
                assert parent.children is not None
                del parent.children[level]
            node = parent
        return True

    def match(self, topic: str) -> list[T]:
        """Values of every filter matching topic name `topic`."""
        levels = topic.split("/")
        n = len(levels)
        out: list[T] = []
        dollar = topic.startswith("$")
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if node.hash and not (dollar and i == 0):
                out.extend(node.hash.values())  # '#' also matches the parent level
            if i == n:
                if node.values:
                    out.extend(node.values.values())
                continue
            if node.children:
                child = node.children.get(levels[i])
                if child is not None:
                    stack.append((child, i + 1))
            if node.plus is not None and not (dollar and i == 0):
                stack.append((node.plus, i + 1))
        return out


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of one filter against one topic name (for tests and rare paths)."""
    tree: FilterTree[bool] = FilterTree()
    tree.add(topic_filter, True)
    return bool(tree.match(topic))


class TopicTree(Generic[T]):
    """Topic names -> values, searched by topic filter: the retained-message index."""

    __slots__ = ("_root", "_size")

    class _TNode:
        __slots__ = ("children", "value")

        def __init__(self) -> None:
            self.children: dict[str, Any] = {}
            self.value: Any = None

    def __init__(self) -> None:
        self._root = TopicTree._TNode()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, topic: str) -> T | None:
        node: Any = self._root
        for level in topic.split("/"):
            node = node.children.get(level)
            if node is None:
                return None
        value: T | None = node.value
        return value

    def set(self, topic: str, value: T) -> None:
        node: Any = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = TopicTree._TNode()
            node = child
        if node.value is None:
            self._size += 1
        node.value = value

    def discard(self, topic: str) -> T | None:
        path: list[tuple[Any, str]] = []
        node: Any = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            path.append((node, level))
            node = child
        old: T | None = node.value
        if old is None:
            return None
        node.value = None
        self._size -= 1
        while path and node.value is None and not node.children:
            parent, level = path.pop()
            del parent.children[level]
            node = parent
        return old

    def match(self, topic_filter: str) -> Iterator[tuple[str, T]]:
        """(topic, value) for every stored topic that `topic_filter` matches."""
        levels = topic_filter.split("/")
        n = len(levels)
        stack: list[tuple[Any, int, str]] = [(self._root, 0, "")]
        while stack:
            node, i, prefix = stack.pop()
            if i == n:
                if node.value is not None:
                    yield prefix, node.value
                continue
            level = levels[i]
            if level == "#":
                # everything below, and the parent level itself (4.7.1.2)
                if i and node.value is not None:
                    yield prefix, node.value
                todo = [(node, prefix, i == 0)]
                while todo:
                    cur, pre, root = todo.pop()
                    for name, child in cur.children.items():
                        if root and name.startswith("$"):
                            continue
                        topic = name if root else pre + "/" + name
                        if child.value is not None:
                            yield topic, child.value
                        if child.children:
                            todo.append((child, topic, False))
                continue
            if level == "+":
                for name, child in node.children.items():
                    if i == 0 and name.startswith("$"):
                        continue
                    stack.append((child, i + 1, name if i == 0 else prefix + "/" + name))
                continue
            child = node.children.get(level)
            if child is not None:
                stack.append((child, i + 1, level if i == 0 else prefix + "/" + level))

    def items(self) -> Iterator[tuple[str, T]]:
        todo: list[tuple[Any, str]] = [(self._root, "")]
        while todo:
            node, prefix = todo.pop()
            for name, child in node.children.items():
                topic = name if node is self._root else prefix + "/" + name
                if child.value is not None:
                    yield topic, child.value
                if child.children:
                    todo.append((child, topic))
