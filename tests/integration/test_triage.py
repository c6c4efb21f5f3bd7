"""Triage on the real broker: alerts in, keyed incident events out, redelivery, restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.triage.handlers import OUTPUT_TOPICS
from services.triage.main import create_runtime
from services.triage.settings import TriageSettings
from shared.clock import SystemClock
from shared.domain import Severity
from shared.events import (
    AlertReceived,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    parse_event,
)
from shared.kafka import DLQ_HEADER_ERROR
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic, topic_name
from tests.unit.test_triage_support import CATALOG, make_alert

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Seen:
    """One record of an output topic."""

    topic: str
    key: bytes | None
    event: Event


class Tap:
    """Reads triage's output topics from the beginning, without a group, into a list."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.seen: list[Seen] = []
        self._consumer = AIOKafkaConsumer(
            *(topic_name(t, prefix) for t in OUTPUT_TOPICS),
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                self.seen.extend(
                    Seen(r.topic, r.key, parse_event(r.value or b"")) for r in records
                )

    def events(self, cls: type[Event] = Event, incident_id: str | None = None) -> list[Any]:
        return [
            s.event for s in self.seen
            if isinstance(s.event, cls) and (incident_id is None or s.event.incident_id
                                             == incident_id)
        ]

    async def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                kinds = [(s.event.event_type, s.event.incident_id) for s in self.seen]
                raise AssertionError(f"timed out waiting for {what}; seen {kinds}")
            await asyncio.sleep(0.05)


@dataclass
class Stack:
    """The broker address, a topic prefix, an alert producer and a tap on triage's outputs."""

    bootstrap: str
    prefix: str
    producer: AIOKafkaProducer
    tap: Tap

    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap, topic_prefix=self.prefix, create_topics=False,
            session_timeout_ms=2000, heartbeat_interval_ms=400, fetch_max_wait_ms=50,
            retry_backoff_s=0.01,
        )

    async def start_triage(self) -> tuple[ServiceRuntime, list[asyncio.Task[None]]]:
        runtime = create_runtime(
            kafka=self.kafka(),
            settings=ServiceSettings(log_level="WARNING", log_format="console"),
            triage=TriageSettings(instance_id="it"),
            catalog=CATALOG,
            clock=SystemClock(),
        )
        return runtime, await start(runtime)

    async def send(self, event: Event, *, key: str | None = None) -> None:
        """Produce an event as its producer would (raw, so a duplicate really is re-sent)."""
        await self.producer.send_and_wait(
            topic_name(event.TOPIC, self.prefix), event.model_dump_json().encode(),
            key=(key.encode() if key is not None else event.partition_key()),
        )


@pytest.fixture
async def stack(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Stack]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    tap = Tap(kafka_bootstrap, topic_prefix)
    await tap.start()
    try:
        yield Stack(kafka_bootstrap, topic_prefix, producer, tap)
    finally:
        await tap.stop()
        await producer.stop()


