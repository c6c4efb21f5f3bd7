"""The load generator: a process of its own that posts alerts over HTTP keep-alive.

`python -m bench.loadgen JOB.json RESULT.json` reads a `LoadJob`, runs it and
writes a `LoadResult`. It runs apart from the harness so that its CPU does not
hide inside the figures of the process that measures (both are reported: on
two cores the generator is a real competitor of the system under test).

Two modes:

- **closed** (ingest): `concurrency` senders each post a batch of `batch`
  distinct alerts, wait for the answer, and post the next, for `warmup_s` +
  `duration_s`. Only requests that *complete* inside the measured window
  count, so the rate is what the receiver sustained, not what was queued.
- **plan** (latency, storms): play a plan file. Every `tick_s` the alerts that
  are due (and whose gate was accepted) go out in requests of at most `batch`
  alerts, at most `concurrency` in flight; when all senders are busy the
  schedule slips and the slip is reported. A refused request (503, network
  error) is retried after a short backoff, like Alertmanager retries a
  webhook, up to `max_attempts`. `speed` > 1 plays the plan faster (a
  backlog is loaded as fast as the gateway takes it). Each accepted alert is recorded with the
  wall-clock time its request was sent and answered (the ground truth the
  harness compares event timestamps with) and the event id the gateway
  returned for it.

HTTP goes through `bench.rawhttp` (prepared requests on kept-alive
connections, as `wrk` does) and the closed loop formats its bodies from
templates (`bench.payloads.IngestBodies`): with httpx and dict-built bodies
the generator used more CPU than the receivers it measured (a millisecond
per request; a pool of many connections cost more still).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from bench.payloads import IngestBodies, alertmanager_body, webhook_body
from bench.rawhttp import HttpError, RawPool
from bench.scenarios import PlannedAlert, read_plan
from bench.stats import summarize_ms

Target = Literal["gateway", "alertmanager"]


@dataclass
class LoadJob:
    """What the load generator is asked to do."""

    url: str
    target: Target = "gateway"
    mode: Literal["closed", "plan"] = "closed"
    token: str | None = None
    concurrency: int = 8
    batch: int = 50
    duration_s: float = 10.0
    warmup_s: float = 1.0
    services: list[str] = field(default_factory=list)
    run_id: str = "i"
    plan_file: str | None = None
    tick_s: float = 0.01
    speed: float = 1.0
    max_attempts: int = 30
    deadline_s: float = 600.0
    timeout_s: float = 30.0


@dataclass
class LoadResult:
    """What the load generator measured (written as JSON)."""

    target: str
    mode: str
    window_s: float = 0.0
    requests_ok: int = 0
    request_errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    alerts_sent: int = 0
    alerts_accepted: int = 0
    accepted_per_s: float = 0.0
    latency_ms: dict[str, float | int | None] = field(default_factory=dict)
    slip_ms: dict[str, float | int | None] = field(default_factory=dict)
    not_sent: int = 0
    finished_after_window: int = 0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    accepted: list[list[Any]] = field(default_factory=list)


class RefusedError(Exception):
    """The receiver did not accept a request (status or transport error)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Sender:
    """Posts one batch in the target's format and returns the gateway's event ids."""

    def __init__(self, job: LoadJob) -> None:
        self.job = job
        headers = {"Content-Type": "application/json"}
        if job.token:
            headers["Authorization"] = f"Bearer {job.token}"
        self.pool = RawPool(job.url, headers, job.timeout_s, job.concurrency)

    async def post(self, alerts: list[PlannedAlert], *, want_ids: bool) -> list[str]:
        """Send alerts; the event id per alert (gateway, when want_ids), else []."""
        body: Any = (
            webhook_body(alerts) if self.job.target == "gateway" else alertmanager_body(alerts)
        )
        try:
            status, content = await self.pool.post(orjson.dumps(body))
        except HttpError as exc:
            raise RefusedError(exc.kind) from exc
        if status not in (200, 202):
            raise RefusedError(f"http_{status}")
        if not want_ids:
            return []
        ids = [a["event_id"] for a in orjson.loads(content)["alerts"]]
        if len(ids) != len(alerts):
            raise RefusedError("ids_mismatch")
        return ids


# --- closed loop -----------------------------------------------------------------------


