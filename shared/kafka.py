"""Kafka plumbing every service uses: the `EventBus`.

Delivery contract (ARCHITECTURE.md, "Delivery and state"):

- At least once. Subscribers never auto-commit; faststream commits the offset
  after the handler returned (`AckPolicy.NACK_ON_ERROR`), so a consumer killed
  mid-handler gets the message again. If even the dead-letter publish fails the
  message is nacked (seek back) rather than committed: nothing accepted is lost.
- Idempotent on `event_id`. The bus skips an input it already handled to the
  end in this process, and remembers every event id it published. At start-up
  `restore()` replays the service's own output topics, so after a restart that
  memory is rebuilt from the log itself. A message redelivered after a crash is
  handled again (the crash may have cut the handler between two outputs), and
  every output whose derived id is already in the log is skipped: the second
  delivery completes what the first one left undone, and repeats nothing.
  Handlers with effects outside Kafka check their projection before acting.
- Poison messages never block a partition. Invalid JSON or a contract violation
  goes straight to `<topic>.dlq`; a handler that keeps failing is retried
  `max_attempts` times with backoff (tenacity), then dead-lettered. DLQ headers
  carry the error, the attempt count and the original topic/partition/offset.
- Trace context travels in the `traceparent` header (faststream's OpenTelemetry
  middleware injects and continues it; `publish_many` injects its own span's),
  so one incident is one trace.
- Hot paths bypass faststream per message: `publish_many` appends to shared
  aiokafka record batches (`shared.batching`), and subscribers receive raw
  records (no JSON decode by faststream, no context injection per message).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from shared.batching import RecordBatcher
from shared.events import Event, parse_event
from shared.settings import KafkaSettings
from shared.topics import Topic, topic_name

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[Sequence[Event]], Awaitable[None]]


def each(handler: Handler) -> BatchHandler:
    """A per-event handler as a batch handler: the batch's events in order."""

    async def handle(events: Sequence[Event]) -> None:
        for event in events:
            await handler(event)

    return handle
E = TypeVar("E", bound=Event)

DLQ_HEADER_ERROR = "x-dlq-error"
DLQ_HEADER_ATTEMPTS = "x-dlq-attempts"
DLQ_HEADER_TOPIC = "x-dlq-original-topic"
DLQ_HEADER_PARTITION = "x-dlq-original-partition"
DLQ_HEADER_OFFSET = "x-dlq-original-offset"
DLQ_HEADER_SERVICE = "x-dlq-service"
_PARTITION_MEMO_SIZE = 100_000


class _Pace:
    """At most one batch per interval for a subscription that keeps up.

    The consumer's fetcher reads ahead only into partitions whose records were
    handed over, so holding the next batch back holds the next fetch back too:
    one fetch per interval, each bringing everything that came meanwhile.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = -interval_s

    async def wait(self, *, behind: bool) -> None:
        """Sleep out the rest of the interval since the last batch (not when behind)."""
        delay = self._last + self.interval_s - time.monotonic()
        if delay > 0 and not behind:
            await asyncio.sleep(delay)
        self._last = time.monotonic()


class BoundedSet:
    """An insertion-ordered set that forgets its oldest members past `maxlen`."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self.maxlen = maxlen

    def add(self, item: str) -> None:
        """Remember item."""
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self.maxlen:
            self._items.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


