"""The event bus on a real Kafka-protocol broker: round trips, DLQ, at-least-once, traces."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events import (
    EVENT_TYPES,
    AlertReceived,
    Event,
    IncidentOpened,
    IncidentUpdated,
    derive_event_id,
    parse_event,
)
from shared.kafka import DLQ_HEADER_ERROR, DLQ_HEADER_OFFSET, DLQ_HEADER_TOPIC, EventBus
from shared.settings import KafkaSettings
from shared.topics import CATALOG, Topic
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

    async def test_background_subscription_still_delivers_a_lone_small_event(
        self, kafka_bootstrap: str, topic_prefix: str,
        bus_factory: Callable[..., Awaitable[EventBus]],
    ) -> None:
        """A background batch subscription (the background wait, one batch per interval) still
        delivers one lone event, and the next one, published once the consumer is idle."""
        got: list[str] = []

        async def handle(events: Sequence[Event]) -> None:
            got.extend(e.event_id for e in events)

        consumer = await background_consumer(kafka_bootstrap, topic_prefix, 300, handle)
        try:
            producer = await bus_factory("background-producer")
            events = [sample_event(IncidentUpdated, detail=f"lone {n}") for n in range(2)]
            for n, event in enumerate(events):
                await producer.publish(event)

                def arrived(count: int = n + 1) -> bool:
                    return len(got) >= count

                await wait_for(arrived, 20.0, f"lone event {n}")
            assert got == [e.event_id for e in events]
        finally:
            await consumer.stop()

    async def test_background_subscription_of_a_busy_topic_takes_one_batch_per_interval(
        self, kafka_bootstrap: str, topic_prefix: str,
        bus_factory: Callable[..., Awaitable[EventBus]],
    ) -> None:
        """Events published every 20 ms for 3 s reach a background subscription with a 1 s
        interval in batches at least that interval apart (one fetch per interval, not one
        per event), and every one of them arrives."""
        batches: list[list[str]] = []
        handled_at: list[float] = []

        async def handle(events: Sequence[Event]) -> None:
            handled_at.append(time.monotonic())
            batches.append([e.event_id for e in events])

        consumer = await background_consumer(kafka_bootstrap, topic_prefix, 1000, handle)
        try:
            producer = await bus_factory("paced-producer")
            first = sample_event(IncidentUpdated, detail="first")
            await producer.publish(first)
            await wait_for(lambda: bool(batches), 20.0, "the first batch (group joined)")
            events = [sample_event(IncidentUpdated, detail=f"busy {n}") for n in range(150)]
            for event in events:  # the load's pace, not synchronisation
                await producer.publish(event)
                await asyncio.sleep(0.02)

            def all_arrived() -> bool:
                return sum(len(b) for b in batches) >= 1 + len(events)

            await wait_for(all_arrived, 20.0, "every busy event")
            got = [event_id for batch in batches for event_id in batch]
            assert sorted(got) == sorted([first.event_id] + [e.event_id for e in events])
            gaps = [round(b - a, 3) for a, b in itertools.pairwise(handled_at)]
            assert all(gap >= 0.95 for gap in gaps), (gaps, [len(b) for b in batches])
            assert len(batches) < 10, [len(b) for b in batches]  # 151 events
        finally:
            await consumer.stop()


async def background_consumer(
    bootstrap: str, prefix: str, wait_ms: int, handle: Callable[[Sequence[Event]], Awaitable[None]]
) -> EventBus:
    """A started bus with a background batch subscription to incident.updated."""
    consumer = EventBus(settings(bootstrap, prefix, background_fetch_max_wait_ms=wait_ms),
                        "background")
    consumer.subscribe_batch(Topic.INCIDENT_UPDATED, handle, group="background.updates",
                             background=True)
    await consumer.start()
    return consumer


async def read_until(bootstrap: str, name: str,
                     done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
                     timeout: float = 20.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning (no group) until done(records) holds."""
    consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(out):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: condition not met with {len(out)} records read")
            batch = await consumer.getmany(timeout_ms=100)
            out.extend(r for recs in batch.values() for r in recs)
    finally:
        await consumer.stop()
    return out


