"""The latency floor of a Python MQTT broker on this machine: a relay that does nothing else.

    python -m bench.mqtt_floor --port 24883

A measuring instrument, not a broker. It answers CONNECT, SUBSCRIBE and PINGREQ, and copies
every PUBLISH to every subscribed connection (no topic matching, no sessions, no validation),
with a PUBACK and a fresh packet identifier for QoS 1. That is the least any MQTT broker must
do per message, written the way FerryMQ's listener is (an asyncio Protocol on uvloop, one
`transport.write` per packet). Run `mqbench latency` against it next to FerryMQ and Mosquitto:
whatever p99 it shows, no CPython broker on the same machine can go below, so the gap between
it and Mosquitto is the runtime's and the gap between FerryMQ and it is FerryMQ's own work
(docs/benchmarks.md). Listens on loopback only; enough of MQTT 3.1.1 for mqbench and paho.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from typing import cast

import uvloop

_CONNACK = b"\x20\x02\x00\x00"
_PINGRESP = b"\xd0\x00"


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Relay(asyncio.Protocol):
    def __init__(self, subscribers: list[_Relay]) -> None:
        self.subscribers = subscribers
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.subscribers:
            self.subscribers.remove(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        transport = self.transport
        assert transport is not None
        pos, end = 0, len(buf)
        while pos + 2 <= end:
            first = buf[pos]
            length, shift, i = 0, 0, pos + 1
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            else:
                break  # the length is not all here yet
            if i + length > end:
                break
            body = buf[i : i + length]
            pos = i + length
            kind = first >> 4
            if kind == 3:
                self._publish(first, body)
            elif kind == 1:
                transport.write(_CONNACK)
            elif kind == 8:
                self.subscribers.append(self)
                transport.write(b"\x90\x03" + body[:2] + b"\x01")
            elif kind == 12:
                transport.write(_PINGRESP)
            elif kind == 14:
                transport.close()
                return
        self.buffer = buf[pos:]

    def _publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 3
        topic_end = 2 + int.from_bytes(body[:2], "big")
        for sub in self.subscribers:
            if qos:
                sub.next_id = sub.next_id % 0xFFFF + 1
                out = body[:topic_end] + sub.next_id.to_bytes(2, "big") + body[topic_end + 2 :]
            else:
                out = body
            assert sub.transport is not None
            sub.transport.write(bytes((first,)) + _remaining_length(len(out)) + out)
        if qos:  # after the deliveries, as FerryMQ orders them (measured the faster order)
            assert self.transport is not None
            self.transport.write(b"\x40\x02" + body[topic_end : topic_end + 2])


async def _serve(port: int) -> None:
    subscribers: list[_Relay] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Relay(subscribers), "127.0.0.1", port)
    print(f"mqtt floor relay on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mqtt_floor", description=__doc__)
    p.add_argument("--port", type=int, default=24883, help="loopback port (0 = a free one)")
    args = p.parse_args()
    try:
        uvloop.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
