"""TopicTrie: RabbitMQ's topic semantics, a differential test against a plain matcher, and
bounded cost for patterns with many '#' words."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.core.topic_trie import TopicTrie, split_topic


def reference_match(pattern: str, key: str) -> bool:
    """The obvious recursive matcher over RabbitMQ's word split (exponential; tests only)."""

    def go(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(go(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and go(p[1:], k[1:])

    return go(split_topic(pattern), split_topic(key))


def matches(pattern: str, key: str) -> bool:
    trie = TopicTrie()
    trie.add(pattern, "v")
    return trie.match(key) == {"v"}


def test_split_follows_rabbitmq() -> None:
    # rabbit_db_topic_exchange:split_topic_key_binary(<<>>) -> []
    assert split_topic("") == []
    assert split_topic("a") == ["a"]
    assert split_topic("a..b") == ["a", "", "b"]
    assert split_topic(".") == ["", ""]
    assert split_topic("a.") == ["a", ""]


# (pattern, routing key, matches?) - the cases the brief and RabbitMQ's routing_SUITE single out.
TRICKY = [
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", "..", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.#.#", "", True),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.#", "a", True),
    ("#.b.#", "b", True),
    ("#.b.#", "x.b.y.z", True),
    ("#.*.#", "", False),
    ("#.*.#", "a", True),
    ("*.#", "", False),
    ("*.#", "a", True),
    ("*.#.#", "", False),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    ("*.*", ".", True),
    ("a.*", "a.", True),  # '*' matches the empty word
    ("a.*", "a", False),
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("a#", "a#", True),  # wildcards only as whole words
    ("a#", "ab", False),
    ("a*", "ab", False),
    ("a.*", "a.*", True),  # a '*' in a routing key is just a word
    ("a.b", "a.*", False),
    ("a.b", "a.#", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), TRICKY)
def test_tricky_cases(pattern: str, key: str, expected: bool) -> None:
    assert matches(pattern, key) is expected
    assert reference_match(pattern, key) is expected


def test_add_and_remove_report_changes() -> None:
    trie = TopicTrie()
    assert trie.add("a.*", 1) is True
    assert trie.add("a.*", 1) is False
    assert trie.add("a.*", 2) is True
    assert len(trie) == 2
    assert trie.match("a.b") == {1, 2}
    assert trie.remove("a.*", 3) is False
    assert trie.remove("a.#", 1) is False
    assert trie.remove("x.y.z", 1) is False
    assert trie.remove("a.*", 1) is True
    assert trie.remove("a.*", 1) is False
    assert trie.match("a.b") == {2}


def test_remove_prunes_empty_nodes() -> None:
    trie = TopicTrie()
    patterns = ["a.b.c", "a.*.c", "a.#", "#", "#.x.#", "", "a..b", "*.*"]
    for p in patterns:
        trie.add(p, p)
    trie.add("a.b.c", "other")
    for p in patterns:
        assert trie.remove(p, p)
    assert trie.match("a.b.c") == {"other"}
    assert trie.remove("a.b.c", "other")
    assert len(trie) == 0
    assert trie.node_count == 1


def test_prefix_pattern_survives_removal_of_longer_one() -> None:
    trie = TopicTrie()
    trie.add("a", 1)
    trie.add("a.b", 2)
    trie.remove("a.b", 2)
    assert trie.match("a") == {1}
    assert trie.node_count == 2


def test_match_returns_a_fresh_set() -> None:
    trie = TopicTrie()
    trie.add("a", 1)
    first = trie.match("a")
    first.add(99)
    assert trie.match("a") == {1}


WORDS = st.sampled_from(["a", "b", "", "*", "#"])
KEY_WORDS = st.sampled_from(["a", "b", "c", "", "*", "#"])
PATTERNS = st.lists(WORDS, max_size=6).map(".".join)
KEYS = st.lists(KEY_WORDS, max_size=7).map(".".join)


@settings(max_examples=300, deadline=None)
@given(pattern=PATTERNS, key=KEYS)
def test_single_pattern_agrees_with_reference(pattern: str, key: str) -> None:
    assert matches(pattern, key) is reference_match(pattern, key)


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(PATTERNS, min_size=1, max_size=12),
    keys=st.lists(KEYS, min_size=1, max_size=8),
    data=st.data(),
)
def test_many_patterns_agree_with_reference_through_removal(
    patterns: list[str], keys: list[str], data: st.DataObject
) -> None:
    trie = TopicTrie()
    live: set[tuple[str, int]] = set()
    for i, p in enumerate(patterns):
        trie.add(p, i)
        live.add((p, i))
    for key in keys:
        assert trie.match(key) == {i for p, i in live if reference_match(p, key)}
    doomed = data.draw(st.sets(st.sampled_from(sorted(live))))
    for p, i in doomed:
        assert trie.remove(p, i)
        live.discard((p, i))
    for key in keys:
        assert trie.match(key) == {i for p, i in live if reference_match(p, key)}
    for p, i in live:
        trie.remove(p, i)
    assert len(trie) == 0
    assert trie.node_count == 1


@pytest.mark.timeout(10)
def test_many_hashes_against_a_long_key_are_fast() -> None:
    """Naively this is C(60+8, 8) ~ 5e9 paths; memoised it is ~10 nodes x 61 indexes."""
    trie = TopicTrie()
    trie.add("#.#.#.#.#.#.#.#.x", "hit")
    trie.add("#.*.#.*.#.*.#.*.#.y", "other")
    words = [f"w{i}" for i in range(59)]
    hit_key = ".".join([*words, "x"])
    miss_key = ".".join([*words, "z"])  # a miss explores every state: the worst case
    start = time.perf_counter()
    for _ in range(10):
        assert trie.match(hit_key) == {"hit"}
        assert trie.match(miss_key) == set()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"20 matches took {elapsed:.3f}s"


@pytest.mark.timeout(10)
def test_very_long_patterns_and_keys_do_not_recurse() -> None:
    """MQTT topics can have thousands of levels; the matcher must not hit the recursion limit."""
    long_key = ".".join(["a"] * 5000)
    trie = TopicTrie()
    trie.add(long_key, "exact")
    trie.add(".".join(["*"] * 5000), "stars")
    trie.add("a.#.a", "ends")
    assert trie.match(long_key) == {"exact", "stars", "ends"}
    assert trie.remove(long_key, "exact")
    assert trie.match(long_key) == {"stars", "ends"}
