"""What leaves the service: deterministic ids and keys, page and status texts.

Identity: every id is derived from what makes the thing unique, so a handler or
a tick that runs twice (redelivery, restart) produces the same id and the bus or
the projection recognises the repeat.

- escalation.triggered: (incident, tier). An incident reaches a tier once.
- page: (incident, tier, person, channel); resolution notice: (incident, the
  resolution event, person, channel); stakeholder post: (the status event).
  That key is the `Idempotency-Key` header of a webhook call and the Message-ID
  of an e-mail, so a receiver can drop the rare duplicate sent when the service
  died between sending and recording.
- notification.sent: (key, attempt number): one event per attempt, the failed
  ones with `delivered=false`.
- status.updated: (incident, sequence); the final one: (incident, "resolved",
  resolution event).

Texts follow the seeds: the interim update is seed 000's abbreviated format, the
resolution notice seed 003's template, which is only claimed ("operating
normally") when the resolution says recovery was verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from services.escalation.schedule import EscalationRole
from services.escalation.state import IncidentEscalation, TierReached
from shared.domain import IncidentPhase, Severity
from shared.events import derive_event_id


def escalation_event_id(incident_id: str, tier: int) -> str:
    """Event id of the escalation of incident to tier."""
    return derive_event_id("escalation.triggered", incident_id, tier)


def page_key(incident_id: str, tier: int, person: str, channel: str) -> str:
    """Idempotency key of the page of person on channel at tier."""
    return derive_event_id("page", incident_id, tier, person, channel)


def resolution_key(incident_id: str, resolved_event_id: str, person: str, channel: str) -> str:
    """Idempotency key of the resolution notice to person on channel."""
    return derive_event_id("resolution", incident_id, resolved_event_id, person, channel)


def stakeholder_key(status_event_id: str) -> str:
    """Idempotency key of posting a status update to the stakeholder channel."""
    return derive_event_id("stakeholder-post", status_event_id)


def notification_event_id(idempotency_key: str, attempt: int) -> str:
    """Event id of the notification.sent recording one attempt."""
    return derive_event_id("notification.sent", idempotency_key, attempt)


def status_event_id(incident_id: str, sequence: int) -> str:
    """Event id of the interim status update number sequence."""
    return derive_event_id("status.updated", incident_id, sequence)


def resolution_status_event_id(incident_id: str, resolved_event_id: str) -> str:
    """Event id of the final status update announcing a resolution."""
    return derive_event_id("status.updated", incident_id, "resolved", resolved_event_id)


def incident_link(ui_url: str, incident_id: str) -> str:
    """The approval page, which lists the incident (acknowledge, approve, resolve)."""
    return f"{ui_url.rstrip('/')}/#{quote(incident_id, safe='')}"


def ack_url(ui_url: str, incident_id: str) -> str:
    """The approval API's acknowledgement endpoint for the incident."""
    return f"{ui_url.rstrip('/')}/api/incidents/{quote(incident_id, safe='')}/acknowledge"


def format_elapsed(elapsed: timedelta) -> str:
    """An elapsed time as HH:MM:SS."""
    seconds = max(int(elapsed.total_seconds()), 0)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_clock(at: datetime) -> str:
    """A point in time as HH:MM:SS UTC."""
    return at.strftime("%H:%M:%S UTC")


def severity_text(severity: Severity | None) -> str:
    """`SEV1 (High)`, or a clear placeholder before classification."""
    return f"{severity} ({severity.label})" if severity else "unclassified (treated as SEV1)"


def roles_text(roles: tuple[str, ...]) -> str:
    """Role names as prose: `senior on-call + team lead`."""
    words = [EscalationRole(r).wording if r in _ROLE_VALUES else r.replace("_", " ")
             for r in roles]
    return " + ".join(words) or "fallback responders"


_ROLE_VALUES = {r.value for r in EscalationRole}


@dataclass(frozen=True)
class Message:
    """Rendered content of one outbound notification."""

    subject: str
    text: str
    payload: dict[str, Any]


