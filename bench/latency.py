"""Benchmark 2, pipeline latency: alert sent -> triaged -> classified -> first page.

Steady open-loop load at each rate (default 100 and 1,000 alerts/s) through
the running stack: gateway + triage, plus escalation (for `notification.sent`)
unless `--no-escalation`. A fresh stack per rate. The plan
(`bench.scenarios.generate_latency_plan`) opens new incidents at a fixed rate
(`--new-incident-rate`, default 2/s, the same at every load level) and fills
the rest of the rate with repeats of already-open conditions, as Alertmanager
re-notifies firing alerts; so every alert is triaged (joins or opens), and
every detection is classified and paged.

Requests carry `batch` alerts (default: rate/100, so 100 requests/s at any
rate; 1 alert per request at 100/s), at most `--concurrency` in flight.

Figures (ms), each as p50/p95/p99/max over alerts:

- `accept_ms`: the generator's request round trip (202 = in the log);
- `to_triaged`: every alert, to the `incident.opened`/`incident.updated`
  that put it in an incident;
- `to_classified`: each detection, to its incident's `incident.classified`;
- `to_notified`: each detection, to the first `notification.sent` of its
  incident (the on-call page; e-mail through the local SMTP sink).

`from_sent_ms` starts at the generator's own wall clock when it posted
(ground truth); `from_received_ms` at the gateway's `received_at` (event
timestamps only). End times are the events' `occurred_at`.

Usage: `python -m bench.latency [--rates 100,1000] [--duration 30]
[--new-incident-rate 2] [--no-escalation] [--quick]`.
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

from bench.catalog import generate_catalog, write_config_dir
from bench.harness import (
    BenchError,
    BenchStack,
    add_broker_arguments,
    broker_label,
    emit,
    fmt,
    host_info,
    process_table,
    run_loadgen,
    self_usage,
)
from bench.loadgen import LoadJob
from bench.observe import BULK_TOPICS, OUTCOME_TOPICS, EventTail, PipelineLog, read_log
from bench.procstat import ProcessSampler
from bench.scenarios import LatencySpec, generate_latency_plan, write_plan
from bench.scoring import pipeline_latency


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the latency flags to parser (shared with run_all)."""
    parser.add_argument("--rates", default="100,1000", help="alerts/s, comma separated")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per rate")
    parser.add_argument("--new-incident-rate", type=float, default=2.0,
                        help="new incidents opened per second (default 2)")
    parser.add_argument("--batch", type=int, default=0,
                        help="alerts per request (default: rate/100, at least 1)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight at most (high: the load stays open-loop)")
    parser.add_argument("--no-escalation", action="store_true",
                        help="run gateway + triage only (no notification.sent figures)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait for the pipeline to finish after the load")
    parser.add_argument("--quick", action="store_true", help="10 s per rate")
    parser.add_argument("--log-level", default="INFO", help="services' log level (default INFO)")
    add_broker_arguments(parser)


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"--rates expects numbers, got {text!r}") from exc
    if not rates or min(rates) <= 0:
        raise SystemExit(f"--rates expects positive numbers, got {text!r}")
    return rates


