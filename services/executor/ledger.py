"""The run ledger: the executor's state as a projection of its own events.

Nothing the executor knows lives only in memory. Pending approvals, runs and
their progress, and the approval tokens already used are rebuilt at start-up
by replaying the executor's outputs (`approval.requested`, `runbook.*`,
`incident.resolved`, `audit.recorded`), and the live code path applies every
event it publishes through the same `apply`, so the two can never disagree.

Why the status only moves forward: replay orders events of different topics by
`occurred_at`, and two events written in the same instant may come back in
either order. Ranking statuses (awaiting approval < authorized < running <
completed < terminal) and keeping the highest makes `apply` order-tolerant as
well as idempotent (each event id is applied once).

Single use of approval tokens rests on the `approval_accepted` audit event:
it carries the token id and is published before `runbook.started`, so a token
is marked used in the log before anything acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ValidationError

from shared.domain import RiskTier
from shared.events import (
    ActionSpec,
    ApprovalRequested,
    AuditRecorded,
    Event,
    IncidentResolved,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    RunbookStep,
    derive_event_id,
)
from shared.policy import UnknownRunbook, risk_of


def risk_of_or_high(runbook: str) -> RiskTier:
    """The policy tier of runbook; HIGH (the safe assumption) when it has none."""
    try:
        return risk_of(runbook)
    except UnknownRunbook:
        return RiskTier.HIGH


class RunStatus(StrEnum):
    """Where a run stands."""

    AWAITING_APPROVAL = "awaiting_approval"
    AUTHORIZED = "authorized"
    RUNNING = "running"
    COMPLETED = "completed"
    RESOLVED = "resolved"
    FAILED = "failed"
    CANCELLED = "cancelled"


_RANK = {
    RunStatus.AWAITING_APPROVAL: 0,
    RunStatus.AUTHORIZED: 1,
    RunStatus.RUNNING: 2,
    RunStatus.COMPLETED: 3,
    RunStatus.RESOLVED: 4,
    RunStatus.FAILED: 4,
    RunStatus.CANCELLED: 4,
}

ACTIVE = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.AUTHORIZED, RunStatus.RUNNING})
HALF_FINISHED = frozenset({RunStatus.AUTHORIZED, RunStatus.RUNNING})


class Decision(StrEnum):
    """Kinds of audit events the executor writes (`subject["decision"]`)."""

    AUTO_APPROVED = "auto_approved"
    APPROVAL_ACCEPTED = "approval_accepted"
    APPROVAL_REJECTED = "approval_rejected"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_EXPIRED = "approval_expired"
    PROPOSAL_REFUSED = "proposal_refused"
    PROPOSAL_SKIPPED = "proposal_skipped"
    RUN_INTERRUPTED = "run_interrupted"
    RECOVERY_NOT_HELD = "recovery_not_held"


def run_id_for(investigation_event_id: str) -> str:
    """The run id a proposal gets, derived from the investigation event."""
    return derive_event_id("executor.run", investigation_event_id)


def request_id_for(investigation_event_id: str) -> str:
    """The approval request id of a proposal, derived from the investigation event."""
    return derive_event_id("executor.approval-request", investigation_event_id)


def rerun_ids(interrupted_run_id: str) -> tuple[str, str]:
    """(run id, request id) of the fresh approval asked after a run was interrupted."""
    return (
        derive_event_id("executor.run", "reapproval", interrupted_run_id),
        derive_event_id("executor.approval-request", "reapproval", interrupted_run_id),
    )


@dataclass
class Run:
    """One proposal's way through gate, approval, execution and verification."""

    run_id: str
    incident_id: str
    correlation_id: str
    action: ActionSpec
    risk: RiskTier
    status: RunStatus
    request: ApprovalRequested | None = None
    started_event_id: str | None = None
    accepted_by_event: str | None = None
    approved_by: str | None = None
    token_id: str | None = None
    last_step: str | None = None
    backup: dict[str, Any] | None = None
    completed_event_id: str | None = None
    interrupted: bool = False
    rolled_back: bool = False
    failure: str | None = None

    def advance(self, status: RunStatus) -> None:
        """Move to status unless the run is already further along."""
        if _RANK[status] >= _RANK[self.status]:
            self.status = status


