"""Property-based tests: random selector trees, rendered to text, must select exactly what a
straightforward recursive interpreter of the JMS 2.0 rules (the oracle, below) says; random
text must either compile or raise InvalidSelector; LIKE must agree with a dynamic-programming
matcher, including on the Shift-And path."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ferrymq.core._selector_like import _Segment, compile_like
from ferrymq.core.selector import InvalidSelector, compile_selector

# Trees are tuples:
#   values:      ("lit", v) | ("id", name) | ("neg", e) | ("pos", e) | ("arith", op, l, r)
#   conditions:  ("cmp", op, l, r) | ("between", negated, x, lo, hi) | ("in", negated, name, vs)
#                | ("like", negated, name, items, escape) | ("isnull", negated, name)
#                | ("not", c) | ("and", l, r) | ("or", l, r) | ("cast", name) | ("lit", bool/None)
# LIKE items: ("c", char) | ("_",) | ("%",)

NAMES = ["a", "b", "c", "JMSPriority", "JMSType"]
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
STRING_ALPHABET = "ab'%_!"

# -- the oracle ---------------------------------------------------------------------------------


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if is_num(v):
        return "number"
    if isinstance(v, str):
        return "string"
    return "other"


def to_long(n: int) -> int:
    return (n + 2**63) % 2**64 - 2**63


def arith(op: str, x: Any, y: Any) -> Any:
    if not (is_num(x) and is_num(y)):
        return None
    if op == "/" and y == 0:
        return None
    if op == "+":
        r = x + y
    elif op == "-":
        r = x - y
    elif op == "*":
        r = x * y
    elif isinstance(x, int) and isinstance(y, int):
        r = int(Fraction(x, y))  # int() of a Fraction truncates toward zero, like Java
    else:
        r = x / y
    return to_long(r) if isinstance(r, int) else r


def compare(op: str, x: Any, y: Any) -> bool | None:
    if x is None or y is None:
        return None
    if kind(x) != kind(y) or kind(x) == "other":
        return False
    if kind(x) != "number" and op not in ("=", "<>"):
        return False
    return {
        "=": x == y,
        "<>": x != y,
        "<": x < y,
        ">": x > y,
        "<=": x <= y,
        ">=": x >= y,
    }[op]


AND3 = {
    (True, True): True, (True, False): False, (True, None): None,
    (False, True): False, (False, False): False, (False, None): False,
    (None, True): None, (None, False): False, (None, None): None,
}  # fmt: skip
OR3 = {
    (True, True): True, (True, False): True, (True, None): True,
    (False, True): True, (False, False): False, (False, None): None,
    (None, True): True, (None, False): None, (None, None): None,
}  # fmt: skip


def like_dp(s: str, items: list[tuple[str, ...]]) -> bool:
    """Textbook dynamic programming: reach[j] = the first i items can match s[:j]."""
    reach = [True] + [False] * len(s)
    for item in items:
        if item[0] == "%":
            nxt = reach[:]
            for j in range(1, len(s) + 1):
                nxt[j] = nxt[j] or nxt[j - 1]
        else:
            nxt = [False] * (len(s) + 1)
            for j in range(1, len(s) + 1):
                nxt[j] = reach[j - 1] and (item[0] == "_" or item[1] == s[j - 1])
        reach = nxt
    return reach[len(s)]


def value(node: tuple[Any, ...], props: dict[str, Any]) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "id":
        return props.get(node[1])
    if tag == "neg":
        v = value(node[1], props)
        if not is_num(v):
            return None
        return to_long(-v) if isinstance(v, int) else -v
    if tag == "pos":
        v = value(node[1], props)
        return v if is_num(v) else None
    if tag == "arith":
        return arith(node[1], value(node[2], props), value(node[3], props))
    return truth(node, props)


def truth(node: tuple[Any, ...], props: dict[str, Any]) -> bool | None:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "cast":
        v = props.get(node[1])
        if v is None:
            return None
        return v if isinstance(v, bool) else False
    if tag == "cmp":
        return compare(node[1], value(node[2], props), value(node[3], props))
    if tag == "between":
        _, negated, x, lo, hi = node
        xv, lv, hv = value(x, props), value(lo, props), value(hi, props)
        if negated:
            return OR3[compare("<", xv, lv), compare(">", xv, hv)]
        return AND3[compare(">=", xv, lv), compare("<=", xv, hv)]
    if tag == "in":
        _, negated, name, values = node
        v = props.get(name)
        if not isinstance(v, str):
            return None
        return (v in values) != negated
    if tag == "like":
        _, negated, name, items, _escape = node
        v = props.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            return negated
        return like_dp(v, items) != negated
    if tag == "isnull":
        return (props.get(node[2]) is None) != node[1]
    if tag == "not":
        t = truth(node[1], props)
        return None if t is None else not t
    if tag == "and":
        return AND3[truth(node[1], props), truth(node[2], props)]
    if tag == "or":
        return OR3[truth(node[1], props), truth(node[2], props)]
    raise AssertionError(node)


# -- rendering with the fewest parentheses the precedence rules allow --------------------------

LEVEL = {"or": 1, "and": 2, "not": 3, "eq": 4, "isnull": 4, "rel": 5, "between": 5, "in": 5}
LEVEL |= {"like": 5, "+": 6, "-": 6, "*": 7, "/": 7, "neg": 8, "pos": 8}
ATOM = 9


def level(node: tuple[Any, ...]) -> int:
    tag = node[0]
    if tag == "cmp":
        return LEVEL["eq"] if node[1] in ("=", "<>") else LEVEL["rel"]
    if tag == "arith":
        return LEVEL[node[1]]
    if tag == "lit" and is_num(node[1]) and (node[1] < 0 or str(node[1]).startswith("-")):
        return LEVEL["neg"]  # "-5" is unary minus applied to 5
    return LEVEL.get(tag, ATOM)


class Renderer:
    def __init__(self, rnd: random.Random, extra_parens: bool) -> None:
        self.rnd = rnd
        self.extra = extra_parens

    def kw(self, word: str) -> str:
        return self.rnd.choice([word, word.lower(), word.capitalize()])

    def sub(self, node: tuple[Any, ...], need: int) -> str:
        text = self.render(node)
        if level(node) < need or (self.extra and self.rnd.random() < 0.2):
            return f"({text})"
        return text

    def render(self, node: tuple[Any, ...]) -> str:
        tag = node[0]
        if tag == "lit":
            v = node[1]
            if v is None:
                return self.kw("NULL")
            if isinstance(v, bool):
                return self.kw("TRUE" if v else "FALSE")
            if isinstance(v, str):
                return "'" + v.replace("'", "''") + "'"
            return repr(v)
        if tag in ("id", "cast"):
            return str(node[1])
        if tag in ("neg", "pos"):
            sign = "-" if tag == "neg" else "+"
            return f"{sign} {self.sub(node[1], LEVEL['neg'])}"
        if tag == "arith":
            lv = LEVEL[node[1]]
            return f"{self.sub(node[2], lv)} {node[1]} {self.sub(node[3], lv + 1)}"
        if tag == "cmp":
            lv = level(node)
            return f"{self.sub(node[2], lv)} {node[1]} {self.sub(node[3], lv + 1)}"
        if tag == "between":
            _, negated, x, lo, hi = node
            op = self.kw("NOT") + " " + self.kw("BETWEEN") if negated else self.kw("BETWEEN")
            return (
                f"{self.sub(x, LEVEL['between'])} {op} {self.sub(lo, LEVEL['+'])} "
                f"{self.kw('AND')} {self.sub(hi, LEVEL['+'])}"
            )
        if tag == "in":
            _, negated, name, values = node
            op = self.kw("NOT") + " " + self.kw("IN") if negated else self.kw("IN")
            return f"{name} {op} (" + ", ".join(self.render(("lit", v)) for v in values) + ")"
        if tag == "like":
            _, negated, name, items, escape = node
            op = self.kw("NOT") + " " + self.kw("LIKE") if negated else self.kw("LIKE")
            pattern = ""
            for item in items:
                if item[0] != "c":
                    pattern += item[0]
                elif item[1] in ("%", "_", escape):
                    pattern += f"{escape}{item[1]}"
                else:
                    pattern += item[1]
            text = f"{name} {op} {self.render(('lit', pattern))}"
            if escape is not None:
                text += f" {self.kw('ESCAPE')} {self.render(('lit', escape))}"
            return text
        if tag == "isnull":
            middle = self.kw("IS") + (" " + self.kw("NOT") if node[1] else "")
            return f"{node[2]} {middle} {self.kw('NULL')}"
        if tag == "not":
            return f"{self.kw('NOT')} {self.sub(node[1], LEVEL['not'])}"
        if tag in ("and", "or"):
            lv = LEVEL[tag]
            return f"{self.sub(node[1], lv)} {self.kw(tag.upper())} {self.sub(node[2], lv + 1)}"
        raise AssertionError(node)


# -- strategies: only well-typed trees (the type rules are tested by the tables) --------------

names = st.sampled_from(NAMES)
# Small integers most of the time, so literals and property values often meet at boundaries.
longs = st.one_of(st.integers(-3, 3), st.integers(-20, 20), st.integers(LONG_MIN, LONG_MAX))
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
num_literals = st.one_of(longs, floats.filter(lambda f: abs(f) < 1e300)).map(lambda v: ("lit", v))
strings = st.text(STRING_ALPHABET, max_size=5)


def num_exprs() -> st.SearchStrategy[tuple[Any, ...]]:
    leaves = st.one_of(num_literals, names.map(lambda n: ("id", n)))

    def extend(inner: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[tuple[Any, ...]]:
        operand = st.one_of(inner, st.just(("lit", None)))  # NULL is allowed in arithmetic
        return st.one_of(
            st.tuples(st.just("neg"), inner),
            st.tuples(st.just("pos"), inner),
            st.tuples(st.sampled_from("+-*/"), operand, operand).map(
                lambda t: ("arith", t[0], t[1], t[2])
            ),
        )

    return st.recursive(leaves, extend, max_leaves=4)


like_items = st.lists(
    st.one_of(
        st.sampled_from("ab%_!").map(lambda c: ("c", c)),
        st.just(("_",)),
        st.just(("%",)),
    ),
    max_size=6,
)


@st.composite
def likes(draw: st.DrawFn) -> tuple[Any, ...]:
    items = draw(like_items)
    needs_escape = any(item[0] == "c" and item[1] in "%_" for item in items)
    escape = "!" if needs_escape else draw(st.sampled_from([None, "!"]))
    return ("like", draw(st.booleans()), draw(names), items, escape)


def leaf_conditions() -> st.SearchStrategy[tuple[Any, ...]]:
    nums = num_exprs()
    str_operand = st.one_of(strings.map(lambda s: ("lit", s)), names.map(lambda n: ("id", n)))
    any_literal = st.one_of(
        num_literals, strings.map(lambda s: ("lit", s)), st.booleans().map(lambda b: ("lit", b))
    )
    return st.one_of(
        st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", ">", "<=", ">="]), nums, nums),
        st.tuples(st.just("cmp"), st.sampled_from(["=", "<>"]), str_operand, str_operand),
        # an identifier against a literal of any type: the runtime type-mismatch cases
        st.tuples(
            st.just("cmp"),
            st.sampled_from(["=", "<>"]),
            names.map(lambda n: ("id", n)),
            any_literal,
        ),
        st.tuples(st.just("between"), st.booleans(), nums, nums, nums),
        st.tuples(
            st.just("in"), st.booleans(), names, st.lists(strings, min_size=1, max_size=3)
        ).map(lambda t: (t[0], t[1], t[2], tuple(t[3]))),
        likes(),
        st.tuples(st.just("isnull"), st.booleans(), names),
        names.map(lambda n: ("cast", n)),
        st.sampled_from([("lit", True), ("lit", False), ("lit", None)]),
    )


def conditions() -> st.SearchStrategy[tuple[Any, ...]]:
    def extend(inner: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[tuple[Any, ...]]:
        # operands of = <> between conditions: no bare identifier (that would be a value)
        typed = inner.filter(lambda c: c[0] != "cast" and c != ("lit", None))
        return st.one_of(
            st.tuples(st.just("not"), inner),
            st.tuples(st.sampled_from(["and", "or"]), inner, inner),
            st.tuples(st.just("cmp"), st.sampled_from(["=", "<>"]), typed, typed),
        )

    return st.recursive(leaf_conditions(), extend, max_leaves=8)


property_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    longs,
    floats,
    strings,
)
messages = st.dictionaries(names, property_values)


def props_fields(props: dict[str, Any]) -> Any:
    return props.get


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=conditions(), props=st.lists(messages, min_size=1, max_size=4), seed=st.integers())
def test_compiled_selector_agrees_with_the_oracle(
    tree: tuple[Any, ...], props: list[dict[str, Any]], seed: int
) -> None:
    rnd = random.Random(seed)
    text = Renderer(rnd, extra_parens=rnd.random() < 0.5).render(tree)
    try:
        selector = compile_selector(text)
        negated = compile_selector(f"NOT ({text})")
    except InvalidSelector as exc:
        # Only the depth cap may refuse a well-typed tree.
        assert "nested too deeply" in str(exc), (text, exc)
        return
    for message in props:
        expected = truth(tree, message)
        assert selector.matches(message.get) is (expected is True), (text, message, expected)
        assert negated.matches(message.get) is (expected is False), (text, message, expected)


@settings(max_examples=600, deadline=None)
@given(tree=num_exprs(), props=messages)
def test_arithmetic_agrees_with_the_oracle(tree: tuple[Any, ...], props: dict[str, Any]) -> None:
    # Compare the value itself through "x = v" where v is the oracle's answer.
    expected = value(tree, props)
    # A bare identifier yields its raw value; numbers only, and finite so they can be written.
    assume(expected is None or (is_num(expected) and abs(expected) < 1e300))
    text = Renderer(random.Random(0), extra_parens=False).render(tree)
    if expected is None:
        # Only NULL makes both "= 0" and "<> 0" UNKNOWN, so that neither they nor NOT select.
        either = f"{text} = 0 OR {text} <> 0"
        assert not compile_selector(either).matches(props.get), text
        assert not compile_selector(f"NOT ({either})").matches(props.get), text
        return
    literal = Renderer(random.Random(0), extra_parens=False).render(("lit", expected))
    assert compile_selector(f"{text} = ({literal})").matches(props.get), (text, expected)


SELECTOR_ALPHABET = st.sampled_from(
    [
        *"abxyz019.'()=<>+-*/,%_! \t",
        *("AND ", "OR ", "NOT ", "LIKE ", "IN ", "IS ", "NULL ", "BETWEEN ", "ESCAPE ", "TRUE "),
        *("1e5", "0x1F", "5L", "1.5f", "JMSPriority", "'it''s'"),
    ]
)


@settings(max_examples=1500, deadline=None)
@given(parts=st.lists(SELECTOR_ALPHABET, max_size=25), props=messages)
def test_any_text_compiles_or_raises_invalid_selector(
    parts: list[str], props: dict[str, Any]
) -> None:
    text = "".join(parts)
    try:
        selector = compile_selector(text)
    except InvalidSelector as exc:
        assert exc.position is None or 1 <= exc.position <= len(text) + 1
        return
    assert selector.matches(props.get) in (True, False)
    if text.strip():
        assert compile_selector(f"NOT ({text})").matches(props.get) in (True, False)


# -- LIKE against dynamic programming -----------------------------------------------------------


def render_like(items: list[tuple[str, ...]]) -> str:
    return "".join(
        item[0] if item[0] != "c" else ("!" + item[1] if item[1] in "%_!" else item[1])
        for item in items
    )


pattern_items = st.lists(
    st.one_of(st.sampled_from("ab!").map(lambda c: ("c", c)), st.just(("_",)), st.just(("%",))),
    max_size=10,
)


@settings(max_examples=2000, deadline=None)
@given(items=pattern_items, s=st.text("ab!", max_size=14))
def test_like_agrees_with_dynamic_programming(items: list[tuple[str, ...]], s: str) -> None:
    match = compile_like(render_like(items), "!")
    assert match(s) is like_dp(s, items)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(
        st.one_of(st.sampled_from("ab").map(lambda c: ("c", c)), st.just(("_",))),
        min_size=1,
        max_size=12,
    ),
    s=st.text("ab", max_size=300),
)
def test_segment_search_paths_agree(items: list[tuple[str, ...]], s: str) -> None:
    seg = _Segment([item[1] if item[0] == "c" else None for item in items])

    def naive() -> int:
        for i in range(len(s) - len(items) + 1):
            if all(it[0] == "_" or it[1] == s[i + k] for k, it in enumerate(items)):
                return i
        return -1

    expected = naive()
    assert seg.find(s, 0, len(s)) == expected
    if any(it[0] == "_" for it in items):
        assert seg._shift_and(s, 0, len(s)) == expected
    # Windows: the search never reports a match that runs past `end`.
    for end in range(len(items), min(len(s), 40) + 1):
        found = seg.find(s, 0, end)
        assert found == -1 or found + len(items) <= end
