"""Orchestration: fold an event into the book, then carry out what is due.

One routine (`act`) serves every path: a live event, a tick of the deadline
loop, and the first tick after a restart. It asks the planner what is due for
one incident *now*, does it, and records each outcome as an event that is
published first and then applied to the book, so the book only ever says what
the log says. Consequences:

- A handler that runs twice, or a tick that races a handler, finds the first
  run's records and does nothing; a per-incident lock keeps the two from
  deciding at the same moment.
- A crash between an external send and its record means the send is repeated
  after the restart (at least once); the repeat carries the same idempotency
  key, for the receiver to drop.
- Everything that leaves (subject, text, JSON payload) passes the injected
  redactor first (ARCHITECTURE.md: PII and secrets never leave the product).
- A notifier failure never escapes: it becomes a `notification.sent` with
  `delivered=false` and the error, retried on a later tick until the attempt
  bound. A failure to *publish* does escape, so the bus retries the message (and
  dead-letters it eventually) while the tick loop keeps trying from the state.
- Bounded memory: a settled incident (resolved, announced, nothing left to send)
  is forgotten `retention` after its resolution, at a tick or at start-up.
- One active instance: every process replays every incident and its deadline
  loop acts on all of them, so two replicas would both page. The service runs as
  a single instance (partition-aware ownership of incidents is not implemented).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from services.escalation.decisions import EscalationPlanner, NotificationDue
from services.escalation.messages import (
    escalation_event_id,
    notification_event_id,
    resolution_status_event_id,
    status_event_id,
)
from services.escalation.notifiers.base import Notifier, Outbound
from services.escalation.policy import MAX_TIER
from services.escalation.state import EscalationBook, IncidentEscalation
from shared.clock import Clock
from shared.events import EscalationTriggered, Event, NotificationSent, StatusUpdated

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(hours=24)

Publish = Callable[[Event], Awaitable[object]]
Redact = Callable[[str], str]


def no_redaction(text: str) -> str:
    """The identity redactor (tests and drills)."""
    return text


def redact_payload(redact: Redact, value: Any) -> Any:
    """value with redact applied to every string inside it (JSON-like data)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_payload(redact, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(redact, v) for v in value]
    return value


