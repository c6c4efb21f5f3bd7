"""The escalation state of every incident, as a projection of events.

Nothing here is remembered that the event log does not say: open time and
severity come from triage's events, acknowledgement and resolution from theirs,
the tiers reached, pages delivered and status updates posted from this service's
own outputs. Rebuilding the book by replaying those topics at start-up therefore
restores every deadline (they are computed from these facts, see `decisions`) and
every idempotency record, which is what makes a restart neither lose a pending
escalation nor page anyone twice.

Design decisions:

- `apply` is idempotent on `event_id` and as insensitive to order as it can be:
  the replay orders events of several topics by `occurred_at`, which comes from
  several producers' clocks. The tier is the highest tier reached, deliveries
  keep the highest attempt and any success, and an immediate trigger whose cause
  already led to an escalation is never queued again (`consumed_causes`).
- Immediate triggers (severity increase, new services, failed remediation, data
  loss or security risk) are queued as `PendingTrigger`s keyed by the event that
  caused them and the trigger kind; the escalation they lead to carries that
  event as its `causation_id` and the kind as its `trigger`, which is how the
  queue entry is consumed, live or in a replay.
- A severity increase or new services before the first page are not triggers:
  the first page simply carries the latest facts. Data-loss and security flags
  and failed remediations do count from the start: they must reach beyond the
  first tier even when known at open.
- Data loss and security risk are recognised in classification reasons and in
  incident-update details (the event contract has no label map on incidents);
  each escalates once per incident. A runbook run escalates once, whether it is
  reported as failed, rolled back, or both.
- Events of this service's output topics from another producer are ignored: only
  what this service decided is its memory.
- Memory is bounded: an incident resolved, announced and with nothing left to
  send is forgotten after a retention period (`EscalationFlow.prune`), and late
  events of a forgotten incident are ignored; the event ids applied are kept in a
  bounded set, as triage keeps them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.domain import IncidentPhase, Severity
from shared.events import (
    EscalationTriggered,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    NotificationSent,
    RunbookFailed,
    RunbookRolledBack,
    StatusUpdated,
)
from shared.kafka import BoundedSet

MAX_REMEMBERED_EVENTS = 200_000
MAX_FORGOTTEN_INCIDENTS = 100_000

TriggerKind = Literal[
    "initial", "ack_timeout", "tier_timer", "severity_increase", "new_services",
    "remediation_failed", "data_loss", "security_risk", "manual",
]

# Triage words these as "label data_loss forces SEV0 (data loss risk)" and "... (security
# breach)"; the patterns are narrow so a service merely named "security-gateway" does not page.
_DATA_LOSS = re.compile(r"data[\s_-]*(loss|lost|corrupt)", re.IGNORECASE)
_SECURITY = re.compile(
    r"security[\s_-]*(breach|risk|incident)|\bbreach(ed)?\b|intrusion|compromised",
    re.IGNORECASE,
)


def risk_flags(texts: tuple[str, ...] | list[str]) -> list[TriggerKind]:
    """The immediate-escalation flags (data loss, security risk) named in texts."""
    joined = " ".join(texts)
    flags: list[TriggerKind] = []
    if _DATA_LOSS.search(joined):
        flags.append("data_loss")
    if _SECURITY.search(joined):
        flags.append("security_risk")
    return flags


@dataclass
class TierReached:
    """A tier the incident was escalated to, and who was paged."""

    tier: int
    reached_at: datetime
    trigger: str
    roles: tuple[str, ...]
    targets: tuple[str, ...]
    event_id: str
    reason: str = ""


@dataclass
class PendingTrigger:
    """An immediate-escalation cause waiting to be acted on."""

    cause_id: str
    trigger: TriggerKind
    reason: str
    at: datetime | None = None


@dataclass
class Delivery:
    """What the log says about one idempotency key."""

    delivered: bool = False
    attempts: int = 0
    last_attempt_at: datetime | None = None
    error: str | None = None


@dataclass
class StatusPost:
    """A status update this service published (kept to post it to stakeholders)."""

    event_id: str
    sequence: int
    occurred_at: datetime
    phase: IncidentPhase
    text: str
    resolution: bool = False


@dataclass
class IncidentEscalation:
    """Everything the escalation service knows about one incident."""

    incident_id: str
    correlation_id: str = ""
    opened_at: datetime | None = None
    opened_event_id: str | None = None
    title: str = ""
    services: list[str] = field(default_factory=list)
    recurrence_of: str | None = None
    severity: Severity | None = None
    reasons: tuple[str, ...] = ()
    customer_impact: str = ""
    classified_event_id: str | None = None
    explicit_phase: IncidentPhase | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_event_id: str | None = None
    resolved_by: str = ""
    resolution: str = ""
    resolution_verified: bool = False
    resolution_summary: str = ""
    last_remediation_failure: str = ""
    tiers: dict[int, TierReached] = field(default_factory=dict)
    pending: list[PendingTrigger] = field(default_factory=list)
    consumed_causes: set[tuple[str, str]] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)
    failed_runs: set[str] = field(default_factory=set)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    posts: dict[int, StatusPost] = field(default_factory=dict)

    @property
    def tier(self) -> int:
        """Highest tier reached (0 before the first page)."""
        return max(self.tiers, default=0)

    @property
    def is_open(self) -> bool:
        """Opened and not resolved."""
        return self.opened_at is not None and self.resolved_at is None

    @property
    def acknowledged(self) -> bool:
        """True once a human acknowledged."""
        return self.acknowledged_at is not None

    @property
    def status_sequence(self) -> int:
        """Sequence number of the last status update (0 before the first)."""
        return max(self.posts, default=0)

    @property
    def last_status_at(self) -> datetime | None:
        """When the last status update was posted."""
        return self.posts[self.status_sequence].occurred_at if self.posts else None

    @property
    def resolution_post(self) -> StatusPost | None:
        """The final status update announcing resolution, once posted."""
        return next((p for p in self.posts.values() if p.resolution), None)

    @property
    def phase(self) -> IncidentPhase:
        """The lifecycle phase: as announced by triage, else inferred from what happened."""
        if self.resolved_at is not None:
            return IncidentPhase.RESOLVED
        if self.explicit_phase is not None:
            return self.explicit_phase
        if self.tier == 0:
            return IncidentPhase.TRIAGE
        return IncidentPhase.INVESTIGATION if self.acknowledged else IncidentPhase.NOTIFICATION

    def queue(self, cause_id: str, trigger: TriggerKind, reason: str,
              at: datetime | None = None) -> None:
        """Queue an immediate escalation unless its cause was already escalated."""
        if (cause_id, trigger) in self.consumed_causes:
            return
        if any(p.cause_id == cause_id and p.trigger == trigger for p in self.pending):
            return
        self.pending.append(PendingTrigger(cause_id, trigger, reason, at))


class EscalationBook:
    """The projection: incident id -> IncidentEscalation."""

    def __init__(self, service: str = "escalation") -> None:
        self.service = service
        self.incidents: dict[str, IncidentEscalation] = {}
        self._applied = BoundedSet(MAX_REMEMBERED_EVENTS)
        self._forgotten = BoundedSet(MAX_FORGOTTEN_INCIDENTS)

    def get(self, incident_id: str) -> IncidentEscalation | None:
        """The incident's state, or None when no event named it."""
        return self.incidents.get(incident_id)

    def forget(self, incident_id: str) -> None:
        """Drop an incident for good: its later events are ignored (see `EscalationFlow.prune`)."""
        if self.incidents.pop(incident_id, None) is not None:
            self._forgotten.add(incident_id)

    def active(self) -> list[IncidentEscalation]:
        """Incidents a deadline or a delivery may still concern."""
        return [i for i in self.incidents.values() if i.opened_at is not None]

    def apply(self, event: Event) -> IncidentEscalation | None:
        """Fold one event into the book; returns the incident it concerned (None if ignored)."""
        if event.incident_id is None or event.incident_id in self._forgotten:
            return None
        if isinstance(event, EscalationTriggered | NotificationSent | StatusUpdated) and (
            event.producer != self.service
        ):
            return None
        incident = self.incidents.get(event.incident_id)
        if incident is None:
            incident = IncidentEscalation(event.incident_id, correlation_id=event.correlation_id)
            self.incidents[event.incident_id] = incident
        if event.event_id in self._applied:
            return incident
        self._applied.add(event.event_id)
        _APPLY.get(type(event), _ignore)(incident, event)
        return incident