def security_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka connection options for SASL/TLS clusters (empty for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return {}
    import ssl

    out: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if "SSL" in settings.security_protocol:
        ctx = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            ctx.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        out["ssl_context"] = ctx
    if "SASL" in settings.security_protocol:
        out.update(
            sasl_mechanism=settings.sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return out


class BusMetrics:
    """The bus's own Prometheus metrics (no incident ids in labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "ir_events_handled_total", "Events handled by this service",
            ["topic", "outcome"], registry=registry,
        )
        self.published = Counter(
            "ir_events_published_total", "Events published by this service",
            ["topic"], registry=registry,
        )
        self.skipped = Counter(
            "ir_events_publish_skipped_total",
            "Publishes skipped because the event id is already in the log (redelivery)",
            ["topic"], registry=registry,
        )
        self.dead_lettered = Counter(
            "ir_events_dead_lettered_total", "Messages parked in a DLQ",
            ["topic", "reason"], registry=registry,
        )


class EventBus:
    """A service's connection to the event log: publish, subscribe, replay."""

    def __init__(
        self,
        settings: KafkaSettings,
        service: str,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.registry = registry or CollectorRegistry()
        self.metrics = BusMetrics(self.registry)
        self.handled = BoundedSet()
        self.published = BoundedSet()
        self._outputs: set[Topic] = set()
        self._partitions: dict[tuple[str, bytes, int], int] = {}
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._batcher: RecordBatcher | None = None
        self.broker = KafkaBroker(
            settings.bootstrap_servers,
            client_id=service,
            acks="all",
            request_timeout_ms=settings.request_timeout_ms,
            max_batch_size=settings.producer_batch_bytes,
            linger_ms=settings.producer_linger_ms,
            compression_type=(
                None if settings.compression_type == "none" else settings.compression_type
            ),
            middlewares=(
                KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
                KafkaPrometheusMiddleware(registry=self.registry, app_name=service),
            ),
            logger=logging.getLogger(f"faststream.{service}"),
            log_level=logging.DEBUG,
            **security_kwargs(settings),
        )

    # --- names ---------------------------------------------------------------

    def topic(self, topic: Topic | str) -> str:
        """Physical name of a catalog topic (with the configured prefix)."""
        return topic_name(topic, self.settings.topic_prefix)

    def group(self, name: str | None = None) -> str:
        """Consumer group id for this service (or a named sub-group)."""
        return f"{self.settings.group_prefix}{self.settings.topic_prefix}{name or self.service}"

    # --- lifecycle -------------------------------------------------------------

    async def ensure_topics(self) -> None:
        """Create every catalog topic and DLQ explicitly (Tansu auto-creates 4 partitions)."""
        if self.settings.create_topics:
            from shared.topics_admin import create_topics

            await create_topics(
                self.settings.bootstrap_servers,
                self.settings.topic_prefix,
                security=security_kwargs(self.settings),
                max_partitions=self.settings.max_partitions,
            )

    async def start(self) -> None:
        """Create topics (if configured), connect, and start every subscriber."""
        await self.ensure_topics()
        await self.broker.start()

    async def stop(self) -> None:
        """Stop subscribers (committing what was handled) and disconnect."""
        await self.broker.stop()

    async def ping(self, within_s: float = 2.0) -> bool:
        """True when the broker answers within within_s (used by /healthz)."""
        return bool(await self.broker.ping(within_s))

    # --- publishing -------------------------------------------------------------

    def declare_outputs(self, topics: Iterable[Topic]) -> None:
        """Name the topics this service publishes to (replayed by `restore`)."""
        self._outputs.update(topics)

    async def publish(self, event: Event, *, headers: dict[str, str] | None = None) -> bool:
        """Publish with acks=all, keyed per the catalog; False when already published."""
        if event.event_id in self.published:
            self.metrics.skipped.labels(event.event_type).inc()
            return False
        await self.broker.publish(
            event.encode(),
            self.topic(event.TOPIC),
            key=event.partition_key(),
            headers={
                "content-type": "application/json",
                "event-type": event.event_type,
                "event-id": event.event_id,
                **(headers or {}),
            },
        )
        self.published.add(event.event_id)
        self.metrics.published.labels(event.event_type).inc()
        return True

    async def publish_many(
        self,
        events: Sequence[E],
        *,
        headers: Callable[[E], Iterable[tuple[str, bytes]]] | None = None,
    ) -> int:
        """Publish events in order and wait for all acks at once; the count newly published.

        The hot path of the gateway and triage, so it skips faststream's
        per-message publish machinery: the events are appended to the open
        record batch of their partition (chosen exactly as aiokafka's
        partitioner would for the key; see `shared.batching`), shared with
        concurrent callers, and acknowledged with `acks=all` like every
        publish. Order per key is kept (records are appended in the given
        order and each partition's batches are submitted in order). One
        `<topics> publish` span covers the call and its trace context goes
        into every record's `traceparent` header, so consumers continue the
        trace as with `publish`. headers(event) adds (name, value) headers.
        Events whose batch was acknowledged count as published even when
        another batch failed (then the first error is raised).
        """
        fresh: dict[str, E] = {}
        for event in events:
            if event.event_id in self.published or event.event_id in fresh:
                self.metrics.skipped.labels(event.event_type).inc()
                continue
            fresh[event.event_id] = event
        if not fresh:
            return 0
        producer = self._producer()
        # Topic names per event class, not per event: a tenth of this method's time was
        # formatting the same few names once per record.
        names = {cls: self.topic(cls.TOPIC) for cls in {type(e) for e in fresh.values()}}
        topics = sorted(set(names.values()))
        with self._tracer.start_as_current_span(
            f"{','.join(topics)} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation": "publish",
                "messaging.destination.name": ",".join(topics),
                "messaging.batch.message_count": len(fresh),
            },
        ):
            return await self._send_batches(producer, list(fresh.values()), names, headers)

    async def _send_batches(
        self,
        producer: AIOKafkaProducer,
        events: list[E],
        names: Mapping[type[E], str],
        headers: Callable[[E], Iterable[tuple[str, bytes]]] | None,
    ) -> int:
        if self._batcher is None or self._batcher.producer is not producer:
            self._batcher = RecordBatcher(producer)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the current span: publish_many's
        common = [("content-type", b"application/json")]
        common += [(k, v.encode()) for k, v in carrier.items()]
        partitions = {t: list(await producer.partitions_for(t)) for t in set(names.values())}
        acks: list[asyncio.Future[Any]] = []
        for event in events:
            topic = names[type(event)]
            key = event.partition_key()
            record_headers = [
                *common,
                ("event-type", event.event_type.encode()),
                ("event-id", event.event_id.encode()),
            ]
            if headers is not None:
                record_headers.extend(headers(event))
            acks.append(self._batcher.append(
                topic, self._partition(topic, key, partitions[topic]), key,
                event.encode(), record_headers,
            ))
        # asyncio.wait, not gather: the futures are shared with other callers and a
        # caller's cancellation (its timeout) must not cancel theirs.
        await asyncio.wait(set(acks))
        failure: BaseException | None = None
        published: collections.Counter[str] = collections.Counter()
        for event, ack in zip(events, acks, strict=True):
            error = asyncio.CancelledError() if ack.cancelled() else ack.exception()
            if error is not None:
                failure = failure or error
                continue
            self.published.add(event.event_id)
            published[event.event_type] += 1
        for event_type, count in published.items():
            self.metrics.published.labels(event_type).inc(count)
        if failure is not None:
            raise failure
        return len(events)

    def _producer(self) -> AIOKafkaProducer:
        """The aiokafka producer under faststream's (started with the broker)."""
        state = getattr(self.broker.config.producer, "_producer", None)
        try:
            producer = getattr(state, "producer", None)
        except IncorrectState:  # faststream's state before start and after stop
            producer = None
        if not isinstance(producer, AIOKafkaProducer):
            raise RuntimeError("the event bus is not connected (start the broker first)")
        return producer

    def _partition(self, topic: str, key: bytes, partitions: list[int]) -> int:
        """aiokafka's default partition for key (murmur2), memoised: keys repeat a lot."""
        memo_key = (topic, key, len(partitions))
        partition = self._partitions.get(memo_key)
        if partition is None:
            if len(self._partitions) >= _PARTITION_MEMO_SIZE:
                self._partitions.clear()
            partition = self._partitions[memo_key] = DefaultPartitioner()(
                key, partitions, partitions
            )
        return partition

    # --- subscribing -----------------------------------------------------------

    def subscribe(
        self,
        topics: Topic | Sequence[Topic],
        handler: Handler,
        *,
        group: str | None = None,
        dedupe: bool = True,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        """Register handler for every event of topics, at least once, with DLQ and dedupe.

        fetch_max_wait_ms overrides the settings' value.
        """

        async def consume(record: Any) -> None:  # the raw ConsumerRecord (see _raw_records)
            await self._consume(record, handler, dedupe=dedupe)

        self.broker.subscriber(
            *self._names(topics), **self._subscriber_options(group, fetch_max_wait_ms),
        )(consume)

    def subscribe_batch(
        self,
        topics: Topic | Sequence[Topic],
        handler: BatchHandler,
        *,
        group: str | None = None,
        max_records: int = 500,
        fetch_max_wait_ms: int | None = None,
        background: bool = False,
    ) -> None:
        """Register handler for batches of events (high-volume topics), at least once.

        Invalid records are dead-lettered one by one; the valid events of a
        batch go to handler together and the offsets are committed after it
        returned. A batch that keeps failing is retried event by event, so one
        poison event is dead-lettered and the rest still handled. background:
        the background wait (see `KafkaSettings`) and at most one batch per that
        interval while the subscription keeps up (a full batch goes at once).
        """
        options = self._subscriber_options(group, fetch_max_wait_ms, background=background)
        pace = _Pace(self.settings.background_fetch_max_wait_ms / 1000) if background else None

        async def consume(raw: Any) -> None:  # the raw records (see _raw_records)
            records: tuple[ConsumerRecord[bytes, bytes], ...] = (
                raw if isinstance(raw, tuple) else (raw,)
            )
            if pace is not None:
                await pace.wait(behind=len(records) >= max_records)
            await self._consume_batch(records, handler)

        self.broker.subscriber(
            *self._names(topics), batch=True, max_records=max_records,
            batch_timeout_ms=options["fetch_max_wait_ms"], **options,
        )(consume)

    def subscribe_background(
        self, topics: Topic | Sequence[Topic], handler: BatchHandler, *, group: str | None = None,
    ) -> None:
        """Batches of events a service only keeps state from, a few fetches a second.

        `subscribe_batch(..., background=True)` in a consumer group of its own
        (`<service>.updates` unless given), so the service's prompt
        subscriptions never wait behind it.
        """
        self.subscribe_batch(topics, handler, group=group or f"{self.service}.updates",
                             background=True)

    def _names(self, topics: Topic | Sequence[Topic]) -> list[str]:
        return [self.topic(t) for t in ([topics] if isinstance(topics, Topic) else topics)]

    def _subscriber_options(self, group: str | None, fetch_max_wait_ms: int | None, *,
                            background: bool = False) -> dict[str, Any]:
        """What every subscription shares: raw records, at least once, group, timeouts."""
        if background:
            fetch_max_wait_ms = self.settings.background_fetch_max_wait_ms
        return {
            "decoder": _raw_records,
            "group_id": self.group(group),
            "auto_offset_reset": "earliest",
            "ack_policy": AckPolicy.NACK_ON_ERROR,
            "session_timeout_ms": self.settings.session_timeout_ms,
            "heartbeat_interval_ms": self.settings.heartbeat_interval_ms,
            "fetch_max_wait_ms": fetch_max_wait_ms or self.settings.fetch_max_wait_ms,
        }

    async def _consume_batch(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], handler: BatchHandler
    ) -> None:
        valid: list[tuple[ConsumerRecord[bytes, bytes], Event]] = []
        for record in records:
            try:
                valid.append((record, parse_event(record.value or b"")))
            except ValidationError as exc:
                await self.dead_letter(record, f"invalid event: {_short(exc)}", attempts=1)
                self.metrics.handled.labels(record.topic, "invalid").inc()
        if not valid:
            return
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=wait_exponential(multiplier=self.settings.retry_backoff_s, max=5),
                reraise=True,
            ):
                with attempt:
                    await handler([event for _, event in valid])
        except Exception:  # a poison event somewhere: find it one by one
            log.exception("batch of %d failed; retrying event by event", len(valid))
            for record, event in valid:
                async def single(e: Event) -> None:
                    await handler([e])
                await self._handle(record, event, single)
            return
        for record, event in valid:
            self.handled.add(event.event_id)
            self.metrics.handled.labels(record.topic, "ok").inc()

    async def _consume(
        self, record: ConsumerRecord[bytes, bytes], handler: Handler, *, dedupe: bool
    ) -> None:
        topic = record.topic
        try:
            event = parse_event(record.value or b"")
        except ValidationError as exc:
            await self.dead_letter(record, f"invalid event: {_short(exc)}", attempts=1)
            self.metrics.handled.labels(topic, "invalid").inc()
            return
        if dedupe and event.event_id in self.handled:
            self.metrics.handled.labels(topic, "duplicate").inc()
            log.debug("duplicate %s %s ignored", event.event_type, event.event_id)
            return
        with structlog.contextvars.bound_contextvars(
            incident_id=event.incident_id, event_type=event.event_type, event_id=event.event_id
        ):
            await self._handle(record, event, handler)

    async def _handle(
        self, record: ConsumerRecord[bytes, bytes], event: Event, handler: Handler
    ) -> None:
        topic = record.topic
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=wait_exponential(multiplier=self.settings.retry_backoff_s, max=5),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    await handler(event)
        except Exception as exc:  # any handler failure is parked, never blocks the partition
            log.exception("handler failed for %s %s", event.event_type, event.event_id)
            await self.dead_letter(record, f"{type(exc).__name__}: {exc}", attempts=attempts)
            self.metrics.handled.labels(topic, "dead_lettered").inc()
            return
        self.handled.add(event.event_id)
        self.metrics.handled.labels(topic, "ok").inc()

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str, *, attempts: int
    ) -> None:
        """Park a record in `<topic>.dlq` with the reason in its headers."""
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update({
            DLQ_HEADER_ERROR: reason[:2000],
            DLQ_HEADER_ATTEMPTS: str(attempts),
            DLQ_HEADER_TOPIC: record.topic,
            DLQ_HEADER_PARTITION: str(record.partition),
            DLQ_HEADER_OFFSET: str(record.offset),
            DLQ_HEADER_SERVICE: self.service,
        })
        await self.broker.publish(
            record.value or b"", f"{record.topic}.dlq", key=record.key, headers=headers
        )
        self.metrics.dead_lettered.labels(record.topic, reason.split(":", 1)[0][:40]).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition,
                    record.offset, reason)

    # --- replay ----------------------------------------------------------------------

    async def replay(
        self,
        topics: Sequence[Topic],
        apply: Callable[[Event], object],
        *,
        idle_s: float = 1.0,
        timeout_s: float = 120.0,
    ) -> int:
        """Feed every valid event of topics, from the beginning, to apply; returns the count."""
        return await replay_topics(
            self.settings, [self.topic(t) for t in topics], apply, idle_s=idle_s,
            timeout_s=timeout_s,
        )

    async def restore(
        self, topics: Sequence[Topic] = (), apply: Callable[[Event], object] | None = None
    ) -> int:
        """Rebuild dedupe memory from own outputs, and a projection from topics, at start-up."""
        wanted = sorted(set(topics) | self._outputs)

        def remember(event: Event) -> None:
            if event.TOPIC in self._outputs and event.producer == self.service:
                self.published.add(event.event_id)
            if apply is not None and event.TOPIC in topics:
                apply(event)

        return await self.replay(wanted, remember) if wanted else 0


