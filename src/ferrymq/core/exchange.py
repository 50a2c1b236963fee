"""Exchanges: route a message (routing key + headers) to a set of opaque destinations.

Theory of operation
-------------------
An exchange owns its bindings. ``Exchange.bind``/``unbind`` keep two indexes in the base class
(binding identity -> binding, destination -> its bindings, so deleting a queue is cheap) and
call a per-type hook that maintains the routing structure the hot path reads:

- direct: routing key -> frozenset of destinations, filled lazily after a change, so a hit is
  one dict lookup and a burst of binds to one key costs no repeated set copies;
- fanout: one cached frozenset of every destination;
- topic: a :class:`~ferrymq.core.topic_trie.TopicTrie`;
- headers: a precompiled matcher per binding, scanned per message (RabbitMQ scans too).

Several bindings may lead to the same destination (same key with different arguments, as in
RabbitMQ's "args-test" case, or different keys to one queue). Direct, fanout and topic keep a
reference count per (key, destination) so removing one binding never hides another.

``route`` returns a read-only set (``collections.abc.Set``): direct and fanout hand out a
shared frozenset, never copy it; callers union the results of several exchanges.

Destinations are opaque hashable keys; nothing here looks inside them. ``internal`` and
``auto_delete`` are stored flags: the vhost enforces them. Nothing here does I/O or knows a wire
format; binding-argument values arrive already decoded (str, int, float, bool, bytes, None for
void, Decimal, datetime, dict for tables, list for arrays).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from ferrymq.core.topic_trie import TopicTrie, split_topic

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
    "UnknownExchangeType",
    "make_exchange",
]

_EMPTY: frozenset[Hashable] = frozenset()
_MISSING: Any = object()


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for a binding-argument value.

    str, int, bytes and None stand for themselves; everything else is paired with its type
    so that values Python thinks equal but AMQP does not (``True`` vs ``1``, ``1`` vs ``1.0``,
    a table vs an array of pairs) give different binding identities, as in RabbitMQ.
    """
    t = type(value)
    if t is str or t is int or t is bytes or value is None:
        frozen: Hashable = value
        return frozen
    if isinstance(value, Mapping):
        return (dict, _freeze_items(value))
    if isinstance(value, list | tuple):
        return (list, tuple(_freeze(v) for v in value))
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, set | frozenset):
        return (frozenset, frozenset(_freeze(v) for v in value))
    if isinstance(value, Decimal):
        return (Decimal, value.as_tuple())  # AMQP decimals keep their scale: 1.0 is not 1.00
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"binding argument value {value!r} of type {t.__name__} is not hashable"
        ) from None
    return (t, value)


def _freeze_items(mapping: Mapping[Any, Any]) -> tuple[tuple[Any, Hashable], ...]:
    items = [(k, _freeze(v)) for k, v in mapping.items()]
    try:
        items.sort(key=lambda kv: kv[0])
    except TypeError:  # keys of mixed types; AMQP tables only have str keys
        items.sort(key=lambda kv: repr(kv[0]))
    return tuple(items)


