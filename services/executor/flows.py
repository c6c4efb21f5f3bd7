"""The executor's decisions: which proposal runs, when, and on whose authority.

Risk gate (DOMAIN.md, three tiers). The tier comes from `shared.policy.risk_of`
and nothing else: not from the investigation, its rationale or parameters,
nor from the runbook file. Then:

- unknown runbook, runbook not in the library, bad target, parameters that do
  not validate -> refused with an `audit.recorded` (outcome "rejected");
- another run of the same incident awaiting approval, running or holding for
  recovery -> the proposal is recorded (audit, "proposal_skipped") and skipped;
- a LOW/MEDIUM action that already failed on this incident -> skipped the same
  way: re-investigations must not loop an automatic remediation that did not
  work (a HIGH one goes to a human again, who decides);
- LOW -> `audit.recorded` ("auto_approved") then the run;
- MEDIUM -> the same, and the runner takes the backup before the action;
- HIGH -> `approval.requested` with the exact, normalised action, and wait.

Approval. `approval.granted` is only a carrier: the executor verifies the
signed token itself against the *pending request's* action, incident and id,
the role table (`approvers.yaml`), its clock and the set of used token ids
(`shared.approval_token.verify_approval`). Any rejection is an audit event and
nothing runs. An accepted token is recorded as used (audit "approval_accepted"
with its token id) before `runbook.started`, so it can never be used twice,
even across restarts.

Denial. `approval.denied` is recorded (audit "approval_denied", outcome
"rejected") and the run is cancelled. It does not emit `runbook.failed`: a
human looked at the action and said no, nothing failed, and escalating to the
next tier because someone exercised judgement would be noise. Expiry is
different: nobody answered before `expires_at`, so the remediation is stuck
with no human on it; that is reported as `runbook.failed` (reason "approval
expired") so escalation acts, plus an audit event.

Restarts. At start-up the ledger is rebuilt from the log, then
`recover_after_restart` looks at runs that were authorized or started but have
no terminal event. Such a run is never re-run automatically: it is reported
(`audit.recorded` outcome "interrupted", `runbook.failed(interrupted=True)`),
and a HIGH run asks a human again with a fresh `approval.requested` (new run
and request ids derived from the interrupted run). Pending approvals survive
as they are; verified runs waiting for the recovery hold resume their re-check
(it only reads).

One lock serialises decisions (handlers, expiry, recovery) so a grant and the
expiry of the same request cannot both win; run execution happens outside it,
in tasks, so a long verification never blocks other incidents' events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.executor.execution import PRODUCER, RunbookRunner, ScaledClock, envelope
from services.executor.ledger import (
    Decision,
    Ledger,
    Run,
    RunStatus,
    request_id_for,
    rerun_ids,
    run_id_for,
)
from shared.approval_token import ApprovalRejected, load_public_key, verify_approval
from shared.catalog import ServiceCatalog
from shared.domain import RiskTier
from shared.events import (
    ActionSpec,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    Event,
    InvestigationCompleted,
    RunbookStarted,
    derive_event_id,
)
from shared.policy import ApprovalPolicy, UnknownRunbook, risk_of
from shared.runbooks import InvalidProposal, RunbookDefinition, RunbookLibrary

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[bool]]
_TIER_RULE = {
    RiskTier.LOW: "LOW risk per policy: runs automatically with audit logging",
    RiskTier.MEDIUM: "MEDIUM risk per policy: runs automatically, backup taken and rollback "
                     "prepared before the action",
}


class PublicKeySource:
    """The approval service's public key, loaded when first needed (it may appear later)."""

    def __init__(self, path: Path | None = None, key: Ed25519PublicKey | None = None) -> None:
        self.path = path
        self._key = key

    def get(self) -> Ed25519PublicKey:
        """The key; raises ApprovalRejected when it is missing or unreadable."""
        if self._key is None:
            if self.path is None:
                raise ApprovalRejected("no approval public key configured")
            try:
                self._key = load_public_key(self.path)
            except (OSError, ValueError, TypeError) as exc:
                raise ApprovalRejected(f"approval public key unavailable at {self.path}: "
                                       f"{exc}") from exc
        return self._key


def _rationale(event: InvestigationCompleted) -> str:
    evidence = "; ".join(e.summary for e in event.evidence[:5]) or "no evidence attached"
    text = f"Hypothesis ({event.confidence:.0%} confidence): {event.hypothesis}. Evidence: " \
           f"{evidence}."
    return f"{text} {event.rationale}".strip() if event.rationale else text


