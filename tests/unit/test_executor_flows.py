"""Unit tests of the executor's decisions and runs, without Kafka: fake backends, manual clock.

The bus is replaced by a list that records what would be published; the world
and Redis by fakes that record every call, so "nothing ran" is checkable
(`tests.executor_harness`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.executor.ledger import Ledger, RunStatus
from shared.domain import RiskTier
from shared.events import (
    ActionSpec,
    ApprovalDenied,
    ApprovalRequested,
    IncidentResolved,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    RunbookStep,
)
from tests.executor_harness import Harness

pytestmark = pytest.mark.unit


class TestRiskGate:
    async def test_low_runs_with_audit_and_without_approval(self) -> None:
        """log_level_change (LOW) is audited as auto-approved, runs and completes."""
        h = Harness()
        await h.propose("log_level_change", "payments", level="DEBUG")
        assert h.audits("auto_approved")[0].outcome == "allowed"
        assert not h.of(ApprovalRequested)
        assert h.of(RunbookStarted)[0].risk is RiskTier.LOW
        assert h.of(RunbookCompleted)
        assert h.world.level == "DEBUG"
        assert not h.of(IncidentResolved), "a log level change does not resolve an incident"

    async def test_high_risk_comes_from_policy_even_if_proposal_claims_low(self) -> None:
        """service_restart asks for approval although the proposal calls itself LOW risk."""
        h = Harness()
        await h.propose("service_restart", "payments", mode="force")
        [request] = h.of(ApprovalRequested)
        assert request.risk is RiskTier.HIGH
        assert request.action == ActionSpec(runbook="service_restart", target="payments",
                                            parameters={"mode": "force"})
        assert request.requested_by == "executor"
        assert "v2 deployed 3 min before the spike" in request.rationale
        assert request.expires_at == h.clock.now() + timedelta(seconds=900)
        assert "cannot be undone" in request.rollback_plan
        assert not h.of(RunbookStarted)
        assert h.world.mutations() == []

    async def test_unknown_runbook_is_refused_with_audit(self) -> None:
        """A runbook outside the policy table is refused; nothing runs."""
        h = Harness()
        await h.propose("drop_database", "payments")
        [audit] = h.audits("proposal_refused")
        assert audit.outcome == "rejected"
        assert "not in the risk policy" in audit.reason
        assert not h.of(RunbookStarted)
        assert not h.of(ApprovalRequested)

    async def test_invalid_parameters_are_refused_with_audit(self) -> None:
        """Parameters that fail the schema are refused with the validator's reason."""
        h = Harness()
        await h.propose("cache_invalidation", "catalog", pattern="*", flush_all=True)
        [audit] = h.audits("proposal_refused")
        assert "flush_all" in audit.reason
        assert h.redis.calls == []

    async def test_second_proposal_for_busy_incident_is_recorded_and_skipped(self) -> None:
        """While a HIGH run awaits approval, another proposal for the incident is skipped."""
        h = Harness()
        await h.propose("service_restart", "payments")
        await h.propose("log_level_change", "payments", level="DEBUG")
        [skipped] = h.audits("proposal_skipped")
        assert "awaiting_approval" in skipped.reason
        assert not h.of(RunbookStarted)

    async def test_risk_smuggled_into_parameters_is_refused(self) -> None:
        """A proposal cannot carry its own tier: a `risk` parameter is refused, nothing runs."""
        h = Harness()
        await h.propose("service_restart", "payments", risk="LOW")
        [audit] = h.audits("proposal_refused")
        assert "'risk' was unexpected" in audit.reason
        assert not h.of(RunbookStarted)
        assert h.world.mutations() == []

    async def test_failed_automatic_action_is_not_retried_automatically(self) -> None:
        """A MEDIUM action that failed on an incident is skipped when proposed again."""
        h = Harness(rates=[0.4])
        await h.propose("cache_invalidation", "catalog")
        await h.propose("cache_invalidation", "catalog")
        [skipped] = h.audits("proposal_skipped")
        assert "already failed on this incident" in skipped.reason
        assert len(h.of(RunbookStarted)) == 1
        assert h.redis.calls.count("delete") == 1

    async def test_proposals_for_other_incidents_are_independent(self) -> None:
        """A pending approval on one incident does not block another incident."""
        h = Harness()
        await h.propose("service_restart", "payments", incident="INC-1")
        await h.propose("log_level_change", "checkout", incident="INC-2", level="DEBUG")
        assert h.of(RunbookCompleted)

    async def test_same_investigation_twice_is_one_run(self) -> None:
        """A redelivered investigation does not start a second run."""
        h = Harness()
        event = await h.propose("log_level_change", "payments", level="WARNING")
        await h.executor.on_investigation(event)
        await h.executor.wait_idle()
        assert len(h.of(RunbookStarted)) == 1
        assert h.world.mutations() == ["set_log_level"]