async def read_all(bootstrap: str, topic: str, prefix: str, timeout: float = 10.0
                   ) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic, read from the beginning until it stays quiet."""
    consumer = AIOKafkaConsumer(
        topic_name(topic, prefix), bootstrap_servers=bootstrap, group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=50,
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if not batch and out:
                break
            out.extend(r for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return out


def opened_for(tap: Tap, alert: AlertReceived) -> IncidentOpened | None:
    return next((e for e in tap.events(IncidentOpened) if e.alert_event_id == alert.event_id),
                None)


async def wait_opened(stack: Stack, alert: AlertReceived) -> str:
    """Wait until the alert opened and classified an incident; return its id."""
    await stack.tap.wait_for(lambda: opened_for(stack.tap, alert) is not None,
                             f"incident.opened for {alert.service}")
    opened = opened_for(stack.tap, alert)
    assert opened is not None
    incident_id = str(opened.incident_id)
    await stack.tap.wait_for(lambda: bool(stack.tap.events(IncidentClassified, incident_id)),
                             f"incident.classified of {incident_id}")
    return incident_id


class TestTriageOnKafka:
    """The service end to end on the real broker."""

    async def test_alerts_become_keyed_incident_events(self, stack: Stack) -> None:
        """An alert opens and classifies an incident; a related one joins and escalates it."""
        runtime, tasks = await stack.start_triage()
        try:
            first = make_alert("payments", source_severity="warning")
            await stack.send(first)
            incident_id = await wait_opened(stack, first)

            joining = make_alert("storefront")
            await stack.send(joining)
            await stack.tap.wait_for(
                lambda: any(u.change == "severity_changed"
                            for u in stack.tap.events(IncidentUpdated, incident_id)),
                "severity_changed",
            )
        finally:
            await stop(runtime, tasks)

        mine = [s for s in stack.tap.seen if s.event.incident_id == incident_id]
        assert {s.key for s in mine} == {incident_id.encode()}
        opened = stack.tap.events(IncidentOpened, incident_id)
        assert len(opened) == 1
        assert opened[0].alert_received_at == first.received_at
        assert opened[0].first_anomaly_at == first.starts_at
        classified = stack.tap.events(IncidentClassified, incident_id)
        assert [(c.severity, c.previous_severity) for c in classified] == [
            (Severity.SEV2, None), (Severity.SEV0, Severity.SEV2),
        ]
        assert classified[0].occurred_at >= opened[0].occurred_at
        changes = [u.change for u in stack.tap.events(IncidentUpdated, incident_id)]
        assert sorted(changes) == ["service_added", "severity_changed"]

    async def test_redelivered_alert_produces_nothing_new(self, stack: Stack) -> None:
        """The same alert sent again yields no new event; an uncorrelatable one is parked."""
        runtime, tasks = await stack.start_triage()
        try:
            alert = make_alert("payments")
            await stack.send(alert, key="group-a")
            incident_id = await wait_opened(stack, alert)
            before = len(stack.tap.seen)
            assert before == 2

            await stack.send(alert, key="group-a")
            blank = make_alert("payments", n=9).model_copy(update={"fingerprint": ""})
            await stack.send(blank, key="group-a")
            # Same key, same partition: once the sentinel is handled, the others were too.
            sentinel = make_alert("catalog")
            await stack.send(sentinel, key="group-a")
            sentinel_incident = await wait_opened(stack, sentinel)
        finally:
            await stop(runtime, tasks)
        assert sentinel_incident != incident_id
        assert len(stack.tap.events(Event, incident_id)) == before
        assert len(stack.tap.events(IncidentOpened)) == 2
        parked = await read_all(stack.bootstrap, Topic.ALERT_RECEIVED.dlq, stack.prefix)
        assert [parse_event(r.value or b"").event_id for r in parked] == [blank.event_id]
        error = dict(parked[0].headers)[DLQ_HEADER_ERROR].decode()
        assert "has no fingerprint: cannot correlate it" in error

    async def test_restart_mid_incident_keeps_the_incident(self, stack: Stack) -> None:
        """After a restart the projection is rebuilt: the same fingerprint joins, no duplicate."""
        runtime, tasks = await stack.start_triage()
        try:
            first = make_alert("payments")
            await stack.send(first)
            incident_id = await wait_opened(stack, first)
        finally:
            await stop(runtime, tasks)

        runtime, tasks = await stack.start_triage()
        try:
            # start() returns after the replay and before any group has joined: the
            # incident is there because the projection was rebuilt from the log.
            transport = httpx.ASGITransport(app=runtime.http)
            async with httpx.AsyncClient(transport=transport, base_url="http://triage") as api:
                tracked = (await api.get("/incidents")).json()
            assert [i["incident_id"] for i in tracked] == [incident_id]
            assert tracked[0]["severity"] == "SEV0"
            await stack.send(first)  # redelivered after the restart: still a no-op
            again = make_alert("payments", n=1)
            await stack.send(again)
            await stack.tap.wait_for(
                lambda: any(u.alert_event_id == again.event_id
                            for u in stack.tap.events(IncidentUpdated)),
                "the second alert to be applied",
            )
        finally:
            await stop(runtime, tasks)
        updates = stack.tap.events(IncidentUpdated)
        assert [(u.change, u.incident_id) for u in updates] == [("alert_added", incident_id)]
        assert len(stack.tap.events(IncidentOpened)) == 1
        assert len(stack.tap.events(IncidentClassified)) == 1

    async def test_resolution_by_another_service_then_recurrence(self, stack: Stack) -> None:
        """incident.resolved from the executor closes the incident; a repeat is a recurrence."""
        runtime, tasks = await stack.start_triage()
        try:
            first = make_alert("checkout")
            await stack.send(first)
            incident_id = await wait_opened(stack, first)
            await stack.send(IncidentResolved(
                producer="executor", incident_id=incident_id, correlation_id=incident_id,
                resolved_by="executor", resolution="verified_recovery", verified=True,
            ))
            transport = httpx.ASGITransport(app=runtime.http)
            async with httpx.AsyncClient(transport=transport, base_url="http://triage") as api:
                deadline = time.monotonic() + 20
                while (await api.get(f"/incidents/{incident_id}")).json()["status"] != "resolved":
                    assert time.monotonic() < deadline, "resolution never reached triage"
                    await asyncio.sleep(0.05)
                assert (await api.get("/incidents")).json() == []

            repeat = make_alert("checkout", n=1)
            await stack.send(repeat)
            recurrence_id = await wait_opened(stack, repeat)
        finally:
            await stop(runtime, tasks)
        opened = opened_for(stack.tap, repeat)
        assert opened is not None
        assert recurrence_id != incident_id
        assert opened.recurrence_of == incident_id
        await stack.tap.wait_for(
            lambda: any(u.change == "recurred"
                        for u in stack.tap.events(IncidentUpdated, recurrence_id)),
            "incident.updated(recurred)",
        )
