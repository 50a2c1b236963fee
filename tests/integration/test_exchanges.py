"""Exchanges and bindings, as pika users see them on RabbitMQ.

Each expectation here was checked against RabbitMQ 3.10 (run with FERRYMQ_TEST_AMQP_URL set),
so FerryMQ is held to the reference broker's routing rules and reply codes, not to a reading of
the spec: RabbitMQ differs from the spec in places (idempotent deletes, `amq.` names, `*`
matching an empty word).
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ConnectionClosedByBroker

from tests.pika_support import (
    channel_error,
    exchange_exists,
    get_body,
    pump_until,
    shared_broker_cleanup,
)
from tests.pika_support import (
    drain_bodies as drain,
)

# A broker that stops answering must fail the test, not stall the run for the global 120 s.
pytestmark = pytest.mark.timeout(30)

# Names every test here derives from `name`; deleted again when running against a shared broker.
QUEUE_SUFFIXES = ("q", "q1", "q2", "q3", "q4", "ae.q")
EXCHANGE_SUFFIXES = ("x", "x1", "x2", "x3", "ae", "src", "dst")

_cleanup_shared_broker = shared_broker_cleanup(QUEUE_SUFFIXES, EXCHANGE_SUFFIXES)


# ------------------------------------------------------------------ default exchange


def test_default_exchange_routes_by_queue_name(ch: BlockingChannel, name: str) -> None:
    q = f"{name}.q"
    ch.queue_declare(q)
    props = pika.BasicProperties(content_type="text/plain", headers={"k": "v"}, delivery_mode=2)
    ch.basic_publish("", q, b"hello", props)
    ch.basic_publish("", f"{name}.nobody", b"lost")
    method, got, body = ch.basic_get(q, auto_ack=True)
    assert body == b"hello"
    assert method.exchange == ""
    assert method.routing_key == q
    assert got.content_type == "text/plain"
    assert got.headers == {"k": "v"}
    assert got.delivery_mode == 2
    assert get_body(ch, q) is None


def test_default_exchange_cannot_be_bound(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q)
    with channel_error(403, "ACCESS_REFUSED", "default exchange"):
        ch.queue_bind(q, "", routing_key="other")


def test_default_exchange_cannot_be_deleted(conn: BlockingConnection) -> None:
    ch = conn.channel()
    with channel_error(403, "ACCESS_REFUSED", "default exchange"):
        ch.exchange_delete("")


@pytest.mark.parametrize("passive", [False, True])
def test_default_exchange_cannot_be_declared(conn: BlockingConnection, passive: bool) -> None:
    """RabbitMQ refuses even a passive declare of the nameless exchange."""
    ch = conn.channel()
    with channel_error(403, "ACCESS_REFUSED", "default exchange"):
        ch.exchange_declare("", "direct", passive=passive, durable=True)


# ------------------------------------------------------------------ direct and fanout


def test_direct_exchange_routes_on_exact_key(ch: BlockingChannel, name: str) -> None:
    x, q1, q2, q3 = f"{name}.x", f"{name}.q1", f"{name}.q2", f"{name}.q3"
    ch.exchange_declare(x, "direct")
    for q in (q1, q2, q3):
        ch.queue_declare(q)
    ch.queue_bind(q1, x, routing_key="red")
    ch.queue_bind(q2, x, routing_key="red")
    ch.queue_bind(q3, x, routing_key="green")
    ch.queue_bind(q3, x, routing_key="blue")
    ch.basic_publish(x, "red", b"r")
    ch.basic_publish(x, "green", b"g")
    ch.basic_publish(x, "blue", b"b")
    ch.basic_publish(x, "RED", b"case matters")
    ch.basic_publish(x, "", b"no key")
    assert drain(ch, q1) == [b"r"]
    assert drain(ch, q2) == [b"r"]
    assert drain(ch, q3) == [b"g", b"b"]


def test_same_binding_twice_is_one_binding(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="k")
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"once")
    assert drain(ch, q) == [b"once"]
    ch.queue_unbind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"unbound")
    assert drain(ch, q) == []


def test_fanout_copies_to_every_queue_ignoring_key(ch: BlockingChannel, name: str) -> None:
    x = f"{name}.x"
    queues = [f"{name}.q1", f"{name}.q2", f"{name}.q3"]
    ch.exchange_declare(x, "fanout")
    for i, q in enumerate(queues):
        ch.queue_declare(q)
        ch.queue_bind(q, x, routing_key=f"ignored-{i}")
    ch.basic_publish(x, "whatever", b"m1")
    ch.basic_publish(x, "", b"m2")
    for q in queues:
        assert drain(ch, q) == [b"m1", b"m2"]


# ------------------------------------------------------------------ topic

TOPIC_CASES = [
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "a.b", False),
    ("a.b", "a.b.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.c", "c", True),
    ("#.c", "a.b.c", True),
    ("#.c", "a.b.c.d", False),
    ("a.#.c", "a.c", True),
    ("a.#.c", "a.b.b.c", True),
    ("a.#.c", "a.b.b.d", False),
    ("#", "", True),
    ("#", "any.thing.at.all", True),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", "", False),
    ("*.*", "a.b", True),
    ("*.#", "a", True),
    ("*.#", "", False),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("#.#", "a.b", True),
    ("a", "A", False),
    ("a.*", "a.", True),  # `*` matches an empty word
    ("*.b", ".b", True),
    ("", "", True),
    ("", "a", False),
]


@pytest.mark.parametrize(("pattern", "key", "matches"), TOPIC_CASES)
def test_topic_pattern(
    ch: BlockingChannel, name: str, pattern: str, key: str, matches: bool
) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "topic")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key=pattern)
    ch.basic_publish(x, key, b"m")
    assert drain(ch, q) == ([b"m"] if matches else [])


def test_topic_several_matching_bindings_deliver_one_copy(ch: BlockingChannel, name: str) -> None:
    x, q1, q2 = f"{name}.x", f"{name}.q1", f"{name}.q2"
    ch.exchange_declare(x, "topic")
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    for pattern in ("#", "a.*", "a.b", "*.b", "a.#.b"):
        ch.queue_bind(q1, x, routing_key=pattern)
    ch.queue_bind(q2, x, routing_key="*.b")
    ch.basic_publish(x, "a.b", b"one")
    ch.basic_publish(x, "z.z", b"two")
    assert drain(ch, q1) == [b"one", b"two"]
    assert drain(ch, q2) == [b"one"]


def test_topic_unbind_removes_only_that_pattern(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "topic")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="a.*")
    ch.queue_bind(q, x, routing_key="#.z")
    ch.queue_unbind(q, x, routing_key="a.*")
    ch.basic_publish(x, "a.b", b"gone")
    ch.basic_publish(x, "a.z", b"kept")
    assert drain(ch, q) == [b"kept"]


# ------------------------------------------------------------------ headers

HEADERS_CASES = [
    # (binding arguments, message headers, matches)
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "y"}, False),
    ({"x-match": "all", "a": 1}, {"a": "1"}, False),  # a string is not the integer
    ({"a": 1, "b": "x"}, {"a": 1}, False),  # x-match defaults to all
    ({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 1}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x", "z": 0}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {}, False),
    ({"x-match": "any", "a": 1, "b": "x"}, None, False),
    ({"x-match": "all", "a": None}, {"a": "anything"}, True),  # void value: presence only
    ({"x-match": "all", "a": None}, {"b": "anything"}, False),
    # all / any ignore x- headers; the -with-x forms compare them too
    ({"x-match": "all", "x-tag": "t", "a": 1}, {"a": 1}, True),
    ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"a": 1}, False),
    ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"a": 1, "x-tag": "t"}, True),
    ({"x-match": "any", "x-tag": "t", "a": 1}, {"x-tag": "t"}, False),
    ({"x-match": "any-with-x", "x-tag": "t", "a": 1}, {"x-tag": "t"}, True),
    ({"x-match": "any-with-x", "x-tag": "t", "a": 1}, {"x-tag": "u"}, False),
]


@pytest.mark.parametrize(("binding", "headers", "matches"), HEADERS_CASES)
def test_headers_exchange_match(
    ch: BlockingChannel,
    name: str,
    binding: dict[str, Any],
    headers: dict[str, Any] | None,
    matches: bool,
) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "headers")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="ignored", arguments=binding)
    ch.basic_publish(x, "any-key", b"m", pika.BasicProperties(headers=headers))
    assert drain(ch, q) == ([b"m"] if matches else [])


def test_headers_exchange_bad_x_match_is_refused(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "headers")
    ch.queue_declare(q)
    with channel_error(406, "PRECONDITION_FAILED", "x-match"):
        ch.queue_bind(q, x, arguments={"x-match": "bogus", "a": 1})


def test_headers_unbind_needs_the_same_arguments(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "headers")
    ch.queue_declare(q)
    ch.queue_bind(q, x, arguments={"x-match": "any", "a": 1})
    ch.queue_bind(q, x, arguments={"x-match": "any", "b": 2})
    ch.queue_unbind(q, x, arguments={"x-match": "any", "a": 1})
    ch.basic_publish(x, "", b"a", pika.BasicProperties(headers={"a": 1}))
    ch.basic_publish(x, "", b"b", pika.BasicProperties(headers={"b": 2}))
    assert drain(ch, q) == [b"b"]


# ------------------------------------------------------------------ predeclared amq.*


@pytest.mark.parametrize(
    ("exchange", "kind"),
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_predeclared_exchange_exists_and_routes(
    ch: BlockingChannel, name: str, exchange: str, kind: str
) -> None:
    q = f"{name}.q"
    ch.exchange_declare(exchange, passive=True)
    # An equivalent declaration of a predeclared exchange is accepted, like any redeclare.
    ch.exchange_declare(exchange, kind, durable=True)
    ch.queue_declare(q)
    arguments = {"x-match": "all", "route": name} if kind == "headers" else None
    ch.queue_bind(q, exchange, routing_key=name, arguments=arguments)
    headers = {"route": name} if kind == "headers" else None
    ch.basic_publish(
        exchange, name, b"via " + exchange.encode(), pika.BasicProperties(headers=headers)
    )
    assert drain(ch, q) == [b"via " + exchange.encode()]


def test_declaring_new_amq_prefixed_exchange_is_refused(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    with channel_error(403, "ACCESS_REFUSED", f"amq.{name}", "amq."):
        ch.exchange_declare(f"amq.{name}", "direct")
    assert not exchange_exists(conn, f"amq.{name}")


def test_redeclaring_predeclared_exchange_differently_fails(conn: BlockingConnection) -> None:
    ch = conn.channel()
    with channel_error(406, "PRECONDITION_FAILED", "inequivalent arg 'type'", "amq.direct"):
        ch.exchange_declare("amq.direct", "fanout", durable=True)


@pytest.mark.parametrize("exchange", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers"])
def test_deleting_predeclared_exchange_is_refused(conn: BlockingConnection, exchange: str) -> None:
    ch = conn.channel()
    with channel_error(403, "ACCESS_REFUSED", exchange):
        ch.exchange_delete(exchange)
    assert exchange_exists(conn, exchange)


# ------------------------------------------------------------------ declare / delete


def test_passive_declare_of_missing_exchange_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no exchange '{name}.x'"):
        ch.exchange_declare(f"{name}.x", passive=True)


def test_passive_declare_ignores_type_and_flags(ch: BlockingChannel, name: str) -> None:
    x = f"{name}.x"
    ch.exchange_declare(x, "topic")
    ch.exchange_declare(x, "fanout", passive=True, durable=True)


def test_redeclare_is_idempotent(ch: BlockingChannel, name: str) -> None:
    x = f"{name}.x"
    ch.exchange_declare(x, "topic", durable=True)
    ch.exchange_declare(x, "topic", durable=True)


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ({"exchange_type": "direct"}, {"exchange_type": "fanout"}, "type"),
        ({"durable": False}, {"durable": True}, "durable"),
        ({"auto_delete": False}, {"auto_delete": True}, "auto_delete"),
        ({"internal": False}, {"internal": True}, "internal"),
    ],
)
def test_redeclare_with_different_properties_is_406(
    conn: BlockingConnection,
    name: str,
    first: dict[str, Any],
    second: dict[str, Any],
    field: str,
) -> None:
    ch = conn.channel()
    x = f"{name}.x"
    ch.exchange_declare(x, **{"exchange_type": "direct", **first})
    with channel_error(406, "PRECONDITION_FAILED", f"inequivalent arg '{field}'", f"'{x}'"):
        ch.exchange_declare(x, **{"exchange_type": "direct", **second})
    # The failed redeclare changed nothing: still a working direct exchange.
    ch = conn.channel()
    q = f"{name}.q"
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"still direct")
    ch.basic_publish(x, "other", b"not routed")
    assert drain(ch, q) == [b"still direct"]


def test_unknown_exchange_type_closes_the_connection(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as info:
        ch.exchange_declare(f"{name}.x", "no-such-type")
    assert info.value.reply_code == 503
    assert info.value.reply_text.startswith("COMMAND_INVALID - "), info.value.reply_text
    assert "no-such-type" in info.value.reply_text


def test_delete_exchange_removes_its_bindings(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.exchange_delete(x)
    ch.exchange_declare(x, "fanout")
    ch.basic_publish(x, "", b"after re-create")
    assert drain(ch, q) == []


def test_delete_if_unused(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="k")
    with channel_error(406, "PRECONDITION_FAILED", f"exchange '{x}'", "in use"):
        ch.exchange_delete(x, if_unused=True)
    assert exchange_exists(conn, x)
    ch = conn.channel()
    ch.queue_unbind(q, x, routing_key="k")
    ch.exchange_delete(x, if_unused=True)
    assert not exchange_exists(conn, x)


def test_delete_if_unused_counts_exchange_to_exchange_bindings(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    src, dst = f"{name}.src", f"{name}.dst"
    ch.exchange_declare(src, "fanout")
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src)
    with channel_error(406, "PRECONDITION_FAILED", "in use"):
        ch.exchange_delete(src, if_unused=True)
    # The destination end of a binding does not make an exchange "used" as a source.
    ch = conn.channel()
    ch.exchange_delete(dst, if_unused=True)
    assert not exchange_exists(conn, dst)


def test_delete_of_missing_exchange_succeeds(ch: BlockingChannel, name: str) -> None:
    """RabbitMQ made exchange.delete idempotent: no 404 for a missing exchange."""
    assert ch.exchange_delete(f"{name}.x").method.NAME == "Exchange.DeleteOk"


def test_publish_to_missing_exchange_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    with channel_error(404, "NOT_FOUND", f"no exchange '{name}.x'"):
        ch.basic_publish(f"{name}.x", "k", b"m")
        ch.queue_declare(f"{name}.q")  # the error arrives on the next synchronous call


def test_bind_to_missing_exchange_or_queue_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    x, q = f"{name}.x", f"{name}.q"
    ch.queue_declare(q)
    with channel_error(404, "NOT_FOUND", f"'{x}'"):
        ch.queue_bind(q, x, routing_key="k")
    ch = conn.channel()
    ch.exchange_declare(x, "direct")
    with channel_error(404, "NOT_FOUND", f"'{name}.q1'"):
        ch.queue_bind(f"{name}.q1", x, routing_key="k")


def test_unbind_of_missing_binding_succeeds(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    assert ch.queue_unbind(q, x, routing_key="never-bound").method.NAME == "Queue.UnbindOk"


def test_queue_unbind_stops_routing(ch: BlockingChannel, name: str) -> None:
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="a")
    ch.queue_bind(q, x, routing_key="b")
    ch.basic_publish(x, "a", b"a1")
    ch.queue_unbind(q, x, routing_key="a")
    ch.basic_publish(x, "a", b"a2")
    ch.basic_publish(x, "b", b"b1")
    assert drain(ch, q) == [b"a1", b"b1"]


# ------------------------------------------------------------------ exchange-to-exchange


def test_exchange_to_exchange_binding_and_unbind(ch: BlockingChannel, name: str) -> None:
    src, dst, q = f"{name}.src", f"{name}.dst", f"{name}.q"
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(dst, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, dst, routing_key="a.b")
    ch.exchange_bind(dst, src, routing_key="a.*")
    ch.basic_publish(src, "a.b", b"through")
    ch.basic_publish(src, "a.c", b"src matches, dst does not")
    ch.basic_publish(src, "x.b", b"src does not match")
    assert drain(ch, q) == [b"through"]
    method, _props, _body = ch.basic_get(q)
    assert method is None
    ch.exchange_unbind(dst, src, routing_key="a.*")
    ch.basic_publish(src, "a.b", b"after unbind")
    assert drain(ch, q) == []


def test_exchange_binding_keeps_original_exchange_and_key(ch: BlockingChannel, name: str) -> None:
    src, dst, q = f"{name}.src", f"{name}.dst", f"{name}.q"
    ch.exchange_declare(src, "fanout")
    ch.exchange_declare(dst, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, dst)
    ch.exchange_bind(dst, src)
    ch.basic_publish(src, "the.key", b"m")
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"m"
    assert method.exchange == src
    assert method.routing_key == "the.key"


def test_queue_reached_by_two_paths_gets_one_copy(ch: BlockingChannel, name: str) -> None:
    src, x1, x2, q = f"{name}.src", f"{name}.x1", f"{name}.x2", f"{name}.q"
    ch.exchange_declare(src, "fanout")
    ch.exchange_declare(x1, "fanout")
    ch.exchange_declare(x2, "fanout")
    ch.queue_declare(q)
    ch.exchange_bind(x1, src)
    ch.exchange_bind(x2, src)
    ch.queue_bind(q, x1)
    ch.queue_bind(q, x2)
    ch.queue_bind(q, src)
    ch.basic_publish(src, "", b"one copy")
    assert drain(ch, q) == [b"one copy"]


def test_exchange_binding_cycle_terminates(ch: BlockingChannel, name: str) -> None:
    x1, x2, q = f"{name}.x1", f"{name}.x2", f"{name}.q"
    ch.exchange_declare(x1, "fanout")
    ch.exchange_declare(x2, "fanout")
    ch.queue_declare(q)
    ch.exchange_bind(x2, x1)
    ch.exchange_bind(x1, x2)
    ch.queue_bind(q, x2)
    ch.basic_publish(x1, "", b"m")
    assert drain(ch, q) == [b"m"]


def test_exchange_bind_to_missing_exchange_is_404(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.exchange_declare(f"{name}.src", "fanout")
    with channel_error(404, "NOT_FOUND", f"'{name}.dst'"):
        ch.exchange_bind(f"{name}.dst", f"{name}.src")


# ------------------------------------------------------------------ alternate exchange


def test_alternate_exchange_gets_unroutable_messages(ch: BlockingChannel, name: str) -> None:
    x, ae, q, ae_q = f"{name}.x", f"{name}.ae", f"{name}.q", f"{name}.ae.q"
    ch.exchange_declare(ae, "fanout")
    ch.queue_declare(ae_q)
    ch.queue_bind(ae_q, ae)
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="known")
    ch.basic_publish(x, "known", b"routed")
    ch.basic_publish(x, "unknown", b"to the AE", pika.BasicProperties(message_id="m-1"))
    assert drain(ch, q) == [b"routed"]
    method, props, body = ch.basic_get(ae_q, auto_ack=True)
    assert body == b"to the AE"
    assert props.message_id == "m-1"
    # The message keeps the exchange it was published to and its routing key.
    assert method.exchange == x
    assert method.routing_key == "unknown"
    assert get_body(ch, ae_q) is None


def test_mandatory_message_taken_by_alternate_exchange_is_not_returned(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    x, ae, ae_q = f"{name}.x", f"{name}.ae", f"{name}.ae.q"
    ch.exchange_declare(ae, "fanout")
    ch.queue_declare(ae_q)
    ch.queue_bind(ae_q, ae)
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda _c, _m, _p, body: returned.append(body))
    ch.basic_publish(x, "nowhere", b"m", mandatory=True)
    ch.queue_declare(ae_q, passive=True)  # round trip: any basic.return would have arrived
    conn.process_data_events(time_limit=0.1)
    assert returned == []
    assert drain(ch, ae_q) == [b"m"]


def test_missing_alternate_exchange_means_unroutable(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    x = f"{name}.x"
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": f"{name}.ae"})
    returned: list[tuple[int, bytes]] = []
    ch.add_on_return_callback(lambda _c, m, _p, body: returned.append((m.reply_code, body)))
    ch.basic_publish(x, "nowhere", b"m", mandatory=True)
    pump_until(conn, lambda: bool(returned))
    assert returned == [(312, b"m")]


def test_alternate_exchange_chain(ch: BlockingChannel, name: str) -> None:
    x, x2, ae, q = f"{name}.x", f"{name}.x2", f"{name}.ae", f"{name}.q"
    ch.exchange_declare(ae, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, ae)
    ch.exchange_declare(x2, "direct", arguments={"alternate-exchange": ae})
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": x2})
    ch.basic_publish(x, "nowhere", b"two hops")
    assert drain(ch, q) == [b"two hops"]


# ------------------------------------------------------------------ internal, auto-delete


def test_publish_to_internal_exchange_is_refused(conn: BlockingConnection, name: str) -> None:
    ch = conn.channel()
    src, x, q = f"{name}.src", f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "fanout", internal=True)
    ch.exchange_declare(src, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.exchange_bind(x, src)
    # Reachable through an exchange binding...
    ch.basic_publish(src, "", b"via binding")
    assert drain(ch, q) == [b"via binding"]
    # ...but not by publishing to it directly.
    with channel_error(403, "ACCESS_REFUSED", f"internal exchange '{x}'"):
        ch.basic_publish(x, "", b"direct")
        ch.queue_declare(q, passive=True)
    ch = conn.channel()
    assert drain(ch, q) == []


def test_auto_delete_exchange_goes_with_its_last_binding(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    x, q1, q2 = f"{name}.x", f"{name}.q1", f"{name}.q2"
    ch.exchange_declare(x, "direct", auto_delete=True)
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    # Never bound: an auto-delete exchange stays until it loses a binding.
    assert exchange_exists(conn, x)
    ch.queue_bind(q1, x, routing_key="a")
    ch.queue_bind(q2, x, routing_key="b")
    ch.queue_unbind(q1, x, routing_key="a")
    assert exchange_exists(conn, x)
    ch.queue_unbind(q2, x, routing_key="b")
    assert not exchange_exists(conn, x)


def test_auto_delete_exchange_goes_when_its_bound_queue_is_deleted(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    x, q = f"{name}.x", f"{name}.q"
    ch.exchange_declare(x, "fanout", auto_delete=True)
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.queue_delete(q)
    assert not exchange_exists(conn, x)


def test_auto_delete_exchange_goes_with_its_last_exchange_binding(
    conn: BlockingConnection, name: str
) -> None:
    ch = conn.channel()
    src, dst = f"{name}.src", f"{name}.dst"
    ch.exchange_declare(src, "fanout", auto_delete=True)
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src)
    ch.exchange_unbind(dst, src)
    assert not exchange_exists(conn, src)
    assert exchange_exists(conn, dst)
