"""The event bus on a real Kafka-protocol broker: round trips, DLQ, at-least-once, traces."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events import (
    EVENT_TYPES,
    AlertReceived,
    Event,
    IncidentOpened,
    derive_event_id,
    parse_event,
)
from shared.kafka import DLQ_HEADER_ERROR, DLQ_HEADER_OFFSET, DLQ_HEADER_TOPIC, EventBus
from shared.settings import KafkaSettings
from shared.topics import Topic
from tests.samples import sample_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def settings(bootstrap: str, prefix: str, **kw: object) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, create_topics=False,
        session_timeout_ms=3000, retry_backoff_s=0.01, **kw,  # type: ignore[arg-type]
    )


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.05)


async def read_topic(bootstrap: str, name: str, count: int, timeout: float = 20.0
                     ) -> list[ConsumerRecord[bytes, bytes]]:
    """Read at least count records of a topic from the beginning (no group)."""
    consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            out.extend(r for recs in batch.values() for r in recs)
    finally:
        await consumer.stop()
    return out


@pytest.fixture
async def bus_factory(kafka_bootstrap: str, topic_prefix: str
                      ) -> AsyncIterator[Callable[..., Awaitable[EventBus]]]:
    buses: list[EventBus] = []

    async def make(service: str, setup: Callable[[EventBus], None] | None = None,
                   **kw: object) -> EventBus:
        bus = EventBus(settings(kafka_bootstrap, topic_prefix), service, **kw)  # type: ignore[arg-type]
        if setup:
            setup(bus)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


class TestRoundTrip:
    async def test_every_event_type_round_trips_with_key_and_headers(
        self, kafka_bootstrap: str, topic_prefix: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Each catalogued event comes back equal, keyed per the catalog, with its headers."""
        bus = await bus_factory("roundtrip")
        sent = {cls: sample_event(cls) for cls in EVENT_TYPES}
        await bus.publish_many(list(sent.values()))
        for cls, event in sent.items():
            records = await read_topic(kafka_bootstrap, bus.topic(cls.TOPIC), 1)
            assert len(records) == 1, cls
            rec = records[0]
            assert rec.key == event.partition_key()
            headers = {k: v.decode() for k, v in rec.headers}
            assert headers["event-type"] == event.event_type
            assert headers["event-id"] == event.event_id
            assert parse_event(rec.value) == event

    async def test_publishing_the_same_event_twice_writes_it_once(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """A retried publish of the same (derived) event id is a no-op."""
        bus = await bus_factory("twice")
        event = sample_event(AlertReceived)
        assert await bus.publish(event) is True
        assert await bus.publish(event) is False
        records = await read_topic(kafka_bootstrap, bus.topic(Topic.ALERT_RECEIVED), 2, 2.0)
        assert len(records) == 1


class TestDeadLetter:
    async def test_poison_message_is_parked_and_later_messages_still_flow(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Invalid JSON, a contract violation and a failing handler go to the DLQ with reasons;
        the next message on the same partition is still handled."""
        handled: list[str] = []

        async def handle(event: Event) -> None:
            assert isinstance(event, AlertReceived)
            if event.summary == "explode":
                raise RuntimeError("handler cannot cope")
            handled.append(event.summary)

        consumer = await bus_factory(
            "dlq-consumer", lambda b: b.subscribe(Topic.ALERT_RECEIVED, handle))
        producer = await bus_factory("dlq-producer")
        name = producer.topic(Topic.ALERT_RECEIVED)
        await producer.broker.publish(b"{not json", name, key=b"same-key", partition=3)
        bad = sample_event(AlertReceived).model_dump(mode="json") | {"status": "exploded"}
        await producer.broker.publish(bad, name, key=b"same-key", partition=3)
        for summary in ("explode", "after"):
            event = sample_event(AlertReceived, summary=summary, correlation_key="same-key")
            await producer.broker.publish(event.model_dump_json().encode(), name,
                                          key=b"same-key", partition=3)
        await wait_for(lambda: handled == ["after"], what="message after the poison")
        dlq = await read_topic(kafka_bootstrap, f"{name}.dlq", 3)
        reasons = sorted({k: v.decode() for k, v in r.headers}[DLQ_HEADER_ERROR] for r in dlq)
        assert len(dlq) == 3
        assert reasons[0].startswith("RuntimeError: handler cannot cope")
        assert any("Invalid JSON" in r for r in reasons)
        assert any("status" in r for r in reasons)
        for rec in dlq:
            headers = {k: v.decode() for k, v in rec.headers}
            assert headers[DLQ_HEADER_TOPIC] == name
            assert int(headers[DLQ_HEADER_OFFSET]) >= 0
        assert consumer.metrics.dead_lettered._metrics  # counted, with bounded labels


class TestAtLeastOnce:
    async def test_killed_consumer_redelivers_and_idempotency_makes_it_a_no_op(
        self, kafka_bootstrap: str, topic_prefix: str,
        bus_factory: Callable[..., Awaitable[EventBus]],
    ) -> None:
        """A consumer SIGKILLed after its effect but before committing gets the message again;
        the restarted service rebuilds its memory from the log, so handling it again
        repeats no effect (the derived output is already there)."""
        group = "killable-group"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/integration/killable_consumer.py"),
             kafka_bootstrap, topic_prefix, group],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            producer = await bus_factory("alerts")
            alert = sample_event(AlertReceived)
            await producer.publish(alert)
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.startswith("EFFECT ")
        finally:
            proc.kill()
            proc.wait()

        calls: list[Event] = []
        republished: list[bool] = []
        restarted = EventBus(settings(kafka_bootstrap, topic_prefix), "killable")

        async def handle(event: Event) -> None:
            calls.append(event)
            assert isinstance(event, AlertReceived)
            again = IncidentOpened(
                event_id=derive_event_id("incident.opened", event.event_id),
                producer="killable", incident_id="INC-KILL01",
                correlation_id=event.correlation_id, causation_id=event.event_id,
                title=event.name, services=(event.service,), fingerprints=(event.fingerprint,),
                alert_event_id=event.event_id, alert_received_at=event.received_at,
            )
            republished.append(await restarted.publish(again))

        def setup(bus: EventBus) -> None:
            bus.declare_outputs([Topic.INCIDENT_OPENED])
            bus.subscribe(Topic.ALERT_RECEIVED, handle, group=group)

        setup(restarted)
        await restarted.restore()
        await restarted.broker.start()
        try:
            await wait_for(lambda: bool(republished), 30, "redelivery")
            assert [c.event_id for c in calls] == [alert.event_id]
            assert republished == [False]
        finally:
            await restarted.stop()
        opened = await read_topic(kafka_bootstrap, restarted.topic(Topic.INCIDENT_OPENED), 2, 2.0)
        assert len(opened) == 1


class TestTracing:
    async def test_consumer_continues_the_producers_trace(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """A span started around a publish is the parent trace of the consumer's handling."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        seen: list[int] = []

        async def handle(event: Event) -> None:
            seen.append(trace.get_current_span().get_span_context().trace_id)

        await bus_factory("traced-consumer",
                          lambda b: b.subscribe(Topic.INCIDENT_OPENED, handle),
                          tracer_provider=provider)
        producer = await bus_factory("traced-producer", tracer_provider=provider)
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("ingest") as span:
            await producer.publish(sample_event(IncidentOpened))
            trace_id = span.get_span_context().trace_id
        await wait_for(lambda: bool(seen), what="traced handling")
        assert seen == [trace_id]
        records = await read_topic(kafka_bootstrap, producer.topic(Topic.INCIDENT_OPENED), 1)
        assert f"{trace_id:032x}" in dict(records[0].headers)["traceparent"].decode()


class TestBatches:
    async def test_batch_handler_gets_many_events_and_poison_is_isolated(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """A batch subscriber receives events together; an invalid record and an event its
        handler cannot take go to the DLQ while every other event is handled once."""
        batches: list[int] = []
        handled: list[str] = []

        async def handle(events: Sequence[Event]) -> None:
            if any(isinstance(e, AlertReceived) and e.summary == "poison" for e in events):
                raise RuntimeError("cannot take poison")
            batches.append(len(events))
            handled.extend(e.summary for e in events if isinstance(e, AlertReceived))

        producer = await bus_factory("batch-producer")
        name = producer.topic(Topic.ALERT_RECEIVED)
        good = [sample_event(AlertReceived, summary=f"a{i}", correlation_key="k")
                for i in range(200)]
        assert await producer.publish_many(good) == 200
        await bus_factory("batch-consumer",
                          lambda b: b.subscribe_batch(Topic.ALERT_RECEIVED, handle))
        await wait_for(lambda: len(handled) == 200, what="the first 200 events")
        assert max(batches) > 1  # the backlog came in batches, not one by one

        more = [sample_event(AlertReceived, summary=f"b{i}", correlation_key="k")
                for i in range(50)]
        more.insert(25, sample_event(AlertReceived, summary="poison", correlation_key="k"))
        await producer.broker.publish(b"garbage", name, key=b"k")
        assert await producer.publish_many(more) == 51
        await wait_for(lambda: len(handled) == 250, what="every good event")
        assert sorted(handled) == sorted([f"a{i}" for i in range(200)]
                                         + [f"b{i}" for i in range(50)])
        dlq = await read_topic(kafka_bootstrap, f"{name}.dlq", 2)
        reasons = sorted({k: v.decode() for k, v in r.headers}[DLQ_HEADER_ERROR] for r in dlq)
        assert len(dlq) == 2
        assert reasons[0].startswith("RuntimeError: cannot take poison")
        assert "invalid event" in reasons[1]

    async def test_publish_many_keeps_order_per_key_and_skips_known_ids(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Events of one key arrive in the order given; an id already published is skipped."""
        bus = await bus_factory("ordered")
        events = [sample_event(IncidentOpened, title=f"t{i}") for i in range(300)]
        assert await bus.publish_many(events) == 300
        assert await bus.publish_many(events[:10]) == 0
        records = await read_topic(kafka_bootstrap, bus.topic(Topic.INCIDENT_OPENED), 300)
        titles = [parse_event(r.value).title for r in records]  # type: ignore[attr-defined]
        assert titles == [f"t{i}" for i in range(300)]
