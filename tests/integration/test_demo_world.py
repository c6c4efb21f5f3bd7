"""The demo world end to end: a real supervisor, five service processes, Redis, a webhook.

One supervisor runs for the whole module, on free ports, with a unique Redis
prefix, short windows (2.5 s error-rate window, 0.25 s evaluations) and an
Alertmanager receiver started here. Tests run in file order; each one starts
from a healthy world and leaves it healthy. Every wait is a condition polled
under a deadline (`DemoWorldClient.wait_until`), never a bare sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from demo.client import DemoWorldClient
from shared.embedded import free_port

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "test-token-123"
WINDOW = 2.5
ROOT = Path(__file__).resolve().parents[2]



def _alive(pid: int) -> bool:
    """True while pid runs (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_sync(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


class AlertReceiver:
    """A tiny Alertmanager webhook receiver; answers 503 to the first POST to test retries."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts += 1
                if receiver.posts == 1:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.payloads.append(json.loads(body))
                receiver.auth.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def find(self, status: str, alertname: str, service: str) -> list[dict[str, Any]]:
        """Payloads with this status holding an alert with these labels."""
        return [
            p
            for p in list(self.payloads)
            if p["status"] == status
            and any(
                a["labels"]["alertname"] == alertname and a["labels"]["service"] == service
                for a in p["alerts"]
            )
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def assert_alertmanager_v4(payload: dict[str, Any]) -> None:
    """The shape Alertmanager POSTs to a webhook receiver (version 4)."""
    assert payload["version"] == "4"
    for key in ("groupKey", "receiver", "externalURL"):
        assert isinstance(payload[key], str)
        assert payload[key]
    assert payload["status"] in ("firing", "resolved")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert isinstance(payload[key], dict)
    assert payload["alerts"]
    for alert in payload["alerts"]:
        assert alert["status"] == payload["status"]
        assert {"alertname", "service", "severity"} <= set(alert["labels"])
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description"} <= set(alert["annotations"])
        starts = datetime.fromisoformat(alert["startsAt"])
        assert starts.tzinfo is not None
        if alert["status"] == "firing":
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        else:
            assert datetime.fromisoformat(alert["endsAt"]) >= starts
        assert alert["generatorURL"].startswith("http")
        assert len(alert["fingerprint"]) == 16
        int(alert["fingerprint"], 16)
        assert payload["commonLabels"].items() <= alert["labels"].items()


class WorldProcess:
    """The supervisor subprocess and what the tests need to know about it."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, prefix: str, out: Path) -> None:
        self.proc = proc
        self.url = url
        self.prefix = prefix
        self.out = out


def _start_world(
    state_dir: Path, prefix: str, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    out = state_dir / "supervisor.out"
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "demo.world",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--redis-url",
        REDIS_URL,
        "--redis-prefix",
        prefix,
        *extra,
    ]
    with out.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisor exited early:\n{out.read_text()[-3000:]}")
        try:
            return bool(httpx.get(f"{url}/health", timeout=0.5).json() == {"ok": True})
        except httpx.HTTPError:
            return False

    _wait_sync(healthy, 30, "supervisor healthy")
    return proc, url, out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"redis not reachable at {REDIS_URL}: {exc}")
    yield r
    r.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[AlertReceiver]:
    rec = AlertReceiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    redis_client: redis.Redis,
    receiver: AlertReceiver,
) -> Iterator[WorldProcess]:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    state_dir = tmp_path_factory.mktemp("demo-world")
    proc, url, out = _start_world(
        state_dir,
        prefix,
        [
            "--alert-webhook",
            receiver.url,
            "--alert-token",
            TOKEN,
            "--traffic-rps",
            "40",
            "--window-seconds",
            str(WINDOW),
            "--eval-interval",
            "0.25",
            "--alert-for",
            "2",
            "--alert-repeat-seconds",
            "3",
            "--summary-seconds",
            "1",
            "--pool-size",
            "10",
        ],
    )
    yield WorldProcess(proc, url, prefix, out)
    _stop(proc)
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


