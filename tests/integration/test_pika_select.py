"""pika's callback-style SelectConnection: everything happens on its ioloop, under a timer.

Each scenario arms `ioloop.call_later(TIMEOUT, ...)` first, so a broker that never answers ends
the loop with a failure instead of hanging the test.
"""

from __future__ import annotations

from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
from pika.spec import Basic

TIMEOUT = 10.0


class Scenario:
    """Drives one SelectConnection; subclasses fill in `on_channel_open`."""

    def __init__(self, url: str, credentials: pika.PlainCredentials | None = None) -> None:
        params = pika.URLParameters(url)
        params.socket_timeout = 5
        params.connection_attempts = 1
        if credentials is not None:
            params.credentials = credentials
        self.timed_out = False
        self.open_error: BaseException | None = None
        self.close_reason: BaseException | None = None
        self.channel: pika.channel.Channel | None = None
        self.conn = pika.SelectConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
        )

    def run(self) -> None:
        self.conn.ioloop.call_later(TIMEOUT, self._on_timeout)
        self.conn.ioloop.start()
        assert not self.timed_out, f"{type(self).__name__} did not finish in {TIMEOUT}s"

    def finish(self) -> None:
        if self.conn.is_open:
            self.conn.close()
        elif self.conn.is_closed:
            self.conn.ioloop.stop()

    def _on_timeout(self) -> None:
        self.timed_out = True
        if self.conn.is_open:
            self.conn.close()
        self.conn.ioloop.stop()

    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: pika.channel.Channel) -> None:
        self.channel = channel
        self.on_channel_open(channel)

    def on_channel_open(self, channel: pika.channel.Channel) -> None:
        raise NotImplementedError

    def _on_open_error(self, conn: pika.SelectConnection, err: BaseException) -> None:
        self.open_error = err
        conn.ioloop.stop()

    def _on_closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        self.close_reason = reason
        conn.ioloop.stop()


class PublishConsume(Scenario):
    """Declare, consume, publish n messages with confirms; finish when all are in and acked."""

    def __init__(self, url: str, queue: str, n: int, prefetch: int = 0) -> None:
        super().__init__(url)
        self.queue = queue
        self.n = n
        self.prefetch = prefetch
        self.received: list[tuple[Basic.Deliver, bytes]] = []
        self.confirmed: set[int] = set()
        self.nacked: set[int] = set()
        self.unacked = 0
        self.max_unacked = 0

    def on_channel_open(self, channel: pika.channel.Channel) -> None:
        channel.confirm_delivery(self._on_confirm, callback=lambda _: self._declare())

    def _declare(self) -> None:
        assert self.channel is not None
        self.channel.queue_declare(self.queue, exclusive=True, callback=self._on_declared)

    def _on_declared(self, frame: pika.frame.Method) -> None:
        assert self.channel is not None
        if self.prefetch:
            self.channel.basic_qos(prefetch_count=self.prefetch, callback=self._consume)
        else:
            self._consume(frame)

    def _consume(self, _: pika.frame.Method) -> None:
        assert self.channel is not None
        self.channel.basic_consume(self.queue, self._on_message, callback=self._publish_all)

    def _publish_all(self, _: pika.frame.Method) -> None:
        assert self.channel is not None
        for i in range(self.n):
            self.channel.basic_publish(
                "", self.queue, str(i).encode(), pika.BasicProperties(message_id=str(i))
            )

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        m = frame.method
        tags = (
            set(range(1, m.delivery_tag + 1)) - self.confirmed if m.multiple else {m.delivery_tag}
        )
        if isinstance(m, Basic.Nack):
            self.nacked |= tags
        self.confirmed |= tags
        self._maybe_done()

    def _on_message(
        self,
        channel: pika.channel.Channel,
        method: Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        assert props.message_id == body.decode()
        self.received.append((method, body))
        self.unacked += 1
        self.max_unacked = max(self.max_unacked, self.unacked)
        # Ack a little later, from the ioloop, so unacked deliveries can pile up to the prefetch.
        self.conn.ioloop.call_later(0.001, lambda: self._ack(method.delivery_tag))

    def _ack(self, tag: int) -> None:
        assert self.channel is not None
        self.channel.basic_ack(tag)
        self.unacked -= 1
        self._maybe_done()

    def _maybe_done(self) -> None:
        if len(self.received) == self.n and len(self.confirmed) == self.n and not self.unacked:
            self.finish()


def test_select_publish_consume_with_confirms(broker: Any, name: str) -> None:
    s = PublishConsume(broker.amqp_url, f"{name}.q", 200)
    s.run()
    assert [b for _, b in s.received] == [str(i).encode() for i in range(200)]
    assert [m.delivery_tag for m, _ in s.received] == list(range(1, 201))
    assert not any(m.redelivered for m, _ in s.received)
    assert s.confirmed == set(range(1, 201))
    assert not s.nacked
    assert isinstance(s.close_reason, pika.exceptions.ConnectionClosedByClient)


def test_select_prefetch_bounds_unacked(broker: Any, name: str) -> None:
    s = PublishConsume(broker.amqp_url, f"{name}.q", 100, prefetch=5)
    s.run()
    assert [b for _, b in s.received] == [str(i).encode() for i in range(100)]
    assert 1 <= s.max_unacked <= 5


class ChannelError(Scenario):
    """A passive declare of a missing queue closes the channel; the connection stays open."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(url)
        self.queue = queue
        self.channel_close: BaseException | None = None
        self.second_channel_ok = False

    def on_channel_open(self, channel: pika.channel.Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.queue_declare(self.queue, passive=True)

    def _on_channel_closed(self, channel: pika.channel.Channel, reason: BaseException) -> None:
        self.channel_close = reason
        assert self.conn.is_open
        self.conn.channel(on_open_callback=self._on_second)

    def _on_second(self, channel: pika.channel.Channel) -> None:
        channel.queue_declare("", exclusive=True, callback=self._on_second_declared)

    def _on_second_declared(self, frame: pika.frame.Method) -> None:
        self.second_channel_ok = frame.method.queue.startswith("amq.gen-")
        self.finish()


def test_select_channel_error(broker: Any, name: str) -> None:
    s = ChannelError(broker.amqp_url, f"{name}.missing")
    s.run()
    assert isinstance(s.channel_close, pika.exceptions.ChannelClosedByBroker)
    assert s.channel_close.reply_code == 404
    assert s.channel_close.reply_text.startswith("NOT_FOUND - ")
    assert s.second_channel_ok


class OpenOnly(Scenario):
    def on_channel_open(self, channel: pika.channel.Channel) -> None:
        self.finish()


def test_select_bad_credentials(broker: Any) -> None:
    s = OpenOnly(broker.amqp_url, pika.PlainCredentials("guest", "wrong"))
    s.run()
    assert isinstance(s.open_error, pika.exceptions.ProbableAuthenticationError)
    assert "403" in str(s.open_error)
    assert "ACCESS_REFUSED" in str(s.open_error)
