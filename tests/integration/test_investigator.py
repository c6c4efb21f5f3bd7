"""The investigator service on a real broker, reading a real demo world.

The world is the real supervisor (`python -m demo.world`, five service
processes) with a bad deploy of payments injected; when `demo.world` cannot be
imported, or `IR_TEST_INVESTIGATOR_WORLD=recorded`, it is a small HTTP server
replaying the recorded bad-deploy case in the world's API shape instead.

The flow: incident.opened + incident.classified in -> exactly one
investigation.completed blaming the payments deploy and proposing its rollback.
Then the service restarts (state rebuilt from the log), the classification is
delivered again, and a service_added update follows: the redelivery produces
nothing and the update produces the one extra investigation it calls for.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request, Response

from services.investigator.investigation import investigation_event_id
from services.investigator.main import create_runtime
from services.investigator.settings import InvestigatorSettings
from shared.domain import Severity
from shared.embedded import free_port
from shared.events import (
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentUpdated,
    InvestigationCompleted,
    parse_event,
)
from shared.kafka import EventBus
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic, topic_name
from tests.unit.investigator_cases.recorded import RecordedWorld

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = "INC-INV001"
T = TypeVar("T")


@dataclass
class World:
    """Where the investigator finds the world, and when the fault began."""

    url: str
    first_anomaly_at: datetime
    kind: str



def _wait_sync(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def _wait(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {within:g} s")
        await asyncio.sleep(0.05)


def _real_world(tmp: Path) -> Iterator[World]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp / "world.out"
    cmd = [sys.executable, "-m", "demo.world", "--port", str(port), "--state-dir", str(tmp),
           "--redis-prefix", f"invtest{port}:", "--window-seconds", "2.5",
           "--eval-interval", "0.25", "--traffic-rps", "30"]
    with out.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"demo world exited:\n{out.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_sync(healthy, 30, "demo world healthy")
        injected = datetime.now(UTC)
        httpx.post(f"{url}/faults/bad_deploy", json={"service": "payments"},
                   timeout=15).raise_for_status()
        _wait_sync(lambda: httpx.get(f"{url}/status", timeout=2).json()["payments"]
                   ["error_rate"] > 0.3, 20, "payments failing after the bad deploy")
        yield World(url, injected, "real")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _recorded_world() -> Iterator[World]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    recording = RecordedWorld("bad_deploy_payments", base_url=url)
    app = FastAPI()

    @app.get("/{path:path}")
    async def answer(path: str, request: Request) -> Response:
        got = recording.handle(httpx.Request("GET", str(request.url)))
        return Response(got.content, got.status_code,
                        media_type=got.headers.get("content-type"))

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_sync(lambda: server.started, 10, "recorded world serving")
        yield World(url, recording.first_anomaly_at, "recorded")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The real demo world with payments badly deployed, or its recording."""
    wanted = os.environ.get("IR_TEST_INVESTIGATOR_WORLD", "auto")
    if wanted != "recorded" and importlib.util.find_spec("demo.world.__main__") is not None:
        yield from _real_world(tmp_path_factory.mktemp("world"))
    else:
        yield from _recorded_world()


