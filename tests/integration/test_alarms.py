"""Resource alarms as a publisher sees them: connection.blocked, then unblocked."""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions
import pytest

from tests.helpers import wait_for


def test_memory_alarm_blocks_publishers_until_consumers_drain(make_broker: Any) -> None:
    broker = make_broker(memory_high_watermark=64 * 1024)  # bytes of messages held
    events: list[str] = []
    publisher = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    publisher.add_on_connection_blocked_callback(lambda _c, m: events.append("blocked"))
    publisher.add_on_connection_unblocked_callback(lambda _c, m: events.append("unblocked"))
    consumer = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        pch = publisher.channel()
        pch.queue_declare("alarm-q")
        for _ in range(100):  # 100 KiB > 64 KiB watermark
            pch.basic_publish("", "alarm-q", b"x" * 1024)

        def blocked() -> bool:
            publisher.process_data_events(time_limit=0.05)
            return "blocked" in events

        wait_for(blocked, timeout=5)
        # a consumer-only connection is not blocked: it drains the queue
        cch = consumer.channel()
        drained = 0
        while True:
            method, _props, body = cch.basic_get("alarm-q", auto_ack=True)
            if method is None:
                break
            assert body == b"x" * 1024
            drained += 1
        assert drained == 100

        def unblocked() -> bool:
            publisher.process_data_events(time_limit=0.05)
            return "unblocked" in events

        wait_for(unblocked, timeout=5)
        assert events == ["blocked", "unblocked"]
        pch.basic_publish("", "alarm-q", b"after")
        assert cch.basic_get("alarm-q", auto_ack=True)[2] == b"after"
    finally:
        publisher.close()
        consumer.close()


def test_disk_alarm_blocks_publishers(make_broker: Any) -> None:
    broker = make_broker(disk_free_limit=10**18)  # more than any disk has: alarm from the start
    events: list[str] = []
    # As with RabbitMQ, a blocked connection is not read from, so it cannot close cleanly
    # while blocked; pika's blocked_connection_timeout is how clients get out of it.
    publisher = pika.BlockingConnection(
        pika.URLParameters(broker.amqp_url + "?blocked_connection_timeout=1")
    )
    publisher.add_on_connection_blocked_callback(lambda _c, m: events.append(m.method.reason))
    try:
        ch = publisher.channel()
        ch.queue_declare("disk-q")
        ch.basic_publish("", "disk-q", b"m")

        def blocked() -> bool:
            publisher.process_data_events(time_limit=0.05)
            return bool(events)

        wait_for(blocked, timeout=5)
        assert events == ["low on disk space"]
        # the publish that revealed a publisher was taken; nothing after it is read
        other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        assert other.channel().queue_declare("disk-q", passive=True).method.message_count == 1
        other.close()
        with pytest.raises(pika.exceptions.ConnectionBlockedTimeout):
            ch.basic_publish("", "disk-q", b"never")
            publisher.process_data_events(time_limit=3)
    finally:
        if publisher.is_open:
            publisher.close()
