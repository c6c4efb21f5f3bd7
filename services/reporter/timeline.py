"""An incident's timeline folded from its lifecycle events, and the MTTx derived from it.

The report is a pure function of the events: every timestamp in it is an
event's immutable `occurred_at` (or the alert's own first-anomaly time), never
typed in. Folding is idempotent on `event_id`, so a replayed or redelivered
event changes nothing.

MTTx follow DOMAIN.md:
MTTD = first anomaly -> alert received; MTTA = alert -> first acknowledgement;
MTTI = alert -> root cause identified; MTTR = alert -> resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from shared.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    EscalationTriggered,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    InvestigationCompleted,
    NotificationSent,
    ReportPublished,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    RunbookStep,
    StatusUpdated,
)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the timeline: when, what, who."""

    at: datetime
    kind: str
    text: str
    actor: str


@dataclass
class IncidentRecord:
    """Everything the reporter knows about one incident."""

    incident_id: str
    events: dict[str, Event] = field(default_factory=dict)
    # The sorted events until the next fold: every derived fact below reads them,
    # and a report write and each retention check read several facts.
    _ordered: list[Event] | None = field(default=None, init=False, repr=False, compare=False)

    def fold(self, event: Event) -> bool:
        """Add an event; False when it was already folded (or is a report event)."""
        if event.event_id in self.events or isinstance(event, ReportPublished):
            return False
        self.events[event.event_id] = event
        self._ordered = None
        return True

    def ordered(self) -> list[Event]:
        """Events by occurred_at; the opening event first on a tie, else arrival order.

        The list is shared until the next fold: read it, do not change it.
        """
        if self._ordered is None:
            self._ordered = sorted(self.events.values(),
                                   key=lambda e: (e.occurred_at, not isinstance(e, IncidentOpened)))
        return self._ordered

    def first(self, kind: type[E]) -> E | None:
        """The earliest event of a type."""
        return next((e for e in self.ordered() if isinstance(e, kind)), None)

    def all(self, kind: type[E]) -> list[E]:
        """Every event of a type, in time order."""
        return [e for e in self.ordered() if isinstance(e, kind)]

    # --- derived facts ---------------------------------------------------------

    @property
    def opened(self) -> IncidentOpened | None:
        """The opening event."""
        return self.first(IncidentOpened)

    @property
    def classification(self) -> IncidentClassified | None:
        """The latest classification."""
        found = self.all(IncidentClassified)
        return found[-1] if found else None

    @property
    def resolved(self) -> IncidentResolved | None:
        """The resolution, when resolved."""
        return self.first(IncidentResolved)

    @property
    def root_cause(self) -> InvestigationCompleted | None:
        """The investigation that identified the root cause (else the latest one)."""
        found = self.all(InvestigationCompleted)
        identified = [f for f in found if f.root_cause_identified]
        best = identified or found
        return best[0] if best else None

    @property
    def services(self) -> list[str]:
        """Every service involved, in order of appearance."""
        seen: list[str] = []
        for event in self.ordered():
            names: tuple[str, ...] = ()
            if isinstance(event, IncidentOpened | IncidentClassified):
                names = event.services
            elif isinstance(event, IncidentUpdated):
                names = (*event.services, *event.new_services)
            for name in names:
                if name not in seen:
                    seen.append(name)
        return seen

    @property
    def max_tier(self) -> int | None:
        """Highest escalation tier reached."""
        tiers = [e.tier for e in self.all(EscalationTriggered)]
        return max(tiers) if tiers else None

    def metrics(self) -> dict[str, float | None]:
        """MTTD, MTTA, MTTI, MTTR in seconds (None where the moment has not happened)."""
        opened = self.opened
        if opened is None:
            return {"mttd": None, "mtta": None, "mtti": None, "mttr": None}
        alert_at = opened.alert_received_at
        ack = self.first(IncidentAcknowledged)
        cause = self.root_cause
        resolved = self.resolved

        def since(moment: datetime | None) -> float | None:
            return None if moment is None else round((moment - alert_at).total_seconds(), 3)

        mttd = None
        if opened.first_anomaly_at is not None:
            mttd = round(max((alert_at - opened.first_anomaly_at).total_seconds(), 0.0), 3)
        return {
            "mttd": mttd,
            "mtta": since(ack.occurred_at if ack else None),
            "mtti": since(cause.occurred_at if cause and cause.root_cause_identified else None),
            "mttr": since(resolved.occurred_at if resolved else None),
        }

    def timeline(self) -> list[TimelineEntry]:
        """Human-readable timeline of every significant event."""
        out: list[TimelineEntry] = []
        opened = self.opened
        if opened is not None and opened.first_anomaly_at is not None:
            out.append(TimelineEntry(opened.first_anomaly_at, "first_anomaly",
                                     "First anomaly (per the monitoring source)", "monitoring"))
        if opened is not None:
            out.append(TimelineEntry(opened.alert_received_at, "alert",
                                     f"Alert received: {opened.title}", "gateway"))
        for event in self.ordered():
            text = _describe(event)
            if text:
                out.append(TimelineEntry(event.occurred_at, event.event_type, text,
                                         _actor(event)))
        return sorted(out, key=lambda e: e.at)