def ack_instructions(ui_url: str, incident_id: str) -> str:
    """How a paged human acknowledges (which stops further escalation)."""
    return (f"To stop further escalation, acknowledge: press Acknowledge on the approval page "
            f"{incident_link(ui_url, incident_id)}, or POST {ack_url(ui_url, incident_id)} "
            "with your approver token.")


def render_page(
    incident: IncidentEscalation, reached: TierReached, *, recipient: str, ui_url: str,
    idempotency_key: str,
) -> Message:
    """The page sent to recipient when the incident reached a tier."""
    link = incident_link(ui_url, incident.incident_id)
    severity = severity_text(incident.severity)
    services = ", ".join(incident.services) or "unknown"
    reasons = "; ".join(incident.reasons) or "not classified yet"
    lines = [
        f"INCIDENT {incident.incident_id}: you are paged at escalation tier {reached.tier} "
        f"({roles_text(reached.roles)}).",
        f"Title: {incident.title}",
        f"Severity: {severity}",
        f"Reasons: {reasons}",
        f"Services: {services}",
    ]
    if incident.customer_impact:
        lines.append(f"Customer impact: {incident.customer_impact}")
    if incident.recurrence_of:
        lines.append(f"Recurrence of {incident.recurrence_of}, which was resolved earlier: "
                     "the previous fix did not hold.")
    lines += [
        f"Why now: {reached.trigger.replace('_', ' ')}" + (
            f" ({reached.reason})" if reached.reason else ""),
        f"Approval page: {link}",
        ack_instructions(ui_url, incident.incident_id),
    ]
    if incident.acknowledged:
        lines.append(f"Already acknowledged by {incident.acknowledged_by}; you are informed "
                     "because the incident escalated further.")
    subject = (f"[{incident.severity or 'SEV?'}] {incident.incident_id} tier {reached.tier}: "
               f"{incident.title}")
    payload: dict[str, Any] = {
        "kind": "page",
        "idempotency_key": idempotency_key,
        "incident_id": incident.incident_id,
        "title": incident.title,
        "severity": incident.severity.value if incident.severity else None,
        "reasons": list(incident.reasons),
        "services": list(incident.services),
        "tier": reached.tier,
        "roles": list(reached.roles),
        "trigger": reached.trigger,
        "reason": reached.reason,
        "recipient": recipient,
        "link": link,
        "ack_instructions": ack_instructions(ui_url, incident.incident_id),
        "recurrence_of": incident.recurrence_of,
        "text": "\n".join(lines),
    }
    return Message(subject=subject, text=payload["text"], payload=payload)


_CURRENT_ACTION = {
    IncidentPhase.TRIAGE: "Classifying severity and blast radius",
    IncidentPhase.NOTIFICATION: "Paging responders",
    IncidentPhase.INVESTIGATION: "Investigating logs, metrics and recent changes",
    IncidentPhase.REMEDIATION: "Running the remediation runbook",
    IncidentPhase.VERIFICATION: "Verifying recovery",
    IncidentPhase.RESOLVED: "Resolved",
}

_NEXT_PHASE_STEP = {
    IncidentPhase.TRIAGE: "Page the on-call engineer",
    IncidentPhase.NOTIFICATION: "Start the investigation",
    IncidentPhase.INVESTIGATION: "Identify the root cause and propose a runbook",
    IncidentPhase.REMEDIATION: "Verify recovery after the runbook",
    IncidentPhase.VERIFICATION: "Confirm metrics at baseline, then resolve",
    IncidentPhase.RESOLVED: "Post-incident review within 48 h",
}


@dataclass(frozen=True)
class StatusReport:
    """The fields of an interim status update, and its rendered text."""

    phase: IncidentPhase
    elapsed: timedelta
    current_action: str
    next_step: str
    escalation: str
    text: str


