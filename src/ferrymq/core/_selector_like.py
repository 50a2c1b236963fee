"""LIKE patterns for JMS selectors, matched in time linear in the string's length.

Theory of operation
-------------------
A LIKE pattern has three kinds of item: a literal character, ``_`` (exactly one character) and
``%`` (any run of characters, JMS 2.0 section 3.8.1.2). Translating it to a backtracking regex
(``%`` -> ``.*?``), as ActiveMQ Artemis does, makes ``'%a%a%a%a%a%b'`` against a long string of
``a`` cost O(n^k); RabbitMQ's JMS plugin had a CVE for exactly that. We never backtrack:

- the pattern is split on ``%`` into *segments*, each a fixed-length run of literals and ``_``;
- the first segment must match at the start and the last at the end (both checked directly);
- every middle segment is found at its *leftmost* occurrence after the previous one. Because a
  segment has a fixed length, the leftmost occurrence also ends earliest, which leaves the most
  room for the segments still to come, so greedy search is exact for this pattern class and
  every character of the string is scanned at most once per segment search window.

A segment without ``_`` is found with ``str.find`` (CPython's two-way/adaptive search, linear).
A segment with ``_`` is first tried by "find a literal piece, verify the rest" under a work
budget proportional to the text scanned; when the budget runs out (inputs built to defeat it)
the rest of the window is scanned by a bit-parallel Shift-And automaton: one big-int shift and
mask per character, O(n * m/64) word operations for a segment of m items, never worse.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LikePatternError", "compile_like"]

# Sentinel for "_" inside a parsed segment; literal characters are plain 1-char strings.
_ANY = None


class LikePatternError(ValueError):
    """The pattern cannot be compiled; `offset` is the position inside the pattern."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Segment:
    """A fixed-length run of literal characters and ``_`` wildcards (no ``%``)."""

    __slots__ = ("length", "masks", "pieces", "plain", "wild")

    def __init__(self, items: list[str | None]) -> None:
        self.length = len(items)
        # Literal runs with their offsets inside the segment: "ab_c" -> ((0, "ab"), (3, "c")).
        pieces: list[tuple[int, str]] = []
        run: list[str] = []
        for i, item in enumerate(items):
            if item is _ANY:
                if run:
                    pieces.append((i - len(run), "".join(run)))
                    run = []
            else:
                run.append(item)
        if run:
            pieces.append((len(items) - len(run), "".join(run)))
        self.pieces = tuple(pieces)
        # Without "_" the segment is a plain string and str.find/startswith do all the work.
        literals = [item for item in items if item is not _ANY]
        self.plain: str | None = "".join(literals) if len(literals) == len(items) else None
        # Shift-And tables: bit i of masks[c] says item i accepts c; "_" accepts anything.
        wild = 0
        masks: dict[str, int] = {}
        for i, item in enumerate(items):
            if item is _ANY:
                wild |= 1 << i
        for i, item in enumerate(items):
            if item is not _ANY:
                masks[item] = masks.get(item, wild) | (1 << i)
        self.wild = wild
        self.masks = masks

    def match_at(self, s: str, i: int) -> bool:
        """True if the segment matches ``s[i:i+length]`` (the caller checked the length)."""
        if self.plain is not None:
            return s.startswith(self.plain, i)
        return all(s.startswith(piece, i + offset) for offset, piece in self.pieces)

    def find(self, s: str, start: int, end: int) -> int:
        """Leftmost ``i >= start`` with the segment inside ``s[start:end]`` at ``i``, or -1."""
        if self.plain is not None:
            return s.find(self.plain, start, end)
        last = end - self.length  # the last start position that still fits
        if last < start:
            return -1
        if not self.pieces:  # only "_": any window of the right length
            return start
        # Find-and-verify, anchored on the first literal piece, within a budget.
        offset, piece = self.pieces[0]
        budget = 2 * (end - start) + 64
        i = start
        while budget > 0:
            j = s.find(piece, i + offset, last + offset + len(piece))
            if j < 0:
                return -1
            candidate = j - offset
            if self.match_at(s, candidate):
                return candidate
            budget -= self.length
            i = candidate + 1
        return self._shift_and(s, i, end)

    def _shift_and(self, s: str, start: int, end: int) -> int:
        """Bit-parallel NFA scan: linear in ``end - start`` whatever the segment holds."""
        get = self.masks.get
        wild = self.wild
        accept = 1 << (self.length - 1)
        state = 0
        for j in range(start, end):
            state = ((state << 1) | 1) & get(s[j], wild)
            if state & accept:
                return j - self.length + 1
        return -1


def _parse(pattern: str, escape: str | None) -> list[list[str | None]]:
    """Split the pattern on unescaped ``%`` into segments of literals and ``_``."""
    segments: list[list[str | None]] = [[]]
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == escape:
            if i + 1 >= n:
                raise LikePatternError(f"the pattern ends with its escape character {escape!r}", i)
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            segments.append([])
        elif c == "_":
            segments[-1].append(_ANY)
        else:
            segments[-1].append(c)
        i += 1
    return segments


def compile_like(pattern: str, escape: str | None = None) -> Callable[[str], bool]:
    """Compile a LIKE pattern into a function ``str -> bool`` that runs in linear time.

    Raises:
        LikePatternError: the escape character ends the pattern with nothing to escape.
    """
    segments = _parse(pattern, escape)
    if len(segments) == 1:
        only = _Segment(segments[0])
        if only.plain is not None:
            literal = only.plain
            return lambda s: s == literal
        length = only.length
        return lambda s: len(s) == length and only.match_at(s, 0)

    first = _Segment(segments[0])
    last = _Segment(segments[-1])
    # Empty middle segments come from "%%" and mean nothing more than one "%".
    middle = tuple(_Segment(items) for items in segments[1:-1] if items)
    if not middle and first.plain is not None and last.plain is not None:
        prefix, suffix = first.plain, last.plain
        if not suffix:
            return lambda s: s.startswith(prefix)
        if not prefix:
            return lambda s: s.endswith(suffix)
        need = len(prefix) + len(suffix)
        return lambda s: len(s) >= need and s.startswith(prefix) and s.endswith(suffix)
    if len(middle) == 1 and not first.length and not last.length and middle[0].plain:
        needle = middle[0].plain
        return lambda s: needle in s

    minimum = first.length + last.length + sum(seg.length for seg in middle)

    def match(s: str) -> bool:
        n = len(s)
        if n < minimum:
            return False
        end = n - last.length
        # The end is the cheapest place to fail ('%a%a%a%b' on a run of 'a'), so check it first.
        if not last.match_at(s, end) or not first.match_at(s, 0):
            return False
        pos = first.length
        for seg in middle:
            i = seg.find(s, pos, end)
            if i < 0:
                return False
            pos = i + seg.length
        return True

    return match