@dataclass(frozen=True, slots=True, eq=False)
class Binding:
    """A binding from an exchange to a destination.

    Identity is ``(destination, routing_key, frozen arguments)``: binding the same thing twice
    is a no-op (AMQP 0-9-1 queue.bind). Equality and hashing use that identity, so bindings can
    live in sets and dict keys even though ``arguments`` is a plain dict.

    Attributes:
        destination: Opaque hashable key, e.g. ``("queue", "orders")``.
        routing_key: Binding key (a pattern for topic exchanges).
        arguments: Binding arguments; treat as read-only (identity is computed once).
    """

    destination: Hashable
    routing_key: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    _key: tuple[Hashable, str, tuple[tuple[Any, Hashable], ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: the identity is needed on every bind/unbind and set lookup.
        object.__setattr__(
            self, "_key", (self.destination, self.routing_key, _freeze_items(self.arguments))
        )

    @property
    def key(self) -> tuple[Hashable, str, tuple[tuple[Any, Hashable], ...]]:
        """Hashable identity: ``(destination, routing_key, sorted frozen argument items)``."""
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Binding):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


class UnknownExchangeType(KeyError, ValueError):
    """Raised by :func:`make_exchange`; a KeyError and a ValueError, so either catch works."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown exchange type"


class Exchange(ABC):
    """Base class of the four exchange types: binding bookkeeping plus a per-type route.

    Attributes:
        name: Exchange name.
        type: ``"direct"``, ``"fanout"``, ``"topic"`` or ``"headers"`` (a class attribute).
        durable, auto_delete, internal: Stored flags; the vhost enforces them.
        arguments: Declare-time arguments (a copy of what was given).
        alternate_exchange: Name from ``arguments["alternate-exchange"]``, or None.
    """

    type: ClassVar[str]

    __slots__ = (
        "_bindings",
        "_by_destination",
        "alternate_exchange",
        "arguments",
        "auto_delete",
        "durable",
        "internal",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        args = dict(arguments) if arguments else {}
        alternate = args.get("alternate-exchange")
        if alternate is not None and not isinstance(alternate, str):
            raise ValueError(
                f"invalid alternate-exchange argument {alternate!r} of type "
                f"{type(alternate).__name__}; expected a string (an exchange name)"
            )
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = args
        self.alternate_exchange: str | None = alternate
        self._bindings: dict[Hashable, Binding] = {}
        self._by_destination: dict[Hashable, dict[Hashable, Binding]] = {}
        self._setup()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, durable={self.durable}, "
            f"auto_delete={self.auto_delete}, internal={self.internal}, "
            f"bindings={len(self._bindings)})"
        )

    # -- bindings ---------------------------------------------------------------------------

    def validate_binding(self, binding: Binding) -> None:
        """Check a binding before it is added.

        Raises:
            ValueError: with a message fit for a channel-close reply text.
        """
        if not isinstance(binding.routing_key, str):
            raise ValueError(f"invalid routing key {binding.routing_key!r}; expected a string")
        if not isinstance(binding.arguments, Mapping):
            raise ValueError(f"invalid binding arguments {binding.arguments!r}; expected a mapping")

    def bind(self, binding: Binding) -> bool:
        """Add a binding (validated first).

        Returns:
            True if it is new, False if an identical binding already existed (a no-op).

        Raises:
            ValueError: if :meth:`validate_binding` rejects it.
        """
        key = binding.key
        if key in self._bindings:
            return False
        self.validate_binding(binding)
        self._bindings[key] = binding
        per_dest = self._by_destination.get(binding.destination)
        if per_dest is None:
            per_dest = self._by_destination[binding.destination] = {}
        per_dest[key] = binding
        self._added(binding)
        return True

    def unbind(self, binding: Binding) -> bool:
        """Remove a binding. Returns True if it existed."""
        key = binding.key
        stored = self._bindings.pop(key, None)
        if stored is None:
            return False
        per_dest = self._by_destination[stored.destination]
        del per_dest[key]
        if not per_dest:
            del self._by_destination[stored.destination]
        self._removed(stored)
        return True

    def unbind_destination(self, destination: Hashable) -> int:
        """Remove every binding to ``destination`` (its queue or exchange was deleted).

        Returns:
            How many bindings were removed.
        """
        per_dest = self._by_destination.pop(destination, None)
        if not per_dest:
            return 0
        for key, binding in per_dest.items():
            del self._bindings[key]
            self._removed(binding)
        return len(per_dest)

    @property
    def bindings(self) -> Iterator[Binding]:
        """Every binding, in the order added; a snapshot, so unbinding while iterating is safe."""
        return iter(list(self._bindings.values()))

    def bindings_to(self, destination: Hashable) -> list[Binding]:
        """Bindings whose destination is ``destination`` (for listing and queue deletion)."""
        per_dest = self._by_destination.get(destination)
        return list(per_dest.values()) if per_dest else []

    def binding_count(self) -> int:
        """Number of bindings; zero makes an auto-delete exchange eligible for deletion."""
        return len(self._bindings)

    # -- per-type hooks ---------------------------------------------------------------------

    @abstractmethod
    def _setup(self) -> None:
        """Create the empty routing structure (called at the end of ``__init__``)."""

    @abstractmethod
    def _added(self, binding: Binding) -> None:
        """Update the routing structure after ``binding`` joined the indexes."""

    @abstractmethod
    def _removed(self, binding: Binding) -> None:
        """Update the routing structure after ``binding`` left the indexes."""

    @abstractmethod
    def route(
        self, routing_key: str, headers: Mapping[str, Any] | None = None
    ) -> AbstractSet[Hashable]:
        """Destinations for a message.

        Args:
            routing_key: The message's routing key.
            headers: The message's headers table; None means empty. Only the headers
                exchange reads it.

        Returns:
            A set the caller must not mutate (it may be shared with later calls).
        """


class DirectExchange(Exchange):
    """Routes to bindings whose key equals the routing key: one dict lookup per message."""

    type = "direct"

    __slots__ = ("_counts", "_routes")

    def _setup(self) -> None:
        # routing key -> destination -> number of bindings (they may differ in arguments)
        self._counts: dict[str, dict[Hashable, int]] = {}
        # routing key -> frozenset of destinations; only keys with bindings, filled on demand
        self._routes: dict[str, frozenset[Hashable]] = {}

    def _added(self, binding: Binding) -> None:
        rk = binding.routing_key
        per_key = self._counts.get(rk)
        if per_key is None:
            per_key = self._counts[rk] = {}
        n = per_key.get(binding.destination, 0)
        per_key[binding.destination] = n + 1
        if n == 0:
            self._routes.pop(rk, None)

    def _removed(self, binding: Binding) -> None:
        rk = binding.routing_key
        per_key = self._counts[rk]
        n = per_key[binding.destination] - 1
        if n:
            per_key[binding.destination] = n
            return
        del per_key[binding.destination]
        if not per_key:
            del self._counts[rk]
        self._routes.pop(rk, None)

    def route(
        self, routing_key: str, headers: Mapping[str, Any] | None = None
    ) -> AbstractSet[Hashable]:
        """Destinations bound with exactly ``routing_key``; a shared frozenset."""
        found = self._routes.get(routing_key)
        if found is not None:
            return found
        per_key = self._counts.get(routing_key)
        if per_key is None:
            # Unbound keys are not cached: random routing keys must not grow memory.
            return _EMPTY
        found = self._routes[routing_key] = frozenset(per_key)
        return found


class FanoutExchange(Exchange):
    """Routes to every bound destination, whatever the routing key."""

    type = "fanout"

    __slots__ = ("_all", "_counts")

    def _setup(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._all: frozenset[Hashable] | None = _EMPTY

    def _added(self, binding: Binding) -> None:
        n = self._counts.get(binding.destination, 0)
        self._counts[binding.destination] = n + 1
        if n == 0:
            self._all = None

    def _removed(self, binding: Binding) -> None:
        n = self._counts[binding.destination] - 1
        if n:
            self._counts[binding.destination] = n
        else:
            del self._counts[binding.destination]
            self._all = None

    def route(
        self, routing_key: str, headers: Mapping[str, Any] | None = None
    ) -> AbstractSet[Hashable]:
        """Every destination; a shared frozenset rebuilt only after bindings change."""
        found = self._all
        if found is None:
            found = self._all = frozenset(self._counts)
        return found


_TOPIC_MEMO_MAX = 4096  # routing keys whose match a topic exchange remembers


class TopicExchange(Exchange):
    """Routes by pattern (``*`` one word, ``#`` zero or more) through a :class:`TopicTrie`.

    Attributes:
        max_hash_wildcards: If set, bindings whose key has more ``#`` words are refused.
            None (the default) accepts any number, as released RabbitMQ does; the trie's
            matcher is memoised, so many ``#`` words cost polynomial, not exponential, time.
            RabbitMQ's main branch (July 2026, unreleased) refuses more than 2.
    """

    type = "topic"

    __slots__ = ("_counts", "_memo", "_trie", "max_hash_wildcards")

    def _setup(self) -> None:
        # (pattern, destination) -> number of bindings; the trie holds each pair once.
        self._counts: dict[tuple[str, Hashable], int] = {}
        self._trie = TopicTrie()
        # routing key -> its match, until a binding changes: publishers repeat their topics,
        # and a dict lookup is a fraction of a trie walk (bounded: cleared when full)
        self._memo: dict[str, frozenset[Hashable]] = {}
        self.max_hash_wildcards: int | None = None

    def validate_binding(self, binding: Binding) -> None:
        """Refuse too many ``#`` words when :attr:`max_hash_wildcards` is set."""
        super().validate_binding(binding)
        limit = self.max_hash_wildcards
        if limit is None:
            return
        n = split_topic(binding.routing_key).count("#")
        if n > limit:
            raise ValueError(
                f"Topic binding key '{binding.routing_key}' uses {n} '#' wildcards, "
                f"at most {limit} are allowed"
            )

    def _added(self, binding: Binding) -> None:
        pair = (binding.routing_key, binding.destination)
        n = self._counts.get(pair, 0)
        self._counts[pair] = n + 1
        if n == 0:
            self._trie.add(binding.routing_key, binding.destination)
            self._memo.clear()

    def _removed(self, binding: Binding) -> None:
        pair = (binding.routing_key, binding.destination)
        n = self._counts[pair] - 1
        if n:
            self._counts[pair] = n
        else:
            del self._counts[pair]
            self._trie.remove(binding.routing_key, binding.destination)
            self._memo.clear()

    def route(
        self, routing_key: str, headers: Mapping[str, Any] | None = None
    ) -> AbstractSet[Hashable]:
        """Destinations whose pattern matches ``routing_key`` (shared: do not modify)."""
        memo = self._memo
        dests = memo.get(routing_key)
        if dests is None:
            if len(memo) >= _TOPIC_MEMO_MAX:
                memo.clear()
            dests = memo[routing_key] = frozenset(self._trie.match(routing_key))
        return dests


# -- headers ------------------------------------------------------------------------------

_X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


def _epoch_seconds(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # AMQP timestamps are UTC
    return int(value.timestamp())


_BINARY = (str, bytes, bytearray, memoryview)


def _as_bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _header_equal(pattern: Any, data: Any) -> bool:
    """Does binding value ``pattern`` match header value ``data``, as RabbitMQ decides?

    rabbit_exchange_type_headers (RabbitMQ 4.x) tests ``maps:get(K, Headers) =:= V``: the
    binding's raw value against the header's value from ``mc_amqpl:routing_headers``, which
    passes values through except a timestamp, turned into milliseconds (``V * 1000``). So a
    header timestamp matches the integer ``seconds * 1000``, and a timestamp in a binding
    (seconds) does not match the same timestamp in a header. Nested values are compared raw.
    """
    if isinstance(data, datetime):
        data = _epoch_seconds(data) * 1000
    return _exact_equal(pattern, data)


def _exact_equal(a: Any, b: Any) -> bool:
    """Erlang ``=:=`` on decoded AMQP values (the AMQP type tag itself is not compared).

    Integers never equal floats (``1`` vs ``1.0``); booleans are atoms, never numbers
    (``True`` vs ``1``); strings never equal numbers (``"1"`` vs ``1``); str and bytes are both
    binaries (``"a"`` equals ``b"a"``); None (void) only equals None; a timestamp is its
    integer seconds; decimals are ``{Scale, Value}`` tuples, so ``1.0`` and ``1.00`` differ.
    Tables compare key by key and arrays item by item with these rules (RabbitMQ also compares
    the nested type tags, which decoded values no longer carry).
    """
    ta = type(a)
    if ta is type(b) and (ta is str or ta is int or ta is bytes or ta is bool or ta is float):
        return bool(a == b)
    if isinstance(a, datetime):
        a = _epoch_seconds(a)
    if isinstance(b, datetime):
        b = _epoch_seconds(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int):
        return isinstance(b, int) and a == b
    if isinstance(a, float):
        return isinstance(b, float) and a == b
    if isinstance(a, _BINARY):
        return isinstance(b, _BINARY) and _as_bytes(a) == _as_bytes(b)
    if isinstance(a, Decimal):
        return isinstance(b, Decimal) and a.as_tuple() == b.as_tuple()
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or len(a) != len(b):
            return False
        for k, v in a.items():
            bv = b.get(k, _MISSING)
            if bv is _MISSING or not _exact_equal(v, bv):
                return False
        return True
    if isinstance(a, list | tuple):
        if not isinstance(b, list | tuple) or len(a) != len(b):
            return False
        return all(_exact_equal(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and bool(a == b)


# Types whose equality is plain == when binding and header value have exactly that type.
_PLAIN_TYPES = frozenset({str, int, bytes, float, bool})


def _probe_value(value: Any, *, from_header: bool) -> Any:
    """A hashable that equal values share, for the headers index; _MISSING if none.

    The one rule it must keep: ``_header_equal(b, h)`` implies
    ``_probe_value(b, from_header=False) == _probe_value(h, from_header=True)``. Collisions
    the other way (``1``, ``1.0`` and ``True`` hash alike) only add candidates, which are then
    checked in full.
    """
    t = type(value)
    if t is str or t is int or t is float or t is bool or isinstance(value, str | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()  # so that b"a" meets "a", as two Erlang binaries do
        except UnicodeDecodeError:
            return raw  # equals no str, only the same bytes
    if isinstance(value, datetime):
        seconds = _epoch_seconds(value)
        return seconds * 1000 if from_header else seconds
    if isinstance(value, Decimal):
        return value
    return _MISSING


class _HeadersMatcher:
    """One headers binding compiled: the match mode and its (key, value, plain type, void)."""

    __slots__ = ("destination", "entries", "match_all", "probe")

    def __init__(self, binding: Binding) -> None:
        args = binding.arguments
        mode = args.get("x-match", "all")
        with_x = mode in ("all-with-x", "any-with-x")
        self.destination = binding.destination
        self.match_all = mode in ("all", "all-with-x")
        # x-match itself never takes part; other x- keys only in the -with-x modes.
        self.entries: tuple[tuple[str, Any, type | None, bool], ...] = tuple(
            (k, v, type(v) if type(v) in _PLAIN_TYPES else None, v is None)
            for k, v in args.items()
            if k != "x-match" and (with_x or not k.startswith("x-"))
        )
        # An all-mode binding can only match messages carrying its first indexable
        # (key, value): the exchange files it under that pair instead of scanning it.
        self.probe: tuple[str, Any] | None = None
        if self.match_all:
            for k, v, _plain, void in self.entries:
                pv = _MISSING if void else _probe_value(v, from_header=False)
                if pv is not _MISSING:
                    self.probe = (k, pv)
                    break

    def matches(self, headers: Mapping[str, Any]) -> bool:
        # Same exact plain type on both sides: compare with ==, skipping _header_equal's call;
        # the scan runs once per binding per message, so this is the exchange's hot loop.
        get = headers.get
        if self.match_all:
            # No entries: vacuously true (a bare x-match=all binding matches every message).
            for k, v, plain, void in self.entries:
                dv = get(k, _MISSING)
                if dv is _MISSING:
                    return False
                if void:
                    continue
                if type(dv) is plain:
                    if dv != v:
                        return False
                elif not _header_equal(v, dv):
                    return False
            return True
        for k, v, plain, void in self.entries:
            dv = get(k, _MISSING)
            if dv is _MISSING:
                continue
            if void:
                return True
            if type(dv) is plain:
                if dv == v:
                    return True
            elif _header_equal(v, dv):
                return True
        return False


class HeadersExchange(Exchange):
    """Routes on the message's headers table against each binding's arguments.

    Follows rabbit_exchange_type_headers: ``x-match`` is ``all`` (default), ``any``,
    ``all-with-x`` or ``any-with-x``; binding keys starting with ``x-`` are ignored unless a
    ``-with-x`` mode is chosen; a binding value of None (AMQP void) matches on the key's
    presence alone; values compare exactly as RabbitMQ compares them (see
    :func:`_header_equal`). The routing key is ignored.

    RabbitMQ tests every binding per message. Here ``all``-mode bindings with a plain value
    (string, number, bool, timestamp, decimal) are indexed under one (key, value) pair and
    only checked when the message carries it; the rest (``any`` modes, presence-only and
    table/array values) are scanned. The result is the same, the cost falls from one check
    per binding to one per candidate.
    """

    type = "headers"

    __slots__ = ("_index", "_matchers", "_scan")

    def _setup(self) -> None:
        self._matchers: dict[Hashable, _HeadersMatcher] = {}
        # Bindings checked on every message.
        self._scan: dict[Hashable, _HeadersMatcher] = {}
        # header key -> probe value -> binding identity -> matcher
        self._index: dict[str, dict[Any, dict[Hashable, _HeadersMatcher]]] = {}

    def validate_binding(self, binding: Binding) -> None:
        """Reject an ``x-match`` that is not one of the four modes (RabbitMQ's wording)."""
        super().validate_binding(binding)
        mode = binding.arguments.get("x-match", _MISSING)
        if mode is _MISSING:
            return  # RabbitMQ allows it to be omitted: "all"
        if not isinstance(mode, str):
            raise ValueError(
                f"Invalid x-match field type {type(mode).__name__} (value {mode!r}); "
                "expected a string"
            )
        if mode not in _X_MATCH_MODES:
            raise ValueError(
                f"Invalid x-match field value {mode!r}; "
                "expected all, any, all-with-x, or any-with-x"
            )

    def _added(self, binding: Binding) -> None:
        key = binding.key
        m = self._matchers[key] = _HeadersMatcher(binding)
        if m.probe is None:
            self._scan[key] = m
            return
        hk, pv = m.probe
        by_value = self._index.get(hk)
        if by_value is None:
            by_value = self._index[hk] = {}
        bucket = by_value.get(pv)
        if bucket is None:
            bucket = by_value[pv] = {}
        bucket[key] = m

    def _removed(self, binding: Binding) -> None:
        key = binding.key
        m = self._matchers.pop(key)
        if m.probe is None:
            del self._scan[key]
            return
        hk, pv = m.probe
        by_value = self._index[hk]
        bucket = by_value[pv]
        del bucket[key]
        if not bucket:
            del by_value[pv]
            if not by_value:
                del self._index[hk]

    def route(
        self, routing_key: str, headers: Mapping[str, Any] | None = None
    ) -> AbstractSet[Hashable]:
        """Destinations of every binding whose arguments match ``headers``; a new set."""
        h: Mapping[str, Any] = headers if headers is not None else {}
        out: set[Hashable] = set()
        for m in self._scan.values():
            if m.destination not in out and m.matches(h):
                out.add(m.destination)
        index = self._index
        if not index or not h:
            return out
        # Walk whichever is shorter: the message's headers or the indexed keys.
        pairs = (
            ((k, index.get(k), h.get(k, _MISSING)) for k in h)
            if len(h) < len(index)
            else ((k, by_value, h.get(k, _MISSING)) for k, by_value in index.items())
        )
        for _k, by_value, dv in pairs:
            if by_value is None or dv is _MISSING:
                continue
            t = type(dv)
            pv = dv if t is str or t is int else _probe_value(dv, from_header=True)
            if pv is _MISSING:
                continue
            bucket = by_value.get(pv)
            if bucket:
                for m in bucket.values():
                    if m.destination not in out and m.matches(h):
                        out.add(m.destination)
        return out


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}


def make_exchange(type_name: str, name: str, **kw: Any) -> Exchange:
    """Create an exchange of a named type.

    Args:
        type_name: One of :data:`EXCHANGE_TYPES`' keys.
        name: Exchange name.
        **kw: ``durable``, ``auto_delete``, ``internal``, ``arguments``.

    Raises:
        UnknownExchangeType: (a KeyError and a ValueError) for an unknown type.
        ValueError: for invalid arguments (e.g. a non-string alternate-exchange).
    """
    cls = EXCHANGE_TYPES.get(type_name)
    if cls is None:
        raise UnknownExchangeType(
            f"unknown exchange type {type_name!r}; expected one of "
            + ", ".join(sorted(EXCHANGE_TYPES))
        )
    return cls(name, **kw)
