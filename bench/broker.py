"""The broker's own costs, apart from our services: what a fetch, a produce, a commit cost it.

Why this exists: at 1,000 alerts/s the embedded broker's CPU climbs steadily
through a latency run (0.3 to 0.85 core in 30 s) and the pipeline's latency
climbs with it, while the services' CPU stays flat. This measures the cause
directly on a fresh embedded broker (Tansu, memory engine), one partition:
records are produced in small batches (`--batch`, as a gateway at this rate
writes them: about one record batch per alert and partition), and at each
size step it measures, from the broker's CPU time (`/proc`):

- `fetch_ms`: a fetch near the end of the partition that returns records
  (what every consumer keeping up does, every poll);
- `list_offsets_ms`: asking for the end offset (consumers do when they
  start without a committed offset, lag monitors do all the time);
- `produce_ms`: one produce request of `--batch` records, acks=all;
- `commit_ms`: one offset commit of a consumer group.

Result on the 2-core VM of the README (Tansu 0.6.0, medians of 3 runs): a
fetch costs about 0.65 us of broker CPU per record batch stored in the
partition (0.35 ms at 200 batches, 2.7 ms at 4,000), an end-offset query
about 0.45 us per batch; produce and commit stay flat (0.2 and 0.1 ms).
With a real Kafka broker a fetch costs the same at any log size (offset
index).

Usage: `python -m bench.broker [--sizes 1000,5000,10000,20000] [--batch 5]
[--samples 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from bench.harness import emit, fmt, host_info
from bench.procstat import cpu_seconds
from shared.embedded import EmbeddedBroker

TOPIC = "bench.broker"
VALUE = b"x" * 700  # about an alert.received record


def _broker_cpu_s(pid: int) -> float:
    seconds = cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError(f"the broker (pid {pid}) is gone")
    return seconds


async def _per_call_ms(pid: int, samples: int, call: Any) -> float:
    """Broker CPU (ms) per awaited call, over samples calls."""
    before = _broker_cpu_s(pid)
    for _ in range(samples):
        await call()
    return round((_broker_cpu_s(pid) - before) / samples * 1000, 3)


async def measure(sizes: list[int], batch: int, samples: int) -> list[dict[str, Any]]:
    """Grow one partition in batches of `batch` records; per size, the four costs."""
    broker = await EmbeddedBroker(memory=True).astart()
    pid = broker.pids["tansu"]
    bootstrap = broker.bootstrap_servers
    tp = TopicPartition(TOPIC, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    # Tansu answers a fetch with max wait 0 with nothing: wait a little.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=5)
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="bench.broker",
                             enable_auto_commit=False)
    rows: list[dict[str, Any]] = []
    try:
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        await producer.start()
        await reader.start()
        await group.start()
        reader.assign([tp])
        group.assign([tp])

        async def produce() -> None:
            futures = [await producer.send(TOPIC, VALUE, partition=0) for _ in range(batch)]
            await asyncio.gather(*futures)

        end = 0

        async def end_offset() -> None:
            nonlocal end
            end = (await reader.end_offsets([tp]))[tp]

        async def fetch() -> None:
            # From a little before the end (Tansu's end offset trails the last batch).
            reader.seek(tp, max(0, end - 20))
            deadline = time.monotonic() + 10
            while not await reader.getmany(tp, timeout_ms=1000):
                if time.monotonic() > deadline:
                    raise RuntimeError("the broker returned no records near the end")

        async def commit() -> None:
            await group.commit({tp: 1})

        written = 0
        for size in sizes:
            while written < size:
                await produce()
                written += batch
            rows.append({
                "records": written,
                "record_batches": written // batch,
                "list_offsets_ms": await _per_call_ms(pid, samples, end_offset),
                "fetch_ms": await _per_call_ms(pid, samples, fetch),
                "produce_ms": await _per_call_ms(pid, samples, produce),
                "commit_ms": await _per_call_ms(pid, samples, commit),
            })
            written += samples * batch
    finally:
        await group.stop()
        await reader.stop()
        await producer.stop()
        await admin.close()
        await broker.astop()
    return rows


def render(result: dict[str, Any], console: Console) -> None:
    """The four costs per partition size."""
    table = Table(title=f"Broker CPU per call (ms), batches of {result['config']['batch']}")
    for column in ("records", "record batches", "list offsets", "fetch", "produce", "commit"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(*(fmt(row[k]) for k in ("records", "record_batches", "list_offsets_ms",
                                               "fetch_ms", "produce_ms", "commit_ms")))
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.broker`."""
    parser = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__)
    parser.add_argument("--sizes", default="1000,5000,10000,20000",
                        help="records in the partition at each step, ascending")
    parser.add_argument("--batch", type=int, default=5, help="records per produce request")
    parser.add_argument("--samples", type=int, default=100, help="calls measured per step")
    args = parser.parse_args(argv)
    try:
        sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError as exc:
        raise SystemExit(f"--sizes expects integers, got {args.sizes!r}") from exc
    if not sizes or sizes[0] <= 0 or args.batch <= 0 or args.samples <= 0:
        raise SystemExit("--sizes, --batch and --samples must be positive")
    started = time.time()
    rows = asyncio.run(measure(sizes, args.batch, args.samples))
    result = {
        "benchmark": "broker",
        "started_at": started,
        "host": host_info(),
        "config": {"sizes": sizes, "batch": args.batch, "samples": args.samples,
                   "broker": "tansu memory://"},
        "rows": rows,
    }
    emit(result, lambda console: render(result, console))


if __name__ == "__main__":
    main()
