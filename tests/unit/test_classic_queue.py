"""The classic queue and vhost routing on the real core, no sockets, on a virtual clock.

The sink below is the protocol's side of core's DeliverySink contract (what an AMQP channel
does): it records deliveries and settles them when the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from ferrymq.core.broker import Broker
from ferrymq.core.clock import VirtualClock
from ferrymq.core.consumer import Consumer
from ferrymq.core.errors import AccessRefused, PreconditionFailed
from ferrymq.core.message import Entry, Message
from ferrymq.core.queue_type import QueueType
from ferrymq.core.vhost import VHost
from ferrymq.protocols.amqp.properties import PROPERTY_CODEC, BasicProperties, encode_properties

OWNER = object()


class Sink:
    def __init__(self, credit: bool = True) -> None:
        self.credit = credit
        self.got: list[tuple[Consumer, Entry, QueueType | None]] = []
        self.cancelled: list[str] = []

    def has_credit(self) -> bool:
        return self.credit

    def deliver(self, consumer: Consumer, entry: Entry, queue: QueueType | None) -> None:
        self.got.append((consumer, entry, queue))

    def consumer_cancelled(self, consumer: Consumer) -> None:
        self.cancelled.append(consumer.tag)

    def bodies(self) -> list[bytes]:
        return [entry.message.body for _, entry, _ in self.got]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def vhost(clock: VirtualClock) -> VHost:
    return Broker(clock).vhosts["/"]


def message(body: bytes, routing_key: str = "", **props: Any) -> Message:
    properties = BasicProperties(**props)
    ttl = None if properties.expiration is None else int(properties.expiration) / 1000
    return Message(
        "", routing_key, encode_properties(properties), body, PROPERTY_CODEC,
        priority=properties.priority or 0, ttl=ttl, properties=properties,
    )  # fmt: skip


def publish(vhost: VHost, queue: str, *bodies: bytes, **props: Any) -> None:
    for body in bodies:
        vhost.publish("", message(body, queue, **props))


def test_fifo_and_requeue_to_the_original_place(vhost: VHost) -> None:
    q = vhost.declare_queue("q", owner=OWNER)
    publish(vhost, "q", b"1", b"2", b"3", b"4")
    sink = Sink()
    consumer = Consumer("c", sink, prefetch=2)
    q.add_consumer(consumer)
    assert sink.bodies() == [b"1", b"2"]  # prefetch 2 holds the rest back
    (_, first, _), (_, second, _) = sink.got
    q.requeue([second], consumer)  # 2 goes back before 3 and 4, marked redelivered
    assert sink.bodies() == [b"1", b"2", b"2"]
    assert sink.got[-1][1].redelivered is True
    q.ack([first], consumer)
    assert sink.bodies()[-1] == b"3"
    assert q.message_count == 1 and q.unacked_count == 2


def test_priorities_and_requeue_keep_their_order(vhost: VHost) -> None:
    q = vhost.declare_queue("p", owner=OWNER, arguments={"x-max-priority": 5})
    for body, prio in ((b"low", 1), (b"high", 9), (b"mid", 3), (b"high2", 5)):
        publish(vhost, "p", body, priority=prio)
    got = [q.get(no_ack=True) for _ in range(4)]
    assert [e.message.body for e in got if e] == [b"high", b"high2", b"mid", b"low"]


def test_ttl_expiry_dead_letters_with_x_death(vhost: VHost, clock: VirtualClock) -> None:
    dlq = vhost.declare_queue("dlq", owner=OWNER)
    vhost.bind_queue("dlq", "amq.direct", "ttl2", None, owner=OWNER)  # the original routing key
    dl_args = {"x-message-ttl": 1000, "x-dead-letter-exchange": "amq.direct"}
    vhost.declare_queue("ttl2", owner=OWNER, arguments=dl_args)
    publish(vhost, "ttl2", b"old")
    clock.advance(0.5)
    assert dlq.message_count == 0
    clock.advance(1)  # the queue's timer expires the head without anyone asking
    entry = dlq.get(no_ack=True)
    assert entry is not None and entry.message.body == b"old"
    (death,) = entry.message.headers["x-death"]  # type: ignore[index]
    assert (death["reason"], death["queue"], death["count"]) == ("expired", "ttl2", 1)
    assert entry.message.headers["x-first-death-reason"] == "expired"  # type: ignore[index]


def test_max_length_overflow_modes(vhost: VHost) -> None:
    dlq = vhost.declare_queue("dropped", owner=OWNER)
    q = vhost.declare_queue(
        "head",
        owner=OWNER,
        arguments={
            "x-max-length": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dropped",
        },
    )
    publish(vhost, "head", b"a", b"b", b"c")
    assert [q.get(True).message.body for _ in range(2)] == [b"b", b"c"]  # type: ignore[union-attr]
    assert dlq.get(True).message.body == b"a"  # type: ignore[union-attr]
    vhost.declare_queue(
        "rej", owner=OWNER, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    assert vhost.publish("", message(b"1", "rej")).refused is False
    assert vhost.publish("", message(b"2", "rej")).refused is True  # the publisher gets a nack


def test_consumer_priority_then_round_robin(vhost: VHost) -> None:
    q = vhost.declare_queue("rr", owner=OWNER)
    low, high_a, high_b = Sink(), Sink(), Sink()
    q.add_consumer(Consumer("low", low, priority=0))
    q.add_consumer(Consumer("a", high_a, priority=5))
    q.add_consumer(Consumer("b", high_b, priority=5))
    publish(vhost, "rr", b"1", b"2", b"3", b"4")
    assert (len(high_a.got), len(high_b.got), len(low.got)) == (2, 2, 0)
    high_a.credit = high_b.credit = False  # the high ones are blocked: the low one gets the rest
    publish(vhost, "rr", b"5")
    assert low.bodies() == [b"5"]


def test_single_active_consumer_hands_over(vhost: VHost) -> None:
    q = vhost.declare_queue("sac", owner=OWNER, arguments={"x-single-active-consumer": True})
    first, second = Sink(), Sink()
    c1 = Consumer("1", first)
    q.add_consumer(c1)
    q.add_consumer(Consumer("2", second))
    publish(vhost, "sac", b"a", b"b")
    assert (first.bodies(), second.bodies()) == ([b"a", b"b"], [])
    q.remove_consumer(c1)
    publish(vhost, "sac", b"c")
    assert second.bodies() == [b"c"]


def test_exclusive_consumer_refuses_others(vhost: VHost) -> None:
    q = vhost.declare_queue("x", owner=OWNER)
    q.add_consumer(Consumer("only", Sink(), exclusive=True))
    with pytest.raises(AccessRefused, match="in exclusive use"):
        q.add_consumer(Consumer("other", Sink()))


def test_filters_leave_messages_for_others_and_groups_stick(vhost: VHost) -> None:
    q = vhost.declare_queue("sel", owner=OWNER)
    evens, odds = Sink(), Sink()
    even = Consumer("even", evens)
    even.filter = lambda e: int(e.message.body) % 2 == 0
    q.add_consumer(even)
    publish(vhost, "sel", b"1", b"2", b"3", b"4")
    assert evens.bodies() == [b"2", b"4"]
    assert q.message_count == 2  # 1 and 3 wait for a consumer that takes them
    q.add_consumer(Consumer("odd", odds))
    assert odds.bodies() == [b"1", b"3"]


def test_delivery_limit_dead_letters_poison_messages(vhost: VHost) -> None:
    dlq = vhost.declare_queue("poison", owner=OWNER)
    q = vhost.declare_queue(
        "work",
        owner=OWNER,
        arguments={
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "poison",
        },
    )
    publish(vhost, "work", b"bad")
    for _ in range(2):
        entry = q.get(no_ack=False)
        assert entry is not None
        q.requeue([entry], None)
    assert q.message_count == 0
    (death,) = dlq.get(True).message.headers["x-death"]  # type: ignore[union-attr,index]
    assert death["reason"] == "delivery_limit"


def test_x_expires_deletes_an_unused_queue(vhost: VHost, clock: VirtualClock) -> None:
    vhost.declare_queue("temp", owner=OWNER, arguments={"x-expires": 10_000})
    clock.advance(9)
    vhost.declare_queue("temp", owner=OWNER, passive=True)  # a use restarts the timer
    clock.advance(9)
    assert "temp" in vhost.queues
    clock.advance(2)
    assert "temp" not in vhost.queues


def test_queue_delete_cancels_consumers(vhost: VHost) -> None:
    q = vhost.declare_queue("gone", owner=OWNER)
    sink = Sink()
    q.add_consumer(Consumer("c", sink))
    assert vhost.delete_queue("gone", owner=OWNER) == 0
    assert sink.cancelled == ["c"]


def test_bad_arguments_are_refused_with_rabbitmq_texts(vhost: VHost) -> None:
    with pytest.raises(PreconditionFailed, match=r"invalid arg 'x-max-length'.*unacceptable_type"):
        vhost.declare_queue("bad", owner=OWNER, arguments={"x-max-length": "ten"})
    vhost.declare_queue("ok", owner=OWNER, arguments={"x-message-ttl": 1000})
    with pytest.raises(PreconditionFailed, match="inequivalent arg 'x-message-ttl'"):
        vhost.declare_queue("ok", owner=OWNER, arguments={"x-message-ttl": 2000})