class Executor:
    """Gate, approval and run orchestration over a ledger rebuilt from the log."""

    def __init__(
        self,
        *,
        library: RunbookLibrary,
        runner: RunbookRunner,
        clock: ScaledClock,
        publish: Publish,
        approval_policy: ApprovalPolicy,
        public_key: PublicKeySource,
        catalog: ServiceCatalog | None = None,
        approval_ttl: timedelta = timedelta(seconds=900),
        ledger: Ledger | None = None,
    ) -> None:
        self.library = library
        self.runner = runner
        self.clock = clock
        self._publish = publish
        self.approval_policy = approval_policy
        self.public_key = public_key
        self.catalog = catalog
        self.approval_ttl = approval_ttl
        self.ledger = ledger or Ledger()
        self._decisions = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._holding: dict[str, str] = {}  # incident id -> run id awaiting the recovery hold
        runner.emit = self.emit

    # --- plumbing --------------------------------------------------------------------

    async def emit(self, event: Event) -> None:
        """Publish an event and fold it into the ledger (one path for live and replay)."""
        await self._publish(event)
        self.ledger.apply(event)

    def _audit(self, *, cause: Event, decision: Decision, action: str, reason: str,
               outcome: Literal["allowed", "rejected"] = "rejected", incident_id: str | None = None,
               **subject: Any) -> AuditRecorded:
        envelope_fields = cause.caused()
        if incident_id:
            envelope_fields["incident_id"] = incident_id
        return AuditRecorded(
            event_id=derive_event_id("audit.recorded", cause.event_id, decision),
            producer=PRODUCER, occurred_at=self.clock.now(), **envelope_fields,
            actor=PRODUCER, action=action, outcome=outcome, reason=reason,
            subject={"decision": decision, **subject},
        )

    def is_busy(self, incident_id: str) -> Run | None:
        """The incident's run that blocks a new one (active, or holding for recovery)."""
        active = self.ledger.active_run(incident_id)
        if active is not None:
            return active
        holding = self._holding.get(incident_id)
        return self.ledger.run(holding) if holding else None

    # --- investigation.completed ----------------------------------------------------

    async def on_investigation(self, event: InvestigationCompleted) -> None:
        """Gate a proposed action by its policy tier: refuse, skip, run, or ask for approval."""
        if event.proposed_action is None:
            log.info("investigation %s proposes no action", event.event_id)
            return
        if not event.incident_id:
            raise InvalidProposal("investigation.completed without incident_id: cannot key "
                                  "its audit trail")
        async with self._decisions:
            await self._gate(event, event.proposed_action)

    async def _gate(self, event: InvestigationCompleted, proposed: ActionSpec) -> None:
        run_id = run_id_for(event.event_id)
        existing = self.ledger.run(run_id)
        if existing is not None:
            if existing.status is RunStatus.AUTHORIZED:
                await self._start(existing, approval_request_id=None)
            return
        what = f"{proposed.runbook} on {proposed.target}"
        proposal = proposed.model_dump(mode="json")
        try:
            risk = risk_of(proposed.runbook)
            action = self.library.validate_action(proposed, self.catalog)
            runbook = self.library.get(action.runbook)
        except (UnknownRunbook, InvalidProposal) as exc:
            await self.emit(self._audit(cause=event, decision=Decision.PROPOSAL_REFUSED,
                                        action=what, reason=f"refused: {exc}",
                                        run_id=run_id, proposal=proposal))
            return
        busy = self.is_busy(event.incident_id or "")
        if busy is not None:
            await self.emit(self._audit(
                cause=event, decision=Decision.PROPOSAL_SKIPPED, action=what,
                reason=f"skipped: run {busy.run_id} ({busy.action.runbook} on "
                       f"{busy.action.target}) is {busy.status.value} for this incident",
                run_id=run_id, proposal=proposal, active_run_id=busy.run_id))
            return
        failed = self.ledger.failed_before(event.incident_id or "", action)
        if failed is not None and risk is not RiskTier.HIGH:
            await self.emit(self._audit(
                cause=event, decision=Decision.PROPOSAL_SKIPPED, action=what,
                reason=f"skipped: the same action already failed on this incident (run "
                       f"{failed.run_id}: {failed.failure}); not retried automatically, a "
                       f"human decides",
                run_id=run_id, proposal=proposal, failed_run_id=failed.run_id))
            return
        if risk is RiskTier.HIGH:
            await self.emit(self._approval_request(
                cause=event, run_id=run_id, request_id=request_id_for(event.event_id),
                action=action, runbook=runbook, rationale=_rationale(event)))
            return
        await self.emit(self._audit(
            cause=event, decision=Decision.AUTO_APPROVED, action=what, outcome="allowed",
            reason=_TIER_RULE[risk], run_id=run_id, risk=risk.value,
            action_spec=action.model_dump(mode="json"),
        ))
        run = self.ledger.run(run_id)
        if run is not None:
            await self._start(run, approval_request_id=None)

    def _approval_request(self, *, cause: Event, run_id: str, request_id: str,
                          action: ActionSpec, runbook: RunbookDefinition,
                          rationale: str) -> ApprovalRequested:
        return ApprovalRequested(
            event_id=derive_event_id("approval.requested", request_id),
            producer=PRODUCER, occurred_at=self.clock.now(), **cause.caused(),
            request_id=request_id, run_id=run_id, action=action, risk=runbook.risk,
            service=action.target, rationale=rationale,
            expected_impact=runbook.expected_impact.strip(),
            rollback_plan=runbook.rollback_plan.strip(), requested_by=PRODUCER,
            expires_at=self.clock.now() + self.clock.scaled(self.approval_ttl),
        )

    # --- approval.granted / approval.denied ----------------------------------------------

    async def on_granted(self, event: ApprovalGranted) -> None:
        """Verify the signed approval against the pending request; run only if it holds."""
        async with self._decisions:
            run = self.ledger.run_for_request(event.request_id)
            if run is not None and run.accepted_by_event == event.event_id:
                if run.status is RunStatus.AUTHORIZED:  # redelivery after a crash mid-handler
                    await self._start(run, approval_request_id=event.request_id)
                return
            try:
                claims_token_id, approver = self._verify_grant(event, run)
            except ApprovalRejected as exc:
                await self._reject_grant(event, run, exc.reason)
                return
            assert run is not None  # _verify_grant rejects unknown requests
            await self.emit(self._audit(
                cause=event, decision=Decision.APPROVAL_ACCEPTED, incident_id=run.incident_id,
                action=f"{run.action.runbook} on {run.action.target}", outcome="allowed",
                reason=f"HIGH risk approved by {approver} with a valid signed approval",
                run_id=run.run_id, request_id=event.request_id, token_id=claims_token_id,
                approver=approver,
            ))
            await self._start(run, approval_request_id=event.request_id)

    def _verify_grant(self, event: ApprovalGranted, run: Run | None) -> tuple[str, str]:
        if run is None or run.request is None:
            raise ApprovalRejected(f"unknown approval request {event.request_id}")
        request = run.request
        try:
            risk = risk_of(request.action.runbook)
        except UnknownRunbook as exc:
            raise ApprovalRejected(f"runbook no longer in the risk policy: {exc}") from exc
        claims = verify_approval(
            event.token,
            self.public_key.get(),
            action=request.action,
            incident_id=request.incident_id or "",
            request_id=request.request_id,
            requested_by=PRODUCER,
            required_roles=self.approval_policy.roles_allowed(request.service, risk),
            now=self.clock.now(),
            used_token_ids=self.ledger.used_tokens,
        )
        if event.approver and event.approver != claims.approver:
            raise ApprovalRejected(f"event names approver {event.approver} but the token was "
                                   f"signed for {claims.approver}")
        if run.status is not RunStatus.AWAITING_APPROVAL:
            raise ApprovalRejected(f"approval request {request.request_id} is no longer pending "
                                   f"(run {run.run_id} is {run.status.value})")
        if self.clock.now() >= request.expires_at:
            raise ApprovalRejected(f"approval request expired at {request.expires_at.isoformat()}")
        return claims.token_id, claims.approver

    async def _reject_grant(self, event: ApprovalGranted, run: Run | None, reason: str) -> None:
        incident_id = run.incident_id if run is not None else event.incident_id
        if not incident_id:
            raise ApprovalRejected(f"approval.granted for unknown request {event.request_id} "
                                   f"without incident_id: {reason}")
        log.warning("approval %s rejected: %s", event.event_id, reason)
        what = f"{run.action.runbook} on {run.action.target}" if run else "unknown action"
        await self.emit(self._audit(
            cause=event, decision=Decision.APPROVAL_REJECTED, incident_id=incident_id,
            action=what, reason=f"approval rejected: {reason}",
            run_id=run.run_id if run else None, request_id=event.request_id,
            approver=event.approver,
        ))

    async def on_denied(self, event: ApprovalDenied) -> None:
        """Record a human's denial and cancel the run (no runbook.failed: see module doc)."""
        async with self._decisions:
            run = self.ledger.run_for_request(event.request_id)
            if run is None or run.status is not RunStatus.AWAITING_APPROVAL:
                state = "unknown" if run is None else run.status.value
                log.info("denial of %s ignored: request is %s", event.request_id, state)
                return
            comment = f": {event.comment}" if event.comment else ""
            await self.emit(self._audit(
                cause=event, decision=Decision.APPROVAL_DENIED, incident_id=run.incident_id,
                action=f"{run.action.runbook} on {run.action.target}",
                reason=f"denied by {event.approver}{comment}; run cancelled, nothing executed",
                run_id=run.run_id, request_id=event.request_id, approver=event.approver,
            ))

    async def expire_requests(self) -> int:
        """Cancel approval requests past their expiry; returns how many expired."""
        async with self._decisions:
            expired = self.ledger.expired(self.clock.now())
            for run in expired:
                assert run.request is not None
                reason = (f"approval request {run.request.request_id} expired unanswered at "
                          f"{run.request.expires_at.isoformat()}; nothing executed")
                await self.emit(self._audit(
                    cause=run.request, decision=Decision.APPROVAL_EXPIRED,
                    action=f"{run.action.runbook} on {run.action.target}", reason=reason,
                    run_id=run.run_id, request_id=run.request.request_id,
                ))
                await self.runner.fail(run, reason, "approval")
            return len(expired)

    # --- running ------------------------------------------------------------------------

    async def _start(self, run: Run, *, approval_request_id: str | None) -> None:
        runbook = self.library.get(run.action.runbook)
        await self.emit(RunbookStarted(
            event_id=derive_event_id("runbook.started", run.run_id),
            **envelope(run, self.clock, run.accepted_by_event),
            run_id=run.run_id, action=run.action, risk=risk_of(run.action.runbook),
            approval_request_id=approval_request_id, approved_by=run.approved_by,
        ))
        self._launch(run.run_id, self._execute(run, runbook))

    def _launch(self, run_id: str, work: Awaitable[None]) -> None:
        if run_id in self._tasks:
            return

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                # Publishing failed mid-run (broker gone): the log shows a started run
                # without a terminal event, which the next start reports as interrupted.
                log.exception("run %s could not be completed", run_id)
            finally:
                self._tasks.pop(run_id, None)

        self._tasks[run_id] = asyncio.create_task(guarded(), name=f"run-{run_id}")

    async def _execute(self, run: Run, runbook: RunbookDefinition) -> None:
        verified = await self.runner.execute(run, runbook)
        if verified and runbook.resolves_incident:
            await self._hold(run, runbook)

    async def _hold(self, run: Run, runbook: RunbookDefinition) -> None:
        self._holding[run.incident_id] = run.run_id
        try:
            await self.runner.hold_recovery(run, runbook)
        finally:
            if self._holding.get(run.incident_id) == run.run_id:
                del self._holding[run.incident_id]

    async def wait_idle(self) -> None:
        """Wait until every launched run has finished (tests, graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def cancel_runs(self) -> None:
        """Stop every run task (process shutdown); the log shows them as interrupted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- restart ----------------------------------------------------------------------

    async def recover_after_restart(self) -> None:
        """Report half-finished runs (and re-ask for HIGH ones); resume recovery holds."""
        async with self._decisions:
            for run in sorted(self.ledger.half_finished(), key=lambda r: r.run_id):
                await self._report_interrupted(run)
            for run in list(self.ledger.completed_unresolved()):
                try:
                    runbook = self.library.get(run.action.runbook)
                except InvalidProposal:
                    continue
                if runbook.resolves_incident and run.run_id not in self._tasks:
                    self._launch(run.run_id, self._hold(run, runbook))

    async def _report_interrupted(self, run: Run) -> None:
        if run.status is RunStatus.RUNNING:
            where = f" at step {run.last_step}" if run.last_step else ""
            reason = (f"executor restarted while run {run.run_id} was in progress{where}; it is "
                      f"not re-run automatically and may have partially executed")
        else:
            reason = (f"executor restarted after run {run.run_id} was authorized but before it "
                      f"started; nothing was executed")
        if run.backup:
            reason += f"; backup kept for a manual restore: {run.backup.get('ref', run.backup)}"
        await self.runner.report_interrupted(run, reason)
        if run.risk is not RiskTier.HIGH or run.request is None:
            return
        try:
            runbook = self.library.get(run.action.runbook)
        except InvalidProposal:
            return
        new_run_id, request_id = rerun_ids(run.run_id)
        await self.emit(self._approval_request(
            cause=run.request, run_id=new_run_id, request_id=request_id, action=run.action,
            runbook=runbook,
            rationale=f"Approval asked again: {reason}. Original rationale: "
                      f"{run.request.rationale}",
        ))
