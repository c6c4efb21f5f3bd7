"""Benchmark 3, alert storm: a generated cascading failure with a known answer.

`--alerts` alerts (default 100,000) over `--duration` seconds (default 180)
from the 200-service catalog, `--incidents` true incidents (default 40), each
a cascade from a root service to (most of) its dependents; see
`bench.scenarios` for how the ground truth is kept unambiguous. The storm is
played through gateway + triage (`--triage-replicas` processes in one
consumer group) by the separate load generator, then the harness waits until
every accepted alert is in an incident (or nothing moved for `--idle-timeout`
seconds) and scores the result (`bench.scoring`).

`run_storm` is also what `bench.scale` and `tests/integration/test_storm.py`
call. Its `mode="backlog"` first loads the whole storm through the gateway
with triage stopped, then starts the triage replicas together and times how
fast they drain the backlog: that isolates triage's throughput from the
gateway and the load generator, which share the same two cores.

Reported (JSON `score`, `drain`): incidents created vs true incidents, B-cubed
precision/recall, share of alerts folded into the right incident, split and
merged incidents, compression ratio, loss check (every accepted alert in
exactly one incident), time to drain and triage throughput.

Usage: `python -m bench.storm [--alerts N] [--duration S] [--incidents K]
[--triage-replicas R] [--mode live|backlog] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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
    scrape_counter,
    self_usage,
)
from bench.loadgen import LoadJob
from bench.observe import MEMBERSHIP_TOPICS, EventTail, PipelineLog, read_log
from bench.procstat import ProcessSampler
from bench.scenarios import StormSpec, generate_storm, write_plan
from bench.scoring import score_storm
from bench.stats import summarize_ms
from shared.topics import Topic

QUICK_ALERTS = 10_000
QUICK_DURATION_S = 30.0


@dataclass
class StormOptions:
    """How big the storm is and how it is played."""

    alerts: int = 100_000
    duration_s: float = 180.0
    incidents: int = 40
    seed: int = 11
    triage_replicas: int = 1
    mode: Literal["live", "backlog"] = "live"
    batch: int = 50
    concurrency: int = 8
    tick_s: float = 0.05
    drain_timeout_s: float = 1800.0
    idle_timeout_s: float = 60.0
    log_level: str = "INFO"


async def run_storm(
    options: StormOptions,
    *,
    work: Path | None = None,
    bootstrap: str | None = None,
    topic_prefix: str | None = None,
) -> dict[str, Any]:
    """Generate, play, drain and score one storm on a fresh stack; the result as a dict.

    topic_prefix defaults to one of the stack's own on a given broker (`BenchStack`).
    """
    work = work or Path(tempfile.mkdtemp(prefix="bench-storm-"))
    bench = generate_catalog()
    config_dir = write_config_dir(work / "config", bench)
    spec = StormSpec(total_alerts=options.alerts, duration_s=options.duration_s,
                     incidents=options.incidents, seed=options.seed)
    storm = generate_storm(bench, spec, run_id=f"{options.mode[0]}{options.triage_replicas}-")
    plan_file = write_plan(work / "storm-plan.jsonl", storm.alerts)
    live = options.mode == "live"
    stack = BenchStack(
        work, config_dir=config_dir,
        services=("gateway", "triage") if live else ("gateway",),
        triage_replicas=options.triage_replicas if live else 1,
        bootstrap=bootstrap, topic_prefix=topic_prefix, log_level=options.log_level,
    )
    await asyncio.to_thread(stack.start)
    tail: EventTail | None = None
    try:
        tail = await EventTail(stack.bootstrap, stack.topic_prefix, MEMBERSHIP_TOPICS,
                               fetch_max_wait_ms=500, fetch_min_bytes=256 * 1024).start()
        sampler = ProcessSampler()
        for name, pid in stack.pids().items():
            sampler.watch(name, pid)
        sampler.start()
        job = LoadJob(
            url=stack.url("gateway") + "/alerts/alertmanager", target="gateway", mode="plan",
            token=stack.token, concurrency=options.concurrency, batch=options.batch,
            plan_file=str(plan_file), tick_s=options.tick_s,
            speed=1.0 if live else 1e6,
            deadline_s=options.duration_s * 3 + 120, run_id="storm",
        )
        load = await run_loadgen(job, work, sampler=sampler, name="loadgen-storm")
        accepted = {row[0]: row[3] for row in load["accepted"]}
        wanted = set(accepted.values())
        triage_started = time.time()
        if not live:
            await asyncio.to_thread(_start_triage, stack, options.triage_replicas)
            for name, pid in stack.pids().items():
                if name.startswith("triage"):
                    sampler.watch(name, pid)
        drained = await tail.wait_for(
            lambda log: wanted <= log.membership.keys(),
            timeout_s=options.drain_timeout_s, idle_s=options.idle_timeout_s,
        )
        sampler.stop()
        per_replica: dict[str, dict[str, Any]] = {}
        for n, url in enumerate(stack.triage_urls(), 1):
            try:
                per_replica[f"triage-{n}"] = await scrape_counter(url, "ir_triage_alerts_total")
            except Exception as exc:  # a dead replica is a finding, not a harness crash
                per_replica[f"triage-{n}"] = {"error": str(exc)}
        log = tail.log
        await tail.stop()
        tail = None
        # alert.received is read once, after the drain, not followed live (see bench.observe).
        received = (await read_log(stack.bootstrap, stack.topic_prefix, (Topic.ALERT_RECEIVED,))
                    ).received
        recount: dict[str, Any] = {}
        if not drained:
            # Before blaming triage, read the log again from scratch: the live tail
            # could have missed records the broker did store.
            fresh = await read_log(stack.bootstrap, stack.topic_prefix, MEMBERSHIP_TOPICS)
            recount = {
                "live_tail_triaged": len(wanted & log.membership.keys()),
                "fresh_read_triaged": len(wanted & fresh.membership.keys()),
                "live_tail_missed": sorted(
                    (wanted & fresh.membership.keys()) - log.membership.keys())[:10],
            }
            log = fresh
    finally:
        if tail is not None:
            await tail.stop()
        await asyncio.to_thread(stack.stop)
    score = score_storm(truth=storm.truth(), accepted=accepted, membership=log.membership,
                        received=received.keys())
    return {
        "benchmark": "storm" if live else "storm-backlog",
        "host": host_info(),
        "config": {**asdict(options), "broker": broker_label(bootstrap),
                   "catalog_services": len(bench.names),
                   "alert_conditions": len({(a.service, a.name, a.instance)
                                            for a in storm.alerts})},
        "true_incident_sizes": sorted(len(i.services) for i in storm.incidents),
        "score": score.as_dict(),
        "incidents_opened_total": len(log.opened),
        "recount": recount,
        "opened_records": log.opened_records,
        "drain": _drain(load, log, wanted, triage_started=None if live else triage_started,
                        drained=drained),
        "ingest": {k: load[k] for k in ("alerts_sent", "alerts_accepted", "accepted_per_s",
                                        "request_errors", "retries", "latency_ms", "slip_ms",
                                        "not_sent", "window_s", "cpu_s")},
        "triage_replicas": per_replica,
        "processes": sampler.report(),
        "harness": self_usage(),
        "work_dir": str(work),
    }


def _start_triage(stack: BenchStack, replicas: int) -> None:
    """Start every triage replica at once (they join one consumer group together)."""
    stack.main.start_service("triage")
    extra = [
        _threaded(stack.add_triage_replica, n) for n in range(2, replicas + 1)
    ]
    stack.main.wait_healthy("triage")
    for thread in extra:
        thread.join()


def _threaded(target: Any, *args: Any) -> Any:
    import threading

    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _drain(
    load: dict[str, Any], log: PipelineLog, wanted: set[str], *, triage_started: float | None,
    drained: bool,
) -> dict[str, Any]:
    """Time to drain and triage throughput, from event timestamps."""
    times = [min(log.membership[e].values()) for e in wanted if e in log.membership]
    if not times:
        return {"drained": False, "triaged": 0}
    first, last = min(times), max(times)
    origin = triage_started if triage_started is not None else load["started_at"]
    lag = [(t - load["finished_at"]) * 1000 for t in times if t > load["finished_at"]]
    return {
        "drained": drained,
        "triaged": len(times),
        "time_to_drain_s": round(last - origin, 2),
        "measured_from": "triage start" if triage_started is not None else "first alert sent",
        "load_s": round(load["finished_at"] - load["started_at"], 2),
        "last_triaged_after_load_s": round(last - load["finished_at"], 2),
        "triage_alerts_per_s": round(len(times) / max(last - first, 1e-9), 1),
        "triaged_after_load_ms": summarize_ms(lag),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the storm flags to parser."""
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts in the storm")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds the storm lasts")
    parser.add_argument("--incidents", type=int, default=40, help="true incidents (cascades)")
    parser.add_argument("--seed", type=int, default=11, help="scenario seed")
    parser.add_argument("--triage-replicas", type=int, default=1, help="triage processes")
    parser.add_argument("--mode", choices=("live", "backlog"), default="live",
                        help="live: triage runs during the storm; backlog: drain afterwards")
    parser.add_argument("--batch", type=int, default=50, help="alerts per request at most")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="give up when no alert was triaged for this many seconds")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ALERTS} alerts over {QUICK_DURATION_S:g} s")
    parser.add_argument("--log-level", default="INFO", help="services' log level (default INFO)")
    add_broker_arguments(parser)


