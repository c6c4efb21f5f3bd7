"""Pages: content, idempotency keys, no double paging, bounded retries, restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.escalation.messages import (
    escalation_event_id,
    notification_event_id,
    page_key,
    resolution_key,
    status_event_id,
)
from services.escalation.notifiers.base import Outbound
from services.escalation.notifiers.email import EmailNotifier, message_id
from services.escalation.testing import Drill
from shared.domain import Severity
from shared.events import AlertReceived, EscalationTriggered, Event, NotificationSent
from shared.redaction import PatternRedactor
from tests.samples import sample_event

pytestmark = pytest.mark.unit

MIN = timedelta(minutes=1)


async def open_incident(drill: Drill, severity: Severity = Severity.SEV1) -> None:
    """Open and classify the drill's incident at the start."""
    script = drill.script()
    await drill.feed(script.opened(("payments", "checkout")),
                     script.classified(severity, ("payments is tier 1", "error rate 35%")))


class TestIdempotencyKeys:
    """Deterministic ids: the same cause always gives the same id, different causes differ."""

    def test_keys_are_deterministic_and_distinct(self) -> None:
        """A page key depends on exactly (incident, tier, person, channel)."""
        key = page_key("INC-1", 1, "alice", "email")
        assert key == page_key("INC-1", 1, "alice", "email")
        others = {page_key("INC-2", 1, "alice", "email"), page_key("INC-1", 2, "alice", "email"),
                  page_key("INC-1", 1, "carol", "email"), page_key("INC-1", 1, "alice", "webhook"),
                  resolution_key("INC-1", "resolved-1", "alice", "email")}
        assert key not in others
        assert len(others) == 5

    def test_event_ids_derive_from_their_cause(self) -> None:
        """Escalation ids per (incident, tier); notification ids per (key, attempt)."""
        assert escalation_event_id("INC-1", 2) == escalation_event_id("INC-1", 2)
        assert escalation_event_id("INC-1", 2) != escalation_event_id("INC-1", 3)
        assert notification_event_id("k", 1) != notification_event_id("k", 2)
        assert status_event_id("INC-1", 1) != status_event_id("INC-1", 2)

    def test_email_message_id_carries_the_key(self) -> None:
        """The e-mail's Message-ID is derived from the idempotency key and the sender domain."""
        notifier = EmailNotifier(host="localhost", sender="pager@example.org")
        mail = notifier.build(Outbound(
            idempotency_key="abc-123", kind="page", incident_id="INC-1", recipient="alice",
            address="alice@example.com", subject="s", text="t", payload={}))
        assert mail["Message-ID"] == message_id("abc-123", "pager@example.org")
        assert mail["Message-ID"] == "<abc-123@example.org>"
        assert mail["To"] == "alice@example.com"


class TestFirstPage:
    """The on-call engineer is paged once per channel, with everything needed to act."""

    async def test_one_page_per_channel_with_recorded_delivery(self) -> None:
        """alice (e-mail + webhook) gets one of each; each is one notification.sent."""
        drill = Drill()
        await open_incident(drill)
        assert [m.recipient for m in drill.email.sent] == ["alice"]
        assert [m.recipient for m in drill.webhook.sent] == ["alice"]
        sent = drill.log.of(NotificationSent)
        assert sorted((n.channel, n.recipient, n.tier, n.delivered, n.attempts) for n in sent) == [
            ("email", "alice", 1, True, 1), ("webhook", "alice", 1, True, 1)]
        assert {n.idempotency_key for n in sent} == {
            page_key("INC-000001", 1, "alice", "email"),
            page_key("INC-000001", 1, "alice", "webhook")}
        assert drill.webhook.sent[0].idempotency_key == page_key(
            "INC-000001", 1, "alice", "webhook")
        escalation = drill.log.of(EscalationTriggered)[0]
        assert all(n.causation_id == escalation.event_id for n in sent)

    async def test_page_carries_incident_facts_link_and_ack_instructions(self) -> None:
        """Incident id, severity and reasons, services, title, approval link, how to ack."""
        drill = Drill()
        await open_incident(drill)
        page = drill.email.sent[0]
        assert page.subject == "[SEV1] INC-000001 tier 1: HighErrorRate on payments"
        for fact in ("INC-000001", "SEV1 (High)", "payments is tier 1; error rate 35%",
                     "Services: payments, checkout", "Title: HighErrorRate on payments",
                     "http://approval.test/#INC-000001",
                     "http://approval.test/api/incidents/INC-000001/acknowledge"):
            assert fact in page.text
        payload = drill.webhook.sent[0].payload
        assert payload["severity"] == "SEV1"
        assert payload["reasons"] == ["payments is tier 1", "error rate 35%"]
        assert payload["services"] == ["payments", "checkout"]
        assert payload["link"] == "http://approval.test/#INC-000001"
        assert "acknowledge" in payload["ack_instructions"]

    async def test_what_leaves_is_redacted(self) -> None:
        """Secrets and personal data in incident facts never reach a channel; the record of
        the incident (the log) is not rewritten."""
        drill = Drill(redact=PatternRedactor().redact)
        script = drill.script()
        leak = "user bob@customer.example saw password=hunter2"
        await drill.feed(script.opened(), script.classified(Severity.SEV1, (leak,)))
        for message in (drill.email.sent[0], drill.webhook.sent[0]):
            assert "hunter2" not in message.text
            assert "bob@customer.example" not in message.text
            assert "[REDACTED:" in message.text
        assert "hunter2" not in str(drill.webhook.sent[0].payload)

    async def test_recurrence_is_named_in_the_page(self) -> None:
        """An incident that repeats a resolved one says so: a human must be told."""
        drill = Drill()
        script = drill.script()
        await drill.feed(script.opened(recurrence_of="INC-000000"),
                         script.classified(Severity.SEV1))
        assert "Recurrence of INC-000000" in drill.email.sent[0].text


