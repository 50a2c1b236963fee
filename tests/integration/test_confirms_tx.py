"""Publisher confirms and AMQP transactions, as RabbitMQ implements them.

Confirm bookkeeping (delivery tags, `multiple`, the order of basic.return and basic.ack) is
checked on the wire with `RawAMQP`; the user-facing behaviour with pika's BlockingChannel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.adapters.blocking_connection import BlockingChannel

from tests.helpers import wait_for
from tests.integration.test_connection import RawAMQP


@pytest.fixture
def conn(broker: Any) -> Iterator[pika.BlockingConnection]:
    params = pika.URLParameters(broker.amqp_url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    c = pika.BlockingConnection(params)
    try:
        yield c
    finally:
        if c.is_open:
            c.close()


@pytest.fixture
def rawc(broker: Any) -> Iterator[RawAMQP]:
    """A raw client past connection.open with channel 1 open."""
    with RawAMQP(broker.host, broker.amqp_port) as r:
        r.handshake()
        r.open_channel(1)
        yield r


def ready(ch: BlockingChannel, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def drain(ch: BlockingChannel, queue: str, n: int, timeout: float = 5.0) -> list[tuple[Any, bytes]]:
    """Consume n messages with auto-ack, returning (method, body) pairs."""
    got: list[tuple[Any, bytes]] = []
    if n:
        for method, _, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
            assert method is not None, f"got {len(got)} of {n}"
            got.append((method, body))
            if len(got) == n:
                break
        ch.cancel()
    return got


def collect_confirms(r: RawAMQP, n: int) -> tuple[set[int], set[int], list[Any]]:
    """Read basic.ack/basic.nack frames until all n tags are settled; expand `multiple`."""
    acked: set[int] = set()
    nacked: set[int] = set()
    frames: list[Any] = []
    settled: set[int] = set()
    while len(settled) < n:
        _, f = r.expect((commands.Basic.Ack, commands.Basic.Nack))
        frames.append(f)
        tags = (
            {t for t in range(1, f.delivery_tag + 1) if t not in settled}
            if f.multiple
            else {f.delivery_tag}
        )
        assert tags, f"confirm for tag {f.delivery_tag} settles nothing new"
        assert not tags & settled, "a tag was confirmed twice"
        (acked if isinstance(f, commands.Basic.Ack) else nacked).update(tags)
        settled |= tags
    return acked, nacked, frames


# ---------------------------------------------------------------- confirms on the wire


def test_confirm_select_then_every_publish_is_acked(rawc: RawAMQP) -> None:
    ok = rawc.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    assert isinstance(ok, commands.Confirm.SelectOk)
    q = rawc.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk).queue

    for i in range(200):
        rawc.publish(1, str(i).encode(), q)
    acked, nacked, frames = collect_confirms(rawc, 200)

    assert acked == set(range(1, 201))
    assert not nacked
    tags = [f.delivery_tag for f in frames]
    assert tags == sorted(tags), "confirms arrive in tag order"
    assert tags[-1] == 200
    ok = rawc.call(1, commands.Queue.Declare(queue=q, passive=True), commands.Queue.DeclareOk)
    assert ok.message_count == 200


def test_confirm_select_nowait(rawc: RawAMQP) -> None:
    rawc.send_frame(1, commands.Confirm.Select(nowait=True))
    q = rawc.call(1, commands.Queue.Declare(exclusive=True), commands.Queue.DeclareOk).queue
    for _ in range(5):
        rawc.publish(1, b"x", q)
    acked, nacked, _ = collect_confirms(rawc, 5)
    assert acked == {1, 2, 3, 4, 5}
    assert not nacked


def test_unroutable_mandatory_is_returned_then_acked(rawc: RawAMQP, name: str) -> None:
    rawc.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    rawc.publish(1, b"lost", f"{name}.nobody", exchange="amq.direct", mandatory=True)

    _, ret = rawc.expect(commands.Basic.Return)
    assert (ret.reply_code, ret.reply_text) == (312, "NO_ROUTE")
    assert (ret.exchange, ret.routing_key) == ("amq.direct", f"{name}.nobody")
    _, header = rawc.expect(ContentHeader)
    assert header.body_size == 4
    _, body = rawc.expect(ContentBody)
    assert body.value == b"lost"
    # The ack comes after the return, so a client knows the outcome when the ack lands.
    _, ack = rawc.expect(commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (1, False)


def test_unroutable_without_mandatory_is_just_acked(rawc: RawAMQP, name: str) -> None:
    rawc.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    rawc.publish(1, b"dropped", f"{name}.nobody", exchange="amq.direct")
    _, ack = rawc.expect(commands.Basic.Ack)
    assert ack.delivery_tag == 1


def test_reject_publish_overflow_is_nacked_on_the_wire(rawc: RawAMQP, name: str) -> None:
    rawc.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    q = rawc.call(
        1,
        commands.Queue.Declare(
            queue=f"{name}.full",
            exclusive=True,
            arguments={"x-max-length": 2, "x-overflow": "reject-publish"},
        ),
        commands.Queue.DeclareOk,
    ).queue
    for i in range(4):
        rawc.publish(1, str(i).encode(), q)
    acked, nacked, _ = collect_confirms(rawc, 4)
    assert acked == {1, 2}
    assert nacked == {3, 4}
    ok = rawc.call(1, commands.Queue.Declare(queue=q, passive=True), commands.Queue.DeclareOk)
    assert ok.message_count == 2


# ---------------------------------------------------------------- confirms with pika


def test_pika_confirmed_publishes(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    for i in range(50):
        ch.basic_publish("", q, str(i).encode(), mandatory=True)  # raises on nack or return
    assert ready(ch, q) == 50
    assert [b for _, b in drain(ch, q, 50)] == [str(i).encode() for i in range(50)]


def test_pika_persistent_publish_to_durable_queue_confirmed(
    conn: pika.BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    q = f"{name}.durable"
    ch.queue_declare(q, durable=True)
    try:
        ch.basic_publish("", q, b"kept", pika.BasicProperties(delivery_mode=2))
        assert ready(ch, q) == 1
    finally:
        ch.queue_delete(q)


def test_pika_nack_for_reject_publish(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare(
        f"{name}.full",
        exclusive=True,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    ).method.queue
    ch.basic_publish("", q, b"first")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"second")
    assert ch.is_open
    assert ready(ch, q) == 1
    assert [b for _, b in drain(ch, q, 1)] == [b"first"]


def test_pika_unroutable_mandatory(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as exc:
        ch.basic_publish("amq.direct", f"{name}.nobody", b"lost", mandatory=True)
    (returned,) = exc.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.body == b"lost"
    # Not mandatory: silently dropped, but still confirmed.
    ch.basic_publish("amq.direct", f"{name}.nobody", b"dropped")
    assert ch.is_open


def test_confirm_then_tx_select_is_refused(conn: pika.BlockingConnection) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.tx_select()
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith("PRECONDITION_FAILED - ")
    assert conn.is_open


def test_tx_then_confirm_select_is_refused(conn: pika.BlockingConnection) -> None:
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.confirm_delivery()
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith("PRECONDITION_FAILED - ")
    assert conn.is_open


# ---------------------------------------------------------------- transactions


def test_tx_publishes_appear_only_on_commit(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    watcher = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    assert ready(watcher, q) == 0

    ch.tx_commit()

    assert ready(watcher, q) == 3
    assert [b for _, b in drain(watcher, q, 3)] == [b"0", b"1", b"2"]


def test_tx_rollback_discards_publishes(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"discarded-1")
    ch.basic_publish("", q, b"discarded-2")
    ch.tx_rollback()
    ch.basic_publish("", q, b"kept")
    assert ready(ch, q) == 0
    ch.tx_commit()
    assert ready(ch, q) == 1
    assert [b for _, b in drain(ch, q, 1)] == [b"kept"]


def test_tx_acks_take_effect_on_commit(conn: pika.BlockingConnection, name: str) -> None:
    setup = conn.channel()
    q = setup.queue_declare(f"{name}.q", exclusive=True).method.queue
    setup.basic_publish("", q, b"m1")
    setup.basic_publish("", q, b"m2")
    wait_for(lambda: ready(setup, q) == 2)

    ch = conn.channel()
    ch.tx_select()
    m1, _, b1 = ch.basic_get(q)
    m2, _, b2 = ch.basic_get(q)
    assert (b1, b2) == (b"m1", b"m2")

    ch.basic_ack(m1.delivery_tag)
    ch.tx_rollback()  # the ack of m1 is forgotten; m1 stays unacked
    ch.basic_ack(m2.delivery_tag)
    ch.tx_commit()  # m2 is gone for good
    assert ready(setup, q) == 0

    ch.close()  # m1 was never acked: it comes back, marked redelivered
    wait_for(lambda: ready(setup, q) == 1)
    ((method, body),) = drain(setup, q, 1)
    assert body == b"m1"
    assert method.redelivered is True


def test_tx_nack_requeue_on_commit(conn: pika.BlockingConnection, name: str) -> None:
    setup = conn.channel()
    q = setup.queue_declare(f"{name}.q", exclusive=True).method.queue
    setup.basic_publish("", q, b"again")
    wait_for(lambda: ready(setup, q) == 1)

    ch = conn.channel()
    ch.tx_select()
    method, _, _ = ch.basic_get(q)
    ch.basic_nack(method.delivery_tag, requeue=True)
    assert ready(setup, q) == 0  # not yet: the nack waits for commit
    ch.tx_commit()
    wait_for(lambda: ready(setup, q) == 1)


def test_several_commits_on_one_channel(conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    ch.tx_select()
    for round_ in range(3):
        ch.basic_publish("", q, f"r{round_}".encode())
        ch.tx_commit()
        assert ready(ch, q) == round_ + 1


@pytest.mark.parametrize("method", ["tx_commit", "tx_rollback"])
def test_tx_method_without_select_is_406(conn: pika.BlockingConnection, method: str) -> None:
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        getattr(ch, method)()
    assert exc.value.reply_code == 406
    assert exc.value.reply_text == "PRECONDITION_FAILED - channel is not transactional"
    assert conn.is_open
    assert conn.channel().is_open
