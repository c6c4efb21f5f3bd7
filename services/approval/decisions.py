"""The rules of a human decision: who may approve, deny, acknowledge or resolve, and when.

Pure functions over the projection (`board.py`): they return the event to
publish or raise `DecisionRefused` with the reason and the HTTP-like kind. No
Kafka, no HTTP, time comes in as `now`.

Design decisions:

- Approve checks, in order: the request exists; it is undecided and no other
  decision on it is in flight; it has not expired; its incident is not already
  resolved; the approver is not the requester; the runbook is in the risk
  policy; the approver holds a role that `ApprovalPolicy.roles_allowed`
  grants for the request's service and tier. Only then is a token signed.
- The tier used is the stricter of the request's tier and the policy table's
  tier for the runbook: the request is only a message, the policy table is the
  source of truth (ARCHITECTURE.md, safety model).
- The token carries only the approver's roles that are allowed for this
  action, and expires at the request's expiry or after the token lifetime,
  whichever is sooner. The executor re-verifies all of it with the public key.
- Denying needs the same role as approving (a viewer must not be able to
  block remediation), but the requester may deny its own request: a denial
  can only stop an action, never start one.
- One decision per request: granted and denied share the event id
  `derive_event_id(request_id, "decision")`, so a double click, a retry or a
  second replica cannot produce two different decisions that both count.
- Acknowledging and resolving need a role whose scope covers one of the
  incident's services (the role's approval tier does not matter): a viewer or
  a service account cannot close someone's incident.
- A manual resolution is recorded as such (`resolution="manual"`) with a
  mandatory summary, and `verified=False` unless the human states that
  recovery was verified: DOMAIN.md says an incident is not closed until
  recovery is verified, so downstream services can tell the two apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.approval.approvers import Approver
from services.approval.board import ApprovalRecord, IncidentRecord, IncidentStatus
from shared.approval_token import ApprovalClaims, action_digest, sign_approval
from shared.domain import RiskTier
from shared.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    IncidentAcknowledged,
    IncidentResolved,
    derive_event_id,
)
from shared.policy import ApprovalPolicy, UnknownRunbook, risk_of

PRODUCER = "approval"
_RISK_ORDER = {RiskTier.LOW: 0, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


class RefusalKind(StrEnum):
    """Why a decision was refused, as the HTTP status a client sees."""

    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    EXPIRED = "expired"
    INVALID = "invalid"

    @property
    def http_status(self) -> int:
        """The HTTP status code of this refusal."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.CONFLICT: 409,
    RefusalKind.EXPIRED: 410,
    RefusalKind.INVALID: 422,
}