class TestNoDoublePaging:
    """A redelivered event, a tick racing a handler, or a restart never pages twice."""

    async def test_redelivered_events_page_nobody_again(self) -> None:
        """The same incident.opened/classified delivered again (same ids) sends nothing."""
        drill = Drill()
        script = drill.script()
        opened, classified = script.opened(), script.classified(Severity.SEV1)
        await drill.feed(opened, classified)
        await drill.flow.handle(opened)
        await drill.flow.handle(classified)
        await drill.flow.tick()
        assert len(drill.email.sent) == 1
        assert len(drill.webhook.sent) == 1
        assert len(drill.log.of(NotificationSent)) == 2

    async def test_restart_restores_pages_and_keeps_the_deadline(self) -> None:
        """Restarted mid-incident: no page repeats, and tier 2 still comes at minute 10."""
        drill = Drill()
        await open_incident(drill)
        await drill.at(4 * MIN)
        drill.restart()
        await drill.flow.handle(drill.log.events[0])  # the subscription redelivers too
        await drill.run_until(9 * MIN + 45 * timedelta(seconds=1))
        assert len(drill.email.sent) == 1
        await drill.run_until(10 * MIN)
        assert drill.escalation_minutes() == [0, 10]
        assert [m.recipient for m in drill.email.sent] == ["alice", "dave", "bob"]

    async def test_restore_is_insensitive_to_event_order(self) -> None:
        """Replaying the log in reverse order rebuilds the same tier and delivery records."""
        drill = Drill()
        await open_incident(drill)
        await drill.feed(drill.script().runbook_failed("run-1"))
        flow = drill.restart()
        reversed_flow = drill.restart()
        for event in reversed(drill.log.events):
            reversed_flow.restore(event)
        for rebuilt in (flow, reversed_flow):
            incident = rebuilt.book.get("INC-000001")
            assert incident is not None
            assert incident.tier == 2
            assert incident.pending == []
        await drill.flow.tick()
        assert drill.escalations() == [(1, "initial"), (2, "remediation_failed")]
        assert len(drill.email.sent) == 3


class TestFailedDelivery:
    """A failed send is recorded with delivered=false and retried, a bounded number of times."""

    async def test_failure_is_recorded_then_retried_on_next_tick(self) -> None:
        """First e-mail fails: recorded with the error; the next tick delivers attempt 2."""
        drill = Drill(fail_email=1)
        await open_incident(drill)
        failed = [n for n in drill.log.of(NotificationSent) if n.channel == "email"]
        assert [(n.delivered, n.attempts) for n in failed] == [(False, 1)]
        assert failed[0].error is not None
        assert "simulated email outage" in failed[0].error
        await drill.flow.tick()  # too soon: retry_after has not passed
        assert drill.email.calls == 1
        await drill.at(timedelta(seconds=1))
        emails = [n for n in drill.log.of(NotificationSent) if n.channel == "email"]
        assert [(n.delivered, n.attempts) for n in emails] == [(False, 1), (True, 2)]
        assert emails[0].idempotency_key == emails[1].idempotency_key
        assert emails[0].event_id != emails[1].event_id
        assert [m.recipient for m in drill.email.sent] == ["alice"]

    async def test_retries_are_bounded(self) -> None:
        """A channel that never works is tried max_attempts times, then left alone."""
        drill = Drill(fail_email=1000, max_attempts=3)
        await open_incident(drill)
        await drill.run_until(5 * MIN, step=timedelta(seconds=2))
        emails = [n for n in drill.log.of(NotificationSent)
                  if n.channel == "email" and n.tier == 1]
        assert [(n.delivered, n.attempts) for n in emails] == [
            (False, 1), (False, 2), (False, 3)]
        assert drill.webhook.to("alice")  # the other channel was not held up

    async def test_retry_count_survives_restart(self) -> None:
        """Attempts are counted from the log: a restart does not reset the bound."""
        drill = Drill(fail_email=1000, max_attempts=2)
        await open_incident(drill)
        drill.restart()
        await drill.at(timedelta(seconds=2))
        drill.restart()
        await drill.at(timedelta(seconds=4))
        tier1 = [n for n in drill.log.of(NotificationSent) if n.channel == "email"]
        assert [n.attempts for n in tier1] == [1, 2]


