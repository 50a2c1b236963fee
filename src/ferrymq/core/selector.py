"""JMS message selectors: parsed once, compiled to nested closures, evaluated per message.

Theory of operation
-------------------
``compile_selector`` parses the text (``_selector_parser``: JMS 2.0 section 3.8.1 grammar,
static type checks, depth and length caps), folds constant subtrees, and compiles the tree into
closures, so evaluating a message is a handful of Python calls and no tree walk. The broker
calls ``selector.predicate(fields)`` for every candidate message on a queue with selecting
consumers; ``fields(name)`` returns a header field or property value, or None when absent.

Values and three-valued logic (spec section 3.8.1.2; ActiveMQ Artemis where the spec is silent)
-------------------------------------------------------------------------------------------------
Conditions evaluate to True, False or None (UNKNOWN). A missing identifier is NULL; NULL in a
comparison or arithmetic gives UNKNOWN; AND, OR and NOT follow the spec's truth tables; a
message is selected only when the selector is True.

- Comparisons: numbers (int and float alike, but never bool) compare with numbers; strings and
  booleans only with their own type and only with ``=`` and ``<>``. Comparing values of
  different types is FALSE, as the spec says ("the value of the operation is false"), also for
  ``<>`` (Artemis makes that one TRUE).
- Arithmetic follows Java's promotion: integers stay integers and wrap at 64 bits, ``/`` on two
  integers truncates toward zero (Artemis divides in double; the spec asks for Java's rules), a
  float anywhere gives a float. A non-numeric operand or a division by zero gives NULL.
- ``x BETWEEN a AND b`` is ``a <= x AND x <= b`` and ``NOT BETWEEN`` is ``x < a OR x > b``.
- ``IN`` and ``LIKE`` on NULL are UNKNOWN; on a non-string, IN is UNKNOWN and LIKE is FALSE
  (so NOT LIKE is TRUE), as in Artemis.
- An identifier used as a condition (``active AND ...``) is its value when boolean, UNKNOWN when
  NULL and FALSE for any other type (Artemis's boolean cast).

Speed
-----
The top of the tree is compiled in "truth" mode: a closure that returns a plain bool (is the
value TRUE?). AND and OR are monotone, so their children can be compiled the same way and
become Python's ``and``/``or``; only below a NOT or inside a comparison of conditions do
closures carry the third value. ``identifier op literal``, the common shape, gets a closure that
compares directly when the value's class is exactly the literal's.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, cast

from ferrymq.core._selector_like import compile_like
from ferrymq.core._selector_parser import (
    ANY,
    LONG_MAX,
    LONG_MIN,
    And,
    Arith,
    Between,
    BoolCast,
    Compare,
    Const,
    Ident,
    In,
    InvalidSelector,
    IsNull,
    Like,
    Negate,
    Node,
    Not,
    Or,
    parse,
    value_kind,
)

__all__ = [
    "SELECTABLE_HEADERS",
    "Fields",
    "InvalidSelector",
    "Selector",
    "compile_selector",
]

Fields = Callable[[str], Any]
"""``fields(name)`` returns an identifier's value for one message, or None when it is absent."""

_Eval = Callable[[Fields], Any]

SELECTABLE_HEADERS: Final = frozenset(
    {"JMSDeliveryMode", "JMSPriority", "JMSMessageID", "JMSTimestamp", "JMSCorrelationID",
     "JMSType"}
)  # fmt: skip
"""The header fields a selector may name (JMS 2.0 3.8.1.1); JMSX* and user properties besides."""

_BLANK: Final = " \t\n\r\f"  # the lexer's whitespace (Java's); str.strip() would take more

_MAX_DEPTH_LIMIT: Final = 128  # a few Python frames per level: stay far below the recursion limit


