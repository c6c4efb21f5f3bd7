"""`make bench`: every benchmark in one go, one JSON object with all of them.

Runs ingest, pipeline latency, storm and scale one after the other (each on a
fresh stack: they would distort each other on two cores), prints each
benchmark's summary to stderr as it finishes, then one JSON object as the last
line of stdout: `{"benchmark": "all", "summary": {...headline figures...},
"ingest": {...}, "latency": {...}, "storm": {...}, "scale": {...}}`.

Sizes: the default takes about seven minutes on two shared cores (storm of
30,000 alerts over 90 s); `--quick` is a smoke run of about three minutes;
`--full` uses the issue's sizes (100,000-alert storm over three minutes,
20,000-alert scale backlog; about ten minutes when triage keeps up, much
longer when it does not: the storm waits for the drain). Alertmanager is compared automatically
when `prometheus-alertmanager` is on PATH (`--no-alertmanager` to skip).

Usage: `python -m bench.run_all [--quick | --full] [--only ingest,storm]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bench import ingest, latency, scale, storm
from bench.harness import (
    BenchError,
    add_broker_arguments,
    alertmanager_binary,
    emit,
    host_info,
)

BENCHMARKS = ("ingest", "latency", "storm", "scale")

SIZES: dict[str, dict[str, list[str]]] = {
    "quick": {
        "ingest": ["--quick"],
        "latency": ["--quick"],
        "storm": ["--quick"],
        "scale": ["--quick"],
    },
    "default": {
        "ingest": ["--duration", "10"],
        "latency": ["--duration", "20"],
        "storm": ["--alerts", "30000", "--duration", "90"],
        "scale": ["--alerts", "10000"],
    },
    "full": {
        "ingest": ["--duration", "10"],
        "latency": ["--duration", "30"],
        "storm": ["--alerts", "100000", "--duration", "180"],
        "scale": ["--alerts", "20000"],
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags of run_all."""
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke-sized runs")
    size.add_argument("--full", action="store_true", help="the issue's sizes (100k storm)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-alertmanager", action="store_true",
                        help="do not compare ingest with prometheus-alertmanager")
    parser.add_argument("--log-level", default="INFO", help="services' log level (default INFO)")
    add_broker_arguments(parser)
    return parser.parse_args(argv)


def _sub_args(
    add: Callable[[argparse.ArgumentParser], None], argv: list[str]
) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures worth copying into the README, from each benchmark's result."""
    out: dict[str, Any] = {}
    if "ingest" in results:
        out["ingest"] = [
            {"target": r["target"], "batch": r["batch"], "senders": r["concurrency"],
             "alerts_per_s": r["accepted_alerts_per_s"],
             "p50_ms": r["request_latency_ms"].get("p50"),
             "p99_ms": r["request_latency_ms"].get("p99"), "errors": r["errors"],
             "receiver_cores": r["processes"].get(r["target"], {}).get("cpu_cores"),
             "receiver_peak_rss_mb": r["processes"].get(r["target"], {}).get("peak_rss_mb")}
            for r in results["ingest"]["runs"]
        ]
        out["ingest_ratio_gateway_to_alertmanager"] = \
            results["ingest"]["ratio_gateway_to_alertmanager"]
        if "alertmanager_skipped" in results["ingest"]:
            out["alertmanager_skipped"] = results["ingest"]["alertmanager_skipped"]
    if "latency" in results:
        out["latency"] = [
            {"rate": r["rate"], "achieved_rate": r["achieved_rate"],
             **{stage: {q: r["latency"][stage]["from_sent_ms"].get(q)
                        for q in ("p50", "p95", "p99")}
                for stage in ("to_triaged", "to_classified", "to_notified")}}
            for r in results["latency"]["runs"]
        ]
    if "storm" in results:
        s = results["storm"]
        out["storm"] = {
            "alerts": s["score"]["alerts_accepted"], "true_incidents": s["score"]["true_incidents"],
            "incidents_created": s["score"]["incidents_created"],
            "bcubed_precision": s["score"]["bcubed_precision"],
            "bcubed_recall": s["score"]["bcubed_recall"],
            "folded_right": s["score"]["folded_right"],
            "compression_ratio": s["score"]["compression_ratio"],
            "loss_check": s["score"]["loss_check"],
            "time_to_drain_s": s["drain"].get("time_to_drain_s"),
            "triage_alerts_per_s": s["drain"].get("triage_alerts_per_s"),
        }
    if "scale" in results:
        out["scale"] = [
            {"triage_replicas": r["triage_replicas"],
             "triage_alerts_per_s": r["triage_alerts_per_s"], "speedup": r["speedup"],
             "loss_check": r["loss_check"]}
            for r in results["scale"]["runs"]
        ]
    return out


def alertmanager_skipped(refused: bool) -> str | None:
    """Why ingest runs without the Alertmanager side-by-side, or None when it compares."""
    if refused:
        return "--no-alertmanager"
    if alertmanager_binary() is None:
        return ("prometheus-alertmanager is not on PATH (Debian's package prometheus-alertmanager;"
                " `make bench` installs it when run as root with apt-get)")
    return None


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected benchmarks in order; print each summary as it finishes."""
    chosen = [b for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
    size = "quick" if args.quick else "full" if args.full else "default"
    common = ["--log-level", args.log_level]
    if args.bootstrap is not None:
        common += ["--bootstrap", args.bootstrap]
    console = Console(stderr=True)
    results: dict[str, Any] = {}
    started = time.time()
    for name in BENCHMARKS:
        if name not in chosen:
            continue
        console.rule(f"{name} ({size})")
        argv = SIZES[size][name] + common
        if name == "ingest":
            skipped = alertmanager_skipped(args.no_alertmanager)
            if skipped is None:
                argv.append("--compare-alertmanager")
            else:
                console.print(f"[yellow]no Alertmanager side-by-side: {skipped}")
            result = await ingest.run_ingest(_sub_args(ingest.add_arguments, argv))
            if skipped is not None:
                result["alertmanager_skipped"] = skipped
            ingest.render(result, console)
        elif name == "latency":
            result = await latency.run_latency(_sub_args(latency.add_arguments, argv))
            latency.render(result, console)
        elif name == "storm":
            result = await storm.run_storm(
                storm.options_from(_sub_args(storm.add_arguments, argv)),
                bootstrap=args.bootstrap)
            storm.render(result, console)
        else:
            result = await scale.run_scale(_sub_args(scale.add_arguments, argv))
            scale.render(result, console)
        results[name] = result
    return {
        "benchmark": "all",
        "size": size,
        "started_at": started,
        "elapsed_s": round(time.time() - started, 1),
        "host": host_info(),
        "summary": headline(results),
        **results,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.run_all` (what `make bench` runs)."""
    args = parse_args(argv)
    try:
        result = asyncio.run(run_all(args))
    except (BenchError, ValueError) as exc:
        raise SystemExit(f"benchmarks failed: {exc}") from exc
    emit(result, lambda console: console.rule(f"all done in {result['elapsed_s']} s"))


if __name__ == "__main__":
    main()
