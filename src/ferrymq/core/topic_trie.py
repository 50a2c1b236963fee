"""A word trie for topic routing, with RabbitMQ's matching rules.

Theory of operation
-------------------
A pattern such as ``"stock.*.nyse.#"`` is split on ``"."`` into words and stored as a path from
the root; the values bound with that pattern sit on the last node. Each node has three kinds of
child: literal words (a dict), the ``*`` child and the ``#`` child, so a routing word costs at
most three probes per live state instead of a scan of every binding.

Splitting follows RabbitMQ's ``rabbit_db_topic_exchange:split_topic_key``: the empty string is
*zero* words, every other string is ``str.split(".")`` (so ``"a..b"`` is ``["a", "", "b"]``
and ``"."`` is two empty words). Consequences that surprise people, all from RabbitMQ's own
routing_SUITE:

- binding key ``""`` matches only routing key ``""``;
- ``#`` matches zero or more words, so ``"#"``, ``"#.#"`` and ``"a.#"`` (against ``"a"``) match;
- ``*`` matches exactly one word, possibly the empty word (``"a.*"`` matches ``"a."``), so
  ``"*"``, ``"*.#"`` and ``"#.*.#"`` do not match routing key ``""``;
- ``*`` and ``#`` are wildcards only as whole words; ``"a#"`` is a literal word, and a ``*``
  or ``#`` inside a routing key is just a word.

Matching walks a stack of states ``(node, index of the next routing word)`` instead of
recursing, so a pattern or key of thousands of words (MQTT topics can be long) cannot hit the
interpreter's recursion limit. A ``#`` child may consume any number of words, which makes a
naive walk exponential in the number of ``#`` words (``"#.#.#.#.#.#.#.#.x"`` against a long
key). Memoisation bounds it: every state is explored at most once. States reached through a
literal or ``*`` edge are unique already (a trie node has one parent, and the parent's states
are unique by induction); states of a ``#`` node are the only ones reachable several ways, and
because entering a ``#`` node at word ``i`` means entering it at every ``j >= i``, one integer
per ``#`` node (the lowest ``i`` expanded so far) is the whole memo. Work is therefore
O(trie nodes x (words + 1)) in the worst case and the memo dict is only allocated when a ``#``
node is met.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["TopicTrie", "split_topic"]


def split_topic(key: str) -> list[str]:
    """Split a routing or binding key into words, RabbitMQ's way (``""`` is no words)."""
    return key.split(".") if key else []


class _Node:
    """One trie node; children are created lazily to keep large tries small."""

    __slots__ = ("children", "hash", "star", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.values: set[Hashable] | None = None

    def is_empty(self) -> bool:
        return not self.values and not self.children and self.star is None and self.hash is None

    def is_leaf(self) -> bool:
        return not self.children and self.star is None and self.hash is None


class TopicTrie:
    """Topic patterns mapped to sets of values; ``match`` returns every value whose pattern matches.

    Set semantics: adding the same ``(pattern, value)`` twice stores it once. Callers that need
    reference counts (several bindings differing only in arguments) keep them outside.
    """

    __slots__ = ("_node_count", "_root", "_size")

    def __init__(self) -> None:
        self._root = _Node()
        self._size = 0
        self._node_count = 1

    def __len__(self) -> int:
        """Number of distinct ``(pattern, value)`` pairs stored."""
        return self._size

    @property
    def node_count(self) -> int:
        """Trie nodes in use, the root included; a memory diagnostic (and proof of pruning)."""
        return self._node_count

    def add(self, pattern: str, value: Hashable) -> bool:
        """Store ``value`` under ``pattern``.

        Returns:
            True if the pair is new, False if it was already present.
        """
        node = self._root
        for word in split_topic(pattern):
            node = self._child_or_create(node, word)
        if node.values is None:
            node.values = set()
        elif value in node.values:
            return False
        node.values.add(value)
        self._size += 1
        return True

    def _child_or_create(self, node: _Node, word: str) -> _Node:
        if word == "*":
            child = node.star
            if child is None:
                child = node.star = _Node()
                self._node_count += 1
            return child
        if word == "#":
            child = node.hash
            if child is None:
                child = node.hash = _Node()
                self._node_count += 1
            return child
        children = node.children
        if children is None:
            children = node.children = {}
        child = children.get(word)
        if child is None:
            child = children[word] = _Node()
            self._node_count += 1
        return child

    def remove(self, pattern: str, value: Hashable) -> bool:
        """Remove one ``(pattern, value)`` pair and prune nodes left empty.

        Returns:
            True if the pair was present.
        """
        path: list[tuple[_Node, str]] = []
        node: _Node | None = self._root
        for word in split_topic(pattern):
            assert node is not None
            path.append((node, word))
            if word == "*":
                node = node.star
            elif word == "#":
                node = node.hash
            else:
                node = node.children.get(word) if node.children else None
            if node is None:
                return False
        assert node is not None
        if not node.values or value not in node.values:
            return False
        node.values.remove(value)
        if not node.values:
            node.values = None
        self._size -= 1
        # Prune bottom-up so a churn of short-lived bindings (MQTT clients, RPC reply queues)
        # does not leave the trie growing forever.
        while path and node.is_empty():
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                assert parent.children is not None
                del parent.children[word]
                if not parent.children:
                    parent.children = None
            self._node_count -= 1
            node = parent
        return True

    def match(self, key: str) -> set[Hashable]:
        """Every value whose pattern matches routing key ``key``.

        Returns:
            A new set that the caller owns.
        """
        words = key.split(".") if key else []
        n = len(words)
        out: set[Hashable] = set()
        # Lowest word index from which each '#' node has been expanded (see module docstring).
        marks: dict[_Node, int] | None = None
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            if i < n:
                children = node.children
                if children is not None:
                    child = children.get(words[i])
                    if child is not None:
                        push((child, i + 1))
                if node.star is not None:
                    push((node.star, i + 1))
            elif node.values:
                out.update(node.values)
            h = node.hash
            if h is None:
                continue
            if h.is_leaf():
                # Pattern ends in '#': it matches whatever remains, so skip the expansion.
                if h.values:
                    out.update(h.values)
                continue
            if marks is None:
                marks = {}
            low = marks.get(h, n + 1)
            if i < low:
                marks[h] = i
                for j in range(i, low):
                    push((h, j))
        return out
