"""Lexer, syntax tree and parser for JMS message selectors (JMS 2.0 section 3.8.1).

Theory of operation
-------------------
The lexer turns the text into tokens using the spec's literal syntax ("exact numeric literals
use the Java integer literal syntax", approximate ones the Java floating point syntax): decimal,
octal (``017``) and hexadecimal (``0x1F``) integers with an optional ``L``, floats such as
``7.``, ``.5``, ``-57.9E2``, ``1.5f``; strings in single quotes with ``''`` for a quote;
identifiers by Java's rules; the reserved words matched without regard to case.

The parser is precedence climbing (one loop per call, recursion only for parentheses, NOT and
right operands), so a deep selector costs a few Python frames per nesting level. Levels, from
loosest to tightest (the spec's list; ``=``/``<>`` sit one level below ``<``/``>`` as in
Artemis and Java, which only matters for chains such as ``a > 1 = TRUE``)::

    OR < AND < NOT < (= <> IS) < (< > <= >= BETWEEN IN LIKE) < (+ -) < (* /) < unary + -

Every node carries its depth; a node deeper than ``max_depth``, or parentheses nested deeper,
is refused while parsing, so neither this parser, the compiler nor the compiled closures can
reach the interpreter's recursion limit. OR, AND and chains of ``+ -`` or ``* /`` are n-ary
nodes, so a long flat ``a = 1 OR a = 2 OR ...`` is wide, not deep.

Static typing follows the spec and Artemis: each node has a kind (number, string, boolean,
NULL, or "any" for an identifier, whose type is only known per message). Errors a message can
never fix are refused here: arithmetic on a string or boolean, ``<`` on strings or booleans,
``=`` between literals of different types, a comparison with the NULL literal, a number or
string where a condition belongs (``a + 1`` alone), LIKE/IN/IS NULL on anything but an
identifier.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ferrymq.core._selector_like import LikePatternError, compile_like

__all__ = [
    "And",
    "Arith",
    "Between",
    "BoolCast",
    "Compare",
    "Const",
    "Ident",
    "In",
    "InvalidSelector",
    "IsNull",
    "Like",
    "Negate",
    "Node",
    "Not",
    "Or",
    "parse",
]

LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

# Static kinds.
NUM: Final = "number"
STR: Final = "string"
BOOL: Final = "boolean"
NULL: Final = "NULL"
ANY: Final = "identifier"

KEYWORDS: Final = frozenset(
    {"NOT", "AND", "OR", "BETWEEN", "LIKE", "IN", "IS", "ESCAPE", "NULL", "TRUE", "FALSE"}
)

_WHITESPACE: Final = " \t\n\r\f"
_DIGITS: Final = "0123456789"
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"
_OPS_2: Final = frozenset({"<>", "<=", ">="})
_OPS_1: Final = frozenset("=<>+-*/(),")
_REL_OPS: Final = frozenset({"<", ">", "<=", ">="})
_ADD_OPS: Final = frozenset({"+", "-"})
_MUL_OPS: Final = frozenset({"*", "/"})

# Precedence levels (loosest first).
_OR, _AND, _NOT, _EQ, _REL, _ADD, _MUL = 1, 2, 3, 4, 5, 6, 7


class InvalidSelector(ValueError):
    """A selector that is not valid JMS selector syntax or is ill-typed.

    The message says what is wrong and where: ``position`` is the 1-based character position
    in the selector text (None when the problem is the selector as a whole). The message is
    kept under 200 characters so that it fits an AMQP reply text.
    """

    def __init__(self, reason: str, position: int | None = None) -> None:
        if len(reason) > 160:  # quoted tokens can be long; the text must fit a 406 reply
            reason = reason[:157] + "..."
        text = reason if position is None else f"{reason} at position {position}"
        super().__init__(text)
        self.reason = reason
        self.position = position


# --------------------------------------------------------------------------------------------
# Syntax tree. Frozen slotted dataclasses; `depth` is the height of the subtree.


@dataclass(frozen=True, slots=True)
class Const:
    value: object  # None (NULL), bool, int, float or str
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class BoolCast:
    """An identifier used as a condition (``active AND x > 1``)."""

    name: str
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Negate:
    """Unary minus (``negative``) or unary plus, which only checks that the value is numeric."""

    operand: Node
    negative: bool
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Arith:
    """``first op1 x1 op2 x2 ...`` evaluated left to right, ops all from + - or all from * /."""

    first: Node
    rest: tuple[tuple[str, Node], ...]
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # = <> < > <= >=
    left: Node
    right: Node
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Between:
    negated: bool
    value: Node
    low: Node
    high: Node
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class In:
    negated: bool
    name: str
    values: frozenset[str]
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Like:
    negated: bool
    name: str
    pattern: str
    escape: str | None
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class IsNull:
    negated: bool
    name: str
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]
    depth: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]
    depth: int = field(default=1, compare=False)


Node: TypeAlias = (
    Const
    | Ident
    | BoolCast
    | Negate
    | Arith
    | Compare
    | Between
    | In
    | Like
    | IsNull
    | Not
    | And
    | Or
)

CONDITIONS: Final = (BoolCast, Compare, Between, In, Like, IsNull, Not, And, Or)


def kind_of(node: Node) -> str:
    """The static kind of a node: what the parser knows about its value's type."""
    if isinstance(node, Const):
        return value_kind(node.value)
    if isinstance(node, Ident):
        return ANY
    if isinstance(node, Negate | Arith):
        return NUM
    return BOOL


