"""The journal's index, msg_id -> where the message is, in about 12 bytes per queued message.

Why not a dict: a dict of `Location` objects costs about 130 bytes per message (the dict slot,
the int key, the object and its ints), which is 1.3 GB for a backlog of ten million. Message ids
are handed out in increasing order and a backlog is a dense run of them, so the common value (a
message in one queue without delivered marks, see `Entry`) is kept in fixed-size chunks of two
arrays indexed by `msg_id % CHUNK`: the packed (segment, offset) and the body length. Everything
else (multi-queue messages, delivered marks: a bounded, in-flight set) and the few survivors of a
mostly-settled chunk stay in an ordinary dict (`_loose`), so a chunk's arrays are freed once its
run is consumed even if a few of its messages stay queued for a long time.

`get` builds a fresh `Location` for a chunk slot: compare locations with ==, never `is`.
The caller (journal.py) holds the journal lock around every call; nothing here locks.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from ferrymq.store._model import Entry, IndexValue, Location

CHUNK_BITS = 12
CHUNK = 1 << CHUNK_BITS  # ids per chunk: 48 KiB of arrays when full
_MASK = CHUNK - 1
_SPARSE = 64  # a chunk (not the newest) down to this many live slots moves them to _loose
_OFFSET_BITS = 32
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
MAX_OFFSET = _OFFSET_MASK  # segment offsets and body lengths must fit 32 bits
_ZEROS_Q = bytes(8 * CHUNK)
_ZEROS_I = bytes(4 * CHUNK)


class _Chunk:
    __slots__ = ("count", "lengths", "places")

    def __init__(self) -> None:
        self.places = array("Q", _ZEROS_Q)  # segment << 32 | offset; 0 = empty
        self.lengths = array("I", _ZEROS_I)
        self.count = 0


class CompactIndex:
    """A mapping msg_id -> Location | Entry (the subset of dict's API the journal uses)."""

    __slots__ = ("_chunks", "_len", "_loose", "_newest", "hold")

    def __init__(self) -> None:
        self._chunks: dict[int, _Chunk] = {}
        self._loose: dict[int, IndexValue] = {}
        self._len = 0
        self._newest = 0  # highest chunk number ever filled: never made sparse
        self.hold = False  # while True, no chunk is dissolved (ascending() is walking them)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, msg_id: int) -> bool:
        return self.get(msg_id) is not None

    def get(self, msg_id: int) -> IndexValue | None:
        value = self._loose.get(msg_id)
        if value is not None:
            return value
        chunk = self._chunks.get(msg_id >> CHUNK_BITS)
        if chunk is None:
            return None
        slot = msg_id & _MASK
        place = chunk.places[slot]
        if not place:
            return None
        return Location(place >> _OFFSET_BITS, place & _OFFSET_MASK, chunk.lengths[slot])

    def add_new(self, msg_id: int, value: IndexValue) -> bool:
        """Insert msg_id; False (and no change) if it is already there."""
        if msg_id in self._loose:
            return False
        chunk = self._chunks.get(msg_id >> CHUNK_BITS)
        if chunk is not None and chunk.places[msg_id & _MASK]:
            return False
        self._put(msg_id, value)
        self._len += 1
        return True

    def put_new_location(self, msg_id: int, segment: int, offset: int, length: int) -> bool:
        """Recovery's fast path: store a bare Location for an id not in the index yet.

        False (and no change) when the id is there already or the value belongs in the dict;
        the caller then takes the general path.
        """
        if msg_id in self._loose or offset > MAX_OFFSET or length > MAX_OFFSET:
            return False
        number = msg_id >> CHUNK_BITS
        chunk = self._chunks.get(number)
        if chunk is None:
            if number < self._newest:
                return False
            chunk = self._chunks[number] = _Chunk()
            self._newest = number
        slot = msg_id & _MASK
        places = chunk.places
        if places[slot]:
            return False
        places[slot] = (segment << _OFFSET_BITS) | offset
        chunk.lengths[slot] = length
        chunk.count += 1
        self._len += 1
        return True

    def __setitem__(self, msg_id: int, value: IndexValue) -> None:
        if self._remove(msg_id) is None:
            self._len += 1
        self._put(msg_id, value)

    def __delitem__(self, msg_id: int) -> None:
        if self._remove(msg_id) is None:
            raise KeyError(msg_id)
        self._len -= 1

    def pop(self, msg_id: int, default: IndexValue | None = None) -> IndexValue | None:
        value = self._remove(msg_id)
        if value is None:
            return default
        self._len -= 1
        return value

    def __iter__(self) -> Iterator[int]:
        """Every msg_id, loose ones first (for tools and tests; not ordered)."""
        yield from list(self._loose)
        for number, chunk in list(self._chunks.items()):
            base = number << CHUNK_BITS
            places = chunk.places
            for slot in range(CHUNK):
                if places[slot]:
                    yield base + slot

    def ascending(self) -> Iterator[int]:
        """Every msg_id in increasing order, while the caller may remove ids it has passed.

        The caller sets `hold` for the walk (and calls `tidy` after): a chunk dissolved under
        the walk would move ids it has not reached yet into the dict behind it.
        """
        loose = sorted(self._loose)
        n = len(loose)
        i = 0
        for number in sorted(self._chunks):
            chunk = self._chunks.get(number)
            if chunk is None:
                continue
            base = number << CHUNK_BITS
            places = chunk.places
            for slot in range(CHUNK):
                if places[slot]:
                    msg_id = base + slot
                    while i < n and loose[i] < msg_id:
                        yield loose[i]
                        i += 1
                    yield msg_id
        while i < n:
            yield loose[i]
            i += 1

    def tidy(self) -> None:
        """Dissolve the sparse chunks a hold kept (see ascending)."""
        for number, chunk in list(self._chunks.items()):
            if chunk.count <= _SPARSE and number < self._newest:
                self._dissolve(number, chunk)

    def footprint(self) -> int:
        """Approximate bytes held (for stats): arrays plus about 100 per loose value."""
        return len(self._chunks) * CHUNK * 12 + len(self._loose) * 100

    # -- internals -----------------------------------------------------------------------------

    def _put(self, msg_id: int, value: IndexValue) -> None:
        if type(value) is not Location or value.offset > MAX_OFFSET or value.length > MAX_OFFSET:
            self._loose[msg_id] = value
            return
        number = msg_id >> CHUNK_BITS
        chunk = self._chunks.get(number)
        if chunk is None:
            if number < self._newest:
                self._loose[msg_id] = value  # an old run, long since mostly consumed
                return
            chunk = self._chunks[number] = _Chunk()
            self._newest = number
        slot = msg_id & _MASK
        chunk.places[slot] = (value.segment << _OFFSET_BITS) | value.offset
        chunk.lengths[slot] = value.length
        chunk.count += 1

    def _remove(self, msg_id: int) -> IndexValue | None:
        """Take msg_id out (without touching _len); its value, or None if absent."""
        value = self._loose.pop(msg_id, None)
        if value is not None:
            return value
        number = msg_id >> CHUNK_BITS
        chunk = self._chunks.get(number)
        if chunk is None:
            return None
        slot = msg_id & _MASK
        places = chunk.places
        place = places[slot]
        if not place:
            return None
        loc = Location(place >> _OFFSET_BITS, place & _OFFSET_MASK, chunk.lengths[slot])
        places[slot] = 0
        chunk.count -= 1
        if chunk.count <= _SPARSE and number < self._newest and not self.hold:
            self._dissolve(number, chunk)
        return loc

    def _dissolve(self, number: int, chunk: _Chunk) -> None:
        """A mostly consumed chunk: keep its survivors in the dict and free the arrays."""
        del self._chunks[number]
        if not chunk.count:
            return
        base = number << CHUNK_BITS
        places, lengths, loose = chunk.places, chunk.lengths, self._loose
        for slot in range(CHUNK):
            place = places[slot]
            if place:
                loose[base + slot] = Location(
                    place >> _OFFSET_BITS, place & _OFFSET_MASK, lengths[slot]
                )


__all__ = ["CHUNK", "CompactIndex", "Entry"]