def _ignore(incident: IncidentEscalation, event: Event) -> None:
    """Events this service does not read (tolerant reader)."""


def _merge_services(incident: IncidentEscalation, services: tuple[str, ...]) -> list[str]:
    new = [s for s in dict.fromkeys(services) if s not in incident.services]
    incident.services.extend(new)
    return new


def _flag(incident: IncidentEscalation, event: Event, texts: tuple[str, ...]) -> None:
    for flag in risk_flags(texts):
        if flag not in incident.flags:
            incident.flags.add(flag)
            label = "data loss" if flag == "data_loss" else "security risk"
            evidence = next((t for t in texts if risk_flags((t,))), "")
            incident.queue(event.event_id, flag, f"{label} detected: {evidence}")


def _severity(incident: IncidentEscalation, event: Event, severity: Severity) -> None:
    """Take a worse severity (a rise after the first page is escalated); ignore a milder one.

    Triage never lowers severity while an incident is open, and it reports each
    rise twice (`incident.classified` and `incident.updated(severity_changed)`),
    which arrive on different topics in either order; a milder value is such an
    echo, arriving late, and must neither lower the severity nor make the next
    echo look like a new rise.
    """
    previous = incident.severity
    if previous is not None and not severity.is_worse_than(previous):
        return
    incident.severity = severity
    if previous is not None and incident.tier >= 1:
        incident.queue(event.event_id, "severity_increase",
                       f"severity increased from {previous} to {severity}", event.occurred_at)