class OutputTail:
    """Reads a topic from the beginning, keeping every event seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.events: list[Event] = []
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=50)

    async def __aenter__(self) -> OutputTail:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def until(self, count: int, within: float = 30.0) -> list[Event]:
        """Wait until at least count events were read."""

        async def probe() -> list[Event] | None:
            batch = await self._consumer.getmany(timeout_ms=100)
            self.events += [parse_event(r.value or b"") for rs in batch.values() for r in rs]
            return self.events if len(self.events) >= count else None

        return await _wait(probe, within, f"{count} events")


def _runtime(bootstrap: str, prefix: str, world: World, tmp: Path) -> ServiceRuntime:
    evidence = tmp / "evidence.yaml"
    evidence.write_text((ROOT / "demo/config/evidence.yaml").read_text()
                        .replace("sample_interval_s: 1.0", "sample_interval_s: 0.3"))
    return create_runtime(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                            session_timeout_ms=3000, heartbeat_interval_ms=500),
        settings=ServiceSettings(config_dir=str(ROOT / "demo/config"), log_format="console"),
        investigator_settings=InvestigatorSettings(world_url=world.url,
                                                   evidence_config=str(evidence)),
    )


@pytest.fixture
async def triage(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[EventBus]:
    """A bus that publishes lifecycle events as triage would."""
    bus = EventBus(KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                                 create_topics=False), "triage")
    await bus.start()
    yield bus
    await bus.stop()


def _handled(runtime: ServiceRuntime, topic: str) -> float:
    value = runtime.bus.registry.get_sample_value(
        "ir_events_handled_total", {"topic": topic, "outcome": "ok"})
    return value or 0.0


async def test_classified_bad_deploy_yields_one_investigation_and_redelivery_nothing(
    world: World, kafka_bootstrap: str, topic_prefix: str, triage: EventBus, tmp_path: Path,
) -> None:
    """One rollback proposal for payments; after a restart a redelivery adds nothing."""
    envelope = {"producer": "triage", "incident_id": INCIDENT, "correlation_id": "corr-inv"}
    opened = IncidentOpened(title="HighErrorRate on checkout", services=("storefront", "checkout"),
                            fingerprints=("fp-checkout",), alert_event_id="alert-1",
                            first_anomaly_at=world.first_anomaly_at,
                            alert_received_at=world.first_anomaly_at, **envelope)
    classified = IncidentClassified(severity=Severity.SEV1, reasons=("tier 1, customer facing",),
                                    services=("storefront", "checkout"), **envelope)
    output = topic_name(Topic.INVESTIGATION_COMPLETED, topic_prefix)

    runtime = _runtime(kafka_bootstrap, topic_prefix, world, tmp_path)
    tasks = await start(runtime)
    try:
        async with OutputTail(kafka_bootstrap, output) as tail:
            await triage.publish(opened)
            await triage.publish(classified)
            (first,) = await tail.until(1)
    finally:
        await stop(runtime, tasks)

    assert isinstance(first, InvestigationCompleted), world.kind
    assert first.event_id == investigation_event_id(INCIDENT, classified.event_id)
    assert first.causation_id == classified.event_id
    assert first.cause == "bad_deploy"
    assert first.proposed_action is not None
    assert first.proposed_action.runbook == "rollback_deployment"
    assert first.proposed_action.target == "payments"
    assert first.proposed_action.parameters == {"service": "payments", "to_version": "v2.4.0"}
    assert first.root_cause_identified
    assert first.investigator == "rules"
    assert {"deploy_before_anomaly", "errors_name_new_version"} <= {e.kind for e in first.evidence}

    # Restart: the case book comes back from the log; the same classification arrives again.
    runtime = _runtime(kafka_bootstrap, topic_prefix, world, tmp_path)
    tasks = await start(runtime)
    try:
        classified_topic = topic_name(Topic.INCIDENT_CLASSIFIED, topic_prefix)
        await triage.broker.publish(classified.model_dump_json().encode(), classified_topic,
                                    key=classified.partition_key())

        async def redelivery_handled() -> bool:
            return _handled(runtime, classified_topic) >= 1

        await _wait(redelivery_handled, 30, "redelivered classification handled")
        # A service joining afterwards is the marker: its investigation lands after anything
        # the redelivery could have produced (same key, same partition).
        update = IncidentUpdated(change="service_added", services=("storefront", "checkout",
                                 "payments"), new_services=("payments",), **envelope)
        await triage.publish(update)
        async with OutputTail(kafka_bootstrap, output) as tail:
            events = await tail.until(2)
    finally:
        await stop(runtime, tasks)

    skipped = runtime.bus.registry.get_sample_value(
        "ir_events_publish_skipped_total", {"topic": "investigation.completed"})
    assert not skipped, "the redelivered classification was investigated again"
    assert [e.event_id for e in events] == [
        first.event_id, investigation_event_id(INCIDENT, update.event_id)]
    second = events[1]
    assert isinstance(second, InvestigationCompleted)
    assert second.causation_id == update.event_id
    assert second.proposed_action is not None
    assert second.proposed_action.target == "payments"