def render_status(
    incident: IncidentEscalation, *, now: datetime, next_escalation: tuple[int, datetime] | None,
    next_update_at: datetime | None,
) -> StatusReport:
    """The interim status update in seed 000's format."""
    phase = incident.phase
    elapsed = now - (incident.opened_at or now)
    tier = incident.tier
    tier_roles = incident.tiers[tier].roles if tier else ()
    current = _CURRENT_ACTION[phase]
    if incident.last_remediation_failure and phase is not IncidentPhase.RESOLVED:
        current += f"; last remediation: {incident.last_remediation_failure}"
    if incident.acknowledged:
        current += f" (acknowledged by {incident.acknowledged_by})"
    elif tier:
        current += f"; awaiting acknowledgement from tier {tier}"
    if next_escalation is not None:
        nxt_tier, at = next_escalation
        next_step = f"Escalate to tier {nxt_tier} at {format_clock(at)} unless acknowledged"
    else:
        next_step = _NEXT_PHASE_STEP[phase]
    if next_update_at is not None:
        next_step += f"; next update at {format_clock(next_update_at)}"
    if not tier:
        escalation = "not paged yet"
    else:
        escalation = f"tier {tier} ({roles_text(tier_roles)})"
        if incident.acknowledged:
            escalation += "; acknowledged, escalation timers stopped"
        elif next_escalation is not None:
            escalation += f"; tier {next_escalation[0]} at {format_clock(next_escalation[1])}"
        else:
            escalation += "; highest tier reached"
    text = "\n".join([
        "=== INCIDENT STATUS UPDATE ===",
        f"Incident ID: {incident.incident_id}",
        f"Severity: {severity_text(incident.severity)}",
        f"Status: {phase.value}",
        f"Elapsed Time: {format_elapsed(elapsed)}",
        f"Current Action: {current}",
        f"Next Step: {next_step}",
        f"Escalation: {escalation}",
        "=== END UPDATE ===",
    ])
    return StatusReport(phase=phase, elapsed=elapsed, current_action=current,
                        next_step=next_step, escalation=escalation, text=text)


def render_resolution(incident: IncidentEscalation, *, now: datetime) -> StatusReport:
    """The resolution notice (seed 003), honest about whether recovery was verified."""
    resolved_at = incident.resolved_at or now
    elapsed = resolved_at - (incident.opened_at or resolved_at)
    if incident.resolution_verified:
        outcome = "Recovery was verified: all services are operating normally."
    else:
        outcome = (f"Resolved {incident.resolution.replace('_', ' ')} by "
                   f"{incident.resolved_by}; recovery was not verified by the orchestrator.")
    current = f"Resolved by {incident.resolved_by} ({incident.resolution})"
    next_step = _NEXT_PHASE_STEP[IncidentPhase.RESOLVED]
    escalation = f"stopped at tier {incident.tier}" if incident.tier else "nobody was paged"
    lines = [
        "=== INCIDENT RESOLVED ===",
        f"Incident ID: {incident.incident_id}",
        f"Severity: {severity_text(incident.severity)}",
        f"Title: {incident.title}",
        f"Duration: {format_elapsed(elapsed)}",
        outcome,
    ]
    if incident.resolution_summary:
        lines.append(f"Summary: {incident.resolution_summary}")
    lines += [
        "We apologize for any inconvenience.",
        f"Next Step: {next_step}",
        f"Escalation: {escalation}",
        "=== END UPDATE ===",
    ]
    return StatusReport(phase=IncidentPhase.RESOLVED, elapsed=elapsed, current_action=current,
                        next_step=next_step, escalation=escalation, text="\n".join(lines))


def render_post(
    incident: IncidentEscalation, *, kind: str, text: str, sequence: int, idempotency_key: str,
    recipient: str,
) -> Message:
    """A status update or resolution notice as a notification."""
    title = "resolved" if kind == "resolution" else f"status update #{sequence}"
    subject = f"[{incident.severity or 'SEV?'}] {incident.incident_id} {title}: {incident.title}"
    payload: dict[str, Any] = {
        "kind": kind,
        "idempotency_key": idempotency_key,
        "incident_id": incident.incident_id,
        "severity": incident.severity.value if incident.severity else None,
        "sequence": sequence,
        "recipient": recipient,
        "text": text,
    }
    return Message(subject=subject, text=text, payload=payload)
