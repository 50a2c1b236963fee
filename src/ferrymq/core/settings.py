"""Settings core and the protocols read; the server fills them from TOML, env and flags."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class User:
    name: str
    password: str
    tags: list[str] = field(default_factory=list)
    vhosts: list[str] | None = None  # None: every vhost


@dataclass
class Settings:
    users: list[User] = field(default_factory=lambda: [User("guest", "guest", ["administrator"])])
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    vhosts: list[str] = field(default_factory=lambda: ["/"])
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    max_connections: int = 0  # 0: unlimited
    consumer_timeout: float | None = None  # seconds; default for queues without x-consumer-timeout
    # memory alarm: a fraction of physical RAM (<= 1.0) or a number of bytes (> 1)
    memory_high_watermark: float = 0.4
    disk_free_limit: int = 50_000_000  # bytes free on the data directory's filesystem
    # paging (queues larger than memory, see docs/store.md): a queue holding more than
    # queue_memory_limit bytes of ready messages in memory (bodies plus ~320 bytes each; 0: no
    # per-queue limit) pages new ones out to the journal; so does every queue while the node
    # holds more than memory_paging_ratio * the memory high watermark
    queue_memory_limit: int = 64 * 1024 * 1024
    memory_paging_ratio: float = 0.5
    # MQTT (None: the adapter's default; see docs/mqtt.md)
    mqtt_exchange: str | None = None
    mqtt_default_vhost: str | None = None
    mqtt_allow_anonymous: bool | None = None
    mqtt_default_user: str | None = None
    mqtt_default_password: str | None = None
    mqtt_max_packet_size: int | None = None
    mqtt_max_packet_size_unauthenticated: int | None = None
    mqtt_topic_alias_maximum: int | None = None
    mqtt_receive_maximum: int | None = None
    mqtt_max_inflight: int | None = None
    mqtt_max_keepalive: int | None = None
    mqtt_max_session_expiry: int | None = None