def value_kind(value: object) -> str:
    """The kind of a runtime value; ``ANY`` stands for "none of the selector types"."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUM
    if isinstance(value, str):
        return STR
    return ANY


_KIND_NAMES: Final = {
    NUM: "a number",
    STR: "a string",
    BOOL: "a boolean",
    NULL: "NULL",
    ANY: "an identifier",
}


# --------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "int", "float", "str", "ident", "kw", "op", "eof"
    value: object
    pos: int  # 0-based offset of the first character
    text: str  # the source text of the token
    decimal: bool = False  # a decimal integer literal (range-checked by the parser)


def _is_id_start(c: str) -> bool:
    """Java's Character.isJavaIdentifierStart: letters, currency symbols, connectors."""
    if c.isascii():
        return c.isalpha() or c == "_" or c == "$"
    return unicodedata.category(c) in {"Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Sc", "Pc"}


def _is_id_part(c: str) -> bool:
    """Java's Character.isJavaIdentifierPart (without the ignorable control characters)."""
    if c.isascii():
        return c.isalnum() or c == "_" or c == "$"
    return unicodedata.category(c) in {
        "Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Sc", "Pc", "Nd", "Mn", "Mc", "Cf"
    }  # fmt: skip


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "the end of the selector"
    if tok.kind == "ident":
        return f"identifier {tok.text!r}"
    if tok.kind == "str":
        return f"string {tok.text}"
    if tok.kind in ("int", "float"):
        return f"number {tok.text}"
    return repr(tok.text)


def tokenize(text: str) -> list[Token]:
    """Split a selector into tokens; the last one is always ``eof``."""
    tokens: list[Token] = []
    append = tokens.append
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        start = i
        if c == "'":
            parts: list[str] = []
            j = i + 1
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise InvalidSelector("unterminated string literal", start + 1)
                if k + 1 < n and text[k + 1] == "'":
                    parts.append(text[j : k + 1])
                    j = k + 2
                    continue
                parts.append(text[j:k])
                i = k + 1
                break
            append(Token("str", "".join(parts), start, text[start:i]))
        elif c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            tok, i = _number(text, i)
            append(tok)
        elif _is_id_start(c):
            j = i + 1
            while j < n and _is_id_part(text[j]):
                j += 1
            word = text[i:j]
            upper = word.upper()
            # Only ASCII words can be reserved: the dotless i upper-cases to I, yet '\u0131n'
            # is an identifier, not the keyword IN.
            if word.isascii() and upper in KEYWORDS:
                append(Token("kw", upper, start, word))
            else:
                append(Token("ident", word, start, word))
            i = j
        elif text.startswith(("!=", "=="), i):
            hint = "use <> for not equal" if c == "!" else "use = for equality"
            raise InvalidSelector(f"unknown operator {text[i : i + 2]!r} ({hint})", start + 1)
        elif text.startswith(("<>", "<=", ">="), i):
            append(Token("op", text[i : i + 2], start, text[i : i + 2]))
            i += 2
        elif c in _OPS_1:
            append(Token("op", c, start, c))
            i += 1
        else:
            raise InvalidSelector(f"unexpected character {c!r}", start + 1)
    append(Token("eof", None, n, ""))
    return tokens