def options_from(args: argparse.Namespace) -> StormOptions:
    """StormOptions from parsed flags."""
    return StormOptions(
        alerts=QUICK_ALERTS if args.quick else args.alerts,
        duration_s=QUICK_DURATION_S if args.quick else args.duration,
        incidents=args.incidents, seed=args.seed, triage_replicas=args.triage_replicas,
        mode=args.mode, batch=args.batch, concurrency=args.concurrency,
        idle_timeout_s=args.idle_timeout, log_level=args.log_level,
    )


def render(result: dict[str, Any], console: Console) -> None:
    """The storm's score and drain figures."""
    score, drain = result["score"], result["drain"]
    table = Table(title=f"Storm ({result['benchmark']}): {score['alerts_accepted']} alerts "
                        f"accepted, {result['config']['triage_replicas']} triage replica(s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("true incidents", score["true_incidents"]),
        ("incidents created", score["incidents_created"]),
        ("split true incidents", score["split_true_incidents"]),
        ("merged incidents", score["merged_incidents"]),
        ("B-cubed precision", score["bcubed_precision"]),
        ("B-cubed recall", score["bcubed_recall"]),
        ("alerts folded into the right incident", score["folded_right"]),
        ("compression (alerts/incident)", score["compression_ratio"]),
        ("loss check", score["loss_check"]),
        ("lost / duplicated / missing from log",
         f"{score['lost']} / {score['duplicated']} / {score['missing_from_log']}"),
        ("ingest alerts/s (gateway)", result["ingest"]["accepted_per_s"]),
        (f"time to drain s (from {drain.get('measured_from')})", drain.get("time_to_drain_s")),
        ("last alert triaged after load end s", drain.get("last_triaged_after_load_s")),
        ("triage alerts/s", drain.get("triage_alerts_per_s")),
    ]
    for name, value in rows:
        table.add_row(name, fmt(value))
    console.print(table)
    console.print(process_table("Processes", result["processes"]))


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.storm`."""
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(run_storm(options_from(args), bootstrap=args.bootstrap))
    except (BenchError, ValueError) as exc:
        raise SystemExit(f"storm benchmark failed: {exc}") from exc
    emit(result, lambda console: render(result, console))


if __name__ == "__main__":
    main()
