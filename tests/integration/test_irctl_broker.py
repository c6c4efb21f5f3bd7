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

from shared.embedded import free_port

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
