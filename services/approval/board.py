"""The approval service's projection: approval requests and incidents, rebuilt from events.

Design decisions:

- State is a projection of the lifecycle topics (ARCHITECTURE.md): at start-up
  `bus.restore` replays them into `ResponseBoard.apply`, then the live
  subscription keeps feeding the same method. `apply` is idempotent on
  `event_id`, so the overlap between replay and subscription is harmless.
- Topics are ordered only within themselves, so a decision may arrive before
  its request and a classification before the opening. Records are therefore
  created lazily by whichever event comes first and filled in as the rest
  arrive; nothing is dropped for arriving "early".
- `approval.granted` and `approval.denied` for one request share one event id
  (derived from the request id and "decision"), so the first decision seen
  wins and any later one, even of the other kind, is ignored as a duplicate.
- `apply` never raises: it also runs inside the start-up replay, where one bad
  record must not stop the service. Malformed live input is refused earlier by
  `check`, which the handler calls so the bus can dead-letter it.
- Status that depends on time (an expired request) is computed when read, with
  the injected clock's `now`, never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.domain import IncidentPhase, Severity
from shared.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
)
from shared.kafka import BoundedSet

log = logging.getLogger(__name__)


class InvalidApprovalRequest(ValueError):  # noqa: N818 - names the refused input
    """An approval.requested event the service cannot act on (no incident to bind to)."""


class ApprovalStatus(StrEnum):
    """Where an approval request stands."""

    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    EXPIRED = "expired"


class IncidentStatus(StrEnum):
    """Where an incident stands, as far as humans are concerned."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass
class ApprovalRecord:
    """One approval request, its decision (if any) and what became of its run."""

    request_id: str
    request: ApprovalRequested | None = None
    decision: ApprovalGranted | ApprovalDenied | None = None
    run_status: str | None = None
    run_detail: str = ""

    def status(self, now: datetime) -> ApprovalStatus:
        """Pending, granted, denied, or expired (undecided past its expiry)."""
        if isinstance(self.decision, ApprovalGranted):
            return ApprovalStatus.GRANTED
        if isinstance(self.decision, ApprovalDenied):
            return ApprovalStatus.DENIED
        if self.request is not None and now >= self.request.expires_at:
            return ApprovalStatus.EXPIRED
        return ApprovalStatus.PENDING


@dataclass
class IncidentRecord:
    """What a responder needs to see about one incident."""

    incident_id: str
    title: str = ""
    services: tuple[str, ...] = ()
    severity: Severity | None = None
    phase: IncidentPhase | None = None
    customer_impact: str = ""
    opened_at: datetime | None = None
    correlation_id: str = ""
    last_event_id: str | None = None
    acknowledged: IncidentAcknowledged | None = None
    resolved: IncidentResolved | None = None
    reopened_at: datetime | None = None
    recurrences: int = 0
    remediation: str = ""
    approvals: list[str] = field(default_factory=list)

    @property
    def status(self) -> IncidentStatus:
        """Resolved unless it recurred after the resolution; else acknowledged or open."""
        if self.resolved is not None and (
            self.reopened_at is None or self.resolved.occurred_at >= self.reopened_at
        ):
            return IncidentStatus.RESOLVED
        if self.acknowledged is not None:
            return IncidentStatus.ACKNOWLEDGED
        return IncidentStatus.OPEN

    @property
    def is_open(self) -> bool:
        """True until the incident is resolved."""
        return self.status is not IncidentStatus.RESOLVED


