"""A paho-mqtt client wrapped for tests: started, connected, its messages in a queue."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V311 = mqtt.MQTTv311
V31 = mqtt.MQTTv31
V5 = mqtt.MQTTv5


class Paho:
    """A started paho client: received messages in a queue, messages and disconnects in `events`
    in the order they happened."""

    def __init__(
        self,
        port: int,
        client_id: str,
        version: Any = V311,
        *,
        clean: bool = True,
        expiry: int | None = None,
        manual_ack: bool = False,
        will: tuple[Any, ...] | None = None,  # for will_set: topic, payload, qos, retain[, props]
        connect_props: Properties | None = None,
        keepalive: int = 60,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean if version != V5 else None,
            protocol=version,
            manual_ack=manual_ack,
            reconnect_on_failure=False,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.events: list[str] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: Any = None
        self.session_present = False
        self.disconnect_reason: Any = None
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if will is not None:
            self.client.will_set(*will)
        props = connect_props
        if version == V5 and expiry is not None:
            props = props or Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        if version == V5:
            self.client.connect("127.0.0.1", port, keepalive, clean_start=clean, properties=props)
        else:
            self.client.connect("127.0.0.1", port, keepalive)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        self.events.append("message " + m.topic)
        self.messages.put(m)

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = (rc, props)
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.events.append("disconnect")
        self.disconnect_reason = rc
        self.disconnected.set()

    def subscribe(self, *args: Any, **kw: Any) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(*args, **kw)
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 0, **kw: Any) -> None:
        info = self.client.publish(topic, payload, qos, **kw)
        info.wait_for_publish(5)

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def nothing(self, wait: float = 0.2) -> bool:
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a device losing power."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def gone(self) -> None:
        """After the broker closed the connection: stop the network thread."""
        self.client.loop_stop()