@dataclass(frozen=True, slots=True)
class Selector:
    """A compiled selector. ``predicate(fields)`` is True when the message is selected.

    ``identifiers`` lists the names the selector reads (so a caller can decode only those);
    ``selects_all`` is True for a blank selector or one that folds to TRUE.
    """

    text: str
    predicate: Callable[[Fields], bool] = field(compare=False, repr=False)
    identifiers: frozenset[str] = frozenset()
    selects_all: bool = False

    def matches(self, fields: Fields) -> bool:
        """True if the message whose values ``fields`` returns is selected."""
        return self.predicate(fields)


def compile_selector(text: str, *, max_length: int = 4096, max_depth: int = 64) -> Selector:
    """Parse, check and compile a JMS selector.

    A blank selector selects every message.

    Raises:
        InvalidSelector: the selector is malformed, ill-typed, longer than ``max_length``
            characters or nested deeper than ``max_depth``.
        ValueError: ``max_depth`` is outside 1..128.
    """
    if not 1 <= max_depth <= _MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 1 and {_MAX_DEPTH_LIMIT}")
    return _compile(text, max_length, max_depth)


@lru_cache(maxsize=512)
def _compile(text: str, max_length: int, max_depth: int) -> Selector:
    # Many consumers share a few selectors; a Selector is immutable, so sharing is safe.
    if len(text) > max_length:
        raise InvalidSelector(
            f"selector is {len(text)} characters long, more than the limit of {max_length}"
        )
    if not text.strip(_BLANK):
        return Selector(text, _always_true, frozenset(), True)
    try:
        tree = _fold(parse(text, max_depth))
    except RecursionError:  # a backstop only: the depth checks come first
        raise InvalidSelector("selector nested too deeply") from None
    if isinstance(tree, Const):
        always = tree.value is True
        return Selector(text, _always_true if always else _always_false, frozenset(), always)
    return Selector(text, _cond(tree, truth=True), frozenset(_names(tree)), False)


def _always_true(fields: Fields) -> bool:
    return True


def _always_false(fields: Fields) -> bool:
    return False


def _names(node: Node) -> set[str]:
    if isinstance(node, Ident | BoolCast | In | Like | IsNull):
        return {node.name}
    names: set[str] = set()
    for child in _children(node):
        names |= _names(child)
    return names


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Negate | Not):
        return (node.operand,)
    if isinstance(node, Arith):
        return (node.first, *(x for _, x in node.rest))
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Between):
        return (node.value, node.low, node.high)
    if isinstance(node, And | Or):
        return node.operands
    return ()


# --------------------------------------------------------------------------------------------
# Runtime semantics shared by the closures and by constant folding.


def _is_num(v: object) -> bool:
    t = v.__class__
    return t is int or t is float or (t is not bool and isinstance(v, int | float))


def _wrap(r: int) -> int:
    """Java long overflow: keep the low 64 bits, two's complement."""
    if LONG_MIN <= r <= LONG_MAX:
        return r
    return ((r - LONG_MIN) & 0xFFFF_FFFF_FFFF_FFFF) + LONG_MIN


def _add(a: Any, b: Any) -> Any:
    r = a + b
    return _wrap(r) if r.__class__ is int else r


def _sub(a: Any, b: Any) -> Any:
    r = a - b
    return _wrap(r) if r.__class__ is int else r


def _mul(a: Any, b: Any) -> Any:
    r = a * b
    return _wrap(r) if r.__class__ is int else r


def _div(a: Any, b: Any) -> Any:
    if b == 0:
        return None  # NULL rather than Java's ArithmeticException or infinity
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)  # Java truncates toward zero; Python's // floors
        return _wrap(-q if (a < 0) != (b < 0) else q)
    return a / b


_ARITH: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
}

_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}