class EscalationMetrics:
    """Escalation counters (no incident ids in labels)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self.escalations = Counter(
            "ir_escalations_total", "Escalations to a tier", ["tier", "trigger"],
            registry=registry,
        )
        self.notifications = Counter(
            "ir_notifications_total", "Notification attempts", ["channel", "kind", "outcome"],
            registry=registry,
        )


class EscalationFlow:
    """Applies events and carries out due escalations, status updates and deliveries."""

    def __init__(
        self,
        *,
        book: EscalationBook,
        planner: EscalationPlanner,
        notifiers: Mapping[str, Notifier],
        publish: Publish,
        clock: Clock,
        service: str = "escalation",
        registry: CollectorRegistry | None = None,
        redact: Redact = no_redaction,
        max_concurrent_sends: int = 8,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.book = book
        self.retention = retention
        self.planner = planner
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.service = service
        self._publish = publish
        self._redact = redact
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._settled: set[str] = set()
        self._closing = False
        self._sending = asyncio.Semaphore(max_concurrent_sends)
        self.metrics = EscalationMetrics(registry)

    # --- entry points -------------------------------------------------------------

    def restore(self, event: Event) -> None:
        """Fold a replayed event into the book (start-up; acting waits for the first tick)."""
        self.book.apply(event)

    async def handle(self, event: Event) -> None:
        """Fold a live event into the book, then act on its incident."""
        incident = self.book.apply(event)
        if incident is not None:
            await self.act(incident.incident_id)

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Fold a batch of live events into the book in order, then act once per incident.

        A storm brings one `incident.updated` per alert; acting after each of
        them repeated the same planning hundreds of times a second for nothing.
        """
        touched: dict[str, None] = {}
        for event in events:
            incident = self.book.apply(event)
            if incident is not None:
                touched[incident.incident_id] = None
        for incident_id in touched:
            await self.act(incident_id)

    async def tick(self) -> None:
        """Act on every incident whose deadlines or deliveries may be due, then prune."""
        for incident in self.book.active():
            if incident.incident_id in self._settled:
                continue
            try:
                await self.act(incident.incident_id)
            except Exception:  # one incident's trouble must not stop the others' deadlines
                log.exception("acting on %s failed; retrying next tick", incident.incident_id)
        self.prune()

    def prune(self) -> int:
        """Forget incidents settled and resolved more than `retention` ago; returns how many.

        Nothing can fall due for them any more (see `EscalationPlanner.settled`), and
        their events stay in the log; without this the book, and every tick's walk
        over it, would grow with every incident the service ever saw.
        """
        cutoff = self.clock.now() - self.retention
        expired = [
            i.incident_id for i in self.book.incidents.values()
            if i.resolved_at is not None and i.resolved_at < cutoff and self.planner.settled(i)
            and not (i.incident_id in self._locks and self._locks[i.incident_id].locked())
        ]
        for incident_id in expired:
            self.book.forget(incident_id)
            self._settled.discard(incident_id)
            self._locks.pop(incident_id, None)
        if expired:
            log.info("forgot %d incidents settled more than %s ago", len(expired),
                     self.retention)
        return len(expired)

    async def run(self, interval_s: float) -> None:
        """The deadline loop: tick every interval_s of the injected clock."""
        while True:
            await self.tick()
            await self.clock.sleep(interval_s)

    async def aclose(self) -> None:
        """Stop acting, let acts in flight finish, then close the notifiers' connections."""
        # The runtime runs stop hooks before it stops the subscribers, so a message can
        # still arrive: it is folded into the book but not acted on (the log has it, and
        # the next start acts on it), rather than meeting a closed connection.
        self._closing = True
        for lock in list(self._locks.values()):
            async with lock:
                pass
        for notifier in self.notifiers.values():
            await notifier.aclose()

    # --- acting ----------------------------------------------------------------------

    async def act(self, incident_id: str) -> None:
        """Carry out whatever is due for the incident now."""
        async with self._locks[incident_id]:
            incident = self.book.get(incident_id)
            if incident is None or self._closing:
                return
            with structlog.contextvars.bound_contextvars(incident_id=incident_id):
                now = self.clock.now()
                await self._escalate(incident, now)
                await self._post_status(incident, now)
                await self._deliver(incident, now)
                if self.planner.settled(incident):
                    self._settled.add(incident_id)

    async def _record(self, event: Event) -> None:
        await self._publish(event)
        self.book.apply(event)

    def _envelope(self, incident: IncidentEscalation, cause: str | None) -> dict[str, object]:
        return {
            "producer": self.service,
            "incident_id": incident.incident_id,
            "correlation_id": incident.correlation_id or incident.incident_id,
            "causation_id": cause,
        }

    async def _escalate(self, incident: IncidentEscalation, now: datetime) -> None:
        for _ in range(MAX_TIER):  # at most one step per tier, however much is overdue
            due = self.planner.next_escalation(incident, now)
            if due is None:
                return
            if not due.targets:
                log.error("tier %s of %s resolves to nobody: check the on-call schedule",
                          due.tier, incident.incident_id)
            event = EscalationTriggered.model_validate({
                **self._envelope(incident, due.cause_id),
                "event_id": escalation_event_id(incident.incident_id, due.tier),
                "occurred_at": now,
                "tier": due.tier,
                "previous_tier": due.previous_tier,
                "trigger": due.trigger,
                "roles": due.roles,
                "targets": due.targets,
                "reason": due.reason,
            })
            await self._record(event)
            self.metrics.escalations.labels(str(due.tier), due.trigger).inc()
            log.info("escalated to tier %s (%s): %s -> %s", due.tier, due.trigger, due.reason,
                     ", ".join(due.targets))

    async def _post_status(self, incident: IncidentEscalation, now: datetime) -> None:
        due = self.planner.status_update(incident, now)
        if due is None:
            return
        if due.resolution_of is not None:
            event_id = resolution_status_event_id(incident.incident_id, due.resolution_of)
            cause: str | None = due.resolution_of
        else:
            event_id = status_event_id(incident.incident_id, due.sequence)
            last = incident.posts.get(incident.status_sequence)
            cause = last.event_id if last else incident.opened_event_id
        event = StatusUpdated.model_validate({
            **self._envelope(incident, cause),
            "event_id": event_id,
            "occurred_at": now,
            "severity": due.severity,
            "phase": due.phase,
            "elapsed_seconds": due.elapsed_seconds,
            "current_action": due.current_action,
            "next_step": due.next_step,
            "escalation_tier": due.escalation_tier,
            "text": due.text,
            "sequence": due.sequence,
        })
        await self._record(event)

    async def _deliver(self, incident: IncidentEscalation, now: datetime) -> None:
        due = self.planner.notifications(incident, now)
        if due:
            await asyncio.gather(*(self._send(incident, item) for item in due))

    async def _send(self, incident: IncidentEscalation, item: NotificationDue) -> None:
        notifier = self.notifiers.get(item.channel)
        error: str | None = None
        async with self._sending:
            try:
                if notifier is None:
                    raise LookupError(f"no notifier for channel {item.channel}")
                await notifier.send(Outbound(
                    idempotency_key=item.idempotency_key, kind=item.kind,
                    incident_id=incident.incident_id, recipient=item.recipient,
                    address=item.address, subject=self._redact(item.message.subject),
                    text=self._redact(item.message.text),
                    payload=redact_payload(self._redact, item.message.payload),
                ))
            except Exception as exc:  # every failure is recorded and retried, never raised
                error = f"{type(exc).__name__}: {exc}"[:500]
        delivered = error is None
        self.metrics.notifications.labels(
            item.channel, item.kind, "delivered" if delivered else "failed").inc()
        if not delivered:
            final = item.attempt >= self.planner.max_attempts
            log.log(logging.ERROR if final else logging.WARNING,
                    "%s to %s via %s failed (attempt %s/%s%s): %s", item.kind, item.recipient,
                    item.channel, item.attempt, self.planner.max_attempts,
                    ", giving up" if final else "", error)
        event = NotificationSent.model_validate({
            **self._envelope(incident, item.cause_id),
            "event_id": notification_event_id(item.idempotency_key, item.attempt),
            "occurred_at": self.clock.now(),
            "idempotency_key": item.idempotency_key,
            "channel": item.channel,
            "recipient": item.recipient,
            "kind": item.kind,
            "tier": item.tier,
            "subject": item.message.subject,
            "delivered": delivered,
            "error": error,
            "attempts": item.attempt,
        })
        await self._record(event)
