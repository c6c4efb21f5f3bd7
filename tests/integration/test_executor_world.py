"""MEDIUM-risk cache invalidation against the real demo world, real Redis and the real broker.

One demo world (`python -m demo.world`: supervisor, five service processes,
traffic) runs for the module with a unique Redis prefix and a short error-rate
window; each test runs its own executor on it (own topics, own verification
deadline). A stuck cache is the world's own fault:
poisoned keys under `<prefix>cache:` that make every catalog request fail
until they are deleted.

- The right remedy runs without approval (MEDIUM), dumps the keys first,
  deletes them in Redis, verifies the recovery on `/status`, completes and
  resolves the incident.
- When something else keeps the error rate up (an error spike injected too),
  verification fails: the deleted keys are RESTOREd byte for byte and the run
  ends with `runbook.rolled_back` then `runbook.failed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from demo.client import DemoWorldClient
from shared.domain import RiskTier
from shared.embedded import free_port
from shared.events import (
    ApprovalRequested,
    AuditRecorded,
    IncidentResolved,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    RunbookStep,
)
from shared.kafka import EventBus
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings
from tests.integration.test_executor_support import (
    ROOT,
    EventTap,
    Signer,
    executor_runtime,
    investigation,
    new_prefix,
    wait_until,
)

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WINDOW_S = 1.5


@dataclass
class Stack:
    """World, Redis, and one executor with its producer and tap."""

    world: DemoWorldClient
    redis: redis.Redis
    redis_prefix: str
    backup_dir: Path
    runtime: ServiceRuntime
    producer: EventBus
    tap: EventTap

    def poison(self) -> dict[bytes, bytes]:
        """Every cache key whose value is not valid JSON (the stuck cache), with its value."""
        out: dict[bytes, bytes] = {}
        for key in self.redis.scan_iter(match=f"{self.redis_prefix}cache:*"):
            value = self.redis.get(key)
            try:
                json.loads(value or b"")
            except ValueError:
                out[key] = value or b""
        return out


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """Real Redis, or skip the module."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"redis not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def world_url(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis
              ) -> Iterator[tuple[str, str]]:
    """A demo world on a free port with its own Redis prefix; (url, prefix)."""
    prefix = f"exec-{uuid.uuid4().hex[:8]}:"
    state_dir = tmp_path_factory.mktemp("world")
    port = free_port()
    out = (state_dir / "supervisor.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.world", "--port", str(port), "--state-dir", str(state_dir),
         "--redis-url", REDIS_URL, "--redis-prefix", prefix, "--traffic-rps", "30",
         "--window-seconds", str(WINDOW_S), "--eval-interval", "0.25",
         "--summary-seconds", "1", "--pool-size", "10"],
        stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        yield f"http://127.0.0.1:{port}", prefix
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)


@pytest.fixture(scope="module")
async def world(world_url: tuple[str, str]) -> AsyncIterator[DemoWorldClient]:
    """A client of the world, once it answers and is healthy."""
    async with DemoWorldClient(world_url[0]) as client:
        await client.wait_until(client.health, within=40, what="world supervisor up")
        await client.wait_healthy(within=60)
        yield client


@contextlib.asynccontextmanager
async def executor_on(world: DemoWorldClient, world_url: tuple[str, str], redis_client: redis.Redis,
                      bootstrap: str, folder: Path, *, deadline_s: float
                      ) -> AsyncIterator[Stack]:
    """An executor acting on the world (own topic prefix), with a producer and a tap."""
    url, prefix = world_url
    topics = await new_prefix(bootstrap)
    runtime = executor_runtime(
        bootstrap, topics, folder, world_url=url, redis_prefix=prefix,
        public_key=Signer(folder).public_path, verification_interval_s=0.25,
        verification_deadline_s=deadline_s, recovery_hold_s=0.5)
    tasks = await start(runtime)
    producer = EventBus(KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=topics),
                        "tests")
    await producer.start()
    tap = await EventTap(bootstrap, topics).start()
    try:
        yield Stack(world, redis_client, prefix, folder / "backups", runtime, producer, tap)
    finally:
        await tap.stop()
        await producer.stop()
        await stop(runtime, tasks)


async def _catalog_failing(stack: Stack) -> None:
    async def failing() -> bool:
        return bool((await stack.world.status())["catalog"]["error_rate"] > 0.5)

    await stack.world.wait_until(failing, within=15, what="catalog failing")


