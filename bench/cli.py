"""`python -m bench`: FerryMQ and a reference broker side by side, interleaved per repetition."""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from bench.amqp import AmqpError, AmqpUrl, BlockingConnection
from bench.brokers import ManagedFerryMQ, Target, resolve_pid
from bench.report import render, summarize
from bench.runner import SCENARIOS, RunOptions, Scenario, run_broker, run_sink

DEFAULT_SCENARIOS = "transient,persistent,fanout,latency,sink"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "AMQP 0-9-1 benchmark: FerryMQ (started here, or --ferrymq-url) and optionally a "
            "reference broker (--reference), side by side. Scenarios: "
            + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values())
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--scenarios", default=DEFAULT_SCENARIOS, help="comma-separated: " + ", ".join(SCENARIOS)
    )
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before measuring")
    p.add_argument("--size", type=int, default=100, help="message body bytes (>= 24)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; the table shows medians")
    p.add_argument("--rate", type=int, default=1000, help="msg/s of the latency scenario")
    p.add_argument("--batch", type=int, default=64, help="max messages per socket write")
    p.add_argument(
        "--time-limit",
        type=float,
        default=0.0,
        help="hard seconds per run (0: warm-up + duration + 90)",
    )
    p.add_argument(
        "--reference",
        metavar="URL",
        help="reference broker, e.g. amqp://guest:guest@127.0.0.1:20672/",
    )
    p.add_argument("--reference-name", default="reference", help="its name in the table")
    p.add_argument("--reference-pid", type=int, help="its pid (default: owner of the port)")
    p.add_argument(
        "--ferrymq-url", metavar="URL", help="use this running FerryMQ instead of starting one"
    )
    p.add_argument("--pid", type=int, help="FerryMQ's pid (default: owner of the port)")
    p.add_argument(
        "--no-ferrymq",
        action="store_true",
        help="skip FerryMQ (measure only the reference and/or the sink)",
    )
    p.add_argument(
        "--noise-max",
        type=float,
        default=0.0,
        help="repeat a run when other processes used more than this %% of a core (0: off)",
    )
    p.add_argument("--max-retries", type=int, default=2, help="repeats allowed by --noise-max")
    p.add_argument("--json", metavar="FILE", help="write every run's raw results here")
    return p


