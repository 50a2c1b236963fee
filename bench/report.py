"""Medians over repetitions and the markdown tables `make bench` prints."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

_MEDIAN_KEYS = (
    "msgs_per_s",
    "deliveries_per_s",
    "pub_rate",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "broker_cpu_pct",
    "msgs_per_broker_cpu_s",
    "loadgen_cpu_pct",
    "other_cpu_pct",
    "sink_server_cpu_pct",
    "msgs_per_loadgen_cpu_s",
    "missing_after_drain",
)


def summarize(runs: Iterable[dict[str, Any]], reference: str | None) -> list[dict[str, Any]]:
    """One row per (scenario, broker): medians of the clean runs, min-max, ratio to reference.

    The ratio is msgs/s over the reference's msgs/s, except for the latency scenario where it
    is p99 over the reference's p99 (lower is better there).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["broker"]), []).append(r)
    rows: list[dict[str, Any]] = []
    for (scenario, broker), rs in groups.items():
        ok = [r for r in rs if "msgs_per_s" in r and not r.get("errors")]
        row: dict[str, Any] = {
            "scenario": scenario,
            "broker": broker,
            "runs": len(ok),
            "failed": len(rs) - len(ok),
        }
        for key in _MEDIAN_KEYS:
            vals = [r[key] for r in ok if r.get(key) is not None]
            if vals:
                row[key] = statistics.median(vals)
        retried = sum(r.get("noisy_retries", 0) for r in rs)
        if retried:
            row["noisy_retries"] = retried
        rates = [r["msgs_per_s"] for r in ok]
        if rates:
            row["min"], row["max"] = min(rates), max(rates)
        errs = [e for r in rs for e in r.get("errors", [])]
        if errs:
            row["errors"] = errs
        rows.append(row)
    if reference:
        refs = {r["scenario"]: r for r in rows if r["broker"] == reference}
        for row in rows:
            ref = refs.get(row["scenario"])
            key = "p99_ms" if row["scenario"] == "latency" else "msgs_per_s"
            if ref and ref.get(key) and row.get(key) is not None:
                row["ratio"] = row[key] / ref[key]
    return rows


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}"


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], reference: str | None) -> str:
    """Markdown tables: throughput, latency, generator ceilings; then any errors."""
    ref = reference or "reference"
    out: list[str] = []
    thr = [r for r in rows if r["scenario"] in ("transient", "persistent", "fanout")]
    if thr:
        body = []
        for r in thr:
            body.append(
                [
                    r["scenario"] + (" (per queue)" if r["scenario"] == "fanout" else ""),
                    r["broker"],
                    _n(r.get("msgs_per_s")),
                    f"{_n(r.get('min'))}-{_n(r.get('max'))}" if "min" in r else "-",
                    f"{r['ratio']:.2f}x" if "ratio" in r else "-",
                    _n(r.get("deliveries_per_s")),
                    _n(r.get("p50_ms"), 1),
                    _n(r.get("p99_ms"), 1),
                    _n(r.get("broker_cpu_pct")),
                    _n(r.get("msgs_per_broker_cpu_s")),
                    _n(r.get("loadgen_cpu_pct")),
                    _n(r.get("other_cpu_pct")),
                    _fmt_runs(r),
                ]
            )
        out.append(
            _table(
                [
                    "scenario",
                    "broker",
                    "msgs/s",
                    "min-max",
                    f"vs {ref}",
                    "deliveries/s",
                    "p50 ms",
                    "p99 ms",
                    "broker CPU %",
                    "msgs per broker-CPU-s",
                    "loadgen CPU %",
                    "other CPU %",
                    "runs",
                ],
                body,
            )
        )
    lat = [r for r in rows if r["scenario"] == "latency"]
    if lat:
        body = [
            [
                "latency",
                r["broker"],
                _n(r.get("msgs_per_s")),
                _n(r.get("p50_ms"), 3),
                _n(r.get("p99_ms"), 3),
                _n(r.get("p999_ms"), 3),
                _n(r.get("max_ms"), 1),
                f"{r['ratio']:.2f}x" if "ratio" in r else "-",
                _n(r.get("broker_cpu_pct"), 1),
                _fmt_runs(r),
            ]
            for r in lat
        ]
        out.append(
            _table(
                [
                    "scenario",
                    "broker",
                    "msgs/s",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "max ms",
                    f"p99 vs {ref}",
                    "broker CPU %",
                    "runs",
                ],
                body,
            )
        )
    sink = [r for r in rows if r["scenario"].startswith("sink-")]
    if sink:
        body = [
            [
                r["scenario"],
                _n(r.get("msgs_per_s")),
                f"{_n(r.get('min'))}-{_n(r.get('max'))}" if "min" in r else "-",
                _n(r.get("loadgen_cpu_pct")),
                _n(r.get("msgs_per_loadgen_cpu_s")),
                _n(r.get("sink_server_cpu_pct")),
                _fmt_runs(r),
            ]
            for r in sink
        ]
        out.append(
            _table(
                [
                    "generator ceiling",
                    "msgs/s",
                    "min-max",
                    "loadgen CPU %",
                    "msgs per loadgen-CPU-s",
                    "fake broker CPU %",
                    "runs",
                ],
                body,
            )
        )
    errs = [(r["scenario"], r["broker"], e) for r in rows for e in r.get("errors", [])]
    if errs:
        out.append("errors:\n" + "\n".join(f"- {s} / {b}: {e}" for s, b, e in errs))
    return "\n\n".join(out)


def _fmt_runs(r: dict[str, Any]) -> str:
    notes = []
    if r.get("failed"):
        notes.append(f"{r['failed']} failed")
    if r.get("noisy_retries"):
        notes.append(f"{r['noisy_retries']} noisy retried")
    return f"{r['runs']}" + (f" ({', '.join(notes)})" if notes else "")