@pytest.fixture
async def client(world: WorldProcess) -> AsyncIterator[DemoWorldClient]:
    async with DemoWorldClient(world.url) as c:
        await c.wait_healthy(within=20)
        yield c


async def _rates(c: DemoWorldClient) -> dict[str, float]:
    return {name: s["error_rate"] for name, s in (await c.status()).items()}


async def test_world_starts_healthy_with_services_and_history(client: DemoWorldClient) -> None:
    services = {s["name"]: s for s in await client.services()}
    assert set(services) == {"storefront", "checkout", "payments", "catalog", "reporting"}
    for s in services.values():
        assert s["status"] == "running"
        assert isinstance(s["pid"], int)
        assert s["url"].startswith("http://127.0.0.1:")
        assert s["log_level"] == "INFO"
        assert s["started_at"].endswith("Z")
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(services["catalog"]["metrics_url"])).text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "demo_service_up",
        "demo_service_version_info",
        "process_start_time_seconds",
        "demo_cache_hits_total",
        "demo_cache_errors_total",
    ):
        assert name in metrics
    assert 'demo_service_version_info{service="catalog",version="v1.19.2"} 1.0' in metrics

    history = await client.deploys()
    assert len(history) >= 5
    assert {"id", "service", "version", "previous_version", "deployed_at", "author", "change"} <= (
        set(history[0])
    )
    assert [d["deployed_at"] for d in history] == sorted(d["deployed_at"] for d in history)
    latest = {d["service"]: d["version"] for d in history}
    assert latest == {name: s["version"] for name, s in services.items()}
    assert await client.deploys(service="payments", since=datetime.now(UTC)) == []

    async def traffic_everywhere() -> dict[str, dict[str, Any]] | None:
        st = await client.status()
        return st if all(s["requests"] > 0 for s in st.values()) else None

    # payments is called by checkout and reporting only: its rate comes from its own counters.
    status = await client.wait_until(traffic_everywhere, within=10, what="traffic")
    assert all(s["up"] and s["error_rate"] < 0.05 for s in status.values())


async def test_bad_deploy_then_rollback(client: DemoWorldClient, receiver: AlertReceiver) -> None:
    before = datetime.now(UTC)
    fault = await client.inject("bad_deploy", "payments")
    bad_version = fault["version"]
    assert fault["deploy"]["author"] == "ci-bot"

    async def degraded() -> bool:
        r = await _rates(client)
        return r["storefront"] > 0.3 and r["checkout"] > 0.3 and r["payments"] > 0.3

    await client.wait_until(degraded, within=15, what="payments errors propagating")

    errors = await client.logs("payments", since=before, level="ERROR", limit=20)
    assert errors
    assert all(e["level"] == "ERROR" for e in errors)
    assert any(f"(version {bad_version})" in e["msg"] for e in errors)
    upstream = await client.logs("checkout", since=before, level="ERROR", limit=5)
    assert any("upstream payments" in e["msg"] for e in upstream)

    history = await client.deploys(service="payments")
    assert history[-1]["version"] == bad_version
    assert history[-1]["author"] == "ci-bot"
    assert datetime.fromisoformat(history[-1]["deployed_at"]) >= before.replace(microsecond=0)
    assert {"kind": "bad_deploy", "service": "payments"}.items() <= (await client.faults())[
        0
    ].items()

    # The alerter fired (after one 503 from the receiver, retried), critical for tier 1.
    await client.wait_until(
        _async(lambda: receiver.find("firing", "HighErrorRate", "payments")),
        within=15,
        what="HighErrorRate firing",
    )
    firing = receiver.find("firing", "HighErrorRate", "payments")[0]
    assert_alertmanager_v4(firing)
    assert firing["alerts"][0]["labels"]["severity"] == "critical"
    assert receiver.posts > len(receiver.payloads)  # the 503 was retried
    assert set(receiver.auth) == {f"Bearer {TOKEN}"}

    rollback = await client.rollback("payments")
    assert rollback["version"] == fault["deploy"]["previous_version"]
    assert rollback["change"].startswith("rollback to ")
    assert (await client.deploys(service="payments"))[-1]["id"] == rollback["id"]
    await client.wait_healthy(within=20)
    assert await client.faults() == []

    await client.wait_until(
        _async(lambda: receiver.find("resolved", "HighErrorRate", "payments")),
        within=20,
        what="HighErrorRate resolved",
    )
    resolved = receiver.find("resolved", "HighErrorRate", "payments")[-1]
    assert_alertmanager_v4(resolved)
    assert resolved["alerts"][0]["fingerprint"] == firing["alerts"][0]["fingerprint"]
    seq = [
        (
            p["status"],
            p["alerts"][0]["labels"]["alertname"],
            p["alerts"][0]["labels"]["service"],
            p["alerts"][0]["startsAt"],
            p["alerts"][0]["annotations"]["description"],
        )
        for p in receiver.payloads
    ]
    assert resolved["alerts"][0]["startsAt"] == firing["alerts"][0]["startsAt"], seq