class ResponseBoard:
    """Pending approvals and incidents, as a projection of the event log."""

    def __init__(self) -> None:
        self.approvals: dict[str, ApprovalRecord] = {}
        self.incidents: dict[str, IncidentRecord] = {}
        self._seen = BoundedSet()
        self._run_requests: dict[str, str] = {}

    # --- reading ---------------------------------------------------------------

    def approval(self, request_id: str) -> ApprovalRecord | None:
        """The record of a request whose approval.requested has been seen, or None."""
        record = self.approvals.get(request_id)
        return record if record is not None and record.request is not None else None

    def list_approvals(self, now: datetime, *, pending_only: bool) -> list[ApprovalRecord]:
        """Known requests; pending ones soonest-expiring first, others newest first."""
        records = [r for r in self.approvals.values() if r.request is not None]
        pending = sorted(
            (r for r in records if r.status(now) is ApprovalStatus.PENDING),
            key=lambda r: r.request.expires_at if r.request else now,
        )
        if pending_only:
            return pending
        rest = sorted(
            (r for r in records if r.status(now) is not ApprovalStatus.PENDING),
            key=lambda r: r.request.occurred_at if r.request else now,
            reverse=True,
        )
        return pending + rest

    def incident(self, incident_id: str) -> IncidentRecord | None:
        """The record of an incident, or None when no event named it."""
        return self.incidents.get(incident_id)

    def list_incidents(self, *, open_only: bool) -> list[IncidentRecord]:
        """Incidents, worst severity then oldest first."""
        records = [r for r in self.incidents.values() if r.is_open or not open_only]

        def order(r: IncidentRecord) -> tuple[int, int, float]:
            opened = r.opened_at.timestamp() if r.opened_at else float("inf")
            return (0 if r.is_open else 1, r.severity.rank if r.severity else 5, opened)

        return sorted(records, key=order)

    # --- writing ---------------------------------------------------------------

    @staticmethod
    def check(event: Event) -> None:
        """Raise InvalidApprovalRequest for live input the service cannot act on."""
        if isinstance(event, ApprovalRequested) and not event.incident_id:
            raise InvalidApprovalRequest(
                f"approval request {event.request_id} has no incident_id: "
                "an approval must be bound to an incident"
            )

    def apply(self, event: Event) -> bool:
        """Fold one event into the projection; False when it was already applied or ignored."""
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        match event:
            case ApprovalRequested():
                return self._requested(event)
            case ApprovalGranted() | ApprovalDenied():
                return self._decided(event)
            case RunbookStarted() | RunbookCompleted() | RunbookFailed() | RunbookRolledBack():
                self._runbook(event)
            case IncidentOpened() | IncidentClassified() | IncidentUpdated():
                self._incident_changed(event)
            case IncidentAcknowledged():
                record = self._incident_of(event)
                if record is not None and record.acknowledged is None:
                    record.acknowledged = event
            case IncidentResolved():
                record = self._incident_of(event)
                if record is not None and (
                    record.resolved is None or event.occurred_at > record.resolved.occurred_at
                ):
                    record.resolved = event
            case _:
                return False
        return True

    def _requested(self, event: ApprovalRequested) -> bool:
        if not event.incident_id:
            log.warning("approval request %s without incident ignored", event.request_id)
            return False
        record = self.approvals.setdefault(event.request_id, ApprovalRecord(event.request_id))
        if record.request is not None:
            log.warning("approval request %s seen again with another event id; first kept",
                        event.request_id)
            return False
        record.request = event
        self._run_requests[event.run_id] = event.request_id
        incident = self._incident_of(event)
        if incident is not None and event.request_id not in incident.approvals:
            incident.approvals.append(event.request_id)
        return True

    def _decided(self, event: ApprovalGranted | ApprovalDenied) -> bool:
        record = self.approvals.setdefault(event.request_id, ApprovalRecord(event.request_id))
        if record.decision is not None:
            return False
        record.decision = event
        return True

    def _runbook(
        self, event: RunbookStarted | RunbookCompleted | RunbookFailed | RunbookRolledBack
    ) -> None:
        if isinstance(event, RunbookStarted) and event.approval_request_id:
            self._run_requests.setdefault(event.run_id, event.approval_request_id)
        status, detail = _RUN_OUTCOME[type(event)], ""
        if isinstance(event, RunbookFailed | RunbookRolledBack):
            detail = event.reason
        request_id = self._run_requests.get(event.run_id)
        if request_id is not None and request_id in self.approvals:
            self.approvals[request_id].run_status = status
            self.approvals[request_id].run_detail = detail
        incident = self._incident_of(event)
        if incident is not None:
            incident.remediation = f"{event.action.runbook} on {event.action.target}: {status}"

    def _incident_changed(
        self, event: IncidentOpened | IncidentClassified | IncidentUpdated
    ) -> None:
        record = self._incident_of(event)
        if record is None:
            return
        if isinstance(event, IncidentOpened):
            record.title = event.title
            record.services = _merge(record.services, event.services)
            record.opened_at = event.occurred_at
            record.correlation_id = event.correlation_id
        elif isinstance(event, IncidentClassified):
            record.severity = event.severity
            record.services = _merge(record.services, event.services)
            record.customer_impact = event.customer_impact or record.customer_impact
        else:
            record.services = _merge(record.services, event.services + event.new_services)
            record.severity = event.severity or record.severity
            record.phase = event.phase or record.phase
            if event.change == "recurred" and (
                record.reopened_at is None or event.occurred_at > record.reopened_at
            ):
                record.reopened_at = event.occurred_at
                record.recurrences += 1

    def _incident_of(self, event: Event) -> IncidentRecord | None:
        if not event.incident_id:
            return None
        record = self.incidents.get(event.incident_id)
        if record is None:
            record = IncidentRecord(event.incident_id, correlation_id=event.correlation_id)
            self.incidents[event.incident_id] = record
        record.last_event_id = event.event_id
        return record


_RUN_OUTCOME: dict[type[Event], str] = {
    RunbookStarted: "running",
    RunbookCompleted: "completed",
    RunbookFailed: "failed",
    RunbookRolledBack: "rolled back",
}


def _merge(known: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(known + more))
