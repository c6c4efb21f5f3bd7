"""Reads what the pipeline wrote, live, straight from the event log.

The tail is a plain aiokafka consumer without a group, from the beginning
(`auto_offset_reset="earliest"`: Tansu's end offsets cannot be trusted), so it
takes no part in any service's consumer group and needs no commit. It keeps
only the fields the benchmarks read (tolerant reader, plain `json.loads`
rather than the event models, to stay cheap next to the system under test):

- `alert.received`: event id -> the gateway's `received_at`;
- membership: `incident.opened` (`alert_event_id`) and `incident.updated`
  with an alert change (`alert_added`, `service_added`, `alert_resolved`):
  alert event id -> incident id(s) and triage's `occurred_at`;
- `incident.classified`: the first classification per incident and per
  causing alert, and when the tail saw it (wall clock: when a downstream
  consumer could first act on it);
- `notification.sent`: the first notification per incident.

Times are the events' own timestamps (epoch seconds); `last_progress` is the
harness's monotonic clock at the last membership record, which is what
"drained" and "stalled" are judged by.

The tail is itself a load on the broker. On Tansu's memory engine a fetch
costs broker CPU in proportion to the partition's size (measured: ~14 ms per
fetch on a 60,000-record partition, <0.3 ms on a 1,000-record one), so a tail
that follows hot partitions with short polls competes with the services it
measures. Storms therefore tail only the membership topics, with long polls
(`fetch_max_wait_ms=500`, `fetch_min_bytes` 256 KiB: a few fetches a second),
and read `alert.received` once, after the drain (`read_log`). Latency runs
follow only the few `incident.classified` and `notification.sent` events
live (short polls: their arrival time at a consumer is one of the figures)
and read the bulk (`alert.received`, `incident.opened`, `incident.updated`,
a thousand records a second) once the load is over and the CPU is no longer
measured: every latency is computed from the events' own timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.topics import Topic, topic_name

log = logging.getLogger(__name__)

MEMBERSHIP_CHANGES = frozenset({"alert_added", "service_added", "alert_resolved"})
MEMBERSHIP_TOPICS: tuple[Topic, ...] = (Topic.INCIDENT_OPENED, Topic.INCIDENT_UPDATED)
BULK_TOPICS: tuple[Topic, ...] = (Topic.ALERT_RECEIVED, *MEMBERSHIP_TOPICS)
OUTCOME_TOPICS: tuple[Topic, ...] = (Topic.INCIDENT_CLASSIFIED, Topic.NOTIFICATION_SENT)
TAILED: tuple[Topic, ...] = (*BULK_TOPICS, *OUTCOME_TOPICS)


def epoch(value: str) -> float:
    """An event timestamp (RFC 3339) as epoch seconds."""
    return datetime.fromisoformat(value).timestamp()


@dataclass
class PipelineLog:
    """What the tail has seen so far."""

    received: dict[str, float] = field(default_factory=dict)
    membership: dict[str, dict[str, float]] = field(default_factory=dict)
    opened: dict[str, tuple[str, float]] = field(default_factory=dict)
    opened_records: int = 0
    classified_first: dict[str, float] = field(default_factory=dict)
    classified_by_alert: dict[str, float] = field(default_factory=dict)
    classified_seen: dict[str, float] = field(default_factory=dict)
    classified_incident: dict[str, str] = field(default_factory=dict)
    notified_first: dict[str, float] = field(default_factory=dict)
    invalid: int = 0
    last_progress: float = field(default_factory=time.monotonic)

    def member(self, alert_event_id: str, incident_id: str, at: float) -> None:
        """Record that an alert went into an incident (first time per pair wins)."""
        incidents = self.membership.setdefault(alert_event_id, {})
        if incident_id not in incidents or at < incidents[incident_id]:
            incidents[incident_id] = at
        self.last_progress = time.monotonic()

    def triaged(self, alert_event_id: str) -> float | None:
        """When triage first put this alert into an incident (epoch s), if it has."""
        incidents = self.membership.get(alert_event_id)
        return min(incidents.values()) if incidents else None

    def apply(self, topic: Topic, event: dict[str, Any]) -> None:
        """Fold one decoded event into the log."""
        incident = event.get("incident_id")
        at = epoch(event["occurred_at"])
        if topic is Topic.ALERT_RECEIVED:
            self.received.setdefault(event["event_id"], epoch(event["received_at"]))
        elif topic is Topic.INCIDENT_OPENED and incident:
            self.opened_records += 1
            self.opened.setdefault(incident, (event["alert_event_id"], at))
            self.member(event["alert_event_id"], incident, at)
        elif topic is Topic.INCIDENT_UPDATED and incident:
            if event.get("change") in MEMBERSHIP_CHANGES and event.get("alert_event_id"):
                self.member(event["alert_event_id"], incident, at)
        elif topic is Topic.INCIDENT_CLASSIFIED and incident:
            if incident not in self.classified_first or at < self.classified_first[incident]:
                self.classified_first[incident] = at
            cause = event.get("causation_id")
            if cause and cause not in self.classified_by_alert:
                self.classified_by_alert[cause] = at
                self.classified_seen[cause] = time.time()
                self.classified_incident[cause] = incident
        elif topic is Topic.NOTIFICATION_SENT and incident and (
            incident not in self.notified_first or at < self.notified_first[incident]
        ):
            self.notified_first[incident] = at


async def read_log(
    bootstrap: str, prefix: str = "", topics: tuple[Topic, ...] = TAILED, *, idle_s: float = 3.0,
    timeout_s: float = 300.0,
) -> PipelineLog:
    """A fresh, complete read of topics from offset 0 (until idle_s without a record)."""
    tail = EventTail(bootstrap, prefix, topics, fetch_max_wait_ms=500,
                     fetch_min_bytes=256 * 1024)
    await tail.start()
    try:
        deadline = time.monotonic() + timeout_s
        seen = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if tail.records != seen:
                seen, quiet_since = tail.records, time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                break
    finally:
        await tail.stop()
    return tail.log


class EventTail:
    """A background consumer filling a `PipelineLog` until stopped."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        topics: tuple[Topic, ...] = TAILED,
        *,
        fetch_max_wait_ms: int = 50,
        fetch_min_bytes: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.topics = topics
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.log = PipelineLog()
        self.records = 0
        self._by_name = {topic_name(t, prefix): t for t in topics}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()

    async def start(self) -> EventTail:
        """Connect and start reading in the background."""
        self._task = asyncio.create_task(self._run())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            await self._task  # surfaces the connection error
        return self

    async def stop(self) -> None:
        """Stop reading (what was read stays in `log`)."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(
        self,
        done: Callable[[PipelineLog], bool],
        *,
        timeout_s: float,
        idle_s: float | None = None,
    ) -> bool:
        """Until done(log) holds (True), or timeout, or no membership progress for idle_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.log):
                return True
            if idle_s is not None and time.monotonic() - self.log.last_progress > idle_s:
                return done(self.log)
            if self._task is not None and self._task.done():
                await self._task
                return done(self.log)
            await asyncio.sleep(0.05)
        return done(self.log)

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self._by_name,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            fetch_min_bytes=self.fetch_min_bytes,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        self._ready.set()
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for partition, records in batch.items():
                    topic = self._by_name[partition.topic]
                    for record in records:
                        self.records += 1
                        try:
                            self.log.apply(topic, json.loads(record.value or b""))
                        except (ValueError, KeyError, TypeError):
                            self.log.invalid += 1
        finally:
            await consumer.stop()