_FLIPPED: Final = {"=": "=", "<>": "<>", "<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _comparator(op: str) -> Callable[[Any, Any], bool | None]:
    """``(a, b) -> True/False/None`` for one operator, with the JMS typing rules."""
    compare = _OPS[op]
    if op in ("=", "<>"):

        def equality(a: Any, b: Any) -> bool | None:
            if a is None or b is None:
                return None
            t = a.__class__
            if t is b.__class__ and (t is str or t is int or t is float or t is bool):
                return compare(a, b)
            kind = value_kind(a)
            if kind == ANY or kind != value_kind(b):
                return False  # values of different types: FALSE (JMS 2.0 3.8.1.2)
            return compare(a, b)

        return equality

    def ordering(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        if _is_num(a) and _is_num(b):
            return compare(a, b)
        return False  # strings and booleans have no order in JMS; other types: FALSE

    return ordering


_COMPARE: Final = {op: _comparator(op) for op in _OPS}


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or3(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


# --------------------------------------------------------------------------------------------
# Constant folding


def _no_fields(name: str) -> Any:
    raise AssertionError(f"constant expression read {name!r}")


def _const(node: Node) -> Const:
    return Const(_value(node)(_no_fields))


def _fold(node: Node) -> Node:
    """Evaluate constant subtrees now, and drop constants that do not change AND or OR."""
    if isinstance(node, Negate):
        operand = _fold(node.operand)
        folded: Node = Negate(operand, node.negative, node.depth)
        return _const(folded) if isinstance(operand, Const) else folded
    if isinstance(node, Arith):
        first = _fold(node.first)
        rest = tuple((op, _fold(x)) for op, x in node.rest)
        folded = Arith(first, rest, node.depth)
        if isinstance(first, Const) and all(isinstance(x, Const) for _, x in rest):
            return _const(folded)
        return folded
    if isinstance(node, Compare):
        left, right = _fold(node.left), _fold(node.right)
        folded = Compare(node.op, left, right, node.depth)
        if isinstance(left, Const) and isinstance(right, Const):
            return _const(folded)
        if (isinstance(left, Const) and left.value is None) or (
            isinstance(right, Const) and right.value is None
        ):
            return Const(None)  # e.g. a = 1 + NULL: UNKNOWN whatever a is
        return folded
    if isinstance(node, Between):
        parts = (_fold(node.value), _fold(node.low), _fold(node.high))
        folded = Between(node.negated, *parts, depth=node.depth)
        return _const(folded) if all(isinstance(p, Const) for p in parts) else folded
    if isinstance(node, Not):
        operand = _fold(node.operand)
        if isinstance(operand, Const):
            return _const(Not(operand, node.depth))
        # NOT commutes into these exactly, also for UNKNOWN and for the wrong types.
        if isinstance(operand, Not):
            return operand.operand
        if isinstance(operand, IsNull | In | Like):
            return _negated(operand)
        return Not(operand, node.depth)
    if isinstance(node, And | Or):
        absorbing = isinstance(node, Or)  # TRUE decides an OR, FALSE an AND
        operands: list[Node] = []
        for child in node.operands:
            child = _fold(child)
            if isinstance(child, Const) and child.value is absorbing:
                return Const(absorbing)
            if isinstance(child, Const) and child.value is (not absorbing):
                continue  # TRUE AND x is x, FALSE OR x is x
            if isinstance(child, type(node)):
                operands.extend(child.operands)
            else:
                operands.append(child)
        if not operands:
            return Const(not absorbing)
        if len(operands) == 1:
            return operands[0]
        if all(isinstance(child, Const) for child in operands):
            return Const(None)  # only UNKNOWNs are left
        return type(node)(tuple(operands), node.depth)
    return node


def _negated(node: IsNull | In | Like) -> Node:
    if isinstance(node, IsNull):
        return IsNull(not node.negated, node.name, node.depth)
    if isinstance(node, In):
        return In(not node.negated, node.name, node.values, node.depth)
    return Like(not node.negated, node.name, node.pattern, node.escape, node.depth)


# --------------------------------------------------------------------------------------------
# Compilation to closures. `_value` gives a closure returning a value (conditions give
# True/False/None); `_cond(node, truth=True)` gives one returning a plain bool, "is it TRUE".


def _value(node: Node) -> _Eval:
    if isinstance(node, Const):
        value = node.value
        return lambda g: value
    if isinstance(node, Ident):
        name = node.name
        return lambda g: g(name)
    if isinstance(node, Negate):
        return _negate(node)
    if isinstance(node, Arith):
        return _arith(node)
    return _cond(node, truth=False)


def _negate(node: Negate) -> _Eval:
    operand = _value(node.operand)
    if not node.negative:

        def plus(g: Fields) -> Any:
            v = operand(g)
            return v if _is_num(v) else None

        return plus

    def minus(g: Fields) -> Any:
        v = operand(g)
        if not _is_num(v):
            return None
        return _wrap(-v) if isinstance(v, int) else -v

    return minus


def _arith(node: Arith) -> _Eval:
    first = _value(node.first)
    rest = tuple((_ARITH[op], _value(x)) for op, x in node.rest)

    def arith(g: Fields) -> Any:
        acc = first(g)
        if not _is_num(acc):
            return None
        try:
            for op, operand in rest:
                v = operand(g)
                if not _is_num(v):
                    return None
                acc = op(acc, v)
                if acc is None:
                    return None
        except OverflowError:  # a float meeting an integer beyond any double
            return None
        return acc

    return arith


def _cond(node: Node, truth: bool) -> _Eval:
    if isinstance(node, Const):
        value = node.value
        if truth:
            return _always_true if value is True else _always_false
        return lambda g: value
    if isinstance(node, BoolCast):
        return _bool_cast(node.name, truth)
    if isinstance(node, Compare):
        return _compare(node, truth)
    if isinstance(node, Between):
        return _between(node, truth)
    if isinstance(node, In):
        return _in(node, truth)
    if isinstance(node, Like):
        return _like(node, truth)
    if isinstance(node, IsNull):
        name = node.name
        if node.negated:
            return lambda g: g(name) is not None
        return lambda g: g(name) is None
    if isinstance(node, Not):
        operand = _cond(node.operand, truth=False)
        if truth:
            return lambda g: operand(g) is False

        def not3(g: Fields) -> bool | None:
            v = operand(g)
            return None if v is None else not v

        return not3
    if isinstance(node, And):
        return _and(node, truth)
    if isinstance(node, Or):
        return _or(node, truth)
    raise AssertionError(f"not a condition: {node!r}")  # the parser checked the kinds


def _bool_cast(name: str, truth: bool) -> _Eval:
    if truth:
        return lambda g: g(name) is True

    def cast(g: Fields) -> bool | None:
        v = g(name)
        if v.__class__ is bool:
            return bool(v)
        return None if v is None else False

    return cast


def _compare(node: Compare, truth: bool) -> _Eval:
    op, left, right = node.op, node.left, node.right
    if isinstance(left, Const) and isinstance(right, Ident):
        left, right, op = right, left, _FLIPPED[op]
    compare = _COMPARE[op]
    if isinstance(left, Ident) and isinstance(right, Const):
        name, c = left.name, right.value
        if truth:

            def slow(v: Any) -> bool | None:
                return compare(v, c) is True

        else:

            def slow(v: Any) -> bool | None:
                return compare(v, c)

        if c.__class__ is int or c.__class__ is float:
            return _NUMERIC_FAST[op](name, c, slow)
        if op in ("=", "<>"):
            return _same_class_fast(op == "=", name, c, slow)

    lf, rf = _value(left), _value(right)
    if truth:
        return lambda g: compare(lf(g), rf(g)) is True
    return lambda g: compare(lf(g), rf(g))


def _same_class_fast(equal: bool, name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    """``name = 'x'`` / ``name <> 'x'`` (strings and booleans only have these two)."""
    ct = c.__class__
    if equal:

        def eq(g: Fields) -> Any:
            v = g(name)
            if v.__class__ is ct:
                return v == c
            return slow(v)

        return eq

    def ne(g: Fields) -> Any:
        v = g(name)
        if v.__class__ is ct:
            return v != c
        return slow(v)

    return ne


# One closure per operator so the hot comparison is inline bytecode, not an operator call.
def _fast_eq(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v == c
        return slow(v)

    return f


def _fast_ne(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v != c
        return slow(v)

    return f


def _fast_lt(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v < c
        return slow(v)

    return f


def _fast_gt(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v > c
        return slow(v)

    return f


def _fast_le(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v <= c
        return slow(v)

    return f


def _fast_ge(name: str, c: Any, slow: Callable[[Any], Any]) -> _Eval:
    def f(g: Fields) -> Any:
        v = g(name)
        t = v.__class__
        if t is int or t is float:
            return v >= c
        return slow(v)

    return f


_NUMERIC_FAST: Final = {
    "=": _fast_eq,
    "<>": _fast_ne,
    "<": _fast_lt,
    ">": _fast_gt,
    "<=": _fast_le,
    ">=": _fast_ge,
}


def _between(node: Between, truth: bool) -> _Eval:
    negated = node.negated
    low, high = node.low, node.high
    if (
        isinstance(node.value, Ident)
        and isinstance(low, Const)
        and isinstance(high, Const)
        and _is_num(low.value)
        and _is_num(high.value)
    ):
        name = node.value.name
        lo, hi = cast(float, low.value), cast(float, high.value)
        unknown = False if truth else None

        def between_const(g: Fields) -> bool | None:
            v = g(name)
            if _is_num(v):
                n: float = v
                return (n < lo or n > hi) if negated else lo <= n <= hi
            return unknown if v is None else False

        return between_const

    vf, lf, hf = _value(node.value), _value(low), _value(high)
    if negated:
        below, above = _COMPARE["<"], _COMPARE[">"]

        def not_between(g: Fields) -> bool | None:
            v = vf(g)
            return _or3(below(v, lf(g)), above(v, hf(g)))

        fn = not_between
    else:
        at_least, at_most = _COMPARE[">="], _COMPARE["<="]

        def between(g: Fields) -> bool | None:
            v = vf(g)
            return _and3(at_least(v, lf(g)), at_most(v, hf(g)))

        fn = between
    if truth:
        return lambda g: fn(g) is True
    return fn


def _in(node: In, truth: bool) -> _Eval:
    name, values, negated = node.name, node.values, node.negated
    unknown = False if truth else None

    def in_(g: Fields) -> bool | None:
        v = g(name)
        if isinstance(v, str):
            return (v in values) is not negated
        return unknown  # NULL, or not a string (Artemis: UNKNOWN)

    return in_


def _like(node: Like, truth: bool) -> _Eval:
    name, negated = node.name, node.negated
    match = compile_like(node.pattern, node.escape)
    unknown = False if truth else None

    def like(g: Fields) -> bool | None:
        v = g(name)
        if isinstance(v, str):
            return match(v) is not negated
        if v is None:
            return unknown
        return negated  # LIKE on a non-string is FALSE (Artemis), so NOT LIKE is TRUE

    return like


def _and(node: And, truth: bool) -> _Eval:
    fs = tuple(_cond(x, truth) for x in node.operands)
    if truth:
        if len(fs) == 2:
            a, b = fs
            return lambda g: a(g) and b(g)
        if len(fs) == 3:
            a, b, c = fs
            return lambda g: a(g) and b(g) and c(g)

        def all_true(g: Fields) -> bool:
            for f in fs:  # noqa: SIM110 - all() over a generator costs more per message
                if not f(g):
                    return False
            return True

        return all_true

    def and3(g: Fields) -> bool | None:
        result: bool | None = True
        for f in fs:
            v = f(g)
            if v is False:
                return False
            if v is None:
                result = None
        return result

    return and3


def _or(node: Or, truth: bool) -> _Eval:
    fs = tuple(_cond(x, truth) for x in node.operands)
    if truth:
        if len(fs) == 2:
            a, b = fs
            return lambda g: a(g) or b(g)
        if len(fs) == 3:
            a, b, c = fs
            return lambda g: a(g) or b(g) or c(g)

        def any_true(g: Fields) -> bool:
            for f in fs:  # noqa: SIM110 - any() over a generator costs more per message
                if f(g):
                    return True
            return False

        return any_true

    def or3(g: Fields) -> bool | None:
        result: bool | None = False
        for f in fs:
            v = f(g)
            if v is True:
                return True
            if v is None:
                result = None
        return result

    return or3
