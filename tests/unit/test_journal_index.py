"""The journal's compact index behaves exactly as the dict it replaces, and stays small."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from ferrymq.store._index import CHUNK, CompactIndex
from ferrymq.store._model import Entry, IndexValue, Location

ids = st.integers(min_value=1, max_value=5 * CHUNK)
locations = st.builds(
    Location,
    st.integers(min_value=1, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**33),  # past 32 bits: kept loose, still right
    st.integers(min_value=0, max_value=2**32 + 5),
)
values = st.one_of(locations, st.builds(lambda loc: Entry(loc, ["a", "b"], None), locations))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), ids, values),
        st.tuples(st.just("add"), ids, values),
        st.tuples(st.just("del"), ids, st.none()),
        st.tuples(st.just("pop"), ids, st.none()),
        st.tuples(st.just("drain"), ids, st.none()),
    ),
    max_size=200,
)


def _same(a: IndexValue | None, b: IndexValue | None) -> bool:
    if isinstance(a, Entry) or isinstance(b, Entry):
        return a is b
    return a == b


@settings(max_examples=300, deadline=None)
@given(ops)
def test_it_behaves_as_a_dict(script: list[tuple[str, int, IndexValue | None]]) -> None:
    index = CompactIndex()
    model: dict[int, IndexValue] = {}
    for op, msg_id, value in script:
        if op == "set":
            assert value is not None
            index[msg_id] = value
            model[msg_id] = value
        elif op == "add":
            assert value is not None
            assert index.add_new(msg_id, value) == (msg_id not in model)
            model.setdefault(msg_id, value)
        elif op == "del":
            if msg_id in model:
                del index[msg_id]
                del model[msg_id]
            else:
                try:
                    del index[msg_id]
                except KeyError:
                    pass
                else:
                    raise AssertionError("del of a missing id must raise KeyError")
        elif op == "pop":
            assert _same(index.pop(msg_id), model.pop(msg_id, None))
        else:  # settle a whole run around msg_id, as a consumer draining a queue does
            base = msg_id - msg_id % CHUNK
            for k in range(base, base + CHUNK - 3):
                index.pop(k)
                model.pop(k, None)
        assert len(index) == len(model)
    for msg_id, value in model.items():
        assert msg_id in index
        assert _same(index.get(msg_id), value)
    assert sorted(index) == sorted(model)
    for msg_id in range(1, 5 * CHUNK + 1, 97):
        if msg_id not in model:
            assert index.get(msg_id) is None


def test_a_backlog_costs_about_twelve_bytes_a_message() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = CompactIndex()
        n = 200_000
        for msg_id in range(1, n + 1):
            index[msg_id] = Location(7 + msg_id // 60_000, 100 + 1100 * (msg_id % 60_000), 1024)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / n < 16, used / n
    assert index.get(123_456) == Location(9, 100 + 1100 * 3456, 1024)


def test_consumed_runs_free_their_arrays_and_keep_the_few_survivors() -> None:
    index = CompactIndex()
    for msg_id in range(1, 10 * CHUNK):
        index[msg_id] = Location(1, msg_id * 10, 5)
    survivors = {3, CHUNK + 17, 5 * CHUNK + 1}
    for msg_id in range(1, 9 * CHUNK):
        if msg_id not in survivors:
            del index[msg_id]
    assert index.footprint() < 3 * CHUNK * 12  # the drained chunks are gone
    for msg_id in survivors:
        assert index.get(msg_id) == Location(1, msg_id * 10, 5)
    assert len(index) == len(survivors) + CHUNK


def test_ascending_walk_survives_settling_what_it_passed() -> None:
    """Recovery walks the ids in order while settling (deleting) the ones it has passed."""
    index = CompactIndex()
    ids = [i for i in range(1, 6 * CHUNK) if i % 7]  # holes, several chunks
    for msg_id in ids:
        index[msg_id] = Location(2, msg_id, 1)
    entries = {3 * CHUNK + 5: Entry(Location(3, 1, 1), ["a", "b"], None)}
    for msg_id, entry in entries.items():
        index[msg_id] = entry
    expected = sorted(set(ids) | set(entries))
    index.hold = True
    seen = []
    for msg_id in index.ascending():
        seen.append(msg_id)
        if msg_id % 97:  # settle most of them as they pass: chunks go sparse under the walk
            del index[msg_id]
    index.hold = False
    index.tidy()
    assert seen == expected
    left = [i for i in expected if not i % 97]
    assert sorted(index) == left
    assert all(index.get(i) is not None for i in left)
    assert index.footprint() < 2 * CHUNK * 12  # the sparse chunks were freed after the walk