class TestShutdown:
    """Stopping never loses an event and never sends through a closed connection."""

    async def test_event_after_close_is_kept_and_acted_on_after_restart(self) -> None:
        """A message arriving while the service stops is folded in, not acted on; the next
        process pages for it."""
        drill = Drill()
        await drill.flow.aclose()
        await open_incident(drill)
        assert drill.email.sent == []
        assert drill.flow.book.get("INC-000001") is not None
        drill.restart()
        await drill.flow.tick()
        assert [m.recipient for m in drill.email.sent] == ["alice"]


async def feed_batch(drill: Drill, *events: Event) -> None:
    """Publish events to the log, then deliver them to the flow as one batch (like the bus)."""
    for event in events:
        await drill.log.publish(event)
    await drill.flow.handle_batch(events)


def outputs(drill: Drill) -> list[dict[str, Any]]:
    """What the flow wrote to the log, in order (the inputs are left out)."""
    return [e.model_dump() for e in drill.log.events if e.producer == "escalation"]


def count_acts(drill: Drill) -> list[str]:
    """Wrap drill.flow.act to record the incident of every call (in call order)."""
    calls: list[str] = []
    act = drill.flow.act

    async def counting(incident_id: str) -> None:
        calls.append(incident_id)
        await act(incident_id)

    drill.flow.act = counting  # type: ignore[method-assign]
    return calls


class TestBatches:
    """A batch of live events is folded in order, then acted on once per incident."""

    @staticmethod
    def _opening(drill: Drill) -> list[Event]:
        """opened + classified + several updates that change nothing a page shows."""
        script = drill.script()
        services = ("payments", "checkout")
        return [
            script.opened(services),
            script.classified(Severity.SEV1, ("payments is tier 1", "error rate 35%")),
            *(script.updated("alert_added", services=services, detail=f"alert {n} joined")
              for n in range(3)),
            script.updated("service_added", services=services, new_services=("payments",)),
        ]

    @staticmethod
    def _joining(drill: Drill) -> list[Event]:
        """Past the settle window: a new service joins, then more alerts of it."""
        script = drill.script()
        services = ("payments", "checkout", "storefront")
        return [
            script.updated("service_added", services=services, new_services=("storefront",)),
            *(script.updated("alert_added", services=services, detail=f"alert {n} joined")
              for n in range(3)),
        ]

    async def test_a_batch_pages_like_the_same_events_one_by_one(self) -> None:
        """Opening batch, then a batch adding a service past the settle window: the same
        escalations, deliveries and messages as handling every event on its own."""
        one_by_one, batched = Drill(), Drill()
        await one_by_one.feed(*self._opening(one_by_one))
        await feed_batch(batched, *self._opening(batched))
        assert batched.escalations() == [(1, "initial")]
        assert [m.recipient for m in batched.email.sent] == ["alice"]
        assert outputs(batched) == outputs(one_by_one)

        for drill in (one_by_one, batched):
            await drill.run_until(3 * MIN)
        await one_by_one.feed(*self._joining(one_by_one))
        await feed_batch(batched, *self._joining(batched))
        assert batched.escalations() == [(1, "initial"), (2, "new_services")]
        assert outputs(batched) == outputs(one_by_one)
        assert batched.email.sent == one_by_one.email.sent
        assert batched.webhook.sent == one_by_one.webhook.sent
        assert len(batched.log.of(NotificationSent)) == len(
            one_by_one.log.of(NotificationSent)) > 2

    async def test_acts_once_per_incident_in_first_touched_order(self) -> None:
        """Two incidents interleaved in one batch: act runs twice, the one touched first
        first, and both are paged."""
        drill = Drill()
        calls = count_acts(drill)
        first, second = drill.script("INC-000002"), drill.script("INC-000001")
        await feed_batch(
            drill,
            first.opened(), second.opened(),
            second.classified(Severity.SEV1), first.classified(Severity.SEV1),
            first.updated("alert_added", detail="again"),
            second.updated("alert_added", detail="again"),
            first.updated("alert_added", detail="and again"),
        )
        assert calls == ["INC-000002", "INC-000001"]
        assert sorted(e.incident_id or "" for e in drill.log.of(EscalationTriggered)) == [
            "INC-000001", "INC-000002"]

        await feed_batch(drill, second.updated("alert_added", detail="later"))
        assert calls == ["INC-000002", "INC-000001", "INC-000001"]

    async def test_events_the_book_ignores_cause_no_act(self) -> None:
        """Events without an incident, and another producer's escalation records, are not
        acted on; nor is an empty batch."""
        drill = Drill()
        calls = count_acts(drill)
        foreign = sample_event(EscalationTriggered, producer="someone-else")
        await feed_batch(drill, sample_event(AlertReceived), foreign,
                         sample_event(AlertReceived))
        await feed_batch(drill)
        assert calls == []
        assert outputs(drill) == []

        script = drill.script()
        await feed_batch(drill, sample_event(AlertReceived), script.opened(),
                         script.classified(Severity.SEV2), sample_event(AlertReceived))
        assert calls == ["INC-000001"]