class TestMediumRun:
    async def test_backup_is_taken_before_the_action(self) -> None:
        """cache_invalidation dumps keys before deleting them, then verifies and resolves."""
        h = Harness(rates=[0.4, 0.0])
        await h.propose("cache_invalidation", "catalog", pattern="cache:*")
        assert h.redis.calls == ["ping", "dump", "delete"]
        phases = [(e.phase, e.status) for e in h.of(RunbookStep)]
        assert phases.index(("backup", "succeeded")) < phases.index(("action", "started"))
        assert h.of(RunbookCompleted)
        [resolved] = h.of(IncidentResolved)
        assert resolved.resolution == "verified_recovery"
        assert resolved.verified
        assert h.executor.ledger.run(h.of(RunbookStarted)[0].run_id).status \
            is RunStatus.RESOLVED

    async def test_failed_backup_means_no_action(self) -> None:
        """If the backup fails the delete never runs, and no rollback is needed."""
        h = Harness()
        h.redis.fail.add("dump")
        await h.propose("cache_invalidation", "catalog")
        assert h.redis.calls == ["ping", "dump"]
        [failed] = h.of(RunbookFailed)
        assert "action was not run" in failed.reason
        assert failed.step == "dump_keys"
        assert not h.of(RunbookRolledBack)

    async def test_failed_verification_rolls_back(self) -> None:
        """Error rate that stays high: restore runs, rolled_back then failed are emitted."""
        h = Harness(rates=[0.4])
        await h.propose("cache_invalidation", "catalog")
        assert h.redis.calls == ["ping", "dump", "delete", "restore"]
        [rolled] = h.of(RunbookRolledBack)
        assert rolled.succeeded
        [failed] = h.of(RunbookFailed)
        assert "verification failed" in failed.reason
        assert "rolled back" in failed.reason
        assert not h.of(RunbookCompleted)
        assert not h.of(IncidentResolved)
        types = [type(e) for e in h.log]
        assert types.index(RunbookRolledBack) < types.index(RunbookFailed)

    async def test_degrading_action_is_rolled_back_early(self) -> None:
        """An error rate far above the baseline fails before the deadline."""
        h = Harness(rates=[0.4, 0.9])
        await h.propose("cache_invalidation", "catalog")
        [failed] = h.of(RunbookFailed)
        assert "degrading" in failed.reason
        verification = next(e for e in h.of(RunbookStep) if e.phase == "verification"
                        and e.status == "failed")
        assert verification.data["checks"] == 3

    async def test_failed_action_step_rolls_back(self) -> None:
        """A failing action step triggers the rollback steps."""
        h = Harness()
        h.redis.fail.add("delete")
        await h.propose("cache_invalidation", "catalog")
        assert h.redis.calls[-1] == "restore"
        assert h.of(RunbookRolledBack)
        assert h.of(RunbookFailed)[0].step == "delete_keys"

    async def test_recovery_that_does_not_hold_is_reported_not_resolved(self) -> None:
        """Verified, but unhealthy at the recovery-hold check: failed, no resolution."""
        h = Harness(rates=[0.4, 0.0, 0.0, 0.0, 0.3])
        await h.propose("cache_invalidation", "catalog")
        assert h.of(RunbookCompleted)
        assert not h.of(IncidentResolved)
        assert h.of(RunbookFailed)[0].step == "recovery_hold"
        assert h.audits("recovery_not_held")