def _actor(event: Event) -> str:
    for attr in ("acknowledged_by", "resolved_by", "approver"):
        value = getattr(event, attr, None)
        if isinstance(value, str):
            return value
    return event.producer


def _describe(event: Event) -> str | None:  # noqa: PLR0911, PLR0912 - one case per event type
    match event:
        case IncidentOpened():
            return f"Incident opened for {', '.join(event.services)}"
        case IncidentClassified():
            prev = f" (was {event.previous_severity})" if event.previous_severity else ""
            return f"Classified {event.severity}{prev}: {'; '.join(event.reasons)}"
        case IncidentUpdated():
            return f"Updated ({event.change.replace('_', ' ')}) {event.detail}".strip()
        case IncidentAcknowledged():
            return f"Acknowledged by {event.acknowledged_by} via {event.via}"
        case EscalationTriggered():
            who = ", ".join(event.targets) or ", ".join(event.roles)
            return f"Escalated to tier {event.tier} ({event.trigger}): {who}"
        case NotificationSent():
            state = "delivered" if event.delivered else f"FAILED ({event.error})"
            return f"{event.kind.replace('_', ' ').capitalize()} to {event.recipient} " \
                   f"by {event.channel}: {state}"
        case InvestigationCompleted():
            return (f"Investigation: {event.hypothesis} "
                    f"(confidence {event.confidence:.0%})")
        case ApprovalRequested():
            return (f"Approval requested for {event.action.runbook} on {event.action.target} "
                    f"({event.risk})")
        case ApprovalGranted():
            return f"Approved by {event.approver}" + (f": {event.comment}" if event.comment else "")
        case ApprovalDenied():
            return f"Denied by {event.approver}" + (f": {event.comment}" if event.comment else "")
        case RunbookStarted():
            return f"Runbook {event.action.runbook} started on {event.action.target} ({event.risk})"
        case RunbookStep():
            if event.status in ("started",):
                return None
            return f"Step {event.step} ({event.phase}) {event.status}" + (
                f": {event.output}" if event.output else "")
        case RunbookCompleted():
            return f"Runbook {event.action.runbook} completed; {event.verification}".rstrip("; ")
        case RunbookFailed():
            return f"Runbook {event.action.runbook} failed: {event.reason}"
        case RunbookRolledBack():
            return f"Runbook {event.action.runbook} rolled back: {event.reason}"
        case IncidentResolved():
            how = "recovery verified" if event.verified else event.resolution.replace("_", " ")
            return f"Resolved by {event.resolved_by} ({how})" + (
                f": {event.summary}" if event.summary else "")
        case AuditRecorded():
            return f"Audit: {event.action} {event.outcome}: {event.reason}"
        case StatusUpdated():
            return None
    return None
