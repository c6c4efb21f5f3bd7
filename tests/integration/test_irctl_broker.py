"""``irctl broker --memory`` as a real subprocess: prints its address, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.embedded import EMBEDDED_MAX_PARTITIONS, free_port

pytestmark = pytest.mark.integration

READY = re.compile(r"bootstrap_servers=(\S+)")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def _comm(pid: int) -> str:
    """Executable name of ``pid``."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


async def _wait_line(lines: queue.Queue[str], pattern: re.Pattern[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.to_thread(lines.get, timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        seen.append(line)
        if match := pattern.search(line):
            return match.group(1)
    raise AssertionError(f"no line matching {pattern.pattern!r}; output so far: {seen}")


async def test_irctl_broker_memory_serves_then_stops_cleanly(tmp_path: Path) -> None:
    """The command prints the bootstrap address, accepts a write and exits 0 on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irctl.app",
            "broker",
            "--memory",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--topic-prefix",
            "cli.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        bootstrap = await _wait_line(lines, READY, timeout=60)
        assert bootstrap == f"127.0.0.1:{port}"
        children = _children(proc.pid)
        assert {_comm(c) for c in children} == {"tansu"}

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait("cli.incident.opened", b"v", key=b"inc-1")
            # The embedded layout: at most EMBEDDED_MAX_PARTITIONS per topic (12 in Kafka).
            for topic in ("cli.alert.received", "cli.incident.opened"):
                assert await producer.partitions_for(topic) == set(range(EMBEDDED_MAX_PARTITIONS))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = TopicPartition("cli.incident.opened", meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            record = await asyncio.wait_for(consumer.getone(tp), timeout=10)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"inc-1", b"v")

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert not [c for c in children if _alive(c)]
        await _wait_line(lines, re.compile(r"(broker stopped)"), timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_cli(tmp_path: Path, port: int, state: Path) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "irctl.app", "broker", "--port", str(port),
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


async def test_irctl_broker_keeps_events_and_offsets_across_kill_9(tmp_path: Path) -> None:
    """`irctl broker` (persistent) fed 1,000 events, kill -9'd with its broker and storage
    processes, and started again serves all 1,000 events and the committed offset."""
    port, state = free_port(), tmp_path / "state"
    proc, lines = _start_cli(tmp_path, port, state)
    topic, group = "incident.opened", "kill9-group"
    try:
        bootstrap = await _wait_line(lines, READY, timeout=60)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            sent = [producer.send(topic, f"event-{i}".encode(), key=f"INC-{i % 7}".encode(),
                                  headers=[("n", str(i).encode())]) for i in range(1000)]
            metas = [await s for s in await asyncio.gather(*sent)]
        finally:
            await producer.stop()
        tp = TopicPartition(topic, metas[0].partition)
        committed = sum(1 for m in metas if m.partition == tp.partition) // 2
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: committed})
        finally:
            await consumer.stop()
        victims = [proc.pid, *_children(proc.pid)]
        assert {_comm(c) for c in victims[1:]} == {"tansu", "weed"}
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc, lines = _start_cli(tmp_path, port, state)
    try:
        bootstrap = await _wait_line(lines, READY, timeout=60)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        seen: dict[bytes, bytes] = {}
        try:
            deadline = time.monotonic() + 60
            while len(seen) < 1000 and time.monotonic() < deadline:
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    for rec in recs:
                        seen[rec.value] = dict(rec.headers)["n"]
        finally:
            await consumer.stop()
        assert len(seen) == 1000
        assert seen[b"event-999"] == b"999"
        group_consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                          enable_auto_commit=False)
        await group_consumer.start()
        try:
            assert await group_consumer.committed(tp) == committed
        finally:
            await group_consumer.stop()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