class TestApproval:
    async def _requested(self, h: Harness) -> ApprovalRequested:
        await h.propose("service_restart", "payments")
        return h.of(ApprovalRequested)[0]

    async def test_valid_approval_runs_the_exact_action(self) -> None:
        """A valid signed approval starts the run, recorded with approver and token."""
        h = Harness(rates=[0.3, 0.0])
        request = await self._requested(h)
        await h.deliver(h.grant(request))
        [accepted] = h.audits("approval_accepted")
        [started] = h.of(RunbookStarted)
        assert started.approval_request_id == request.request_id
        assert started.approved_by == "alice"
        assert accepted.subject["token_id"] in h.executor.ledger.used_tokens
        assert h.world.mutations() == ["restart"]
        assert ("restart", {"service": "payments", "mode": "graceful"}) in h.world.calls
        assert h.of(IncidentResolved)

    @pytest.mark.parametrize(("forge", "reason"), [
        ({"roles": ("payments-oncall",)}, "lacks a role"),
        ({"approver": "executor"}, "self-approval"),
        ({"expires_in": timedelta(seconds=-1)}, "expired"),
        ({"action": ActionSpec(runbook="service_restart", target="payments",
                               parameters={"mode": "force"})}, "another action"),
        ({"key": Ed25519PrivateKey.generate()}, "bad signature"),
    ])
    async def test_invalid_approval_runs_nothing(self, forge: dict[str, Any],
                                                 reason: str) -> None:
        """Each forged approval is rejected with its reason and nothing runs."""
        h = Harness()
        request = await self._requested(h)
        await h.deliver(h.grant(request, **forge))
        [audit] = h.audits("approval_rejected")
        assert reason in audit.reason
        assert audit.outcome == "rejected"
        assert not h.of(RunbookStarted)
        assert h.world.mutations() == []
        assert h.executor.ledger.run_for_request(request.request_id).status \
            is RunStatus.AWAITING_APPROVAL

    async def test_missing_token_runs_nothing(self) -> None:
        """An approval.granted without a token is rejected."""
        h = Harness()
        request = await self._requested(h)
        event = h.grant(request).model_copy(update={"token": ""})
        await h.deliver(event)
        assert "missing signature" in h.audits("approval_rejected")[0].reason
        assert not h.of(RunbookStarted)

    async def test_replayed_token_runs_once(self) -> None:
        """The same token delivered again (new event) is a replay: one run only."""
        h = Harness()
        request = await self._requested(h)
        first = h.grant(request, token_id="tok-1")
        await h.deliver(first)
        replay = first.model_copy(update={"event_id": str(uuid.uuid4())})
        await h.deliver(replay)
        assert len(h.of(RunbookStarted)) == 1
        assert "replay" in h.audits("approval_rejected")[0].reason

    async def test_expired_request_cannot_be_approved(self) -> None:
        """A grant that arrives after the request expired is rejected."""
        h = Harness()
        request = await self._requested(h)
        h.clock.advance(timedelta(seconds=901))
        await h.deliver(h.grant(request))
        assert "expired" in h.audits("approval_rejected")[0].reason
        assert not h.of(RunbookStarted)

    async def test_denial_cancels_without_escalating(self) -> None:
        """A denial is audited and cancels the run; no runbook.failed is emitted."""
        h = Harness()
        request = await self._requested(h)
        await h.deliver(ApprovalDenied(producer="approval", **request.caused(),
                                       request_id=request.request_id, approver="bob",
                                       comment="peak traffic"))
        [audit] = h.audits("approval_denied")
        assert "denied by bob: peak traffic" in audit.reason
        assert not h.of(RunbookFailed)
        assert h.executor.ledger.run(request.run_id).status is RunStatus.CANCELLED
        await h.deliver(h.grant(request))
        assert "no longer pending" in h.audits("approval_rejected")[0].reason
        assert h.world.mutations() == []

    async def test_unanswered_request_expires_and_escalates(self) -> None:
        """Past expires_at the request is cancelled, audited and reported as failed."""
        h = Harness()
        request = await self._requested(h)
        assert await h.executor.expire_requests() == 0
        h.clock.advance(timedelta(seconds=900))
        assert await h.executor.expire_requests() == 1
        assert h.audits("approval_expired")
        [failed] = h.of(RunbookFailed)
        assert failed.step == "approval"
        assert "expired unanswered" in failed.reason
        assert h.executor.ledger.run(request.run_id).status is RunStatus.FAILED


class TestRestart:
    async def test_half_finished_high_run_is_reported_and_asked_again(self) -> None:
        """A HIGH run started before a restart fails as interrupted and gets a new request."""
        h = Harness()
        request = await TestApproval()._requested(h)
        grant = h.grant(request)
        started = RunbookStarted(producer="executor", **request.caused(),
                                 run_id=request.run_id, action=request.action,
                                 risk=RiskTier.HIGH, approval_request_id=request.request_id)
        ledger = Ledger()
        for event in [*h.log, started]:
            ledger.apply(event)
        restarted = Harness(ledger=ledger, key=h.key)
        await restarted.executor.recover_after_restart()
        [failed] = restarted.of(RunbookFailed)
        assert failed.interrupted
        assert failed.run_id == request.run_id
        assert restarted.audits("run_interrupted")[0].outcome == "interrupted"
        [again] = restarted.of(ApprovalRequested)
        assert again.request_id != request.request_id
        assert again.action == request.action
        assert restarted.world.calls == []
        await restarted.deliver(grant)  # the old approval no longer fits
        assert not restarted.of(RunbookStarted)
        assert restarted.world.calls == []

    async def test_pending_approval_survives_a_restart(self) -> None:
        """A grant for a request made before the restart works once after it."""
        h = Harness(rates=[0.0])
        request = await TestApproval()._requested(h)
        ledger = Ledger()
        for event in h.log:
            ledger.apply(event)
        restarted = Harness(ledger=ledger, key=h.key)
        await restarted.executor.recover_after_restart()
        assert restarted.log == []
        grant = restarted.grant(request)
        await restarted.deliver(grant)
        await restarted.deliver(grant.model_copy(update={"event_id": str(uuid.uuid4())}))
        assert len(restarted.of(RunbookStarted)) == 1
        assert restarted.world.mutations() == ["restart"]

    async def test_used_tokens_are_rebuilt_from_the_log(self) -> None:
        """Replaying the log restores the used token ids (single use across restarts)."""
        h = Harness(rates=[0.0])
        request = await TestApproval()._requested(h)
        await h.deliver(h.grant(request, token_id="tok-42"))
        ledger = Ledger()
        for event in reversed(h.log):  # order-tolerant projection
            ledger.apply(event)
        assert "tok-42" in ledger.used_tokens
        assert ledger.run(request.run_id).status is RunStatus.RESOLVED
