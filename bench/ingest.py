"""Benchmark 1, ingest: how many alerts per second the gateway accepts, durably.

Alertmanager-format webhooks (batches of 1, 50 and 500 distinct alerts) from
N concurrent senders in a separate process, closed loop, against the gateway
publishing with `acks=all` to the embedded broker. A 202 means the broker
acknowledged every alert of the request, so "accepted" is "in the log".

With `--compare-alertmanager` the same load, in the same run, goes to a local
Prometheus Alertmanager's `POST /api/v2/alerts` (same labels, annotations and
times; Alertmanager's format is a bare list). The two receivers run one after
the other, never at the same time, so they do not compete for the two cores;
the ratio gateway/Alertmanager is printed per batch size. Note what is
compared: the gateway makes each alert durable in Kafka before answering;
Alertmanager keeps alerts in memory (it snapshots to disk periodically).

Usage: `python -m bench.ingest [--batches 1,50,500] [--concurrency 8]
[--duration 10] [--compare-alertmanager] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.catalog import generate_catalog, write_config_dir
from bench.harness import (
    AlertmanagerProcess,
    BenchError,
    BenchStack,
    add_broker_arguments,
    alertmanager_binary,
    broker_label,
    emit,
    fmt,
    host_info,
    run_loadgen,
    self_usage,
)
from bench.loadgen import LoadJob, Target
from bench.procstat import ProcessSampler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags of the ingest benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ingest flags to parser (shared with run_all)."""
    parser.add_argument("--batches", default="1,50,500",
                        help="alerts per request, comma separated (default 1,50,500)")
    parser.add_argument("--concurrency", default="8",
                        help="concurrent senders, comma separated (default 8)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--compare-alertmanager", action="store_true",
                        help="send the same load to prometheus-alertmanager (if on PATH)")
    parser.add_argument("--quick", action="store_true", help="4 s runs")
    parser.add_argument(
        "--gateway-workers", type=int, default=os.cpu_count() or 1,
        help="gateway processes on the port (IR_GATEWAY_WORKERS; default: one per core, "
             "as Alertmanager uses every core)",
    )
    parser.add_argument("--log-level", default="INFO", help="services' log level (default INFO)")
    add_broker_arguments(parser)


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise SystemExit(f"expected positive integers, got {text!r}")
    return values


async def measure(
    *, target: Target, url: str, token: str | None, batch: int, concurrency: int,
    duration: float, warmup: float, services: list[str], pids: dict[str, int], work: Path,
    run_id: str,
) -> dict[str, Any]:
    """One closed-loop run against one receiver; its figures and its processes' usage."""
    sampler = ProcessSampler()
    for name, pid in pids.items():
        sampler.watch(name, pid)
    job = LoadJob(
        url=url, target=target, mode="closed", token=token, concurrency=concurrency,
        batch=batch, duration_s=duration, warmup_s=warmup, services=services, run_id=run_id,
    )
    sampler.start()
    result = await run_loadgen(job, work, sampler=sampler, name=f"loadgen-{run_id}")
    sampler.stop()
    errors = result["request_errors"]
    return {
        "target": target,
        "batch": batch,
        "concurrency": concurrency,
        "duration_s": duration,
        "accepted_alerts_per_s": result["accepted_per_s"],
        "alerts_accepted": result["alerts_accepted"],
        "requests_ok": result["requests_ok"],
        "requests_finished_after_window": result["finished_after_window"],
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "request_latency_ms": result["latency_ms"],
        "loadgen_cpu_s": result["cpu_s"],
        "processes": sampler.report(),
    }