async def test_stuck_cache_fixed_by_deleting_keys(
    client: DemoWorldClient, world: WorldProcess, redis_client: redis.Redis
) -> None:
    before = datetime.now(UTC)
    fault = await client.inject("stuck_cache", "catalog")
    assert all(k.startswith(f"{world.prefix}cache:") for k in fault["keys"])

    async def broken() -> bool:
        return (await _rates(client))["catalog"] > 0.5

    await client.wait_until(broken, within=15, what="catalog failing")
    errors = await client.logs("catalog", since=before, level="ERROR", limit=10)
    assert any(e["msg"].startswith("cache entry corrupt: key=") for e in errors)
    assert [f["kind"] for f in await client.faults()] == ["stuck_cache"]

    # What the executor's cache-invalidation runbook does: SCAN + DEL under the prefix.
    deleted = 0
    for key in redis_client.scan_iter(match=f"{world.prefix}cache:*"):
        deleted += int(redis_client.delete(key))
    assert deleted >= len(fault["keys"])
    await client.wait_healthy(within=20)
    assert await client.faults() == []


async def test_crash_then_restart(client: DemoWorldClient, receiver: AlertReceiver) -> None:
    old = await client.service("payments")
    await client.inject("crash", "payments")

    async def down() -> bool:
        st = await client.status()
        return not st["payments"]["up"] and st["checkout"]["error_rate"] > 0.3

    await client.wait_until(down, within=10, what="payments down")
    rec = await client.service("payments")
    assert rec["status"] == "stopped"
    assert rec["pid"] is None
    assert [f["kind"] for f in await client.faults()] == ["crash"]
    logs = await client.logs("payments", level="ERROR", limit=1)
    assert "SIGKILL" in logs[-1]["msg"]
    await client.wait_until(
        _async(lambda: receiver.find("firing", "ServiceDown", "payments")),
        within=10,
        what="ServiceDown firing",
    )

    new = await client.restart("payments")
    assert new["status"] == "running"
    assert new["pid"] != old["pid"]
    assert new["port"] == old["port"]
    await client.wait_healthy(within=20)
    assert await client.faults() == []


async def test_restart_is_idempotent_per_key(client: DemoWorldClient) -> None:
    before = await client.service("reporting")
    async with httpx.AsyncClient(base_url=client.base_url, timeout=15) as http:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = (await http.post("/services/reporting/restart", headers=key)).json()
        again = (await http.post("/services/reporting/restart", headers=key)).json()
        forced = await http.post(
            "/services/reporting/restart", json={"mode": "force"}, headers={"Idempotency-Key": "x"}
        )
    assert first["pid"] == again["pid"] != before["pid"]
    assert forced.json()["pid"] not in (first["pid"], before["pid"])
    await client.wait_healthy(within=20)


