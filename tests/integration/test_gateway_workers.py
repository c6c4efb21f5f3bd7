"""`IR_GATEWAY_WORKERS=N`: one supervisor, N gateway processes sharing a port.

A real `python -m services.gateway` on the session's broker. What this pins:
the supervisor runs exactly N worker processes, every one of them serves the
port (fresh connections spread over them) and publishes what it accepted;
`/metrics` answers the gateway's total whichever worker takes the scrape; a
worker killed with SIGKILL is replaced and its counts stay in the total;
SIGTERM stops everything with no orphan left; and a port picked by the kernel
(0) is refused, since N processes cannot agree on it.

Processes are inspected through /proc (parent pid, process group, sockets,
environment). Every process this file starts is in a session of its own, and
the fixture kills that process group whatever the test's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from services.gateway.formats import alertmanager
from shared.embedded import free_port
from shared.events import AlertReceived
from shared.topics import Topic, topic_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKERS = 2
ALERTS_PER_WEBHOOK = 3
START_S = 90.0  # two cold Python processes on a busy two-core machine


# --- /proc -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()


def _processes(field_index: int, value: int) -> set[int]:
    """Live (not zombie) pids whose stat field field_index (0 = state) is value."""
    out: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[field_index]) == value:
            out.add(int(entry.name))
    return out


def children(pid: int) -> set[int]:
    """Live child processes of pid."""
    return _processes(1, pid)


def group(pgid: int) -> set[int]:
    """Live processes of the process group pgid."""
    return _processes(2, pgid)


def alive(pid: int) -> bool:
    """pid exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def cmdline(pid: int) -> list[str]:
    """The argument vector of pid."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def environ(pid: int) -> dict[str, str]:
    """The environment pid was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def is_dir(path: str) -> bool:
    """path is a directory."""
    return Path(path).is_dir()


def listeners(port: int) -> int:
    """TCP sockets listening on port (any address, IPv4 or IPv6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


# --- the supervisor ----------------------------------------------------------------------


@dataclass
class Gateway:
    """A supervisor process, its port and its log."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    posted: list[str] = field(default_factory=list)  # fingerprints of accepted alerts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """The tail of the supervisor's and workers' output, for failure messages."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def workers(self) -> set[int]:
        """The supervisor's live child processes."""
        return children(self.proc.pid)


def gateway_env(bootstrap: str, prefix: str, port: int) -> dict[str, str]:
    """The environment of a two-worker gateway on port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IR_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "IR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "IR_KAFKA_TOPIC_PREFIX": prefix,
        "IR_KAFKA_CREATE_TOPICS": "false",
        "IR_GATEWAY_WORKERS": str(WORKERS),
        "IR_GATEWAY_HTTP_PORT": str(port),
        "IR_GATEWAY_TOKENS": TOKEN,
        "IR_CONFIG_DIR": str(ROOT / "demo/config"),
    }


def launch(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`python -m services.gateway` in a session (and process group) of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group proc leads (proc and anything it started), then reap proc."""
    if proc.poll() is None or group(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.fixture
def gateway(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Gateway]:
    """A supervisor with two workers on a free port (not waited for: see `ready`)."""
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        proc = launch(gateway_env(kafka_bootstrap, topic_prefix, port), log)
        try:
            yield Gateway(proc, port, log_path)
        finally:
            kill_group(proc)


async def eventually(check: Callable[[], bool | Awaitable[bool]], gw: Gateway, what: str,
                     timeout_s: float = START_S) -> None:
    """Poll check until it holds; fail with the gateway's log after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s} s; log:\n{gw.log()}")
        if gw.proc.poll() is not None:
            raise AssertionError(f"supervisor exited ({gw.proc.returncode}) waiting for "
                                 f"{what}; log:\n{gw.log()}")
        await asyncio.sleep(0.1)


async def fresh(method: str, url: str, **kw: Any) -> httpx.Response:
    """One request on a new connection (so the kernel picks a worker for it)."""
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.request(method, url, **kw)


async def ready(gw: Gateway) -> None:
    """Both workers listen and /healthz says connected on 20 fresh connections in a row."""
    await eventually(lambda: len(gw.workers()) == WORKERS, gw, "two workers")
    await eventually(lambda: listeners(gw.port) == WORKERS, gw, "two listening sockets")
    streak = 0

    async def healthy() -> bool:
        nonlocal streak
        try:
            status = (await fresh("GET", f"{gw.url}/healthz")).status_code
        except httpx.TransportError:
            status = 0
        streak = streak + 1 if status == 200 else 0
        return streak >= 20

    await eventually(healthy, gw, "/healthz 200 from every worker")


# --- alerts ------------------------------------------------------------------------------


def webhook(tag: str) -> tuple[dict[str, Any], list[str]]:
    """An Alertmanager notification of ALERTS_PER_WEBHOOK distinct alerts, and their
    fingerprints."""
    body: dict[str, Any] = copy.deepcopy(alertmanager.EXAMPLE)
    template = body["alerts"][0]
    alerts = []
    for i in range(ALERTS_PER_WEBHOOK):
        one = copy.deepcopy(template)
        one["fingerprint"] = f"fp-{tag}-{i}"
        one["labels"] = {**one["labels"], "service": ("payments", "checkout", "catalog")[i % 3]}
        alerts.append(one)
    body["alerts"] = alerts
    return body, [a["fingerprint"] for a in alerts]


async def post_webhooks(gw: Gateway, tag: str, count: int) -> None:
    """Post count webhooks, each on a fresh connection; every one must be accepted."""
    for n in range(count):
        body, fingerprints = webhook(f"{tag}{n}")
        response = await fresh("POST", f"{gw.url}/alerts/alertmanager", json=body,
                               headers=AUTH)
        assert response.status_code == 202, (response.status_code, response.text)
        gw.posted.extend(fingerprints)


async def read_alerts(bootstrap: str, prefix: str, fingerprints: set[str],
                      timeout_s: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """`alert.received` records from the start until every fingerprint arrived."""
    consumer = AIOKafkaConsumer(
        topic_name(Topic.ALERT_RECEIVED, prefix), bootstrap_servers=bootstrap,
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not fingerprints <= seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"missing on the topic: {sorted(fingerprints - seen)}")
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
                seen.update(AlertReceived.model_validate_json(r.value or b"").fingerprint
                            for r in batch)
    finally:
        await consumer.stop()
    return records


def accepted_alerts(text: str) -> float:
    """ir_gateway_alerts_total{source="alertmanager",outcome="accepted"} in a scrape."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "ir_gateway_alerts_total"
                    and sample.labels.get("source") == "alertmanager"
                    and sample.labels.get("outcome") == "accepted"):
                total += sample.value
    return total