@dataclass
class Ledger:
    """Runs by id, approval requests by id, used token ids."""

    runs: dict[str, Run] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    used_tokens: set[str] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)
    _completed: dict[str, str] = field(default_factory=dict)
    _resolutions: set[str] = field(default_factory=set)
    _steps: dict[str, RunbookStep] = field(default_factory=dict)
    _backups: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- queries ---------------------------------------------------------------

    def run(self, run_id: str) -> Run | None:
        """The run with run_id, if known."""
        return self.runs.get(run_id)

    def run_for_request(self, request_id: str) -> Run | None:
        """The run an approval request belongs to, if known."""
        run_id = self.requests.get(request_id)
        return self.runs.get(run_id) if run_id else None

    def active_run(self, incident_id: str) -> Run | None:
        """The incident's run that awaits approval or is in progress, if any."""
        return next(
            (r for r in self.runs.values() if r.incident_id == incident_id and r.status in ACTIVE),
            None,
        )

    def failed_before(self, incident_id: str, action: ActionSpec) -> Run | None:
        """A run of the same action on the same incident that failed, if any."""
        return next((r for r in self.runs.values() if r.incident_id == incident_id
                     and r.action == action and r.status is RunStatus.FAILED), None)

    def half_finished(self) -> list[Run]:
        """Runs authorized or started but without a terminal event."""
        return [r for r in self.runs.values() if r.status in HALF_FINISHED]

    def awaiting_approval(self) -> list[Run]:
        """Runs whose approval request is still open."""
        return [r for r in self.runs.values() if r.status is RunStatus.AWAITING_APPROVAL]

    def expired(self, now: datetime) -> list[Run]:
        """Open approval requests whose expiry has passed."""
        return [r for r in self.awaiting_approval()
                if r.request is not None and r.request.expires_at <= now]

    def completed_unresolved(self) -> Iterator[Run]:
        """Runs verified but not yet confirmed by the recovery-hold check."""
        return (r for r in self.runs.values() if r.status is RunStatus.COMPLETED)

    # --- projection ------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one of the executor's own events into the state (idempotent)."""
        if event.event_id in self._seen:
            return
        self._seen.add(event.event_id)
        fold = self._FOLDS.get(type(event))
        if fold is not None:
            fold(self, event)

    def _started(self, event: RunbookStarted) -> None:
        run = self._ensure(event.run_id, event, event.action, event.risk)
        run.started_event_id = event.event_id
        run.approved_by = event.approved_by or run.approved_by
        run.advance(RunStatus.RUNNING)

    def _step(self, event: RunbookStep) -> None:
        # Kept apart from the run: in a replay a step may come before the run's first event.
        latest = self._steps.get(event.run_id)
        if latest is None or event.occurred_at >= latest.occurred_at:
            self._steps[event.run_id] = event
        if event.phase == "backup" and event.status == "succeeded":
            self._backups[event.run_id] = dict(event.data)
        if (run := self.runs.get(event.run_id)) is not None:
            self._attach_steps(run)

    def _attach_steps(self, run: Run) -> None:
        if (step := self._steps.get(run.run_id)) is not None:
            run.last_step = step.step
        if (backup := self._backups.get(run.run_id)) is not None:
            run.backup = backup

    def _completed_run(self, event: RunbookCompleted) -> None:
        run = self._ensure(event.run_id, event, event.action, None)
        run.completed_event_id = event.event_id
        self._completed[event.event_id] = run.run_id
        run.advance(RunStatus.RESOLVED if event.event_id in self._resolutions
                    else RunStatus.COMPLETED)

    def _failed(self, event: RunbookFailed) -> None:
        run = self._ensure(event.run_id, event, event.action, None)
        run.interrupted = run.interrupted or event.interrupted
        run.failure = event.reason
        run.advance(RunStatus.FAILED)

    def _rolled_back(self, event: RunbookRolledBack) -> None:
        self._ensure(event.run_id, event, event.action, None).rolled_back = True

    def _resolved(self, event: IncidentResolved) -> None:
        self._resolutions.add(event.causation_id or "")
        run_id = self._completed.get(event.causation_id or "")
        if run_id and (run := self.runs.get(run_id)) is not None:
            run.advance(RunStatus.RESOLVED)

    def _requested(self, event: ApprovalRequested) -> None:
        run = self._ensure(event.run_id, event, event.action, event.risk)
        run.request = event
        self.requests[event.request_id] = event.run_id

    def _audited(self, event: AuditRecorded) -> None:
        subject = event.subject
        decision = subject.get("decision")
        token_id = subject.get("token_id")
        if decision == Decision.APPROVAL_ACCEPTED and isinstance(token_id, str):
            self.used_tokens.add(token_id)  # even if the run is unknown: single use first
        run_id = subject.get("run_id")
        if not isinstance(run_id, str):
            return
        if decision in (Decision.AUTO_APPROVED, Decision.APPROVAL_ACCEPTED):
            self._authorized(run_id, event)
            return
        run = self.runs.get(run_id)
        if run is None:
            return
        if decision in (Decision.APPROVAL_DENIED, Decision.APPROVAL_EXPIRED):
            if run.status is RunStatus.AWAITING_APPROVAL:
                run.advance(RunStatus.CANCELLED)
        elif decision == Decision.RUN_INTERRUPTED:
            run.interrupted = True

    def _authorized(self, run_id: str, event: AuditRecorded) -> None:
        subject = event.subject
        run = self.runs.get(run_id)
        if run is None:
            try:
                action = ActionSpec.model_validate(subject.get("action_spec"))
                risk = RiskTier(str(subject.get("risk")))
            except (ValidationError, ValueError):
                return
            run = self._ensure(run_id, event, action, risk)
        run.accepted_by_event = event.causation_id
        token_id, approver = subject.get("token_id"), subject.get("approver")
        if isinstance(token_id, str):
            run.token_id = token_id
        if isinstance(approver, str):
            run.approved_by = approver
        run.advance(RunStatus.AUTHORIZED)

    def _ensure(self, run_id: str, event: Event, action: ActionSpec,
                risk: RiskTier | None) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            run = Run(
                run_id=run_id,
                incident_id=event.incident_id or "",
                correlation_id=event.correlation_id,
                action=action,
                risk=risk or risk_of_or_high(action.runbook),
                status=RunStatus.AWAITING_APPROVAL,
            )
            self.runs[run_id] = run
            self._attach_steps(run)
        elif risk is not None:
            run.risk = risk
        return run

    _FOLDS: ClassVar[dict[type[Event], Callable[[Ledger, Any], None]]] = {
        ApprovalRequested: _requested,
        AuditRecorded: _audited,
        RunbookStarted: _started,
        RunbookStep: _step,
        RunbookCompleted: _completed_run,
        RunbookFailed: _failed,
        RunbookRolledBack: _rolled_back,
        IncidentResolved: _resolved,
    }
