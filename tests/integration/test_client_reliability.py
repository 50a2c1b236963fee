"""Reliability in the client: lost connections surface, reconnects restore, sends are confirmed.

Connections are broken from the broker's side: over amqp:// the server's sockets are aborted
(as a crashed network would), over vm:// the broker force-closes the connection (320).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferrymq.client import (
    AuthenticationError,
    Connection,
    ConnectionLostError,
    DeliveryMode,
    JMSError,
    ReconnectPolicy,
    SendRefusedError,
    Topic,
    TransactionRolledBackError,
    connect,
    vm,
)
from ferrymq.testing import running_broker

FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.2, max_wait=10)


@pytest.fixture(params=["amqp", "vm"])
def url(request: pytest.FixtureRequest, broker: Any) -> Iterator[str]:
    if not hasattr(broker, "loop"):
        pytest.skip("breaks connections from inside the in-process broker")
    if request.param == "amqp":
        yield broker.amqp_url
        return
    name = f"test-{uuid.uuid4().hex[:8]}"
    vm.register(name, broker.broker, broker.loop)
    yield f"vm://{name}"
    vm.unregister(name)


def break_connection(broker: Any, conn: Connection) -> None:
    """Cut `conn` from the broker's side."""
    transport = conn._core.transport
    if isinstance(transport, vm.VMTransport):
        server = transport._conn
        assert server is not None
        broker.call(server.shutdown)
        return

    def abort_all() -> None:
        for protocol in list(broker.node.connections):
            if protocol.transport is not None:
                protocol.transport.abort()

    broker.call(abort_all)


def test_a_lost_connection_reaches_the_listener_and_blocked_calls(
    url: str, broker: Any, name: str
) -> None:
    errors: list[JMSError] = []
    told = threading.Event()

    def listener(error: JMSError) -> None:
        errors.append(error)
        told.set()

    conn = connect(url, exception_listener=listener)
    session = conn.session()
    queue = session.queue(name)
    consumer = session.consumer(queue)
    producer = session.producer(queue)
    conn.start()
    raised: list[BaseException] = []

    def blocked_receive() -> None:
        try:
            consumer.receive(10)
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=blocked_receive)
    waiter.start()
    time.sleep(0.05)
    break_connection(broker, conn)
    assert told.wait(5)
    waiter.join(5)
    assert not waiter.is_alive()
    assert isinstance(errors[0], ConnectionLostError)
    assert raised and isinstance(raised[0], ConnectionLostError)
    with pytest.raises(ConnectionLostError):
        producer.send("after")
    with pytest.raises(ConnectionLostError):
        conn.session()
    conn.close()


def test_reconnect_restores_sessions_producers_and_consumers(
    url: str, broker: Any, name: str
) -> None:
    with connect(url, reconnect=FAST) as conn:
        session = conn.session()
        queue = session.queue(name)
        producer = session.producer(queue)
        consumer = session.consumer(queue)
        conn.start()
        producer.send("before")
        assert consumer.receive_body(2) == "before"
        break_connection(broker, conn)
        producer.send("after")  # waits for the reconnect, then sends
        assert consumer.receive_body(5) == "after"
        other = conn.session()  # new sessions work too
        other.producer(queue).send("fresh")
        assert consumer.receive_body(5) == "fresh"


def test_reconnect_resumes_a_durable_subscription_without_loss(
    url: str, broker: Any, name: str
) -> None:
    topic = Topic(name)
    with connect(url, client_id=f"{name}-c", reconnect=FAST) as conn, connect(url) as other:
        session = conn.session()
        subscription = session.durable_consumer(topic, "keep")
        conn.start()
        publisher = other.session().producer(topic)
        publisher.send("0")
        assert subscription.receive_body(2) == "0"
        if url.startswith("vm"):
            break_connection(broker, conn)
        else:
            # abort only the subscriber's socket, so the publisher goes on meanwhile
            transport = conn._core.transport
            local = transport.sock.getsockname()

            def abort_subscriber() -> None:
                for protocol in list(broker.node.connections):
                    t = protocol.transport
                    if t is not None and t.get_extra_info("peername") == local:
                        t.abort()

            broker.call(abort_subscriber)
        for i in range(1, 6):
            publisher.send(str(i))
        got = []
        while len(got) < 5:
            msg = subscription.receive(5)
            assert msg is not None, f"got only {got}"
            got.append(msg.body)
        assert got == ["1", "2", "3", "4", "5"]


