"""paho-mqtt against a live FerryMQ for the session and flow-control items of MQTT: session
takeover (3.1.1 and 5.0), Receive Maximum, the 5.0 Retain Handling options and Server Keep
Alive."""

from __future__ import annotations

from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ferrymq.testing import running_broker
from tests.mqtt_support import V5, V311, Paho

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])
def test_same_client_id_takes_the_session_over(
    port: int, clients: list[Paho], version: Any
) -> None:
    first = Paho(port, "device-7", version, clean=False, expiry=300)
    clients.append(first)
    first.subscribe("cmd/7", 1)

    second = Paho(port, "device-7", version, clean=False, expiry=300)
    clients.append(second)
    assert second.session_present  # the session, with its subscription, moved over
    assert first.disconnected.wait(5), "the old connection was not closed"
    if version == V5:
        assert first.disconnect_reason.value == 0x8E  # DISCONNECT: Session taken over

    sender = Paho(port, "sender", version)
    clients.append(sender)
    sender.publish("cmd/7", b"reboot", 1)
    assert second.get().payload == b"reboot"
    assert first.nothing()


def test_receive_maximum_bounds_unacknowledged_deliveries(port: int, clients: list[Paho]) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 2
    slow = Paho(port, "slow", V5, manual_ack=True, connect_props=props)
    clients.append(slow)
    slow.subscribe("jobs", 1)
    sender = Paho(port, "jobs-sender", V5)
    clients.append(sender)
    for i in range(5):
        sender.publish("jobs", b"job%d" % i, 1)

    first_two = [slow.get(), slow.get()]
    assert [m.payload for m in first_two] == [b"job0", b"job1"]
    assert slow.nothing(0.5)  # a third would exceed the client's Receive Maximum
    slow.client.ack(first_two[0].mid, 1)
    assert slow.get().payload == b"job2"  # one PUBACK, one more in flight
    assert slow.nothing(0.3)
    slow.client.ack(first_two[1].mid, 1)
    assert slow.get().payload == b"job3"


def test_retain_handling_options(port: int, clients: list[Paho]) -> None:
    setter = Paho(port, "setter", V5)
    clients.append(setter)
    setter.publish("status/boiler", b"on", 1, retain=True)

    sub = Paho(port, "watcher", V5)
    clients.append(sub)
    sub.subscribe("status/+", options=SubscribeOptions(qos=1, retainHandling=0))
    assert sub.get().payload == b"on"  # 0: retained messages at every subscribe
    sub.subscribe("status/+", options=SubscribeOptions(qos=1, retainHandling=1))
    assert sub.nothing()  # 1: only when the subscription is new, and it is not
    sub.subscribe("status/#", options=SubscribeOptions(qos=1, retainHandling=1))
    assert sub.get().payload == b"on"  # a new filter: sent

    other = Paho(port, "watcher-2", V5)
    clients.append(other)
    other.subscribe("status/boiler", options=SubscribeOptions(qos=1, retainHandling=2))
    assert other.nothing()  # 2: never at subscribe time
    setter.publish("status/boiler", b"off", 1, retain=True)
    live = other.get()
    assert live.payload == b"off" and not live.retain  # live traffic still flows


def test_server_keep_alive_caps_the_client() -> None:
    with running_broker(mqtt_max_keepalive=5) as broker:
        client = Paho(int(broker.mqtt_port), "pinger", V5, keepalive=60)
        try:
            _, props = client.connack
            assert props.ServerKeepAlive == 5  # the client must use 5 s, not its 60
        finally:
            client.close()
        old = Paho(int(broker.mqtt_port), "pinger-311", V311, keepalive=60)
        try:
            assert old.connected.is_set()  # 3.1.1 has no way to say it; the client keeps 60
        finally:
            old.close()