async def measure_rate(
    rate: float, args: argparse.Namespace, *, work: Path, config_dir: Path, duration: float,
) -> dict[str, Any]:
    """One steady-load run at rate on a fresh stack."""
    services = ("gateway", "triage") if args.no_escalation else ("gateway", "triage", "escalation")
    run_id = f"r{int(rate)}-"
    spec = LatencySpec(rate=rate, duration_s=duration, new_incident_rate=args.new_incident_rate)
    plan = generate_latency_plan(spec, run_id=run_id)
    detections = {a.bench_id for a in plan if a.detection}
    plan_file = write_plan(work / f"plan-{run_id}.jsonl", plan)
    batch = args.batch or max(1, round(rate / 100))
    stack = BenchStack(work / f"rate-{int(rate)}", config_dir=config_dir, services=services,
                       log_level=args.log_level, bootstrap=args.bootstrap)
    await asyncio.to_thread(stack.start)
    tail: EventTail | None = None
    try:
        tail = await EventTail(stack.bootstrap, stack.topic_prefix, OUTCOME_TOPICS).start()
        sampler = ProcessSampler()
        for name, pid in stack.pids().items():
            sampler.watch(name, pid)
        sampler.start()
        job = LoadJob(
            url=stack.url("gateway") + "/alerts/alertmanager", target="gateway", mode="plan",
            token=stack.token, concurrency=args.concurrency, batch=batch,
            plan_file=str(plan_file), tick_s=max(0.002, batch / rate),
            deadline_s=duration * 3 + 30, run_id=run_id,
        )
        load = await run_loadgen(job, work, sampler=sampler, name=f"loadgen-{run_id}")
        accepted = load["accepted"]
        event_ids = {row[3] for row in accepted}
        detection_ids = {row[3] for row in accepted if row[0] in detections}
        want_notified = not args.no_escalation

        def outcomes(log: PipelineLog) -> bool:
            if not detection_ids <= log.classified_by_alert.keys():
                return False
            incidents = {log.classified_incident[e] for e in detection_ids}
            return not want_notified or incidents <= log.notified_first.keys()

        outcomes_seen = await tail.wait_for(outcomes, timeout_s=args.drain_timeout)
        sampler.stop()
        # The bulk, read now that nothing is measured (see bench/observe.py).
        bulk = await read_log(stack.bootstrap, stack.topic_prefix, BULK_TOPICS)
        log = tail.log
        drained = outcomes_seen and event_ids <= bulk.membership.keys()
        figures = pipeline_latency(
            accepted=accepted, detections=detections, received=bulk.received,
            membership=bulk.membership, classified_by_alert=log.classified_by_alert,
            notified_first=log.notified_first, classified_seen=log.classified_seen,
        )
    finally:
        if tail is not None:
            await tail.stop()
        await asyncio.to_thread(stack.stop)
    return {
        "rate": rate,
        "duration_s": duration,
        "batch": batch,
        "concurrency": args.concurrency,
        "services": list(services),
        "alerts_planned": len(plan),
        "alerts_accepted": load["alerts_accepted"],
        "achieved_rate": load["accepted_per_s"],
        "detections": len(detection_ids),
        "request_errors": load["request_errors"],
        "schedule_slip_ms": load["slip_ms"],
        "drained": drained,
        "latency": figures,
        "loadgen_cpu_s": load["cpu_s"],
        "processes": sampler.report(),
    }


async def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Every rate, one after the other, each on its own stack."""
    duration = 10.0 if args.quick else args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    config_dir = write_config_dir(work / "config", generate_catalog())
    started = time.time()
    runs = [await measure_rate(rate, args, work=work, config_dir=config_dir, duration=duration)
            for rate in _rates(args.rates)]
    return {
        "benchmark": "latency",
        "started_at": started,
        "host": host_info(),
        "config": {"broker": broker_label(args.bootstrap), "rates": _rates(args.rates),
                   "duration_s": duration,
                   "new_incident_rate": args.new_incident_rate,
                   "escalation": not args.no_escalation, "log_level": args.log_level},
        "runs": runs,
        "harness": self_usage(),
        "work_dir": str(work),
    }


def render(result: dict[str, Any], console: Console) -> None:
    """Latency figures as a table per rate."""
    table = Table(title="Pipeline latency (ms, from the generator's send time)")
    for column in ("rate", "achieved", "stage", "n", "p50", "p95", "p99", "max", "missing"):
        table.add_column(column, justify="right")
    for run in result["runs"]:
        lat = run["latency"]
        stages = [("accepted (202)", lat["accept_ms"], 0)]
        for stage in ("to_triaged", "to_classified", "to_notified"):
            stages.append((stage, lat[stage]["from_sent_ms"], lat[stage]["missing"]))
        for i, (stage, s, missing) in enumerate(stages):
            table.add_row(
                fmt(run["rate"]) if i == 0 else "", fmt(run["achieved_rate"]) if i == 0 else "",
                stage, fmt(s.get("count")), fmt(s.get("p50")), fmt(s.get("p95")),
                fmt(s.get("p99")), fmt(s.get("max")), str(missing),
            )
    console.print(table)
    for run in result["runs"]:
        windows = ", ".join(
            f"{w['from_s']:g} s: {fmt(w['p50'])}/{fmt(w['p99'])}"
            for w in run["latency"]["to_triaged"]["by_window"]
        )
        console.print(f"{run['rate']:g}/s, to_triaged p50/p99 (ms) by when sent: {windows}")
    for run in result["runs"]:
        console.print(process_table(f"Processes at {run['rate']:g} alerts/s", run["processes"]))
        if not run["drained"]:
            console.print(f"[yellow]{run['rate']:g}/s: the pipeline did not finish within "
                          "the drain timeout; missing counts above are real[/yellow]")


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.latency`."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(run_latency(args))
    except BenchError as exc:
        raise SystemExit(f"latency benchmark failed: {exc}") from exc
    emit(result, lambda console: render(result, console))


if __name__ == "__main__":
    main()
