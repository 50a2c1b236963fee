"""The broker: vhosts, users and connection accounting. No protocol, no I/O."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from ferrymq.core.alarms import Alarms
from ferrymq.core.clock import Clock
from ferrymq.core.errors import AccessRefused, NotAllowed
from ferrymq.core.persistence import MessageStore
from ferrymq.core.settings import Settings, User
from ferrymq.core.vhost import VHost


class Broker:
    def __init__(self, clock: Clock, config: Settings | None = None) -> None:
        self.clock = clock
        self.config = config or Settings()
        self.vhosts: dict[str, VHost] = {}
        for name in self.config.vhosts:
            self.add_vhost(name)
        self._users = {u.name: u for u in self.config.users}
        self.connections = 0
        self.alarms = Alarms()
        self._client_ids: dict[tuple[str, str], object] = {}
        self.store: MessageStore | None = None
        # called after every change to durable definitions (the server saves them)
        self.on_definitions_changed: Callable[[], None] | None = None

    def add_vhost(self, name: str) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(self, name)
        return vhost

    def authenticate(self, username: str, password: str, *, from_loopback: bool) -> User:
        """Check credentials; refuse loopback-only users connecting from elsewhere."""
        user = self._users.get(username)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise AccessRefused(
                "Login was refused using authentication mechanism PLAIN. For details see the "
                "broker logfile."
            )
        if username in self.config.loopback_users and not from_loopback:
            raise AccessRefused(f"User '{username}' can only connect via localhost")
        return user

    def open_vhost(self, user: User, name: str) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None or (user.vhosts is not None and name not in user.vhosts):
            raise NotAllowed(f"access to vhost '{name}' refused for user '{user.name}'")
        return vhost

    def connection_opened(self) -> None:
        limit = self.config.max_connections
        if limit and self.connections >= limit:
            raise NotAllowed(f"connection refused: node connection limit ({limit}) is reached")
        self.connections += 1

    def connection_closed(self) -> None:
        self.connections -= 1

    def message_bytes(self) -> int:
        """Bytes of message bodies held in queues, ready or unacked (for the memory alarm)."""
        total = 0
        for vhost in self.vhosts.values():
            for queue in vhost.queues.values():
                total += queue.memory_bytes
        return total

    def definitions_changed(self) -> None:
        if self.on_definitions_changed is not None:
            self.on_definitions_changed()

    def claim_client_id(self, vhost: str, client_id: str, owner: object) -> None:
        """JMS: a client id is used by one connection at a time within a vhost."""
        holder = self._client_ids.setdefault((vhost, client_id), owner)
        if holder is not owner:
            raise NotAllowed(f"client id '{client_id}' is already in use in vhost '{vhost}'")

    def release_client_id(self, vhost: str, client_id: str, owner: object) -> None:
        if self._client_ids.get((vhost, client_id)) is owner:
            del self._client_ids[(vhost, client_id)]