async def assert_scrapes_total(gw: Gateway, scrapes: int = 12) -> None:
    """Every scrape, on a fresh connection (any worker), reports all accepted alerts."""
    for _ in range(scrapes):
        response = await fresh("GET", f"{gw.url}/metrics")
        assert response.status_code == 200
        assert accepted_alerts(response.text) == len(gw.posted)


# --- tests -------------------------------------------------------------------------------


class TestWorkers:
    async def test_workers_share_the_port_metrics_restart_and_stop(
        self, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """Two workers serve one port and one /metrics; a killed worker is replaced and
        keeps counting in the total; SIGTERM stops the supervisor and every worker."""
        gw = gateway
        await ready(gw)
        workers = gw.workers()
        assert len(workers) == WORKERS
        for pid in workers:
            assert cmdline(pid) == [sys.executable, "-m", "services.gateway"]
        envs = [environ(pid) for pid in workers]
        metrics_dir = envs[0]["PROMETHEUS_MULTIPROC_DIR"]
        for env in envs:
            assert env["IR_GATEWAY_WORKERS"] == "1"
            assert env["IR_GATEWAY_REUSE_PORT"] == "1"
            assert env["IR_GATEWAY_HTTP_PORT"] == str(gw.port)
            assert env["PROMETHEUS_MULTIPROC_DIR"] == metrics_dir
        assert is_dir(metrics_dir)

        await post_webhooks(gw, "a", 12)
        records = await read_alerts(kafka_bootstrap, topic_prefix, set(gw.posted))
        assert len(records) == len(gw.posted) == 12 * ALERTS_PER_WEBHOOK
        await assert_scrapes_total(gw)

        victim, survivor = sorted(workers)
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: not alive(victim), gw, "the killed worker gone", 10)
        await eventually(lambda: survivor in gw.workers() and len(gw.workers()) == WORKERS,
                         gw, "a replacement worker")
        replacement = (gw.workers() - {survivor}).pop()
        assert replacement not in workers
        await ready(gw)
        assert gw.workers() == {survivor, replacement}

        await post_webhooks(gw, "b", 8)
        await read_alerts(kafka_bootstrap, topic_prefix, set(gw.posted))
        await assert_scrapes_total(gw)  # the killed worker's counts included

        gw.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(gw.proc.wait, 30)
        assert code == 0, gw.log()
        assert group(gw.proc.pid) == set(), "orphaned gateway processes"
        for pid in (survivor, replacement):
            assert not alive(pid)
        assert not is_dir(metrics_dir)  # removed by the supervisor

    async def test_workers_need_a_fixed_port(
        self, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
    ) -> None:
        """With IR_GATEWAY_HTTP_PORT=0 the supervisor refuses to start and says why."""
        env = {**gateway_env(kafka_bootstrap, topic_prefix, 0)}
        log_path = tmp_path / "gateway.log"
        with log_path.open("wb") as log:
            proc = launch(env, log)
            try:
                code = await asyncio.to_thread(proc.wait, 60)
            finally:
                kill_group(proc)
        output = log_path.read_text(errors="replace")
        assert code != 0, output
        assert "IR_GATEWAY_HTTP_PORT" in output
