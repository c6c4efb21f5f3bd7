"""What the API returns and the page shows: read models built from the projection.

One set of pydantic models serves the JSON API (and so documents it in
OpenAPI) and the templates, so the page can never show something the API
would not. The signed token is never part of a view: it travels only in the
`approval.granted` event to the executor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.approval.board import (
    ApprovalRecord,
    ApprovalStatus,
    IncidentRecord,
    IncidentStatus,
    ResponseBoard,
)
from services.approval.decisions import effective_risk
from shared.domain import IncidentPhase, RiskTier, Severity
from shared.events import ApprovalGranted
from shared.policy import UnknownRunbook


class View(BaseModel):
    """Base of read models: frozen."""

    model_config = ConfigDict(frozen=True)


class DecisionView(View):
    """A recorded decision on an approval request."""

    outcome: Literal["granted", "denied"]
    approver: str
    comment: str
    decided_at: AwareDatetime
    event_id: str


class ApprovalView(View):
    """An approval request with everything a human needs to decide it."""

    request_id: str
    status: ApprovalStatus
    incident_id: str
    incident_title: str = ""
    severity: Severity | None = None
    run_id: str
    runbook: str
    parameters: dict[str, Any]
    target: str
    service: str
    risk: RiskTier = Field(description="as requested by the executor")
    policy_risk: RiskTier | None = Field(
        None, description="the stricter of the request's and the policy table's tier"
    )
    rationale: str
    expected_impact: str
    rollback_plan: str
    requested_by: str
    requested_at: AwareDatetime
    expires_at: AwareDatetime
    expires_in_s: float = Field(description="seconds until expiry, 0 when expired")
    decision: DecisionView | None = None
    run_status: str | None = None
    run_detail: str = ""


class IncidentView(View):
    """An incident as responders see it."""

    incident_id: str
    title: str
    status: IncidentStatus
    severity: Severity | None = None
    severity_label: str | None = None
    services: list[str]
    phase: IncidentPhase | None = None
    customer_impact: str = ""
    opened_at: AwareDatetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    resolved_by: str | None = None
    resolved_at: AwareDatetime | None = None
    resolution: str | None = None
    verified: bool | None = None
    summary: str = ""
    recurrences: int = 0
    remediation: str = ""
    pending_approvals: list[str] = Field(default_factory=list)


class WhoAmI(View):
    """The authenticated user."""

    name: str
    roles: list[str]


class AcknowledgementView(View):
    """A recorded acknowledgement."""

    incident_id: str
    acknowledged_by: str
    acknowledged_at: AwareDatetime
    event_id: str


class ResolutionView(View):
    """A recorded manual resolution."""

    incident_id: str
    resolved_by: str
    resolution: str
    verified: bool
    summary: str
    resolved_at: AwareDatetime
    event_id: str


def approval_view(record: ApprovalRecord, board: ResponseBoard, now: datetime) -> ApprovalView:
    """The view of one approval request (whose approval.requested is known)."""
    request = record.request
    if request is None:
        raise ValueError(f"approval {record.request_id} has no request yet")
    incident = board.incident(request.incident_id or "")
    try:
        policy_risk: RiskTier | None = effective_risk(request)
    except UnknownRunbook:
        policy_risk = None
    decision = None
    if record.decision is not None:
        decision = DecisionView(
            outcome="granted" if isinstance(record.decision, ApprovalGranted) else "denied",
            approver=record.decision.approver,
            comment=record.decision.comment,
            decided_at=record.decision.occurred_at,
            event_id=record.decision.event_id,
        )
    return ApprovalView(
        request_id=request.request_id,
        status=record.status(now),
        incident_id=request.incident_id or "",
        incident_title=incident.title if incident else "",
        severity=incident.severity if incident else None,
        run_id=request.run_id,
        runbook=request.action.runbook,
        parameters=dict(request.action.parameters),
        target=request.action.target,
        service=request.service,
        risk=request.risk,
        policy_risk=policy_risk,
        rationale=request.rationale,
        expected_impact=request.expected_impact,
        rollback_plan=request.rollback_plan,
        requested_by=request.requested_by,
        requested_at=request.occurred_at,
        expires_at=request.expires_at,
        expires_in_s=max((request.expires_at - now).total_seconds(), 0.0),
        decision=decision,
        run_status=record.run_status,
        run_detail=record.run_detail,
    )


def incident_view(record: IncidentRecord, board: ResponseBoard, now: datetime) -> IncidentView:
    """The view of one incident."""
    ack, resolved = record.acknowledged, record.resolved
    is_resolved = record.status is IncidentStatus.RESOLVED
    pending = [
        rid for rid in record.approvals
        if (a := board.approvals.get(rid)) is not None and a.status(now) is ApprovalStatus.PENDING
    ]
    return IncidentView(
        incident_id=record.incident_id,
        title=record.title,
        status=record.status,
        severity=record.severity,
        severity_label=record.severity.label if record.severity else None,
        services=list(record.services),
        phase=record.phase,
        customer_impact=record.customer_impact,
        opened_at=record.opened_at,
        acknowledged_by=ack.acknowledged_by if ack else None,
        acknowledged_at=ack.occurred_at if ack else None,
        resolved_by=resolved.resolved_by if resolved and is_resolved else None,
        resolved_at=resolved.occurred_at if resolved and is_resolved else None,
        resolution=resolved.resolution if resolved and is_resolved else None,
        verified=resolved.verified if resolved and is_resolved else None,
        summary=resolved.summary if resolved and is_resolved else "",
        recurrences=record.recurrences,
        remediation=record.remediation,
        pending_approvals=pending,
    )