async def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """Every batch size x concurrency against the gateway (and Alertmanager), one stack."""
    duration = 4.0 if args.quick else args.duration
    batches = _ints(args.batches)
    concurrencies = _ints(args.concurrency)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    bench = generate_catalog()
    config_dir = write_config_dir(work / "config", bench)
    binary = alertmanager_binary() if args.compare_alertmanager else None
    notes: list[str] = []
    if args.compare_alertmanager and binary is None:
        notes.append("--compare-alertmanager: no prometheus-alertmanager on PATH, skipped")
    runs: list[dict[str, Any]] = []
    stack = BenchStack(work, config_dir=config_dir, services=("gateway",),
                       log_level=args.log_level, gateway_workers=args.gateway_workers,
                       bootstrap=args.bootstrap)
    alertmanager = AlertmanagerProcess(work / "alertmanager", binary) if binary else None
    started = time.time()
    try:
        await asyncio.to_thread(stack.start)
        if alertmanager is not None:
            await asyncio.to_thread(alertmanager.start)
        pids = stack.pids()
        gateway_pids = {"gateway": pids["gateway"], "broker": pids["broker-tansu"]}
        for concurrency in concurrencies:
            for batch in batches:
                runs.append(await measure(
                    target="gateway", url=stack.url("gateway") + "/alerts/alertmanager",
                    token=stack.token, batch=batch, concurrency=concurrency,
                    duration=duration, warmup=args.warmup, services=bench.names,
                    pids=gateway_pids, work=work, run_id=f"g{batch}c{concurrency}-",
                ))
                if alertmanager is not None and alertmanager.proc is not None:
                    runs.append(await measure(
                        target="alertmanager", url=alertmanager.url + "/api/v2/alerts",
                        token=None, batch=batch, concurrency=concurrency,
                        duration=duration, warmup=args.warmup, services=bench.names,
                        pids={"alertmanager": alertmanager.proc.pid}, work=work,
                        run_id=f"a{batch}c{concurrency}-",
                    ))
    finally:
        if alertmanager is not None:
            alertmanager.stop()
        await asyncio.to_thread(stack.stop)
    ratios: dict[str, float | None] = {}
    for run in runs:
        if run["target"] != "gateway":
            continue
        peer = next((r for r in runs if r["target"] == "alertmanager"
                     and r["batch"] == run["batch"]
                     and r["concurrency"] == run["concurrency"]), None)
        if peer is not None:
            key = f"batch={run['batch']},concurrency={run['concurrency']}"
            ratios[key] = (round(run["accepted_alerts_per_s"] / peer["accepted_alerts_per_s"], 2)
                           if peer["accepted_alerts_per_s"] else None)
    return {
        "benchmark": "ingest",
        "started_at": started,
        "host": host_info(),
        "config": {"batches": batches, "concurrency": concurrencies, "duration_s": duration,
                   "warmup_s": args.warmup, "acks": "all", "broker": broker_label(args.bootstrap),
                   "alertmanager": binary, "log_level": args.log_level,
                   "gateway_workers": args.gateway_workers},
        "runs": runs,
        "ratio_gateway_to_alertmanager": ratios,
        "harness": self_usage(),
        "work_dir": str(work),
        "notes": notes,
    }


def render(result: dict[str, Any], console: Console) -> None:
    """The ingest figures as a table."""
    table = Table(title="Ingest: accepted alerts/s (closed loop)")
    for column in ("target", "batch", "senders", "alerts/s", "p50 ms", "p99 ms", "errors",
                   "receiver cores", "receiver RSS MB", "broker cores", "loadgen cores"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for run in result["runs"]:
        procs = run["processes"]
        receiver = procs.get(run["target"], {})
        table.add_row(
            run["target"], str(run["batch"]), str(run["concurrency"]),
            fmt(run["accepted_alerts_per_s"]), fmt(run["request_latency_ms"].get("p50")),
            fmt(run["request_latency_ms"].get("p99")), str(run["errors"]),
            fmt(receiver.get("cpu_cores")), fmt(receiver.get("peak_rss_mb")),
            fmt(procs.get("broker", {}).get("cpu_cores")),
            fmt(procs["loadgen"].get("cpu_cores")),
        )
    console.print(table)
    for key, ratio in result["ratio_gateway_to_alertmanager"].items():
        console.print(f"gateway / alertmanager at {key}: [bold]{fmt(ratio)}x[/bold]")
    for note in result["notes"]:
        console.print(f"[yellow]{note}[/yellow]")


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.ingest`."""
    args = parse_args(argv)
    try:
        result = asyncio.run(run_ingest(args))
    except BenchError as exc:
        raise SystemExit(f"ingest benchmark failed: {exc}") from exc
    emit(result, lambda console: render(result, console))


if __name__ == "__main__":
    main()
