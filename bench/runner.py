"""One scenario run against one broker: set up, run the processes, measure, clean up.

The parent process owns the clock: it starts the consumer process, waits until every consumer
connection is consuming, starts the producer, then writes the measured window into the shared
array and takes counter/CPU snapshots at its two edges. After the window the producer stops, the
consumers drain (bounded), and everything the scenario declared is deleted again.
"""

from __future__ import annotations

import array
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench import loadgen
from bench.amqp import AmqpError, AmqpUrl, BlockingConnection
from bench.brokers import Target
from bench.loadgen import ConsumerConfig, ProducerConfig, consumer_main, producer_main, slot
from bench.procstat import HostCpu, cpu_seconds, rss_mb
from bench.sink import fake_server_main

CTX = multiprocessing.get_context("spawn")
NCPU = os.cpu_count() or 1
DRAIN_S = 10.0
DRAIN_IDLE_S = 1.5
SETUP_S = 30.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named load shape. Broker scenarios speak to a broker; `sink` measures the generator."""

    name: str
    kind: str  # "throughput" | "latency" | "sink"
    description: str
    queues: int = 1
    durable: bool = False
    persistent: bool = False
    confirm: bool = False
    window: int = 1000
    no_ack: bool = True
    prefetch: int = 0
    ack_every: int = 100
    max_inflight: int = 5000
    fixed_rate: bool = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "transient",
            "throughput",
            "1 producer, 1 consumer, exclusive auto-delete queue, transient, no-ack",
        ),
        Scenario(
            "persistent",
            "throughput",
            "durable queue, delivery-mode 2, confirms (window 1,000), manual ack "
            "(prefetch 1,000, multiple every 100)",
            durable=True,
            persistent=True,
            confirm=True,
            no_ack=False,
            prefetch=1000,
        ),
        Scenario(
            "fanout",
            "throughput",
            "1 producer -> fanout exchange -> 10 queues, 10 consumers, no-ack",
            queues=10,
        ),
        Scenario(
            "latency",
            "latency",
            "fixed rate (default 1,000 msg/s), transient, no-ack",
            max_inflight=0,
            fixed_rate=True,
        ),
        Scenario(
            "sink",
            "sink",
            "generator ceiling: producer into a loopback discard server, consumer fed a "
            "pre-encoded stream of Basic.Deliver frames",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class RunOptions:
    duration_s: float = 15.0
    warmup_s: float = 3.0
    size: int = 100
    batch: int = 64
    rate: int = 1000  # the latency scenario's fixed rate
    time_limit_s: float = 0.0  # hard limit per run; 0 = warm-up + duration + 90 s

    @property
    def hard_limit_s(self) -> float:
        return self.time_limit_s or (self.warmup_s + self.duration_s + 90.0)


@dataclass(slots=True)
class _Snap:
    t: int
    sent: int
    received: list[int]
    broker_cpu: float | None
    loadgen_cpu: float
    host: HostCpu
    helper_cpu: float | None = None


@dataclass(slots=True)
class _Procs:
    """The child processes of one run and the pipes their reports come back on."""

    items: list[tuple[str, BaseProcess, Connection]] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, name: str, target: Callable[..., None], *args: Any) -> BaseProcess:
        recv_end, send_end = CTX.Pipe(duplex=False)
        proc = CTX.Process(target=target, args=(*args, send_end), name=f"bench-{name}", daemon=True)
        proc.start()
        send_end.close()
        self.items.append((name, proc, recv_end))
        return proc

    def pids(self) -> list[int]:
        return [p.pid for _, p, _ in self.items if p.pid is not None]

    def collect(self, name: str, timeout: float) -> dict[str, Any]:
        """The report of `name` (waits up to `timeout`); {} if it never came."""
        if name in self.reports:
            return self.reports[name]
        for n, _, conn in self.items:
            if n == name:
                try:
                    if conn.poll(timeout):
                        self.reports[name] = conn.recv()
                except (EOFError, OSError):
                    pass
        return self.reports.get(name, {})

    def dead(self, name: str) -> bool:
        return any(n == name and p.exitcode is not None for n, p, _ in self.items)

    def reap(self) -> None:
        """Join every child; terminate (then kill) any that overstays. Only our own children."""
        for _, proc, conn in self.items:
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(3.0)
            if proc.is_alive():
                proc.kill()
                proc.join(3.0)
            conn.close()


def _sleep_until(t_ns: int) -> None:
    d = (t_ns - time.monotonic_ns()) / 1e9
    if d > 0:
        time.sleep(d)


def _snap(shared: Any, n_conn: int, broker_pid: int | None, pids: Sequence[int]) -> _Snap:
    loadgen_cpu = sum(cpu_seconds(p) or 0.0 for p in (*pids, os.getpid()))
    return _Snap(
        t=time.monotonic_ns(),
        sent=shared[loadgen.SENT],
        received=[shared[slot(i, loadgen.RECEIVED)] for i in range(n_conn)],
        broker_cpu=cpu_seconds(broker_pid) if broker_pid else None,
        loadgen_cpu=loadgen_cpu,
        host=HostCpu.read(),
    )


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def quantiles(samples_ns: array.array[int]) -> dict[str, float]:
    """p50/p99/p99.9/max/mean in ms (nearest rank) over latency samples in ns."""
    if not samples_ns:
        return {}
    s = sorted(samples_ns)
    n = len(s)

    def q(p: float) -> float:
        return s[min(n - 1, max(0, int(p * n + 0.5) - 1))] / 1e6

    return {
        "lat_samples": n,
        "p50_ms": round(q(0.50), 3),
        "p99_ms": round(q(0.99), 3),
        "p999_ms": round(q(0.999), 3),
        "max_ms": round(s[-1] / 1e6, 3),
        "mean_ms": round(sum(s) / n / 1e6, 3),
    }


def _cpu_fields(a: _Snap, b: _Snap) -> dict[str, Any]:
    secs = (b.t - a.t) / 1e9
    out: dict[str, Any] = {}
    broker = None
    if a.broker_cpu is not None and b.broker_cpu is not None:
        broker = (b.broker_cpu - a.broker_cpu) / secs * 100
        out["broker_cpu_pct"] = round(broker, 1)
    loadgen_pct = (b.loadgen_cpu - a.loadgen_cpu) / secs * 100
    out["loadgen_cpu_pct"] = round(loadgen_pct, 1)
    if b.host.total > a.host.total:
        host = (b.host.busy - a.host.busy) / (b.host.total - a.host.total) * NCPU * 100
        out["host_cpu_pct"] = round(host, 1)
        out["other_cpu_pct"] = round(max(host - loadgen_pct - (broker or 0.0), 0.0), 1)
    return out


# ----------------------------------------------------------------------------- broker runs


def _setup(ctl: BlockingConnection, sc: Scenario, tag: str) -> tuple[str, str, list[str], bool]:
    """Declare what the scenario needs; returns exchange, routing key, queues, consumer-declares."""
    if sc.queues > 1:
        exchange = f"ferrymq-bench.{sc.name}.{tag}"
        ctl.exchange_declare(exchange, "fanout")
        return exchange, "", [f"{exchange}.{i}" for i in range(sc.queues)], True
    if sc.durable:
        queue = f"ferrymq-bench.{sc.name}"
        _delete_queue_quietly(ctl, queue)  # a crashed earlier run may have left it full
        ctl.queue_declare(queue, durable=True)
        return "", queue, [queue], False
    queue = f"ferrymq-bench.{sc.name}.{tag}"
    return "", queue, [queue], True


def _delete_queue_quietly(ctl: BlockingConnection, queue: str) -> None:
    try:
        ctl.queue_delete(queue)
    except AmqpError:  # some brokers answer 404 for a missing queue and close the channel
        ctl.open_channel(1)


def _teardown(ctl: BlockingConnection, sc: Scenario, exchange: str, queues: list[str]) -> None:
    if sc.durable:
        for q in queues:
            ctl.queue_delete(q)
    if exchange:
        ctl.exchange_delete(exchange)


def run_broker(sc: Scenario, target: Target, opts: RunOptions) -> dict[str, Any]:
    """One run of a broker scenario; always returns a result dict (with "errors" on failure)."""
    res: dict[str, Any] = {"scenario": sc.name, "broker": target.name, "url": str(target.url)}
    errors: list[str] = []
    nonce = secrets.randbits(64) | 1
    tag = f"{nonce:016x}"[:10]
    procs = _Procs()
    shared: Any = None
    ctl: BlockingConnection | None = None
    exchange = ""
    queues: list[str] = []
    hard_end = time.monotonic() + opts.hard_limit_s
    try:
        ctl = BlockingConnection(target.url, name="ferrymq-bench control")
        ctl.open_channel(1)
        exchange, rk, queues, consumer_declares = _setup(ctl, sc, tag)
        shared = CTX.RawArray("q", loadgen.shared_size(len(queues)))
        limit = opts.hard_limit_s
        ccfg = ConsumerConfig(
            url=target.url,
            queues=tuple(queues),
            nonce=nonce,
            declare=consumer_declares,
            bind_exchange=exchange,
            no_ack=sc.no_ack,
            prefetch=sc.prefetch,
            ack_every=sc.ack_every,
            time_limit_s=limit,
        )
        procs.start("consumer", consumer_main, ccfg, shared)
        n = len(queues)

        def consumers_settled() -> bool:
            states = [shared[slot(i, loadgen.READY)] for i in range(n)]
            return all(s == 1 for s in states) or -1 in states or procs.dead("consumer")

        _wait(consumers_settled, SETUP_S)
        if any(shared[slot(i, loadgen.READY)] != 1 for i in range(n)):
            rep = procs.collect("consumer", 5.0)
            raise RuntimeError(rep.get("error") or "consumers did not start consuming in time")
        pcfg = ProducerConfig(
            url=target.url,
            exchange=exchange,
            routing_key=rk,
            size=opts.size,
            nonce=nonce,
            persistent=sc.persistent,
            confirm=sc.confirm,
            window=sc.window,
            rate=opts.rate if sc.fixed_rate else 0,
            max_inflight=sc.max_inflight,
            n_consumers=n,
            batch=opts.batch,
            time_limit_s=limit,
        )
        procs.start("producer", producer_main, pcfg, shared)
        _wait(lambda: shared[loadgen.PRODUCER_READY] != 0 or procs.dead("producer"), SETUP_S)
        if shared[loadgen.PRODUCER_READY] != 1:
            rep = procs.collect("producer", 5.0)
            raise RuntimeError(rep.get("error") or "producer did not connect in time")
        _measure(sc, target, opts, shared, procs, n, res)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if shared is not None:
            shared[loadgen.STOP] = 2
        prod = procs.collect("producer", max(0.0, min(10.0, hard_end - time.monotonic())))
        cons = procs.collect("consumer", max(1.0, min(15.0, hard_end - time.monotonic())))
        procs.reap()
        if ctl is not None:
            try:
                _teardown(ctl, sc, exchange, queues)
            except (OSError, AmqpError) as exc:
                errors.append(f"cleanup: {exc}")
            ctl.close()
    errors += [r["error"] for r in (prod, cons) if r.get("error")]
    if "sent_total" in res:  # the window was measured: add what the processes reported
        for who, rep in (("producer", prod), ("consumer", cons)):
            if not rep:
                errors.append(f"no report from the {who}")
        _finish(res, prod, cons, len(queues))
    if errors:
        res["errors"] = errors
    return res


def _measure(
    sc: Scenario,
    target: Target,
    opts: RunOptions,
    shared: Any,
    procs: _Procs,
    n: int,
    res: dict[str, Any],
) -> None:
    warmup_ns = int(opts.warmup_s * 1e9)
    m_start = time.monotonic_ns() + warmup_ns
    m_end = m_start + int(opts.duration_s * 1e9)
    shared[loadgen.M_START] = m_start
    shared[loadgen.M_END] = m_end
    shared[loadgen.GO] = 1
    _sleep_until(m_start)
    a = _snap(shared, n, target.pid, procs.pids())
    _sleep_until(m_end)
    b = _snap(shared, n, target.pid, procs.pids())
    _wait(lambda: shared[loadgen.PRODUCER_DONE] == 1, 10.0)
    sent = shared[loadgen.SENT]
    # drain: let in-flight messages arrive, bounded in time and by progress
    last, last_change = -1, time.monotonic()
    drain_end = last_change + DRAIN_S
    while time.monotonic() < drain_end:
        highs = [shared[slot(i, loadgen.HIGH)] for i in range(n)]
        if min(highs) >= sent:
            break
        total = sum(shared[slot(i, loadgen.RECEIVED)] for i in range(n))
        if total != last:
            last, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_IDLE_S:
            break
        time.sleep(0.02)
    secs = (b.t - a.t) / 1e9
    window = [b.received[i] - a.received[i] for i in range(n)]
    deliveries = sum(window) / secs
    res.update(
        measured_s=round(secs, 2),
        msgs_per_s=round(deliveries / n),
        deliveries_per_s=round(deliveries),
        pub_rate=round((b.sent - a.sent) / secs),
        sent_total=sent,
    )
    if n > 1:
        res["queue_rate_min"] = round(min(window) / secs)
        res["queue_rate_max"] = round(max(window) / secs)
    res.update(_cpu_fields(a, b))
    if "broker_cpu_pct" in res and res["broker_cpu_pct"] > 0:
        res["msgs_per_broker_cpu_s"] = round(deliveries / (res["broker_cpu_pct"] / 100))
    if target.pid:
        res["broker_rss_mb"] = round(rss_mb(target.pid) or 0.0, 1)


def _finish(res: dict[str, Any], prod: dict[str, Any], cons: dict[str, Any], n: int) -> None:
    received = sum(cons.get("received", []))
    res["received_total"] = received
    res["missing_after_drain"] = max(res["sent_total"] * n - received, 0)
    for key in ("stale", "reorder"):
        if cons.get(key):
            res[key] = cons[key]
    for key in ("confirmed", "nacks"):
        if key in prod:
            res[key] = prod[key]
    lat: array.array[int] = array.array("q")
    lat.frombytes(cons.get("lat_ns", b""))
    res.update(quantiles(lat))
    if cons.get("lat_sampling", 1) > 1:
        res["lat_sampling"] = cons["lat_sampling"]


# ----------------------------------------------------------------------------- sink


def run_sink(opts: RunOptions) -> list[dict[str, Any]]:
    """The generator's ceilings: publish into a discard server, parse a replayed stream."""
    return [_sink_one("discard", opts), _sink_one("replay", opts)]


