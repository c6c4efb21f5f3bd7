"""One alert through the whole lifecycle, on the real broker, every service a process.

The demo world's own alert rules post Alertmanager webhooks to the gateway, exactly
as Alertmanager does; nothing in these tests publishes to Kafka or calls a service
except through its public HTTP API, as a human or a monitoring system would.
Tests run in order on one stack (module scope); each waits for the world to be
healthy again before it breaks something.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from irctl.stack import Stack
from services.reporter.report import SECTIONS
from shared.domain import RiskTier, Severity
from shared.events import (
    ApprovalGranted,
    ApprovalRequested,
    EscalationTriggered,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    InvestigationCompleted,
    NotificationSent,
    ReportPublished,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    StatusUpdated,
)
from tests.e2e.conftest import EventTail, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e

ALICE = {"Authorization": "Bearer alice-token"}


def world(stack: Stack, method: str, path: str, **kw: object) -> httpx.Response:
    resp = httpx.request(method, stack.url("world") + path, timeout=15, **kw)  # type: ignore[arg-type]
    resp.raise_for_status()
    return resp


def wait_world_healthy(stack: Stack) -> None:
    def healthy() -> bool:
        status = world(stack, "GET", "/status").json()
        return all(s["healthy"] for s in status.values())
    wait_until(healthy, 90, "the demo world to be healthy")


def incident_after(tail: EventTail, stack: Stack, since: datetime, timeout: float = 60
                   ) -> IncidentOpened:
    return tail.wait(IncidentOpened, where=lambda e: e.occurred_at >= since, timeout=timeout,
                     stack=stack)


@pytest.fixture(autouse=True)
def restore_world(stack: Stack, tail: EventTail) -> Iterator[None]:
    """After each test, undo what a failed one left: faults, a bad deploy, open incidents.

    A passing test leaves nothing to undo. A failing one would otherwise fail every
    test after it (the world never gets healthy, or an open incident absorbs the
    next test's alerts) and hide which one broke.
    """
    since = now()
    yield
    world(stack, "DELETE", "/faults")
    for fault in world(stack, "GET", "/faults").json():
        if fault["kind"] == "bad_deploy":
            world(stack, "POST", f"/services/{fault['service']}/rollback")
    resolved = {e.incident_id for e in tail.of(IncidentResolved)}
    for opened in tail.of(IncidentOpened, where=lambda e: e.occurred_at >= since):
        if opened.incident_id not in resolved:
            httpx.post(f"{stack.url('approval')}/api/incidents/{opened.incident_id}/resolve",
                       headers=ALICE, json={"summary": "test teardown"}, timeout=15)


def now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


class TestHighRiskLifecycle:
    def test_bad_deploy_from_alert_to_report(
        self, stack: Stack, tail: EventTail, webhooks: WebhookReceiver
    ) -> None:
        """Bad deploy on payments: one SEV0 incident with reasons, on-call paged once by e-mail
        and webhook, tier 2 when nobody acks, a hypothesis naming the deploy, a HIGH-risk
        rollback that waits for another user's approval, recovery, resolution, and a report
        with every section and MTTx consistent with the event timestamps."""
        wait_world_healthy(stack)
        since = now()
        world(stack, "POST", "/faults/bad_deploy", json={"service": "payments"})

        opened = incident_after(tail, stack, since)
        inc = opened.incident_id
        assert inc is not None
        # The cascade's alerts arrive in any order (reporting, checkout, storefront all
        # depend on payments); severity rises to SEV0 once the blast radius is known.
        classified = tail.wait(IncidentClassified, inc, where=lambda e: e.severity
                               is Severity.SEV0, timeout=30, stack=stack)
        assert any("customer-facing" in r for r in classified.reasons), classified.reasons

        # Paged: tier 1, once per person and channel, by e-mail and webhook.
        tier1 = tail.wait(EscalationTriggered, inc, where=lambda e: e.tier == 1, stack=stack)
        assert tier1.targets
        pages = tail.wait(NotificationSent, inc, where=lambda e: e.channel == "email"
                          and e.tier == 1, stack=stack)
        assert pages.delivered
        tail.wait(NotificationSent, inc, where=lambda e: e.channel == "webhook" and e.tier == 1,
                  stack=stack)
        assert stack.mail is not None
        wait_until(lambda: any(inc in (m["Subject"] or "") for m in stack.mail.messages()),
                   30, "an e-mail page")

        # Nobody acks: the ack timer pages the next tier (SEV0 ack window 5 min, scaled to
        # 6 s). The world's alert rules run in real time, so the stack keeps the settle window
        # at 15 real seconds (`StackConfig.settle_window_s`); a service whose alert comes
        # later still joins as a worsening and pages tier 2 itself ("new_services"), and the
        # timer then pages tier 3.
        timed = tail.wait(EscalationTriggered, inc, timeout=60, stack=stack,
                          where=lambda e: e.trigger in {"ack_timeout", "tier_timer"})
        earlier = [e for e in tail.of(EscalationTriggered, inc) if e.tier < timed.tier]
        assert timed.tier >= 2
        assert timed.tier == 1 + max(e.tier for e in earlier), tail.of(EscalationTriggered, inc)

        # Investigation names the injected cause and proposes a rollback of payments.
        finding = tail.wait(InvestigationCompleted, inc, stack=stack)
        assert finding.cause == "bad_deploy"
        assert finding.proposed_action is not None
        assert finding.proposed_action.target == "payments"

        # HIGH risk: the executor asks and waits.
        request = tail.wait(ApprovalRequested, inc, stack=stack)
        assert request.risk is RiskTier.HIGH
        assert request.action.runbook == "rollback_deployment"
        assert not tail.of(RunbookStarted, inc)
        # The requester cannot approve its own request.
        self_approval = httpx.post(
            f"{stack.url('approval')}/api/approvals/{request.request_id}/approve",
            headers={"Authorization": "Bearer executor-token"}, json={"comment": "me"},
            timeout=15)
        assert self_approval.status_code == 403
        assert not tail.of(RunbookStarted, inc)
        resp = httpx.post(
            f"{stack.url('approval')}/api/approvals/{request.request_id}/approve",
            headers=ALICE, json={"comment": "roll it back"}, timeout=15)
        assert resp.status_code == 200, resp.text
        granted = tail.wait(ApprovalGranted, inc, stack=stack)
        started = tail.wait(RunbookStarted, inc, stack=stack)
        assert started.occurred_at >= granted.occurred_at
        assert started.approved_by == "alice"

        completed = tail.wait(RunbookCompleted, inc, timeout=90, stack=stack)
        assert completed.action.runbook == "rollback_deployment"
        resolved = tail.wait(IncidentResolved, inc, timeout=90, stack=stack)
        assert resolved.verified
        status = world(stack, "GET", "/status").json()
        assert status["payments"]["healthy"], status
        assert not tail.of(RunbookFailed, inc)

        # The report: every section in order, MTTx from the events' own timestamps.
        report_event = tail.wait(ReportPublished, inc, where=lambda e: e.status == "resolved",
                                 timeout=30, stack=stack)
        report = json.loads((stack.reports_dir / f"{inc}.json").read_text())
        assert report["sections"] == list(SECTIONS)
        markdown = (stack.reports_dir / f"{inc}.md").read_text()
        positions = [markdown.index(f"## {s}") for s in SECTIONS]
        assert positions == sorted(positions)
        expected_mttr = (resolved.occurred_at - opened.alert_received_at).total_seconds()
        assert report_event.mttr_seconds == pytest.approx(expected_mttr, abs=0.01)
        assert report["metrics"]["mtti_seconds"] == pytest.approx(
            (finding.occurred_at - opened.alert_received_at).total_seconds(), abs=0.01)
        assert report["root_cause"]["cause"] == "bad_deploy"

        # One incident for the whole cascade, and nobody paged twice on one channel.
        assert [o.incident_id for o in tail.of(IncidentOpened,
                                               where=lambda e: e.occurred_at >= since)] == [inc]
        keys = [n.idempotency_key for n in tail.of(NotificationSent, inc)]
        assert len(keys) == len(set(keys))
        webhook_keys = [c["headers"].get("idempotency-key") for c in webhooks.calls
                        if c["path"].startswith("page/") and inc in json.dumps(c["json"])]
        assert webhook_keys
        assert len(webhook_keys) == len(set(webhook_keys))


class TestAcknowledgedIncident:
    def test_no_escalation_after_an_ack(self, stack: Stack, tail: EventTail) -> None:
        """An incident acknowledged inside its ack window is never escalated by the timers."""
        wait_world_healthy(stack)
        since = now()
        world(stack, "POST", "/faults/crash", json={"service": "checkout"})
        opened = incident_after(tail, stack, since)
        inc = opened.incident_id
        resp = httpx.post(f"{stack.url('approval')}/api/incidents/{inc}/acknowledge",
                          headers=ALICE, json={"comment": "on it"}, timeout=15)
        assert resp.status_code == 200, resp.text
        tail.wait(IncidentAcknowledged, inc, stack=stack)
        # The human takes over: the proposed restart is denied, so the incident stays open.
        request = tail.wait(ApprovalRequested, inc, timeout=30, stack=stack)
        denied = httpx.post(
            f"{stack.url('approval')}/api/approvals/{request.request_id}/deny",
            headers=ALICE, json={"comment": "I will restart it myself"}, timeout=15)
        assert denied.status_code == 200, denied.text
        # Time passes beyond the ack window (6 s) and the tier-2 timer (15 min -> 18 s):
        # status updates keep coming at the SEV0/SEV1 cadence while nothing escalates.
        past_tier2 = opened.occurred_at + timedelta(seconds=20)
        tail.wait(StatusUpdated, inc, where=lambda e: e.occurred_at > past_tier2,
                  timeout=60, stack=stack)
        # (A service joining later is a worsening and may still page tier 2: DOMAIN.md's
        # immediate triggers hold after an ack. The timers must not.)
        assert not tail.of(EscalationTriggered, inc,
                           where=lambda e: e.trigger in {"ack_timeout", "tier_timer"})
        assert not tail.of(RunbookStarted, inc)
        # The human fixes it and resolves by hand.
        world(stack, "POST", "/services/checkout/restart")
        resolved = httpx.post(f"{stack.url('approval')}/api/incidents/{inc}/resolve",
                              headers=ALICE, json={"summary": "restarted checkout by hand"},
                              timeout=15)
        assert resolved.status_code == 200, resolved.text
        manual = tail.wait(IncidentResolved, inc, stack=stack)
        assert manual.resolution == "manual"


class TestMediumRiskRollback:
    def test_cache_invalidation_runs_without_approval_and_rolls_back(
        self, stack: Stack, tail: EventTail
    ) -> None:
        """A stuck cache gets a MEDIUM-risk invalidation with no approval; when errors persist
        (an error spike keeps the service failing) verification fails and the run is rolled
        back: the backed-up keys are restored, and escalation is told."""
        wait_world_healthy(stack)
        since = now()
        world(stack, "POST", "/faults/stuck_cache", json={"service": "catalog"})
        world(stack, "POST", "/faults/error_spike",
              json={"service": "catalog", "duration_seconds": 300, "rate": 0.9})
        opened = incident_after(tail, stack, since)
        inc = opened.incident_id
        started = tail.wait(RunbookStarted, inc, timeout=60, stack=stack)
        assert started.action.runbook == "cache_invalidation"
        assert started.risk is RiskTier.MEDIUM
        assert not tail.of(ApprovalRequested, inc,
                           where=lambda e: e.action.runbook == "cache_invalidation")
        rolled = tail.wait(RunbookRolledBack, inc, timeout=120, stack=stack)
        assert rolled.succeeded
        failed = tail.wait(RunbookFailed, inc, stack=stack)
        assert "verif" in failed.reason.lower()
        tail.wait(EscalationTriggered, inc,
                  where=lambda e: e.trigger == "remediation_failed", timeout=30, stack=stack)
        assert not tail.of(IncidentResolved, inc)
        # A human takes over: clears the faults, sees recovery, resolves by hand (an open
        # incident would otherwise absorb the next test's storefront alerts, as it should).
        world(stack, "DELETE", "/faults")
        wait_world_healthy(stack)
        resp = httpx.post(f"{stack.url('approval')}/api/incidents/{inc}/resolve",
                          headers=ALICE, timeout=15,
                          json={"summary": "cleared the error spike by hand", "verified": True})
        assert resp.status_code == 200, resp.text
        tail.wait(IncidentResolved, inc, stack=stack)


class TestRestarts:
    def test_sigkill_of_triage_escalation_and_executor_mid_incident(
        self, stack: Stack, tail: EventTail, webhooks: WebhookReceiver
    ) -> None:
        """Triage, escalation and executor are SIGKILLed and restarted mid-incident: still one
        incident, nobody paged twice, one approval request, the action runs exactly once."""
        wait_world_healthy(stack)
        since = now()
        world(stack, "POST", "/faults/bad_deploy", json={"service": "payments"})
        opened = incident_after(tail, stack, since)
        inc = opened.incident_id

        stack.kill("triage")
        stack.start_service("triage")
        tail.wait(NotificationSent, inc, where=lambda e: e.tier == 1, stack=stack)
        stack.kill("escalation")
        stack.start_service("escalation")
        request = tail.wait(ApprovalRequested, inc, timeout=60, stack=stack)
        stack.kill("executor")
        stack.start_service("executor")
        for name in ("triage", "escalation", "executor"):
            stack.wait_healthy(name)
        # Nobody acked: tier 2 (6 s ack window) still fires after escalation's restart.
        tail.wait(EscalationTriggered, inc, where=lambda e: e.tier == 2, timeout=60, stack=stack)

        # Alerts keep arriving while triage was down and after: they join the incident.
        resp = httpx.post(
            f"{stack.url('approval')}/api/approvals/{request.request_id}/approve",
            headers=ALICE, json={"comment": "after the restarts"}, timeout=15)
        assert resp.status_code == 200, resp.text
        tail.wait(IncidentResolved, inc, timeout=120, stack=stack)

        opened_since = tail.of(IncidentOpened, where=lambda e: e.occurred_at >= since)
        assert [o.incident_id for o in opened_since] == [inc]
        assert len(tail.of(RunbookStarted, inc)) == 1
        assert len(tail.of(ApprovalRequested, inc)) == 1
        tiers = [e.tier for e in tail.of(EscalationTriggered, inc)]
        assert len(tiers) == len(set(tiers))
        sent = [n.idempotency_key for n in tail.of(NotificationSent, inc) if n.delivered]
        assert len(sent) == len(set(sent))
        mails = [m["Message-ID"] for m in stack.mail.messages() if inc in (m["Subject"] or "")]
        assert mails
        assert len(mails) == len(set(mails))