async def run_closed(job: LoadJob) -> LoadResult:
    """Saturate the receiver with `concurrency` senders for warm-up + duration.

    Throughput counts the alerts of requests that *completed* (202) inside the
    measured window, whenever they started; errors count every failed request
    that started after the warm-up, even if it failed after the window closed
    (a 503 after the gateway's publish timeout is still a refusal).
    """
    result = LoadResult(target=job.target, mode="closed")
    bodies = IngestBodies(job.target, job.services or ["bench-service"], job.run_id)
    pool = Sender(job).pool  # one kept-alive connection per sender
    seq = 0
    outcomes: list[tuple[float, float, str, int]] = []
    start = time.monotonic()
    window_start = start + job.warmup_s
    window_end = window_start + job.duration_s

    async def worker() -> None:
        nonlocal seq
        while time.monotonic() < window_end:
            body = bodies.body(seq, job.batch)
            seq += job.batch
            began = time.monotonic()
            try:
                status, _ = await pool.post(body)
                kind = "" if status in (200, 202) else f"http_{status}"
            except HttpError as exc:
                kind = exc.kind
            outcomes.append((began, time.monotonic(), kind, job.batch))

    result.started_at = time.time()
    try:
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    finally:
        await pool.close()
    result.finished_at = time.time()
    latencies: list[float] = []
    for began, ended, kind, count in outcomes:
        in_window = window_start <= ended <= window_end
        if kind:
            if began >= window_start or in_window:
                result.request_errors[kind] = result.request_errors.get(kind, 0) + 1
            continue
        if in_window:
            result.requests_ok += 1
            result.alerts_accepted += count
            latencies.append((ended - began) * 1000)
        if began >= window_start or in_window:
            result.alerts_sent += count
    result.finished_after_window = sum(1 for _, ended, _, _ in outcomes if ended > window_end)
    result.window_s = job.duration_s
    result.accepted_per_s = round(result.alerts_accepted / job.duration_s, 1)
    result.latency_ms = summarize_ms(latencies)
    return result


# --- plan playback ----------------------------------------------------------------------


@dataclass
class _Batch:
    alerts: list[PlannedAlert]
    attempts: int = 0


async def run_plan(job: LoadJob) -> LoadResult:
    """Play a plan file on schedule, honouring gates; record every accepted alert."""
    if job.plan_file is None:
        raise ValueError("plan mode needs plan_file")
    plan = list(read_plan(Path(job.plan_file)))
    result = LoadResult(target=job.target, mode="plan")
    accepted: set[str] = set()
    held: dict[str, list[PlannedAlert]] = {}
    ready: deque[PlannedAlert] = deque()
    retry: deque[_Batch] = deque()
    latencies: list[float] = []
    slips: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()
    gave_up: set[str] = set()
    slots = asyncio.Semaphore(job.concurrency)
    start = time.monotonic()
    deadline = start + job.deadline_s
    next_index = 0
    sender = Sender(job)
    try:

        async def send(batch: _Batch) -> None:
            batch.attempts += 1
            sent_wall = time.time()
            began = time.monotonic()
            try:
                ids = await sender.post(batch.alerts, want_ids=job.target == "gateway")
            except RefusedError as exc:
                result.request_errors[exc.kind] = result.request_errors.get(exc.kind, 0) + 1
                if batch.attempts < job.max_attempts:
                    result.retries += 1
                    await asyncio.sleep(min(0.1 * batch.attempts, 1.0))
                    retry.append(batch)
                else:
                    gave_up.update(a.bench_id for a in batch.alerts)
                return
            finally:
                slots.release()
            acked_wall = time.time()
            latencies.append((time.monotonic() - began) * 1000)
            result.requests_ok += 1
            for alert, event_id in zip(batch.alerts, ids or [""] * len(batch.alerts),
                                       strict=True):
                accepted.add(alert.bench_id)
                result.accepted.append(
                    [alert.bench_id, round(sent_wall, 6), round(acked_wall, 6), event_id]
                )
                ready.extendleft(reversed(held.pop(alert.bench_id, [])))

        result.started_at = time.time()
        while time.monotonic() < deadline:
            elapsed = time.monotonic() - start
            while next_index < len(plan) and plan[next_index].at <= elapsed * job.speed:
                alert = plan[next_index]
                next_index += 1
                if alert.gate is None or alert.gate in accepted:
                    ready.append(alert)
                else:
                    held.setdefault(alert.gate, []).append(alert)
            batches = list(retry)
            retry.clear()
            while ready:
                take = [ready.popleft() for _ in range(min(job.batch, len(ready)))]
                batches.append(_Batch(take))
            for batch in batches:
                await slots.acquire()
                if batch.attempts == 0:
                    now = (time.monotonic() - start) * job.speed
                    slips.extend((now - a.at) * 1000 / job.speed for a in batch.alerts)
                    result.alerts_sent += len(batch.alerts)
                task = asyncio.create_task(send(batch))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            finished = next_index >= len(plan) and not ready and not retry
            if finished and not in_flight:
                break
            await asyncio.sleep(job.tick_s)
        for task in list(in_flight):
            task.cancel()
        result.finished_at = time.time()
    finally:
        await sender.pool.close()
    result.window_s = round(time.monotonic() - start, 3)
    result.alerts_accepted = len(accepted)
    result.accepted_per_s = round(len(accepted) / max(result.window_s, 1e-9), 1)
    result.latency_ms = summarize_ms(latencies)
    result.slip_ms = summarize_ms(slips)
    result.not_sent = len(plan) - len(accepted)
    return result


def run(job: LoadJob) -> LoadResult:
    """Run a job to completion and add this process's own CPU and memory."""
    result = asyncio.run(run_closed(job) if job.mode == "closed" else run_plan(job))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = round(usage.ru_utime + usage.ru_stime, 2)
    result.peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.loadgen JOB.json RESULT.json`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m bench.loadgen JOB.json RESULT.json")
    try:
        job = LoadJob(**json.loads(Path(args[0]).read_text()))
    except (OSError, TypeError, ValueError) as exc:
        raise SystemExit(f"loadgen: invalid job file {args[0]}: {exc}") from exc
    result = run(job)
    Path(args[1]).write_text(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
