"""Small files replaced whole (definitions, MQTT sessions, retained messages): after a crash the
old file or the new one is there, never a mix, and a returned call means the new one is on disk."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def replace_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """Write `chunks` as `path`: a temp file beside it, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