def has_ids(ids: set[str]) -> Callable[[list[ConsumerRecord[bytes, bytes]]], bool]:
    """Read until every one of ids arrived."""
    return lambda records: ids <= {dict(r.headers)["event-id"].decode() for r in records}


def alert(key: str, **labels: str) -> AlertReceived:
    """An AlertReceived keyed by key with labels."""
    event = sample_event(AlertReceived, correlation_key=key, labels=labels)
    assert isinstance(event, AlertReceived)
    return event


def labels_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """The labels of the alert a record carries."""
    return AlertReceived.model_validate_json(record.value or b"").labels


class TestPublishMany:
    """`publish_many` appends to shared per-partition batches, bypassing faststream."""

    async def test_partition_key_headers_count_and_skipping(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Each record lands where aiokafka's partitioner (and `publish`) puts its key, with
        its key, the standard headers and the extra ones; known ids are skipped and counted."""
        bus = await bus_factory("many-partition")
        name = bus.topic(Topic.ALERT_RECEIVED)
        partitions = list(range(CATALOG[Topic.ALERT_RECEIVED].partitions))
        keys = [f"key-{i}" for i in range(24)]
        events = [alert(k, n=str(n)) for k in keys for n in range(2)]
        extra = {e.event_id: e.correlation_key.upper() for e in events}

        count = await bus.publish_many(
            events, headers=lambda e: [("x-extra", extra[e.event_id].encode()), ("x-fixed", b"1")]
        )

        assert count == len(events)
        # the faststream path (aiokafka's send with its partitioner) for one more event per key
        reference = [alert(k, ref="1") for k in keys]
        for event in reference:
            assert await bus.publish(event) is True
        records = await read_until(kafka_bootstrap, name,
                                   has_ids({e.event_id for e in events + reference}))
        assert len(records) == len(events) + len(reference)
        by_id = {dict(r.headers)["event-id"].decode(): r for r in records}
        where_publish_puts = {r.key: r.partition for r in records if labels_of(r).get("ref")}
        for event in events:
            rec = by_id[event.event_id]
            key = event.partition_key()
            assert rec.key == key
            assert rec.partition == DefaultPartitioner()(key, partitions, partitions)
            assert rec.partition == where_publish_puts[key]
            assert parse_event(rec.value) == event
            head = {k: v.decode() for k, v in rec.headers}
            assert head["content-type"] == "application/json"
            assert head["event-type"] == "alert.received"
            assert head["event-id"] == event.event_id
            assert head["x-extra"] == event.correlation_key.upper()
            assert head["x-fixed"] == "1"
        assert len({r.partition for r in records}) > 1  # the keys spread over partitions
        # within a key, the order given
        for k in keys:
            mine = [labels_of(r)["n"] for r in records
                    if r.key == k.encode() and "n" in labels_of(r)]
            assert mine == ["0", "1"]

        assert await bus.publish_many(events) == 0
        fresh = [alert(k, fresh="1") for k in keys]  # same keys: behind any wrong copy
        doubled = [*events[:5], fresh[0], fresh[0], *fresh[1:], *events[5:]]
        assert await bus.publish_many(doubled) == len(fresh)
        records = await read_until(kafka_bootstrap, name,
                                   has_ids({e.event_id for e in fresh}))
        ids = [dict(r.headers)["event-id"].decode() for r in records]
        assert len(ids) == len(set(ids)) == len(events) + len(reference) + len(fresh)

    async def test_order_per_key_under_concurrent_callers(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Concurrent callers sharing one key: each caller's events are in its own order,
        none lost, none doubled."""
        bus = await bus_factory("many-concurrent")
        callers, calls, per_call = 5, 20, 4

        async def caller(c: int) -> int:
            total = 0
            for i in range(calls):
                batch = [alert("shared", caller=str(c), seq=str(i * per_call + j))
                         for j in range(per_call)]
                total += await bus.publish_many(batch)
            return total

        counts = await asyncio.gather(*(caller(c) for c in range(callers)))
        assert counts == [calls * per_call] * callers
        sentinel = alert("shared", sentinel="1")
        assert await bus.publish_many([sentinel]) == 1
        records = await read_until(kafka_bootstrap, bus.topic(Topic.ALERT_RECEIVED),
                                   has_ids({sentinel.event_id}))
        assert {r.partition for r in records} == {records[-1].partition}
        ids = [dict(r.headers)["event-id"].decode() for r in records]
        assert len(ids) == len(set(ids)) == callers * calls * per_call + 1
        sequences: dict[str, list[int]] = {}
        for rec in records[:-1]:
            labels = labels_of(rec)
            sequences.setdefault(labels["caller"], []).append(int(labels["seq"]))
        assert sequences == {str(c): list(range(calls * per_call)) for c in range(callers)}

    async def test_events_overflowing_the_batch_size_all_arrive_in_order(
        self, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """With the minimum 16 KiB batches, one call of ~1 MB spans dozens of batches (and a
        record bigger than a batch goes alone): every event arrives, in order."""
        bus = EventBus(settings(kafka_bootstrap, topic_prefix, producer_batch_bytes=16 * 1024),
                       "many-overflow")
        await bus.start()
        try:
            events = [sample_event(AlertReceived, correlation_key="big", name=f"n{i}",
                                   description=f"{i:04d}" * 750)
                      for i in range(300)]
            events.insert(150, sample_event(AlertReceived, correlation_key="big", name="n-huge",
                                            description="h" * 40_000))
            assert await bus.publish_many(events) == len(events)
        finally:
            await bus.stop()
        records = await read_until(kafka_bootstrap, bus.topic(Topic.ALERT_RECEIVED),
                                   lambda rs: len(rs) >= len(events))
        received = [parse_event(r.value) for r in records]
        assert [e.event_id for e in received] == [e.event_id for e in events]
        assert received == events

    async def test_one_span_per_call_and_its_context_in_every_record(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """The call's `<topic> publish` span (a child of the caller's) is every record's
        traceparent, and it counts the events."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        bus = await bus_factory("many-traced", tracer_provider=provider)
        events = [alert(f"trace-{i}") for i in range(8)]
        with provider.get_tracer("test").start_as_current_span("ingest") as outer:
            assert await bus.publish_many(events) == len(events)
        trace_id = outer.get_span_context().trace_id
        name = bus.topic(Topic.ALERT_RECEIVED)
        spans = [s for s in exporter.get_finished_spans() if s.name == f"{name} publish"]
        assert len(spans) == 1
        span = spans[0]
        assert span.attributes is not None
        assert span.attributes["messaging.batch.message_count"] == len(events)
        assert span.context is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id == outer.get_span_context().span_id
        records = await read_until(kafka_bootstrap, name, has_ids({e.event_id for e in events}))
        assert len({r.partition for r in records}) > 1  # several batches, one context
        for rec in records:
            traceparent = dict(rec.headers)["traceparent"].decode()
            assert traceparent.split("-")[1:3] == [f"{trace_id:032x}",
                                                   f"{span.context.span_id:016x}"]

    async def test_a_cancelled_caller_does_not_cancel_the_batch_it_shares(
        self, kafka_bootstrap: str, bus_factory: Callable[..., Awaitable[EventBus]]
    ) -> None:
        """Two callers append to the same open batch; cancelling one (its timeout) leaves
        the other's wait for the shared acknowledgement intact."""
        bus = await bus_factory("many-cancel")
        assert await bus.publish_many([alert("same", warm="1")]) == 1  # metadata known
        mine = [alert("same", who="cancelled", n=str(i)) for i in range(20)]
        theirs = [alert("same", who="other", n=str(i)) for i in range(20)]
        cancelled = asyncio.create_task(bus.publish_many(mine))
        other = asyncio.create_task(bus.publish_many(theirs))
        await asyncio.sleep(0)  # both ran up to their wait for the acknowledgement
        assert bus._batcher is not None
        open_batches = [b.builder.record_count()
                        for q in bus._batcher._queues.values() for b in q]
        assert open_batches == [len(mine) + len(theirs)], "precondition: one shared batch"
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await asyncio.wait_for(other, 20) == len(theirs)
        assert all(e.event_id in bus.published for e in theirs)
        records = await read_until(kafka_bootstrap, bus.topic(Topic.ALERT_RECEIVED),
                                   has_ids({e.event_id for e in theirs}))
        assert [labels_of(r)["n"] for r in records if labels_of(r).get("who") == "other"] == [
            str(i) for i in range(20)]

    async def test_a_bus_never_started_refuses_clearly(
        self, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """publish_many on a bus never started (or stopped) raises RuntimeError saying so."""
        bus = EventBus(settings(kafka_bootstrap, topic_prefix), "never-started")
        with pytest.raises(RuntimeError, match="not connected"):
            await bus.publish_many([alert("k")])
        assert len(bus.published) == 0
        await bus.start()
        await bus.stop()
        with pytest.raises(RuntimeError, match="not connected"):  # nor one stopped
            await bus.publish_many([alert("k")])


async def stored_batches(bootstrap: str, name: str, partition: int) -> list[DefaultRecordBatch]:
    """The record batches the broker holds for a partition, as it serves them on the wire."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(name, partition))
        request = FetchRequest(100, 1, 4 * 1024 * 1024, 0,
                               [(name, [(partition, 0, 4 * 1024 * 1024)])])
        response = await client.send(leader, request)
    finally:
        await client.close()
    [(_topic, [fetched])] = response.topics  # (partition, error, ..., records) in every version
    assert fetched[1] == 0, f"fetch error {fetched[1]}"
    records = MemoryRecords(fetched[-1])
    batches = []
    while (batch := records.next_batch()) is not None:
        batches.append(batch)
    return batches


class TestCompression:
    """`IR_KAFKA_COMPRESSION_TYPE`: record batches travel and are stored compressed."""

    @pytest.mark.parametrize(("codec", "attribute"), [
        ("zstd", DefaultRecordBatch.CODEC_ZSTD),
        ("lz4", DefaultRecordBatch.CODEC_LZ4),
        ("snappy", DefaultRecordBatch.CODEC_SNAPPY),
        ("gzip", DefaultRecordBatch.CODEC_GZIP),
        ("none", DefaultRecordBatch.CODEC_NONE),
    ])
    async def test_batches_are_stored_with_the_codec_and_read_back_equal(
        self, kafka_bootstrap: str, topic_prefix: str, codec: str, attribute: int
    ) -> None:
        """Both publish paths (publish_many and faststream's publish) write batches with the
        configured codec; a consumer reads every event back equal."""
        bus = EventBus(settings(kafka_bootstrap, topic_prefix, compression_type=codec),
                       f"codec-{codec}")
        await bus.start()
        events = [alert("one-key", n=str(n), note="x" * 200) for n in range(50)]
        try:
            await bus.publish_many(events[:-1])
            await bus.publish(events[-1])
        finally:
            await bus.stop()
        name = bus.topic(Topic.ALERT_RECEIVED)
        partitions = list(range(CATALOG[Topic.ALERT_RECEIVED].partitions))
        partition = DefaultPartitioner()(b"one-key", partitions, partitions)
        batches = await stored_batches(kafka_bootstrap, name, partition)
        assert len(batches) >= 2  # the many and the one
        assert {b.compression_type for b in batches} == {attribute}
        records = await read_until(kafka_bootstrap, name, has_ids({e.event_id for e in events}))
        assert [parse_event(r.value) for r in records] == events