async def test_log_level_change_is_live(client: DemoWorldClient) -> None:
    assert await client.get_log_level("checkout") == "INFO"
    changed_at = datetime.now(UTC)
    result = await client.set_log_level("checkout", "debug")
    assert result["level"] == "DEBUG"
    assert await client.get_log_level("checkout") == "DEBUG"
    assert (await client.service("checkout"))["log_level"] == "DEBUG"

    async def debug_lines() -> list[dict[str, Any]]:
        lines = await client.logs("checkout", since=changed_at, limit=50)
        return [x for x in lines if x["level"] == "DEBUG"]

    await client.wait_until(debug_lines, within=10, what="DEBUG lines")
    await client.set_log_level("checkout", "INFO")
    assert await client.get_log_level("checkout") == "INFO"


async def test_deploy_api_and_leak_cured_by_restart(client: DemoWorldClient) -> None:
    rec = await client.deploy("reporting", "v0.9.8", author="alice", change="Faster export")
    assert rec["previous_version"] == "v0.9.7"
    assert (await client.service("reporting"))["version"] == "v0.9.8"
    assert (await client.rollback("reporting"))["version"] == "v0.9.7"

    await client.inject("leak", "checkout")

    async def exhausted() -> bool:
        lines = await client.logs("checkout", level="ERROR", limit=20)
        return any("ConnectionPool exhausted" in x["msg"] for x in lines)

    await client.wait_until(exhausted, within=15, what="pool exhausted")
    assert "leak" in [f["kind"] for f in await client.faults()]
    await client.restart("checkout")
    assert await client.faults() == []
    await client.wait_healthy(within=20)


async def test_error_spike_cleared_by_delete_faults(client: DemoWorldClient) -> None:
    await client.inject("error_spike", "reporting", duration_seconds=60, rate=1.0)

    async def failing() -> bool:
        return (await _rates(client))["reporting"] > 0.5

    await client.wait_until(failing, within=10, what="reporting error spike")
    assert await client.deploys(service="reporting", since=datetime.now(UTC)) == []
    cleared = await client.clear_faults()
    assert [f["kind"] for f in cleared["cleared"]] == ["error_spike"]
    await client.wait_healthy(within=20)


async def test_unknown_names_are_rejected(client: DemoWorldClient) -> None:
    with pytest.raises(httpx.HTTPStatusError) as e1:
        await client.restart("nope")
    assert e1.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as e2:
        await client.inject("meteor", "payments")
    assert e2.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as e3:
        await client.inject("stuck_cache", "payments")
    assert e3.value.response.status_code == 422
    with pytest.raises(httpx.HTTPStatusError) as e4:
        await client.set_log_level("payments", "LOUD")
    assert e4.value.response.status_code == 422


def test_sigterm_stops_every_child(world: WorldProcess) -> None:
    pids = [s["pid"] for s in httpx.get(f"{world.url}/services").json()]
    assert len(pids) == 5
    world.proc.send_signal(signal.SIGTERM)
    assert world.proc.wait(timeout=15) == 0
    _wait_sync(lambda: not any(_alive(p) for p in pids), 5, "children gone after SIGTERM")


def test_children_die_when_supervisor_is_killed(tmp_path: Path, redis_client: redis.Redis) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    proc, url, _ = _start_world(tmp_path, prefix, ["--traffic-rps", "0"])
    try:
        pids = [s["pid"] for s in httpx.get(f"{url}/services").json()]
        assert all(_alive(p) for p in pids)
        proc.kill()
        proc.wait()
        _wait_sync(lambda: not any(_alive(p) for p in pids), 5, "children gone after SIGKILL")
    finally:
        _stop(proc)
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)


def _async(fn: Any) -> Any:
    """Wrap a synchronous probe for DemoWorldClient.wait_until."""

    async def probe() -> Any:
        return fn()

    return probe
