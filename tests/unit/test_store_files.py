"""replace_atomically: the new file whole, or the old one untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferrymq.store.files import replace_atomically


def test_chunks_become_the_file_and_no_temp_is_left(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    replace_atomically(target, (b"new ", b"", b"content"))
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_failure_while_writing_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"half of the new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_atomically(target, chunks())
    assert target.read_bytes() == b"old"