def _opened(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, IncidentOpened)
    if incident.opened_at is None or event.occurred_at < incident.opened_at:
        incident.opened_at = event.occurred_at
        incident.opened_event_id = event.event_id
    incident.correlation_id = event.correlation_id
    incident.title = incident.title or event.title
    incident.recurrence_of = getattr(event, "recurrence_of", None) or incident.recurrence_of
    _merge_services(incident, event.services)


def _classified(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, IncidentClassified)
    _severity(incident, event, event.severity)
    incident.reasons = event.reasons
    incident.customer_impact = event.customer_impact or incident.customer_impact
    incident.classified_event_id = incident.classified_event_id or event.event_id
    _merge_services(incident, event.services)
    _flag(incident, event, event.reasons)


def _updated(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, IncidentUpdated)
    if event.change == "service_added":
        new = _merge_services(incident, event.new_services or event.services)
        if new and incident.tier >= 1:
            incident.queue(event.event_id, "new_services",
                           f"newly involved services: {', '.join(new)}", event.occurred_at)
    else:
        _merge_services(incident, event.services)
    if event.change == "severity_changed" and event.severity is not None:
        _severity(incident, event, event.severity)
    if event.change == "phase_changed" and event.phase is not None:
        incident.explicit_phase = event.phase
    if event.detail:
        _flag(incident, event, (event.detail,))


def _acknowledged(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, IncidentAcknowledged)
    if incident.acknowledged_at is None:
        incident.acknowledged_at = event.occurred_at
        incident.acknowledged_by = event.acknowledged_by


def _resolved(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, IncidentResolved)
    if incident.resolved_at is None:
        incident.resolved_at = event.occurred_at
        incident.resolved_event_id = event.event_id
        incident.resolved_by = event.resolved_by
        incident.resolution = event.resolution
        incident.resolution_verified = event.verified
        incident.resolution_summary = event.summary


def _remediation_failed(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, RunbookFailed | RunbookRolledBack)
    if isinstance(event, RunbookFailed) and event.step == "approval":
        # An approval request that expired unanswered: nothing ran, so no remediation
        # failed. Nobody answering is the ack timers' business, not an escalation cause.
        return
    if event.run_id in incident.failed_runs:
        return
    incident.failed_runs.add(event.run_id)
    what = "failed" if isinstance(event, RunbookFailed) else "was rolled back"
    reason = f"runbook {event.action.runbook} on {event.action.target} {what}: {event.reason}"
    incident.last_remediation_failure = reason
    incident.queue(event.event_id, "remediation_failed", reason)


def _escalated(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, EscalationTriggered)
    incident.tiers.setdefault(event.tier, TierReached(
        tier=event.tier, reached_at=event.occurred_at, trigger=event.trigger,
        roles=event.roles, targets=event.targets, event_id=event.event_id, reason=event.reason,
    ))
    if event.causation_id:
        done = (event.causation_id, event.trigger)
        incident.consumed_causes.add(done)
        incident.pending = [p for p in incident.pending if (p.cause_id, p.trigger) != done]


def _notified(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, NotificationSent)
    record = incident.deliveries.setdefault(event.idempotency_key, Delivery())
    record.delivered = record.delivered or event.delivered
    if event.attempts >= record.attempts:
        record.attempts = event.attempts
        record.error = None if event.delivered else event.error
    if record.last_attempt_at is None or event.occurred_at > record.last_attempt_at:
        record.last_attempt_at = event.occurred_at


def _status(incident: IncidentEscalation, event: Event) -> None:
    assert isinstance(event, StatusUpdated)
    incident.posts.setdefault(event.sequence, StatusPost(
        event_id=event.event_id, sequence=event.sequence, occurred_at=event.occurred_at,
        phase=event.phase, text=event.text, resolution=event.phase is IncidentPhase.RESOLVED,
    ))


_APPLY = {
    IncidentOpened: _opened,
    IncidentClassified: _classified,
    IncidentUpdated: _updated,
    IncidentAcknowledged: _acknowledged,
    IncidentResolved: _resolved,
    RunbookFailed: _remediation_failed,
    RunbookRolledBack: _remediation_failed,
    EscalationTriggered: _escalated,
    NotificationSent: _notified,
    StatusUpdated: _status,
}
