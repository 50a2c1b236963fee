"""Topic names and filters: validation, MQTT matching (incl. `$` topics), shared subscriptions,
the AMQP mapping, and the two topic trees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.protocols.mqtt.errors import ProtocolViolation
from ferrymq.protocols.mqtt.topics import (
    FilterTree,
    TopicTree,
    filter_matches,
    filter_to_binding_key,
    parse_shared,
    routing_key_to_topic,
    topic_filter_error,
    topic_name_error,
    topic_to_routing_key,
)


def test_topic_names() -> None:
    for ok in ("a", "a/b", "/", "//", "a b", "$SYS/x", "\u00e9", "a.b", "a*b"):
        assert topic_name_error(ok) is None, ok
    for bad in ("", "a/+", "#", "a/b#", "+"):
        assert topic_name_error(bad) is not None, bad


def test_topic_filters() -> None:
    for ok in ("#", "+", "a/#", "+/+", "/+", "a/+/b", "+/#", "$SYS/#", "a//b"):
        assert topic_filter_error(ok) is None, ok
    for bad in ("", "a#", "a/#/b", "#/a", "a+", "a/+b", "##", "a/b+"):
        assert topic_filter_error(bad) is not None, bad


MATCHES = [
    # filter, topic, match?  (4.7.1 and 4.7.2 examples)
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "anything/at/all", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/monitor", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("a/b", "a.b", False),
    ("a.b", "a.b", True),
    ("a/*", "a/x", False),
    ("a/*", "a/*", True),
    ("a/+/c", "a//c", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert filter_matches(topic_filter, topic) is expected


def test_filter_tree_add_remove_prunes() -> None:
    tree: FilterTree[str] = FilterTree()
    filters = ["a/#", "a/+", "a/b", "#", "+/b", "$SYS/#"]
    for f in filters:
        tree.add(f, f)
    assert sorted(tree.match("a/b")) == sorted(["a/#", "a/+", "a/b", "#", "+/b"])
    assert sorted(tree.match("$SYS/x")) == ["$SYS/#"]
    tree.add("a/b", "replaced")
    assert len(tree) == len(filters)
    for f in filters:
        assert tree.remove(f)
    assert not tree.remove("a/b")
    assert len(tree) == 0 and tree.match("a/b") == []
    assert tree._root.empty()


def test_topic_tree_search_by_filter() -> None:
    tree: TopicTree[int] = TopicTree()
    topics = ["a", "a/b", "a/b/c", "a/c", "/x", "$SYS/load", "b"]
    for i, t in enumerate(topics):
        tree.set(t, i)
    assert sorted(t for t, _ in tree.match("#")) == sorted(set(topics) - {"$SYS/load"})
    assert sorted(t for t, _ in tree.match("a/#")) == ["a", "a/b", "a/b/c", "a/c"]
    assert sorted(t for t, _ in tree.match("a/+")) == ["a/b", "a/c"]
    assert sorted(t for t, _ in tree.match("+")) == ["a", "b"]
    assert sorted(t for t, _ in tree.match("+/x")) == ["/x"]
    assert sorted(t for t, _ in tree.match("$SYS/+")) == ["$SYS/load"]
    assert tree.get("a/b") == 1 and tree.get("a/x") is None
    assert tree.discard("a/b") == 1
    assert sorted(t for t, _ in tree.items()) == sorted(set(topics) - {"a/b"})
    for t in topics:
        tree.discard(t)
    assert len(tree) == 0 and not tree._root.children


_level = st.sampled_from(["a", "b", "", "$x", "c.d"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_level, min_size=1, max_size=4),
    st.lists(st.sampled_from(["a", "b", "", "+", "$x", "c.d"]), min_size=1, max_size=4),
    st.booleans(),
)
def test_both_trees_agree_with_each_other(
    topic_levels: list[str], filter_levels: list[str], hashed: bool
) -> None:
    topic = "/".join(topic_levels)
    topic_filter = "/".join(filter_levels + (["#"] if hashed else []))
    forward = filter_matches(topic_filter, topic)
    tree: TopicTree[bool] = TopicTree()
    tree.set(topic, True)
    backward = [t for t, _ in tree.match(topic_filter)] == [topic]
    assert forward == backward


def test_shared_subscriptions() -> None:
    assert parse_shared("a/b") is None
    assert parse_shared("$share/g/a/+") == ("g", "a/+")
    assert parse_shared("$share/g/#") == ("g", "#")
    for bad in ("$share/g", "$share//a", "$share/g+/a", "$share/g/", "$share/g/a#"):
        with pytest.raises(ProtocolViolation):
            parse_shared(bad)


def test_amqp_mapping_is_rabbitmqs() -> None:
    assert topic_to_routing_key("a/b/c") == "a.b.c"
    assert topic_to_routing_key("a.b/c") == "a.b.c"  # a dot stays a dot: an AMQP word break
    assert filter_to_binding_key("a/+/#") == "a.*.#"
    assert filter_to_binding_key("+") == "*"
    assert routing_key_to_topic("a.b.c") == "a/b/c"
    assert routing_key_to_topic("a.*") == "a/*"
