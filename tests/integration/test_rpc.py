"""Request/reply over AMQP: RabbitMQ's direct reply-to and the classic reply-queue pattern.

Direct reply-to (`amq.rabbitmq.reply-to`) is a pseudo-queue: the requester consumes from it in
no-ack mode and publishes with that name as reply_to; the broker rewrites reply_to to an opaque
address that routes straight back to that consumer, with no real queue involved.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.helpers import wait_for

REPLY_TO = "amq.rabbitmq.reply-to"


def params(broker: Any) -> pika.URLParameters:
    p = pika.URLParameters(broker.amqp_url)
    p.socket_timeout = 5
    p.blocked_connection_timeout = 10
    return p


@pytest.fixture
def conn(broker: Any) -> Iterator[pika.BlockingConnection]:
    c = pika.BlockingConnection(params(broker))
    try:
        yield c
    finally:
        if c.is_open:
            c.close()


class RpcServer(threading.Thread):
    """A pika RPC server on its own connection and thread, answering `handler(body)`."""

    def __init__(self, broker: Any, queue: str, handler: Callable[[bytes], bytes]) -> None:
        super().__init__(daemon=True)
        self.broker = broker
        self.queue = queue
        self.handler = handler
        self.ready = threading.Event()
        self.seen_reply_to: list[str] = []
        self.error: BaseException | None = None
        self.conn: pika.BlockingConnection | None = None
        self.ch: BlockingChannel | None = None

    def run(self) -> None:
        try:
            self.conn = pika.BlockingConnection(params(self.broker))
            self.ch = self.conn.channel()
            # Exclusive to the server, yet any connection may publish to it.
            self.ch.queue_declare(self.queue, exclusive=True)
            self.ch.basic_qos(prefetch_count=20)
            self.ch.basic_consume(self.queue, self._on_request)
            self.ready.set()
            self.ch.start_consuming()
            self.conn.close()
        except BaseException as e:
            self.error = e
            self.ready.set()

    def _on_request(
        self, ch: BlockingChannel, method: Any, props: pika.BasicProperties, body: bytes
    ) -> None:
        self.seen_reply_to.append(props.reply_to)
        ch.basic_publish(
            "",
            props.reply_to,
            self.handler(body),
            pika.BasicProperties(correlation_id=props.correlation_id),
        )
        ch.basic_ack(method.delivery_tag)

    def __enter__(self) -> RpcServer:
        self.start()
        assert self.ready.wait(10), "RPC server did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None and self.ch is not None and self.conn.is_open:
            try:
                self.conn.add_callback_threadsafe(self.ch.stop_consuming)
            except pika.exceptions.AMQPError:
                pass
        self.join(10)
        assert not self.is_alive(), "RPC server thread did not stop"


class RpcClient:
    """Collects replies by correlation id on one channel."""

    def __init__(self, conn: pika.BlockingConnection, reply_queue: str = REPLY_TO) -> None:
        self.conn = conn
        self.ch = conn.channel()
        self.reply_queue = reply_queue
        self.replies: dict[str, tuple[Any, pika.BasicProperties, bytes]] = {}
        self.ch.basic_consume(reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(
        self, ch: BlockingChannel, method: Any, props: pika.BasicProperties, body: bytes
    ) -> None:
        self.replies[props.correlation_id] = (method, props, body)

    def send(self, queue: str, body: bytes) -> str:
        cid = uuid.uuid4().hex
        self.ch.basic_publish(
            "",
            queue,
            body,
            pika.BasicProperties(reply_to=self.reply_queue, correlation_id=cid),
        )
        return cid

    def wait(self, cids: list[str], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(c in self.replies for c in cids):
            assert time.monotonic() < deadline, (
                f"{sum(c in self.replies for c in cids)} of {len(cids)} replies"
            )
            self.conn.process_data_events(time_limit=0.05)

    def call(self, queue: str, body: bytes) -> bytes:
        cid = self.send(queue, body)
        self.wait([cid])
        return self.replies[cid][2]


def double(body: bytes) -> bytes:
    return str(int(body) * 2).encode()


def test_direct_reply_to_round_trip(broker: Any, conn: pika.BlockingConnection, name: str) -> None:
    with RpcServer(broker, f"{name}.rpc", double) as server:
        client = RpcClient(conn)
        assert client.call(f"{name}.rpc", b"21") == b"42"
        cid = next(iter(client.replies))
        method, props, _ = client.replies[cid]
    # The server saw an opaque address, not the pseudo-queue's own name.
    (seen,) = server.seen_reply_to
    assert seen.startswith(REPLY_TO + ".")
    assert len(seen) > len(REPLY_TO) + 1
    assert props.correlation_id == cid
    assert method.exchange == ""
    assert method.routing_key == seen


def test_100_sequential_calls(broker: Any, conn: pika.BlockingConnection, name: str) -> None:
    with RpcServer(broker, f"{name}.rpc", double):
        client = RpcClient(conn)
        results = [client.call(f"{name}.rpc", str(i).encode()) for i in range(100)]
    assert results == [str(2 * i).encode() for i in range(100)]


def test_100_pipelined_calls(broker: Any, conn: pika.BlockingConnection, name: str) -> None:
    with RpcServer(broker, f"{name}.rpc", double):
        client = RpcClient(conn)
        cids = [client.send(f"{name}.rpc", str(i).encode()) for i in range(100)]
        client.wait(cids)
    assert [client.replies[c][2] for c in cids] == [str(2 * i).encode() for i in range(100)]


def test_classic_reply_queue_rpc(broker: Any, conn: pika.BlockingConnection, name: str) -> None:
    """The tutorial pattern: an exclusive server-named queue as reply_to."""
    reply_q = conn.channel().queue_declare("", exclusive=True).method.queue
    assert reply_q.startswith("amq.gen-")
    with RpcServer(broker, f"{name}.rpc", double) as server:
        client = RpcClient(conn, reply_queue=reply_q)
        results = [client.call(f"{name}.rpc", str(i).encode()) for i in range(20)]
    assert results == [str(2 * i).encode() for i in range(20)]
    assert set(server.seen_reply_to) == {reply_q}


def test_reply_to_consumer_must_be_no_ack(conn: pika.BlockingConnection) -> None:
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"
    assert conn.is_open


def test_publish_with_reply_to_before_consuming_is_406(
    conn: pika.BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    q = ch.queue_declare(f"{name}.q", exclusive=True).method.queue
    ch.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"
    assert conn.is_open
    assert conn.channel().queue_declare(q, passive=True).method.message_count == 0


def test_reply_to_is_per_channel(conn: pika.BlockingConnection, name: str) -> None:
    """Consuming on one channel does not enable reply_to on another."""
    consumer_ch = conn.channel()
    consumer_ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    other = conn.channel()
    q = other.queue_declare(f"{name}.q", exclusive=True).method.queue
    other.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        other.queue_declare(q, passive=True)
    assert exc.value.reply_code == 406
    assert consumer_ch.is_open


def test_reply_to_pseudo_queue_declares_passively(conn: pika.BlockingConnection) -> None:
    ok = conn.channel().queue_declare(REPLY_TO, passive=True)
    assert ok.method.queue == REPLY_TO
    assert ok.method.message_count == 0


def test_reply_after_requester_left_is_dropped(
    broker: Any, conn: pika.BlockingConnection, name: str
) -> None:
    """A reply to a vanished requester disappears; the replier's channel is unharmed."""
    requester = pika.BlockingConnection(params(broker))
    try:
        rch = requester.channel()
        rch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
        q = rch.queue_declare(f"{name}.q").method.queue
        rch.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
        wait_for(lambda: rch.queue_declare(q, passive=True).method.message_count == 1)
    finally:
        requester.close()

    ch = conn.channel()
    try:
        method, props, _ = ch.basic_get(q, auto_ack=True)
        assert method is not None
        ch.basic_publish("", props.reply_to, b"too late")
        assert ch.queue_declare(q, passive=True).method.message_count == 0
        assert ch.is_open
    finally:
        ch.queue_delete(q)