def test_a_transaction_cut_by_a_failover_is_rolled_back(url: str, broker: Any, name: str) -> None:
    with connect(url, reconnect=FAST) as conn:
        tx = conn.session(transacted=True)
        queue = tx.queue(name)
        producer = tx.producer(queue)
        producer.send("lost")
        break_connection(broker, conn)
        with pytest.raises(TransactionRolledBackError):  # waits for the reconnect first
            tx.commit()
        producer.send("kept")
        tx.commit()
        consumer = conn.session().consumer(queue)
        conn.start()
        assert consumer.receive_body(2) == "kept"
        assert consumer.receive(0.1) is None


def test_reconnect_gives_up_after_max_attempts(name: str) -> None:
    errors: list[JMSError] = []
    told = threading.Event()
    with running_broker() as doomed:
        conn = connect(
            doomed.amqp_url,
            reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3),
            exception_listener=lambda e: (errors.append(e), told.set()),
        )
        session = conn.session()
    # the broker is gone for good: three attempts, then the listener hears of it
    assert told.wait(5)
    assert "gave up" in errors[0].text
    with pytest.raises(ConnectionLostError):
        session.producer(session.queue(name)).send("x")
    conn.close()


def test_persistent_sends_return_once_confirmed(broker: Any, name: str) -> None:
    with connect(broker.amqp_url) as conn:
        session = conn.session()
        producer = session.producer(session.queue(name))
        for i in range(20):
            producer.send(str(i))
            depth = broker.call(lambda: broker.broker.vhosts["/"].queues[name].message_count)
            assert depth == i + 1  # the broker has it when send returns


def test_a_refused_send_raises(broker: Any, name: str) -> None:
    import pika

    pc = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    pc.channel().queue_declare(
        name, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    pc.close()
    with connect(broker.amqp_url) as conn:
        session = conn.session()
        producer = session.producer(session.queue(name))
        producer.send("fits")
        with pytest.raises(SendRefusedError):
            producer.send("refused")
        producer.send("unconfirmed", delivery_mode=DeliveryMode.NON_PERSISTENT)  # no error


def test_durable_subscription_survives_a_broker_restart(tmp_path: Path, name: str) -> None:
    topic = Topic(name)
    with (
        running_broker(data_dir=tmp_path) as first,
        connect(first.amqp_url, client_id="restart-client") as conn,
    ):
        session = conn.session()
        session.durable_consumer(topic, "survivor").close()
        session.producer(topic).send("persisted")
    with (
        running_broker(data_dir=tmp_path) as second,
        connect(second.amqp_url, client_id="restart-client") as conn,
    ):
        session = conn.session()
        subscription = session.durable_consumer(topic, "survivor")
        conn.start()
        got = subscription.receive(2)
        assert got is not None and got.body == "persisted" and got.persistent
        subscription.close()
        session.unsubscribe("survivor")


def test_connect_failures_are_clear(broker: Any) -> None:
    with pytest.raises(ConnectionLostError):
        connect("amqp://guest:guest@127.0.0.1:1/?connection_timeout=2")
    port = broker.amqp_port
    with pytest.raises(AuthenticationError):
        connect(f"amqp://guest:wrong@127.0.0.1:{port}/")
    with pytest.raises(AuthenticationError):
        connect(f"amqp://guest:guest@127.0.0.1:{port}/no-such-vhost")


def test_a_silent_broker_is_noticed_by_heartbeats(make_broker: Any, name: str) -> None:
    """A peer that stops answering (a frozen network) fails the connection, not a hang."""
    broker = make_broker(heartbeat=1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    frozen = threading.Event()

    def relay(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not frozen.is_set():
                    target.sendall(data)

    def proxy() -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", broker.amqp_port))
        for pair in ((client, upstream), (upstream, client)):
            threading.Thread(target=relay, args=pair, daemon=True).start()

    threading.Thread(target=proxy, daemon=True).start()
    port = listener.getsockname()[1]
    errors: list[JMSError] = []
    conn = connect(
        f"amqp://guest:guest@127.0.0.1:{port}/?heartbeat=1", exception_listener=errors.append
    )
    session = conn.session()
    consumer = session.consumer(session.queue(name))
    conn.start()
    frozen.set()
    started = time.monotonic()
    with pytest.raises(ConnectionLostError, match="heartbeat"):
        consumer.receive(10)
    assert time.monotonic() - started < 4
    conn.close()
    listener.close()