def _number(text: str, i: int) -> tuple[Token, int]:
    """Scan a Java integer or floating point literal starting at ``text[i]``."""
    n = len(text)
    start = i

    def digits(j: int, allowed: str = _DIGITS) -> int:
        while j < n and text[j] in allowed:
            j += 1
        return j

    def malformed(end: int) -> InvalidSelector:
        return InvalidSelector(f"malformed number {text[start:end]!r}", start + 1)

    def finish(j: int) -> int:
        # "12abc", "1.2.3", "0x" followed by junk: a number must end at a delimiter.
        if j < n and (_is_id_part(text[j]) or text[j] == "."):
            raise malformed(digits(j + 1, _DIGITS + _HEX_DIGITS + "._$xXlL"))
        return j

    if text[i] == "0" and i + 1 < n and text[i + 1] in "xX":
        j = digits(i + 2, _HEX_DIGITS)
        if j == i + 2:
            raise malformed(j + 1)
        value = int(text[i + 2 : j], 16)
        if j < n and text[j] in "lL":
            j += 1
        j = finish(j)
        if value > 2**64 - 1:
            raise InvalidSelector(f"number {text[start:j]} is out of the range of long", start + 1)
        # Java: a hexadecimal long literal is the two's complement bit pattern.
        if value > LONG_MAX:
            value -= 2**64
        return Token("int", value, start, text[start:j]), j

    j = digits(i)
    is_float = False
    if j < n and text[j] == ".":
        is_float = True
        j = digits(j + 1)
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        e = digits(k)
        if e == k:
            raise malformed(e + 1)
        is_float = True
        j = e
    float32 = False
    if j < n and text[j] in "fFdD":
        is_float = True
        float32 = text[j] in "fF"
        body = text[start:j]
        j += 1
    else:
        body = text[start:j]
    if not is_float and j < n and text[j] in "lL":
        j += 1
    j = finish(j)
    source = text[start:j]
    if is_float:
        value_f = float(body)
        if float32:
            try:
                value_f = struct.unpack("<f", struct.pack("<f", value_f))[0]
            except OverflowError:
                value_f = float("inf")
        if value_f in (float("inf"), float("-inf")):
            raise InvalidSelector(f"number {source} is out of the range of double", start + 1)
        return Token("float", value_f, start, source), j
    if len(body) > 1 and body[0] == "0":
        # Java: a leading zero makes an octal literal.
        if any(d in "89" for d in body):
            raise InvalidSelector(f"malformed octal number {source!r}", start + 1)
        value = int(body, 8)
        if value > 2**64 - 1:
            raise InvalidSelector(f"number {source} is out of the range of long", start + 1)
        if value > LONG_MAX:
            value -= 2**64
        return Token("int", value, start, source), j
    if len(body) > 20:  # also keeps int() away from its 4300-digit limit
        raise InvalidSelector(f"number {source} is out of the range of long", start + 1)
    return Token("int", int(body), start, source, decimal=True), j


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Precedence climbing over the token list; see the module docstring."""

    __slots__ = ("i", "max_depth", "nesting", "tok", "tokens")

    def __init__(self, tokens: list[Token], max_depth: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.tok = tokens[0]
        self.max_depth = max_depth
        self.nesting = 0

    # -- token helpers

    def advance(self) -> Token:
        tok = self.tok
        self.i += 1
        self.tok = self.tokens[self.i]
        return tok

    def peek(self) -> Token:
        return self.tokens[self.i + 1] if self.tok.kind != "eof" else self.tok

    def at_kw(self, *words: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value in words

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def error(self, reason: str, tok: Token | None = None) -> InvalidSelector:
        return InvalidSelector(reason, (tok or self.tok).pos + 1)

    def unexpected(self, expected: str) -> InvalidSelector:
        return self.error(f"expected {expected}, found {_describe(self.tok)}")

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            raise self.unexpected(repr(op))
        return self.advance()

    def depth(self, *children: Node) -> int:
        d = 1 + max(child.depth for child in children)
        if d > self.max_depth:
            raise self.error(f"selector nested too deeply (more than {self.max_depth} levels)")
        return d

    # -- type checks

    def condition(self, node: Node, pos: int) -> Node:
        """Check that ``node`` can stand where a truth value is needed (AND, OR, NOT, top)."""
        if isinstance(node, Ident):
            return BoolCast(node.name)
        kind = kind_of(node)
        if kind in (BOOL, NULL):
            return node
        raise InvalidSelector(
            f"expected a condition, found {_KIND_NAMES[kind]} expression", pos + 1
        )

    @staticmethod
    def numeric(node: Node, pos: int, what: str) -> None:
        kind = kind_of(node)
        if kind not in (NUM, ANY, NULL):
            raise InvalidSelector(f"{what} needs numbers, found {_KIND_NAMES[kind]}", pos + 1)

    @staticmethod
    def comparable(node: Node, pos: int, op: str) -> None:
        kind = kind_of(node)
        if kind == NULL:
            raise InvalidSelector(
                f"NULL cannot be compared with {op}; use IS NULL or IS NOT NULL", pos + 1
            )
        if op not in ("=", "<>") and kind in (STR, BOOL):
            raise InvalidSelector(
                f"{_KIND_NAMES[kind]} can only be compared with = and <>, not {op}", pos + 1
            )

    # -- grammar

    def parse(self) -> Node:
        pos = self.tok.pos
        if self.tok.kind == "eof":
            raise self.unexpected("an expression")
        node = self.expr(_OR)
        if self.tok.kind != "eof":
            if self.at_kw("NOT"):
                raise self.error("NOT must come before the condition it negates")
            raise self.unexpected("an operator or the end of the selector")
        return self.condition(node, pos)

    def expr(self, min_level: int) -> Node:
        """Parse an expression whose operators bind at least as tightly as ``min_level``."""
        pos = self.tok.pos
        left = self.prefix(min_level)
        while True:
            tok = self.tok
            kind = tok.kind
            if kind == "kw":
                word = tok.value
                if word == "OR" and min_level <= _OR:
                    left = self.logical(Or, left, pos, _AND)
                elif word == "AND" and min_level <= _AND:
                    left = self.logical(And, left, pos, _NOT)
                elif word == "IS" and min_level <= _EQ:
                    left = self.is_null(left)
                elif word in ("BETWEEN", "IN", "LIKE") and min_level <= _REL:
                    left = self.postfix(left, pos, negated=False)
                elif (
                    word == "NOT"
                    and min_level <= _REL
                    and self.peek().kind == "kw"
                    and self.peek().value in ("BETWEEN", "IN", "LIKE")
                ):
                    self.advance()
                    left = self.postfix(left, pos, negated=True)
                else:
                    return left
            elif kind == "op":
                op = tok.value
                if op in ("=", "<>") and min_level <= _EQ:
                    left = self.compare(left, pos, _REL)
                elif op in _REL_OPS and min_level <= _REL:
                    left = self.compare(left, pos, _ADD)
                elif op in _ADD_OPS and min_level <= _ADD:
                    left = self.arith(left, pos, _MUL, _ADD_OPS)
                elif op in _MUL_OPS and min_level <= _MUL:
                    left = self.arith(left, pos, _MUL + 1, _MUL_OPS)
                else:
                    return left
            else:
                return left

    def logical(self, cls: type[And] | type[Or], left: Node, pos: int, level: int) -> Node:
        self.advance()
        rpos = self.tok.pos
        right = self.condition(self.expr(level), rpos)
        if isinstance(left, cls):
            operands = (*left.operands, right)
            return cls(operands, max(left.depth, self.depth(right)))
        left = self.condition(left, pos)
        return cls((left, right), self.depth(left, right))

    def compare(self, left: Node, pos: int, level: int) -> Node:
        op_tok = self.advance()
        op = str(op_tok.value)
        rpos = self.tok.pos
        right = self.expr(level)
        self.comparable(left, pos, op)
        self.comparable(right, rpos, op)
        lk, rk = kind_of(left), kind_of(right)
        if lk != rk and lk in (NUM, STR, BOOL) and rk in (NUM, STR, BOOL):
            raise self.error(f"cannot compare {_KIND_NAMES[lk]} with {_KIND_NAMES[rk]}", op_tok)
        return Compare(op, left, right, self.depth(left, right))

    def arith(self, left: Node, pos: int, level: int, ops: frozenset[str]) -> Node:
        op_tok = self.advance()
        op = str(op_tok.value)
        rpos = self.tok.pos
        right = self.expr(level)
        what = f"arithmetic operator {op!r}"
        self.numeric(left, pos, what)
        self.numeric(right, rpos, what)
        if isinstance(left, Arith) and left.rest[0][0] in ops:
            return Arith(left.first, (*left.rest, (op, right)), max(left.depth, self.depth(right)))
        return Arith(left, ((op, right),), self.depth(left, right))

    def is_null(self, left: Node) -> Node:
        is_tok = self.advance()
        negated = False
        if self.at_kw("NOT"):
            self.advance()
            negated = True
        if not self.at_kw("NULL"):
            raise self.unexpected("NULL after IS" + (" NOT" if negated else ""))
        self.advance()
        if not isinstance(left, Ident):
            raise self.error("IS NULL applies to an identifier only", is_tok)
        return IsNull(negated, left.name, self.depth(left))

    def postfix(self, left: Node, pos: int, negated: bool) -> Node:
        """BETWEEN, IN and LIKE, after an optional NOT (already consumed)."""
        op_tok = self.advance()
        word = op_tok.value
        if word == "BETWEEN":
            lpos = self.tok.pos
            low = self.expr(_ADD)
            if not self.at_kw("AND"):
                raise self.unexpected("AND in BETWEEN")
            self.advance()
            hpos = self.tok.pos
            high = self.expr(_ADD)
            for node, at in ((left, pos), (low, lpos), (high, hpos)):
                self.comparable(node, at, "BETWEEN")
            return Between(negated, left, low, high, self.depth(left, low, high))
        if not isinstance(left, Ident):
            raise self.error(f"{word} applies to an identifier only", op_tok)
        if word == "IN":
            self.expect_op("(")
            values: list[str] = []
            while True:
                if self.tok.kind != "str":
                    raise self.unexpected("a string literal in the IN list")
                values.append(str(self.advance().value))
                if self.at_op(")"):
                    self.advance()
                    break
                if not self.at_op(","):
                    raise self.unexpected("',' or ')' in the IN list")
                self.advance()
            return In(negated, left.name, frozenset(values), self.depth(left))
        # LIKE
        if self.tok.kind != "str":
            raise self.unexpected("a string literal after LIKE")
        pattern_tok = self.advance()
        pattern = str(pattern_tok.value)
        escape: str | None = None
        if self.at_kw("ESCAPE"):
            self.advance()
            if self.tok.kind != "str":
                raise self.unexpected("a string literal after ESCAPE")
            esc_tok = self.advance()
            escape = str(esc_tok.value)
            if len(escape) != 1:
                raise self.error(f"ESCAPE takes a single character, found {esc_tok.text}", esc_tok)
        try:
            compile_like(pattern, escape)
        except LikePatternError as exc:
            raise self.error(f"invalid LIKE pattern: {exc}", pattern_tok) from None
        return Like(negated, left.name, pattern, escape, self.depth(left))

    def prefix(self, min_level: int) -> Node:
        tok = self.tok
        if tok.kind == "kw" and tok.value == "NOT":
            if min_level > _NOT:
                raise self.error("NOT must be in parentheses here")
            count = 0
            while self.at_kw("NOT"):
                self.advance()
                count += 1
            pos = self.tok.pos
            node = self.condition(self.expr(_EQ), pos)
            for _ in range(count):
                node = Not(node, self.depth(node))
            return node
        if tok.kind == "op" and tok.value in _ADD_OPS:
            signs: list[Token] = []
            while self.at_op("+", "-"):
                signs.append(self.advance())
            pos = self.tok.pos
            # Long.MIN_VALUE is only writable as -9223372036854775808: allow 2**63 after '-'.
            node = self.primary(allow_long_min=signs[-1].value == "-")
            for sign in reversed(signs):
                self.numeric(node, pos, f"unary {sign.value!r}")
                if isinstance(node, Const) and type(node.value) is int and node.value == 2**63:
                    node = Const(LONG_MIN)
                    continue
                node = Negate(node, sign.value == "-", self.depth(node))
            return node
        return self.primary(allow_long_min=False)

    def primary(self, allow_long_min: bool) -> Node:
        tok = self.tok
        kind = tok.kind
        if kind == "ident":
            self.advance()
            return Ident(str(tok.value))
        if kind in ("str", "float"):
            self.advance()
            return Const(tok.value)
        if kind == "int":
            self.advance()
            value = tok.value
            assert isinstance(value, int)
            if tok.decimal and value > LONG_MAX and not (allow_long_min and value == 2**63):
                raise self.error(f"number {tok.text} is out of the range of long", tok)
            return Const(value)
        if kind == "kw":
            word = tok.value
            if word in ("TRUE", "FALSE", "NULL"):
                self.advance()
                return Const({"TRUE": True, "FALSE": False, "NULL": None}[str(word)])
            raise self.error(f"expected an operand, found the reserved word {tok.text!r}")
        if kind == "op" and tok.value == "(":
            self.advance()
            self.nesting += 1
            if self.nesting > self.max_depth:
                raise self.error(
                    f"selector nested too deeply (more than {self.max_depth} levels)", tok
                )
            node = self.expr(_OR)
            if not self.at_op(")"):
                raise self.unexpected("')'")
            self.advance()
            self.nesting -= 1
            return node
        raise self.unexpected("an operand")


def parse(text: str, max_depth: int) -> Node:
    """Parse and type-check a (non-blank) selector.

    Raises:
        InvalidSelector: with the reason and the 1-based position.
    """
    return _Parser(tokenize(text), max_depth).parse()
