"""Durable definitions on disk: one JSON file, replaced atomically (temp, fsync, rename).

Argument tables are stored as their AMQP field-table encoding (base64), so that every value
type and its exact type letter survive a restart: a queue redeclared with the same arguments
after a restart is still equivalent.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from ferrymq.protocols.amqp.tables import decode_table, encode_table
from ferrymq.store.files import replace_atomically

_TAG = "amqp-table:"


def _pack(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for section in ("exchanges", "queues", "bindings"):
        out[section] = [
            {**item, "arguments": _TAG + base64.b64encode(encode_table(item["arguments"])).decode()}
            for item in data.get(section, [])
        ]
    return out


def _unpack(data: dict[str, Any]) -> dict[str, Any]:
    for section in ("exchanges", "queues", "bindings"):
        for item in data.get(section, []):
            args = item.get("arguments")
            if isinstance(args, str) and args.startswith(_TAG):
                item["arguments"] = decode_table(base64.b64decode(args[len(_TAG) :]), 0)[0]
    return data


def save_definitions(path: Path, data: dict[str, Any]) -> None:
    replace_atomically(path, (json.dumps(_pack(data), indent=1, sort_keys=True).encode(),))


def load_definitions(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    data: dict[str, Any] = json.loads(raw)
    return _unpack(data)
