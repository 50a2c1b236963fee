"""The client's AMQP engine against the broker's own connection state machine, over bytes.

No socket, no thread, no event loop: the client engine and the server's AMQPConnection (on a
core Broker with a virtual clock) hand each other bytes until both are quiet, as the sans-IO
design intends (STYLE.md: state machines talking through bytes).
"""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands as spec

from ferrymq.client._errors import (
    AuthenticationError,
    ConnectionLostError,
    InvalidDestinationError,
    JMSError,
    SendRefusedError,
)
from ferrymq.client._protocol import ChannelState, Engine, method
from ferrymq.client._waiters import SyncPending
from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.protocols.amqp.codec import encode_ack
from ferrymq.protocols.amqp.connection import AMQPConnection
from ferrymq.protocols.amqp.properties import BasicProperties, encode_properties


class Wire:
    """Both ends of one connection, in memory."""

    def __init__(self, *, frame_max: int = 131072) -> None:
        broker = Broker(VirtualClock())
        broker.config.frame_max = frame_max
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self.lost: list[JMSError] = []
        self.engine = Engine(SyncPending, self.lost.append)
        self.server = AMQPConnection(broker, _ServerEnd(self), from_loopback=True, peer="test")
        self.server_closed = False

    # the client's transport
    def write(self, data: bytes) -> None:
        self.to_server.append(data)

    def close(self) -> None:
        pass

    def pump(self) -> None:
        for _ in range(100):
            if not self.to_server and not self.to_client:
                return
            out, self.to_server = self.to_server, []
            if out:
                self.server.data_received(b"".join(out))
            back, self.to_client = self.to_client, []
            if back:
                self.engine.feed(b"".join(back))
        raise AssertionError("the two ends never went quiet")

    def result(self, pending: Any) -> Any:
        self.pump()
        assert pending.done(), "no reply"
        return pending.result()

    def open(self, username: str = "guest", password: str = "guest", vhost: str = "/") -> Any:
        opening = self.engine.begin(
            self,
            username=username,
            password=password,
            vhost=vhost,
            client_properties=Engine.client_properties("tester", None),
            heartbeat=0,
        )
        return self.result(opening)

    def channel(self) -> ChannelState:
        chan, opened = self.engine.open_channel()
        self.result(opened)
        return chan


class _ServerEnd:
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def write(self, data: bytes) -> None:
        self.wire.to_client.append(data)

    def close(self) -> None:
        self.wire.server_closed = True
        self.wire.engine.transport_lost(None)

    def close_later(self, seconds: float) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def declare(wire: Wire, chan: ChannelState, name: str, **args: Any) -> Any:
    m = method(spec.Queue.Declare, queue=name, durable=False, arguments=args)
    return wire.result(wire.engine.call(chan, m, (spec.Queue.DeclareOk,)))


def test_handshake_negotiates_and_reports_the_server() -> None:
    wire = Wire()
    assert wire.open() is wire.engine
    assert wire.engine.server_properties["product"] == "FerryMQ"
    assert wire.engine.heartbeat == 0  # we asked for none
    assert wire.server.client_properties["client_id"] == "tester"
    assert wire.server.client_properties["connection_name"] == "tester"


def test_bad_credentials_fail_the_opening() -> None:
    wire = Wire()
    opening = wire.engine.begin(
        wire,
        username="guest",
        password="nope",
        vhost="/",
        client_properties={},
        heartbeat=0,
    )
    wire.pump()
    assert isinstance(opening.exception(), AuthenticationError)
    assert not wire.engine.alive


def test_publish_confirm_consume_ack() -> None:
    wire = Wire()
    wire.open()
    chan = wire.channel()
    declare(wire, chan, "q")
    wire.result(wire.engine.call(chan, method(spec.Confirm.Select), (spec.Confirm.SelectOk,)))
    chan.confirm = True
    props = encode_properties(BasicProperties(content_type="text/plain", headers={"k": 1}))
    confirms = [
        wire.engine.publish(chan, "", "q", props, f"m{i}".encode(), want_confirm=i % 2 == 0)
        for i in range(4)
    ]
    wire.pump()
    assert [c is None or c.done() for c in confirms] == [True] * 4
    deliveries: list[tuple[Any, ...]] = []
    chan.on_deliver = lambda *d: deliveries.append(d)
    ok = wire.result(
        wire.engine.call(
            chan,
            method(spec.Basic.Consume, queue="q", consumer_tag="c1", arguments={}),
            (spec.Basic.ConsumeOk,),
        )
    )
    assert ok.consumer_tag == "c1"
    wire.pump()
    assert [d[6] for d in deliveries] == [b"m0", b"m1", b"m2", b"m3"]
    tag, properties = deliveries[-1][1], deliveries[-1][5]
    assert properties == props  # kept raw, as sent
    wire.engine.settle(chan, encode_ack(chan.number, tag, True))
    wire.pump()
    queue = wire.server.vhost.queues["q"]
    assert queue.message_count == 0 and queue.unacked_count == 0


def test_large_bodies_are_split_and_joined() -> None:
    wire = Wire(frame_max=4096)
    wire.open()
    chan = wire.channel()
    declare(wire, chan, "big")
    body = bytes(range(256)) * 100
    wire.engine.publish(chan, "", "big", b"\x00\x00", body, want_confirm=False)
    got = wire.result(
        wire.engine.call(
            chan, method(spec.Basic.Get, queue="big", no_ack=True), (spec.Basic.GetOk,)
        )
    )
    assert got[2] == body


def test_a_channel_error_fails_its_requests_and_spares_the_others() -> None:
    wire = Wire()
    wire.open()
    bad, good = wire.channel(), wire.channel()
    closed: list[JMSError] = []
    bad.on_closed = closed.append
    passive = method(spec.Queue.Declare, queue="missing", passive=True)
    first = wire.engine.call(bad, passive, (spec.Queue.DeclareOk,))
    second = wire.engine.call(bad, passive, (spec.Queue.DeclareOk,))
    wire.pump()
    assert isinstance(first.exception(), InvalidDestinationError)
    assert first.exception().reply_code == 404
    assert isinstance(second.exception(), JMSError)
    assert closed and not bad.open
    assert declare(wire, good, "fine").queue == "fine"
    with pytest.raises(JMSError):
        wire.engine.publish(bad, "", "fine", b"\x00\x00", b"x", want_confirm=False)


def test_a_negative_confirm_fails_the_send() -> None:
    wire = Wire()
    wire.open()
    chan = wire.channel()
    declare(wire, chan, "full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    wire.result(wire.engine.call(chan, method(spec.Confirm.Select), (spec.Confirm.SelectOk,)))
    chan.confirm = True
    first = wire.engine.publish(chan, "", "full", b"\x00\x00", b"1", want_confirm=True)
    second = wire.engine.publish(chan, "", "full", b"\x00\x00", b"2", want_confirm=True)
    wire.pump()
    assert first is not None and first.exception() is None
    assert second is not None and isinstance(second.exception(), SendRefusedError)


def test_close_and_loss() -> None:
    wire = Wire()
    wire.open()
    chan = wire.channel()
    pending = wire.engine.call(chan, method(spec.Basic.Qos, prefetch_count=5), (spec.Basic.QosOk,))
    closing = wire.engine.close()
    wire.pump()
    assert pending.done() and closing.done() and not wire.engine.alive
    assert wire.lost == []  # a close we asked for is not a loss

    wire = Wire()
    wire.open()
    wire.engine.feed(b"\x09garbage-not-a-frame\xce")
    assert not wire.engine.alive
    assert len(wire.lost) == 1 and isinstance(wire.lost[0], ConnectionLostError)
