"""Benchmark 4, scale: the storm drained by one, then by two (or more) triage instances.

Triage scales out as a consumer group: `alert.received` partitions (keyed by
correlation group) are shared among the replicas, while each replica reads
every lifecycle event for its own projection. To measure what the replicas
add, each run uses `bench.storm.run_storm(mode="backlog")`: the storm is first
loaded through the gateway with triage stopped, then all replicas start
together and drain it. The gateway and the load generator are idle by then,
so the two cores go to the broker and the triage replicas only; a live storm
on two cores would mostly measure who wins the CPU.

Reported per replica count: triage alerts/s (first to last alert triaged,
event timestamps), time to drain (from the replicas' start, which includes
process start-up, projection restore and the consumer-group join), the loss
and correlation checks, how many alerts each replica handled, CPU per
process; and the speed-up of each run over the one-replica run.

Usage: `python -m bench.scale [--alerts 20000] [--replicas 1,2] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import (
    BenchError,
    add_broker_arguments,
    broker_label,
    emit,
    fmt,
    host_info,
    self_usage,
)
from bench.storm import StormOptions, run_storm

QUICK_ALERTS = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scale flags to parser."""
    parser.add_argument("--alerts", type=int, default=20_000, help="alerts in the backlog")
    parser.add_argument("--incidents", type=int, default=40, help="true incidents")
    parser.add_argument("--replicas", default="1,2", help="triage replica counts to compare")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ALERTS} alerts")
    parser.add_argument("--log-level", default="INFO", help="services' log level (default INFO)")
    add_broker_arguments(parser)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"--replicas expects integers, got {text!r}") from exc
    if not counts or min(counts) < 1:
        raise SystemExit(f"--replicas expects positive integers, got {text!r}")
    return counts


async def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    """One backlog drain per replica count, each on a fresh stack."""
    alerts = QUICK_ALERTS if args.quick else args.alerts
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    started = time.time()
    runs: list[dict[str, Any]] = []
    for replicas in _counts(args.replicas):
        options = StormOptions(
            alerts=alerts, duration_s=max(alerts / 1000, 10.0), incidents=args.incidents,
            triage_replicas=replicas, mode="backlog", log_level=args.log_level,
        )
        storm = await run_storm(options, work=work / f"replicas-{replicas}",
                                bootstrap=args.bootstrap)
        runs.append({
            "triage_replicas": replicas,
            "triage_alerts_per_s": storm["drain"].get("triage_alerts_per_s"),
            "time_to_drain_s": storm["drain"].get("time_to_drain_s"),
            "drained": storm["drain"].get("drained"),
            "loss_check": storm["score"]["loss_check"],
            "incidents_created": storm["score"]["incidents_created"],
            "true_incidents": storm["score"]["true_incidents"],
            "folded_right": storm["score"]["folded_right"],
            "alerts_per_replica": storm["triage_replicas"],
            "processes": storm["processes"],
            "storm": storm,
        })
    base = runs[0]["triage_alerts_per_s"] if runs else None
    for run in runs:
        rate = run["triage_alerts_per_s"]
        run["speedup"] = round(rate / base, 2) if base and rate else None
    return {
        "benchmark": "scale",
        "started_at": started,
        "host": host_info(),
        "config": {"broker": broker_label(args.bootstrap), "alerts": alerts,
                   "incidents": args.incidents,
                   "replicas": _counts(args.replicas), "mode": "backlog",
                   "log_level": args.log_level},
        "runs": runs,
        "harness": self_usage(),
        "work_dir": str(work),
    }


def render(result: dict[str, Any], console: Console) -> None:
    """Throughput per replica count."""
    table = Table(title=f"Scale: draining a {result['config']['alerts']}-alert storm backlog")
    for column in ("replicas", "triage alerts/s", "speed-up", "drain s", "loss check",
                   "incidents / true", "folded right", "triage cores", "broker cores"):
        table.add_column(column, justify="right")
    for run in result["runs"]:
        procs = run["processes"]
        triage_cores = sum(p.get("cpu_cores") or 0 for name, p in procs.items()
                           if name.startswith("triage"))
        table.add_row(
            str(run["triage_replicas"]), fmt(run["triage_alerts_per_s"]), fmt(run["speedup"]),
            fmt(run["time_to_drain_s"]), run["loss_check"],
            f"{run['incidents_created']} / {run['true_incidents']}", fmt(run["folded_right"]),
            fmt(round(triage_cores, 2)), fmt(procs.get("broker-tansu", {}).get("cpu_cores")),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.scale`."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(run_scale(args))
    except (BenchError, ValueError) as exc:
        raise SystemExit(f"scale benchmark failed: {exc}") from exc
    emit(result, lambda console: render(result, console))


if __name__ == "__main__":
    main()