def _fail(msg: str) -> NoReturn:
    print(f"bench: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def _server_info(target: Target) -> dict[str, Any]:
    """Product and version the broker announces in Connection.Start."""
    conn = BlockingConnection(target.url, name="ferrymq-bench probe")
    props = conn.server_properties
    conn.close()

    def s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {"product": s(props.get("product", "?")), "version": s(props.get("version", "?"))}


def _summary_line(r: dict[str, Any]) -> str:
    if r.get("errors"):
        return "FAILED: " + "; ".join(r["errors"])
    parts = [f"{r.get('msgs_per_s', 0):,} msg/s"]
    if r.get("deliveries_per_s") and r["deliveries_per_s"] != r.get("msgs_per_s"):
        parts.append(f"{r['deliveries_per_s']:,} deliveries/s")
    if "p99_ms" in r:
        parts.append(f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms")
    if "broker_cpu_pct" in r:
        parts.append(f"broker {r['broker_cpu_pct']}% CPU")
    if "loadgen_cpu_pct" in r:
        parts.append(f"loadgen {r['loadgen_cpu_pct']}%")
    return ", ".join(parts)


def _broker_runs(sc: Scenario, target: Target, opts: RunOptions) -> list[dict[str, Any]]:
    return [run_broker(sc, target, opts)]


def _with_retries(
    args: argparse.Namespace, run: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Run; repeat (bounded) while other processes used more CPU than --noise-max allows."""
    for attempt in range(args.max_retries + 1):
        rs = run()
        noise = max((r.get("other_cpu_pct") or 0.0) for r in rs)
        if not args.noise_max or noise <= args.noise_max or attempt == args.max_retries:
            break
        _log(f"other processes used {noise}% CPU (> {args.noise_max}), repeating the run")
    for r in rs:
        r["noisy_retries"] = attempt
    return rs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        _fail(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.size < 24:
        _fail("--size must be at least 24 (nonce, sequence number and timestamp)")
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0 or args.batch < 1:
        _fail("--repeat, --duration and --batch must be positive, --warmup >= 0")
    opts = RunOptions(
        duration_s=args.duration,
        warmup_s=args.warmup,
        size=args.size,
        batch=args.batch,
        rate=args.rate,
        time_limit_s=args.time_limit,
    )

    try:
        ferrymq_url = AmqpUrl.parse(args.ferrymq_url) if args.ferrymq_url else None
        reference_url = AmqpUrl.parse(args.reference) if args.reference else None
    except ValueError as exc:
        _fail(str(exc))

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    needs_broker = any(SCENARIOS[n].kind != "sink" for n in names)
    managed: ManagedFerryMQ | None = None
    targets: list[Target] = []
    runs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "argv": [sys.executable, "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "options": vars(args),
        "targets": {},
    }
    try:
        if needs_broker and not args.no_ferrymq:
            if ferrymq_url:
                targets.append(Target("ferrymq", ferrymq_url, resolve_pid(ferrymq_url, args.pid)))
            else:
                managed = ManagedFerryMQ()
                _log("starting FerryMQ: " + " ".join(managed.command))
                try:
                    url = managed.start()
                except RuntimeError as exc:
                    _fail(str(exc))
                targets.append(Target("ferrymq", url, resolve_pid(url, args.pid) or managed.pid))
                meta["ferrymq_command"] = managed.command
        if needs_broker and reference_url:
            ref_pid = resolve_pid(reference_url, args.reference_pid)
            targets.append(Target(args.reference_name, reference_url, ref_pid))
        if needs_broker and not targets:
            _fail("nothing to measure: give --reference or drop --no-ferrymq")
        for t in targets:
            try:
                info = _server_info(t)
            except (OSError, AmqpError) as exc:
                _fail(
                    f"cannot open an AMQP connection to {t.name} at {t.url}: "
                    f"{type(exc).__name__}: {exc} (is it running? user/password/vhost right?)"
                )
            meta["targets"][t.name] = {"url": str(t.url), "pid": t.pid, **info}
            pid = t.pid or "unknown (no CPU figures)"
            _log(f"target {t.name}: {t.url} pid {pid}, {info['product']} {info['version']}")
        for rep in range(args.repeat):
            # alternate which broker goes first, so slow drift in background load cancels out
            order = targets if rep % 2 == 0 else targets[::-1]
            for name in names:
                sc = SCENARIOS[name]
                if sc.kind == "sink":
                    for r in _with_retries(args, functools.partial(run_sink, opts)):
                        r["rep"] = rep + 1
                        runs.append(r)
                        _log(f"rep {rep + 1} {r['scenario']}: {_summary_line(r)}")
                    continue
                for t in order:
                    if managed is not None and t.name == "ferrymq" and not managed.alive:
                        rs = [
                            {
                                "scenario": name,
                                "broker": t.name,
                                "errors": ["ferrymq process has exited"],
                            }
                        ]
                    else:
                        rs = _with_retries(args, functools.partial(_broker_runs, sc, t, opts))
                    for r in rs:
                        r["rep"] = rep + 1
                        runs.append(r)
                        _log(f"rep {rep + 1} {name} {t.name}: {_summary_line(r)}")
    except KeyboardInterrupt:
        _log("interrupted; reporting what was measured")
    finally:
        if managed is not None and managed.proc is not None:
            code = managed.stop()
            _log(f"FerryMQ stopped (exit code {code})")
    reference = args.reference_name if args.reference else None
    rows = summarize(runs, reference)
    print(render(rows, reference))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "runs": runs, "summary": rows}, f, indent=1, default=str)
        _log(f"raw results written to {args.json}")
    return 1 if any(r.get("errors") for r in runs) else 0