@dataclass(frozen=True)
class Subject:
    """What a refused decision was about, for the audit event."""

    incident_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class DecisionRefused(Exception):  # noqa: N818 - a domain outcome, like ApprovalRejected
    """A human decision that the rules do not allow; `reason` is shown to the human."""

    def __init__(self, kind: RefusalKind, reason: str, subject: Subject | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.subject = subject or Subject()


@dataclass(frozen=True)
class SigningAuthority:
    """What the service needs to sign approvals: role table, private key, token lifetime."""

    policy: ApprovalPolicy
    private_key: Ed25519PrivateKey
    token_ttl: timedelta
    new_token_id: Callable[[], str] = lambda: str(uuid.uuid4())


def decision_event_id(request_id: str) -> str:
    """The one event id any decision (grant or denial) on request_id carries."""
    return derive_event_id(request_id, "decision")


def acknowledgement_event_id(incident_id: str, user: str) -> str:
    """The event id of user's acknowledgement of incident_id."""
    return derive_event_id(incident_id, user, "acknowledged")


def manual_resolution_event_id(incident_id: str, recurrences: int) -> str:
    """The event id of the manual resolution of one episode of incident_id."""
    return derive_event_id(incident_id, "manual_resolution", recurrences)


def effective_risk(request: ApprovalRequested) -> RiskTier:
    """The stricter of the request's tier and the policy table's tier for its runbook."""
    policy_risk = risk_of(request.action.runbook)
    return max(policy_risk, request.risk, key=_RISK_ORDER.__getitem__)


def grant_approval(
    record: ApprovalRecord | None,
    *,
    approver: Approver,
    comment: str,
    authority: SigningAuthority,
    incident: IncidentRecord | None,
    in_flight: bool,
    now: datetime,
) -> ApprovalGranted:
    """The signed approval.granted for record, or DecisionRefused with the reason."""
    request = _open_request(record, in_flight=in_flight, now=now)
    subject = _request_subject(request)
    if incident is not None and incident.status is IncidentStatus.RESOLVED:
        raise DecisionRefused(
            RefusalKind.CONFLICT,
            f"incident {request.incident_id} is already resolved; request a new approval "
            "if the action is still needed",
            subject,
        )
    if _same_person(approver.name, request.requested_by):
        raise DecisionRefused(
            RefusalKind.FORBIDDEN,
            f"self-approval refused: {approver.name} requested this action",
            subject,
        )
    try:
        risk = effective_risk(request)
    except UnknownRunbook as exc:
        raise DecisionRefused(RefusalKind.INVALID, str(exc), subject) from exc
    roles = _roles_for(approver, request, risk, authority.policy, verb="approve", subject=subject)
    claims = ApprovalClaims(
        token_id=authority.new_token_id(),
        request_id=request.request_id,
        incident_id=request.incident_id or "",
        action_digest=action_digest(request.action, request.incident_id or ""),
        service=request.service,
        risk=risk,
        approver=approver.name,
        approver_roles=roles,
        requested_by=request.requested_by,
        issued_at=now,
        expires_at=min(request.expires_at, now + authority.token_ttl),
    )
    return ApprovalGranted(
        event_id=decision_event_id(request.request_id),
        occurred_at=now,
        producer=PRODUCER,
        **request.caused(),
        request_id=request.request_id,
        approver=approver.name,
        comment=comment,
        token=sign_approval(claims, authority.private_key),
    )


def deny_approval(
    record: ApprovalRecord | None,
    *,
    approver: Approver,
    comment: str,
    policy: ApprovalPolicy,
    in_flight: bool,
    now: datetime,
) -> ApprovalDenied:
    """The approval.denied for record, or DecisionRefused with the reason."""
    request = _open_request(record, in_flight=in_flight, now=now)
    subject = _request_subject(request)
    try:
        risk = effective_risk(request)
    except UnknownRunbook:
        risk = request.risk
    if not _same_person(approver.name, request.requested_by):
        _roles_for(approver, request, risk, policy, verb="deny", subject=subject)
    return ApprovalDenied(
        event_id=decision_event_id(request.request_id),
        occurred_at=now,
        producer=PRODUCER,
        **request.caused(),
        request_id=request.request_id,
        approver=approver.name,
        comment=comment,
    )


def acknowledge_incident(
    incident: IncidentRecord | None,
    *,
    approver: Approver,
    comment: str,
    via: str,
    policy: ApprovalPolicy,
    in_flight: bool,
    now: datetime,
) -> IncidentAcknowledged:
    """The incident.acknowledged for incident, or DecisionRefused with the reason."""
    record = _responder_check(incident, approver=approver, policy=policy, verb="acknowledge")
    subject = _incident_subject(record)
    if record.acknowledged is not None:
        raise DecisionRefused(
            RefusalKind.CONFLICT,
            f"incident {record.incident_id} was already acknowledged by "
            f"{record.acknowledged.acknowledged_by} at {_at(record.acknowledged.occurred_at)}",
            subject,
        )
    if in_flight:
        raise DecisionRefused(
            RefusalKind.CONFLICT, "an acknowledgement of this incident is being recorded", subject
        )
    return IncidentAcknowledged(
        event_id=acknowledgement_event_id(record.incident_id, approver.name),
        occurred_at=now,
        producer=PRODUCER,
        incident_id=record.incident_id,
        correlation_id=record.correlation_id or record.incident_id,
        causation_id=record.last_event_id,
        acknowledged_by=approver.name,
        via=via,
        comment=comment,
    )


def resolve_incident_manually(
    incident: IncidentRecord | None,
    *,
    approver: Approver,
    summary: str,
    verified: bool,
    policy: ApprovalPolicy,
    in_flight: bool,
    now: datetime,
) -> IncidentResolved:
    """The manual incident.resolved for incident, or DecisionRefused with the reason."""
    record = _responder_check(incident, approver=approver, policy=policy, verb="resolve")
    subject = _incident_subject(record)
    if not summary.strip():
        raise DecisionRefused(
            RefusalKind.INVALID,
            "a manual resolution needs a summary of what fixed the incident",
            subject,
        )
    if in_flight:
        raise DecisionRefused(
            RefusalKind.CONFLICT, "a resolution of this incident is being recorded", subject
        )
    return IncidentResolved(
        event_id=manual_resolution_event_id(record.incident_id, record.recurrences),
        occurred_at=now,
        producer=PRODUCER,
        incident_id=record.incident_id,
        correlation_id=record.correlation_id or record.incident_id,
        causation_id=record.last_event_id,
        resolved_by=approver.name,
        resolution="manual",
        verified=verified,
        summary=summary.strip(),
    )


def refusal_audit(
    refusal: DecisionRefused, *, actor: str, action: str, now: datetime
) -> AuditRecorded | None:
    """The audit.recorded of a refusal; None when no incident is known to key it by."""
    subject = refusal.subject
    if not subject.incident_id:
        return None
    return AuditRecorded(
        occurred_at=now,
        producer=PRODUCER,
        incident_id=subject.incident_id,
        correlation_id=subject.correlation_id or subject.incident_id,
        causation_id=subject.causation_id,
        actor=actor,
        action=action,
        outcome="rejected",
        reason=refusal.reason,
        subject={**subject.details, "refusal": refusal.kind.value,
                 "http_status": refusal.kind.http_status},
    )


# --- helpers -----------------------------------------------------------------


def _open_request(
    record: ApprovalRecord | None, *, in_flight: bool, now: datetime
) -> ApprovalRequested:
    if record is None or record.request is None:
        raise DecisionRefused(RefusalKind.NOT_FOUND, "no such approval request")
    request = record.request
    subject = _request_subject(request)
    if record.decision is not None:
        verb = "granted" if isinstance(record.decision, ApprovalGranted) else "denied"
        raise DecisionRefused(
            RefusalKind.CONFLICT,
            f"request {request.request_id} was already {verb} by {record.decision.approver} "
            f"at {_at(record.decision.occurred_at)}",
            subject,
        )
    if in_flight:
        raise DecisionRefused(
            RefusalKind.CONFLICT, "a decision on this request is being recorded", subject
        )
    if now >= request.expires_at:
        raise DecisionRefused(
            RefusalKind.EXPIRED,
            f"request {request.request_id} expired at {_at(request.expires_at)}",
            subject,
        )
    return request


def _roles_for(
    approver: Approver,
    request: ApprovalRequested,
    risk: RiskTier,
    policy: ApprovalPolicy,
    *,
    verb: str,
    subject: Subject,
) -> tuple[str, ...]:
    allowed = policy.roles_allowed(request.service, risk)
    held = tuple(sorted(r for r in approver.roles if r in allowed))
    if not held:
        raise DecisionRefused(
            RefusalKind.FORBIDDEN,
            f"{approver.name} may not {verb} {risk.value}-risk actions on {request.service}: "
            f"needs one of the roles {', '.join(sorted(allowed)) or '(none configured)'}",
            subject,
        )
    return held


def _responder_check(
    incident: IncidentRecord | None, *, approver: Approver, policy: ApprovalPolicy, verb: str
) -> IncidentRecord:
    if incident is None:
        raise DecisionRefused(RefusalKind.NOT_FOUND, "no such incident")
    subject = _incident_subject(incident)
    if incident.status is IncidentStatus.RESOLVED:
        raise DecisionRefused(
            RefusalKind.CONFLICT, f"incident {incident.incident_id} is already resolved", subject
        )
    if not _may_respond(approver, incident.services, policy):
        scope = ", ".join(incident.services) or "an unknown service"
        raise DecisionRefused(
            RefusalKind.FORBIDDEN,
            f"{approver.name} has no role covering {scope} and may not {verb} this incident",
            subject,
        )
    return incident


def _may_respond(approver: Approver, services: tuple[str, ...], policy: ApprovalPolicy) -> bool:
    for role in approver.roles:
        grant = policy.roles.get(role)
        if grant is None:
            continue
        if "*" in grant.services or set(grant.services) & set(services):
            return True
    return False


def _same_person(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _request_subject(request: ApprovalRequested) -> Subject:
    return Subject(
        incident_id=request.incident_id,
        correlation_id=request.correlation_id,
        causation_id=request.event_id,
        details={
            "request_id": request.request_id,
            "run_id": request.run_id,
            "runbook": request.action.runbook,
            "target": request.action.target,
            "service": request.service,
            "risk": request.risk.value,
            "requested_by": request.requested_by,
        },
    )


def _incident_subject(incident: IncidentRecord) -> Subject:
    return Subject(
        incident_id=incident.incident_id,
        correlation_id=incident.correlation_id or incident.incident_id,
        causation_id=incident.last_event_id,
        details={"incident_id": incident.incident_id, "services": list(incident.services)},
    )


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