def _sink_one(mode: str, opts: RunOptions) -> dict[str, Any]:
    name = "sink-publish" if mode == "discard" else "sink-consume"
    res: dict[str, Any] = {"scenario": name, "broker": "(loopback fake)"}
    nonce = secrets.randbits(64) | 1
    procs = _Procs()
    shared = CTX.RawArray("q", loadgen.shared_size(1))
    limit = opts.hard_limit_s
    errors: list[str] = []
    try:
        server = procs.start("server", fake_server_main, mode, nonce, opts.size, limit)
        hello = procs.collect("server", SETUP_S)
        if "port" not in hello:
            raise RuntimeError("sink server did not start")
        url = AmqpUrl(host="127.0.0.1", port=hello["port"])
        if mode == "discard":
            pcfg = ProducerConfig(
                url=url,
                exchange="",
                routing_key="sink",
                size=opts.size,
                nonce=nonce,
                max_inflight=0,
                n_consumers=0,
                batch=opts.batch,
                time_limit_s=limit,
            )
            procs.start("producer", producer_main, pcfg, shared)
            _wait(lambda: shared[loadgen.PRODUCER_READY] != 0 or procs.dead("producer"), SETUP_S)
            ready = shared[loadgen.PRODUCER_READY] == 1
        else:
            ccfg = ConsumerConfig(url=url, queues=("sink",), nonce=nonce, time_limit_s=limit)
            procs.start("consumer", consumer_main, ccfg, shared)
            _wait(lambda: shared[slot(0, loadgen.READY)] != 0 or procs.dead("consumer"), SETUP_S)
            ready = shared[slot(0, loadgen.READY)] == 1
        if not ready:
            raise RuntimeError("the load generator could not connect to the sink server")
        m_start = time.monotonic_ns() + int(opts.warmup_s * 1e9)
        m_end = m_start + int(opts.duration_s * 1e9)
        shared[loadgen.M_START] = m_start
        shared[loadgen.M_END] = m_end
        shared[loadgen.GO] = 1
        worker = [p.pid for n, p, _ in procs.items if n != "server" and p.pid]
        server_pid = server.pid
        _sleep_until(m_start)
        a = _snap(shared, 1, server_pid, worker)
        _sleep_until(m_end)
        b = _snap(shared, 1, server_pid, worker)
        secs = (b.t - a.t) / 1e9
        count = (b.sent - a.sent) if mode == "discard" else (b.received[0] - a.received[0])
        rate = count / secs
        res.update(measured_s=round(secs, 2), msgs_per_s=round(rate))
        cpu = _cpu_fields(a, b)
        # the fake broker's CPU is reported as sink_server_cpu_pct, not broker CPU
        res["sink_server_cpu_pct"] = cpu.pop("broker_cpu_pct", None)
        res.update(cpu)
        if res["loadgen_cpu_pct"] > 0:
            res["msgs_per_loadgen_cpu_s"] = round(rate / (res["loadgen_cpu_pct"] / 100))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        shared[loadgen.STOP] = 2
        for n in ("producer", "consumer"):
            rep = procs.collect(n, 10.0) if any(x == n for x, _, _ in procs.items) else {}
            if rep.get("error"):
                errors.append(rep["error"])
        procs.reap()
    if errors:
        res["errors"] = errors
    return res
