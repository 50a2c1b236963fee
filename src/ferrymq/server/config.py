"""Node configuration: defaults < TOML file (--config) < FERRYMQ_* environment < command line.

Every top-level scalar key of the TOML file has an environment variable of the same name in
upper case with the FERRYMQ_ prefix (bind -> FERRYMQ_BIND). Users are a TOML array of tables:

    [[users]]
    name = "app"
    password = "secret"
    tags = ["administrator"]
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferrymq.core.settings import Settings, User


class ConfigError(Exception):
    """A configuration that cannot be used; the message is shown to the operator as is."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ferrymq"


@dataclass
class Config:
    bind: str = "127.0.0.1"
    amqp_port: int = 5672
    mqtt_port: int | None = 1883  # None: no MQTT listener
    data_dir: Path = field(default_factory=default_data_dir)
    log_level: str = "info"
    # store: "always" (a confirm means on disk), "interval" (fsync every fsync_interval_ms),
    # "off" (the OS decides; a confirm means written to the kernel)
    fsync: str = "always"
    fsync_interval_ms: int = 200
    segment_size: int = 64 * 1024 * 1024
    settings: Settings = field(default_factory=Settings)


_NODE_KEYS = {
    "bind": str,
    "amqp_port": int,
    "mqtt_port": int,
    "data_dir": Path,
    "log_level": str,
    "fsync": str,
    "fsync_interval_ms": int,
    "segment_size": int,
}
_MQTT_TYPES: dict[str, type] = {
    "mqtt_exchange": str,
    "mqtt_default_vhost": str,
    "mqtt_allow_anonymous": bool,
    "mqtt_default_user": str,
    "mqtt_default_password": str,
    "mqtt_max_packet_size": int,
    "mqtt_max_packet_size_unauthenticated": int,
    "mqtt_topic_alias_maximum": int,
    "mqtt_receive_maximum": int,
    "mqtt_max_inflight": int,
    "mqtt_max_keepalive": int,
    "mqtt_max_session_expiry": int,
}
_TYPES: dict[str, type] = {
    **_MQTT_TYPES,
    "frame_max": int,
    "channel_max": int,
    "heartbeat": int,
    "max_message_size": int,
    "max_connections": int,
    "consumer_timeout": float,
    "memory_high_watermark": float,
    "disk_free_limit": int,
    "queue_memory_limit": int,
    "memory_paging_ratio": float,
}


def _coerce(key: str, value: Any, kind: type, source: str) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int and isinstance(value, bool):
            raise ValueError
        if kind is int and isinstance(value, str):
            return int(value, 0)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: setting '{key}' must be {kind.__name__}, got {value!r}"
        ) from None


def _apply(config: Config, key: str, value: Any, source: str) -> None:
    if key in _NODE_KEYS:
        coerced = _coerce(key, value, _NODE_KEYS[key], source)
        if key == "fsync" and coerced not in ("always", "interval", "off"):
            raise ConfigError(f"{source}: fsync must be always, interval or off, got {value!r}")
        setattr(config, key, coerced)
    elif key in _TYPES:
        setattr(config.settings, key, _coerce(key, value, _TYPES[key], source))
    elif key == "users":
        if not isinstance(value, list):
            raise ConfigError(f"{source}: 'users' must be an array of tables")
        users = []
        for item in value:
            if not isinstance(item, dict) or "name" not in item or "password" not in item:
                raise ConfigError(f"{source}: every user needs a name and a password")
            users.append(
                User(
                    str(item["name"]),
                    str(item["password"]),
                    list(item.get("tags", [])),
                    item.get("vhosts"),
                )
            )
        config.settings.users = users
    elif key in ("loopback_users", "vhosts"):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be an array of strings")
        setattr(config.settings, key, [str(v) for v in value])
    else:
        raise ConfigError(f"{source}: unknown setting '{key}'")


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the node's configuration from its three sources."""
    config = Config()
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot parse config file {path}: {exc}") from None
        for key, value in data.items():
            _apply(config, key, value, str(path))
    env = os.environ if environ is None else environ
    for key in (*_NODE_KEYS, *_TYPES):
        name = "FERRYMQ_" + key.upper()
        if name in env:
            _apply(config, key, env[name], name)
    for key, value in (overrides or {}).items():
        if value is not None:
            _apply(config, key, value, "command line")
    return config