async def replay_topics(
    settings: KafkaSettings,
    names: Sequence[str],
    apply: Callable[[Event], object],
    *,
    idle_s: float = 1.0,
    timeout_s: float = 120.0,
) -> int:
    """Read topics from offset 0 without a group until idle_s passes with no record.

    Tansu's end offsets are unreliable, so "caught up" means: nothing new
    arrived for idle_s. Events of several topics are applied in order of
    `occurred_at` (stable, so per-partition order holds for equal times);
    invalid records are skipped (they are the DLQ's business, not the
    projection's).
    """
    consumer = AIOKafkaConsumer(
        *names,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=min(settings.fetch_max_wait_ms, 200),
        **security_kwargs(settings),
    )
    await consumer.start()
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    last_record = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            records = [r for recs in batch.values() for r in recs]
            if not records:
                if time.monotonic() - last_record >= idle_s:
                    break
                continue
            last_record = time.monotonic()
            for rec in records:
                try:
                    events.append(parse_event(rec.value or b""))
                except ValidationError:
                    continue
    finally:
        await consumer.stop()
    events.sort(key=lambda e: e.occurred_at)
    for event in events:
        apply(event)
    return len(events)


async def _raw_records(message: KafkaMessage) -> Any:
    """faststream's body decoder, replaced: handlers get the raw aiokafka record(s).

    The bus parses records itself (`parse_event`). The default decoder
    JSON-decodes every record of a batch only for the handler to ignore the
    result (~12% of triage's CPU in a storm), and taking the message from
    faststream's context instead costs a thread-pool hop per message
    (fast_depends runs the sync context resolver in a worker thread).
    """
    return message.raw_message


def _short(exc: ValidationError) -> str:
    errors = exc.errors()[:3]
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors
    )