async def test_medium_cache_invalidation_runs_without_approval_and_resolves(
    world: DemoWorldClient, world_url: tuple[str, str], redis_client: redis.Redis,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """Poisoned keys are backed up, deleted in Redis, recovery verified, incident resolved."""
    # A generous deadline: recovery shows only once the 1.5 s error window has rolled over,
    # which takes longer when the machine is busy.
    async with executor_on(world, world_url, redis_client, kafka_bootstrap, tmp_path,
                           deadline_s=20.0) as stack:
        try:
            await _resolves(stack)
        finally:  # a failure must not leave the next test a broken world
            await _restore_world(stack)


async def _resolves(stack: Stack) -> None:
    await stack.world.wait_healthy(within=60)
    await stack.world.inject("stuck_cache", "catalog")
    await _catalog_failing(stack)
    poisoned = stack.poison()
    assert len(poisoned) >= 4
    incident = f"INC-{uuid.uuid4().hex[:6]}"
    await stack.producer.publish(investigation(incident, "cache_invalidation", "catalog",
                                               service="catalog", pattern="cache:*"))

    [resolved] = await stack.tap.wait_for(IncidentResolved, incident, timeout=60)
    assert resolved.resolution == "verified_recovery"
    assert resolved.verified
    assert not stack.tap.of(ApprovalRequested, incident)
    [allowed] = [a for a in stack.tap.of(AuditRecorded, incident)
                 if a.subject.get("decision") == "auto_approved"]
    assert "MEDIUM" in allowed.reason
    [started] = stack.tap.of(RunbookStarted, incident)
    assert started.risk is RiskTier.MEDIUM
    steps = [(e.phase, e.step, e.status) for e in stack.tap.of(RunbookStep, incident)]
    assert steps.index(("backup", "dump_keys", "succeeded")) \
        < steps.index(("action", "delete_keys", "started"))
    [completed] = stack.tap.of(RunbookCompleted, incident)
    assert "consecutive healthy checks" in completed.verification

    for key, value in poisoned.items():  # refilled with good entries or gone, never poison
        assert stack.redis.get(key) != value
    [backup] = [e for e in stack.tap.of(RunbookStep, incident)
                if e.phase == "backup" and e.status == "succeeded"]
    saved = json.loads((stack.backup_dir / f"{backup.data['ref']}.json").read_text())
    assert len(saved["entries"]) >= len(poisoned)
    assert (await stack.world.status())["catalog"]["error_rate"] < 0.05


async def test_failed_verification_restores_the_keys_and_rolls_back(
    world: DemoWorldClient, world_url: tuple[str, str], redis_client: redis.Redis,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """Keys deleted but errors stay (an error spike): keys RESTOREd, rolled_back + failed."""
    async with executor_on(world, world_url, redis_client, kafka_bootstrap, tmp_path,
                           deadline_s=3.0) as stack:
        try:
            await _rolls_back(stack)
        finally:
            await _restore_world(stack)


async def _rolls_back(stack: Stack) -> None:
    await stack.world.wait_healthy(within=60)
    await stack.world.inject("stuck_cache", "catalog")
    await stack.world.inject("error_spike", "catalog", duration_seconds=60, rate=0.9)
    await _catalog_failing(stack)
    poisoned = stack.poison()
    assert poisoned
    incident = f"INC-{uuid.uuid4().hex[:6]}"
    await stack.producer.publish(investigation(incident, "cache_invalidation", "catalog",
                                               pattern="cache:*"))
    await stack.tap.wait_for(RunbookStep, incident, timeout=20, where=lambda e: (
        e.step == "delete_keys" and e.status == "succeeded"))
    [failed] = await stack.tap.wait_for(RunbookFailed, incident, timeout=30)
    assert "verification failed" in failed.reason
    assert "rolled back" in failed.reason
    [rolled] = stack.tap.of(RunbookRolledBack, incident)
    assert rolled.succeeded
    assert rolled.occurred_at <= failed.occurred_at  # topics differ: compare event times
    for key, value in poisoned.items():  # restored byte for byte
        assert stack.redis.get(key) == value
    assert not stack.tap.of(RunbookCompleted, incident)
    assert not stack.tap.of(IncidentResolved, incident)


async def _restore_world(stack: Stack) -> None:
    """Clear the faults and any poisoned cache entry a test left behind."""
    await stack.world.clear_faults()
    for key in stack.poison():
        stack.redis.delete(key)
    await wait_until(lambda: not stack.poison(), 5, "poison cleared")

