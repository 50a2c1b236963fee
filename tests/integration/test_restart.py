"""Definitions and persistent messages across a clean restart (SIGTERM, then serve again)."""

from __future__ import annotations

from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.server_process import ServerProcess


def _connect(server: ServerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(server.url))


def test_durable_definitions_survive_and_transient_ones_vanish(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    conn = _connect(server)
    ch = conn.channel()
    ch.exchange_declare("d.x", "topic", durable=True)
    ch.exchange_declare("d.ae", "fanout", durable=True)
    ch.exchange_declare("d.x2", "direct", durable=True, arguments={"alternate-exchange": "d.ae"})
    ch.exchange_declare("t.x", "direct", durable=False)
    args = {
        "x-max-length": 10,
        "x-message-ttl": 60000,
        "x-dead-letter-exchange": "d.ae",
        "x-max-priority": 3,
        "x-custom": b"\x00\x01",
    }
    ch.queue_declare("d.q", durable=True, arguments=args)
    ch.queue_declare("t.q", durable=False)
    ch.queue_declare("x.q", durable=True, exclusive=True)
    ch.queue_bind("d.q", "d.x", "a.*.c")
    ch.queue_bind("d.q", "d.x2", "k")
    ch.queue_bind("t.q", "d.x", "t")  # transient end: not kept
    ch.exchange_bind("d.x2", "d.x", "e2e.#")
    ch.confirm_delivery()
    ch.basic_publish("d.x", "a.b.c", b"persistent", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("d.x", "a.b.c", b"transient", pika.BasicProperties(delivery_mode=1))
    conn.close()
    assert server.stop() == 0

    server2 = ServerProcess(server.data_dir).start()
    try:
        conn2 = _connect(server2)
        ch2 = conn2.channel()
        # durable queue with identical arguments: the redeclare is equivalent
        ok = ch2.queue_declare("d.q", durable=True, arguments=args)
        assert ok.method.message_count == 1
        method, props, body = ch2.basic_get("d.q", auto_ack=True)
        assert body == b"persistent" and props.delivery_mode == 2
        assert method.redelivered is False
        ch2.exchange_declare("d.x", "topic", durable=True, passive=True)
        ch2.exchange_declare("d.x2", "direct", durable=True, passive=True)
        # bindings are back: topic, direct, and exchange-to-exchange
        ch2.confirm_delivery()
        ch2.basic_publish("d.x", "a.z.c", b"1", mandatory=True)
        ch2.basic_publish("d.x2", "k", b"2", mandatory=True)
        ch2.basic_publish("d.x", "e2e.k", b"3")
        bodies = sorted(ch2.basic_get("d.q", auto_ack=True)[2] for _ in range(2))
        assert bodies == [b"1", b"2"]
        for name, kind in (("t.x", "exchange"), ("t.q", "queue"), ("x.q", "queue")):
            c = conn2.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                if kind == "queue":
                    c.queue_declare(name, passive=True)
                else:
                    c.exchange_declare(name, passive=True)
            assert info.value.reply_code == 404
        conn2.close()
    finally:
        server2.stop()


def test_acked_messages_stay_gone_and_unacked_come_back_redelivered(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    conn = _connect(server)
    ch = conn.channel()
    ch.queue_declare("r.q", durable=True)
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", "r.q", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    got = [ch.basic_get("r.q") for _ in range(4)]
    ch.basic_ack(got[0][0].delivery_tag)
    ch.basic_ack(got[1][0].delivery_tag)
    # m2 and m3 were delivered and never acked
    ch.basic_publish("", "r.q", b"barrier", pika.BasicProperties(delivery_mode=2))
    assert server.stop() == 0  # the clean stop requeues m2, m3 before closing

    server2 = ServerProcess(server.data_dir).start()
    try:
        ch2 = _connect(server2).channel()
        seen = []
        while True:
            method, _props, body = ch2.basic_get("r.q", auto_ack=True)
            if method is None:
                break
            seen.append((body, method.redelivered))
        assert [b for b, _ in seen] == [
            b"m2",
            b"m3",
            *(b"m%d" % i for i in range(4, 10)),
            b"barrier",
        ]
        assert dict(seen)[b"m2"] is True and dict(seen)[b"m3"] is True
        assert dict(seen)[b"m4"] is False
    finally:
        server2.stop()
