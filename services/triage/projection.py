"""Triage's memory: open incidents and recently resolved ones, as a projection of events.

Design decisions:

- **Built from lifecycle events only.** Start-up replays `incident.opened`,
  `incident.classified`, `incident.updated`, `incident.acknowledged` and
  `incident.resolved` (ARCHITECTURE.md: never the high-volume alert topic).
  Everything correlation needs is in those events: services, fingerprints,
  which alert ids were already applied, the last alert time, severity and the
  last classification. Triage applies its own outputs right after publishing
  them, and sees them again on its lifecycle subscription.
- **Idempotent and order-tolerant by construction.** Every update is a
  monotonic merge: sets grow, times take the max, severity takes the worse,
  auto-remediation only switches off, status only moves open -> acknowledged
  -> resolved. Applying an event twice, or two events in either order, gives
  the same state, so replay and live delivery may overlap freely. Events that
  arrive before their incident's `incident.opened` (other topics, other
  partitions) wait in a small bounded buffer and are applied once it arrives.
- **Bounded memory.** A resolved incident is kept for the recurrence window
  (so a repeat of its fingerprint is recognised), then dropped; only its id is
  remembered, in a bounded set, so a late or replayed event cannot resurrect
  it. The alert-id and event-id indexes (duplicate detection) are bounded the
  same way.
- **Times are triage's clock.** `last_alert_at` is the `occurred_at` triage
  stamped when it applied an alert, not the monitoring system's timestamp:
  the correlation window then never depends on the skew between sources.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.domain import Severity
from shared.events import (
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
)
from shared.kafka import BoundedSet

IncidentStatus = Literal["open", "acknowledged", "resolved"]
_STATUS_ORDER: dict[IncidentStatus, int] = {"open": 0, "acknowledged": 1, "resolved": 2}
#: Alert changes that count as alert activity for the correlation window.
_FIRING_CHANGES = frozenset({"alert_added", "service_added"})

MAX_REMEMBERED_ALERTS = 200_000
MAX_REMEMBERED_EVENTS = 200_000
MAX_FORGOTTEN_INCIDENTS = 100_000
MAX_PENDING_INCIDENTS = 1_000


@dataclass
class TrackedIncident:
    """What triage knows about one incident."""

    incident_id: str
    opening_alert_id: str
    opened_at: datetime
    last_alert_at: datetime
    services: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    severity: Severity | None = None
    auto_remediation_allowed: bool = True
    last_classified: IncidentClassified | None = None
    status: IncidentStatus = "open"
    resolved_at: datetime | None = None
    recurrence_of: str | None = None

    @property
    def is_open(self) -> bool:
        """True until the incident is resolved (acknowledged incidents are still open)."""
        return self.status != "resolved"

    def summary(self) -> dict[str, object]:
        """A JSON-friendly view for the HTTP API and logs."""
        return {
            "incident_id": self.incident_id,
            "status": self.status,
            "severity": self.severity.value if self.severity else None,
            "services": list(self.services),
            "fingerprints": list(self.fingerprints),
            "opened_at": self.opened_at.isoformat(),
            "last_alert_at": self.last_alert_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "auto_remediation_allowed": self.auto_remediation_allowed,
            "recurrence_of": self.recurrence_of,
        }


class IncidentBook:
    """The projection: incidents by id, indexed by fingerprint and by applied alert id."""

    def __init__(self, *, recurrence_window: timedelta) -> None:
        self.recurrence_window = recurrence_window
        self.reset()

    def reset(self) -> None:
        """Forget everything (before a rebuild from the log)."""
        self._incidents: dict[str, TrackedIncident] = {}
        self._by_fingerprint: dict[str, set[str]] = {}
        self._alerts: OrderedDict[str, str] = OrderedDict()
        self._applied = BoundedSet(MAX_REMEMBERED_EVENTS)
        self._forgotten = BoundedSet(MAX_FORGOTTEN_INCIDENTS)
        self._pending: OrderedDict[str, list[Event]] = OrderedDict()

    # --- queries -----------------------------------------------------------------

    def get(self, incident_id: str) -> TrackedIncident | None:
        """The incident with this id, if triage still tracks it."""
        return self._incidents.get(incident_id)

    def tracked(self) -> Iterator[TrackedIncident]:
        """Every incident tracked: open ones and those resolved within the recurrence window."""
        return iter(list(self._incidents.values()))

    def open_incidents(self) -> Iterator[TrackedIncident]:
        """Every incident not yet resolved."""
        return (i for i in self._incidents.values() if i.is_open)

    def incident_of_alert(self, alert_event_id: str) -> str | None:
        """The incident an alert (by event id) was already applied to, if any."""
        return self._alerts.get(alert_event_id)

    def open_with_fingerprint(self, fingerprint: str) -> TrackedIncident | None:
        """The open incident holding this fingerprint (the most recently active one)."""
        candidates = [i for i in self._with_fingerprint(fingerprint) if i.is_open]
        return max(candidates, key=_recency, default=None)

    def recently_resolved(self, fingerprint: str, now: datetime) -> TrackedIncident | None:
        """The latest incident with this fingerprint resolved within the recurrence window."""
        candidates = [
            i for i in self._with_fingerprint(fingerprint)
            if i.resolved_at is not None and now - i.resolved_at <= self.recurrence_window
        ]
        return max(candidates, key=lambda i: (i.resolved_at, i.incident_id), default=None)

    def has_applied(self, event_id: str) -> bool:
        """True when this event (by id) is already folded into the projection."""
        return event_id in self._applied

    def knows(self, incident_id: str) -> bool:
        """True when the id is taken (tracked, forgotten after closing, or pending)."""
        return (
            incident_id in self._incidents
            or incident_id in self._forgotten
            or incident_id in self._pending
        )

    def __len__(self) -> int:
        return len(self._incidents)

    # --- maintenance ---------------------------------------------------------------

    def prune(self, now: datetime) -> int:
        """Forget incidents resolved longer ago than the recurrence window; returns how many."""
        expired = [
            i for i in self._incidents.values()
            if i.resolved_at is not None and now - i.resolved_at > self.recurrence_window
        ]
        for incident in expired:
            self._forget(incident)
        return len(expired)

    # --- applying events ---------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one lifecycle event into the projection (idempotent, order-tolerant)."""
        incident_id = event.incident_id
        if incident_id is None or incident_id in self._forgotten:
            return
        if isinstance(event, IncidentOpened):
            self._apply_opened(event, incident_id)
            self._applied.add(event.event_id)
            return
        incident = self._incidents.get(incident_id)
        if incident is None:
            self._hold(incident_id, event)
            return
        self._applied.add(event.event_id)
        if isinstance(event, IncidentClassified):
            _apply_classified(incident, event)
        elif isinstance(event, IncidentUpdated):
            self._apply_updated(incident, event)
        elif isinstance(event, IncidentAcknowledged):
            _advance(incident, "acknowledged")
        elif isinstance(event, IncidentResolved):
            _advance(incident, "resolved")
            if incident.resolved_at is None or event.occurred_at > incident.resolved_at:
                incident.resolved_at = event.occurred_at

    def _apply_opened(self, event: IncidentOpened, incident_id: str) -> None:
        incident = self._incidents.get(incident_id)
        if incident is None:
            incident = TrackedIncident(
                incident_id=incident_id,
                opening_alert_id=event.alert_event_id,
                opened_at=event.occurred_at,
                last_alert_at=event.occurred_at,
                recurrence_of=event.recurrence_of,
            )
            self._incidents[incident_id] = incident
        else:
            incident.opened_at = min(incident.opened_at, event.occurred_at)
            incident.last_alert_at = max(incident.last_alert_at, event.occurred_at)
        _extend(incident.services, event.services)
        for fingerprint in event.fingerprints:
            self._add_fingerprint(incident, fingerprint)
        self._remember_alert(event.alert_event_id, incident_id)
        for held in self._pending.pop(incident_id, []):
            self.apply(held)

    def _apply_updated(self, incident: TrackedIncident, event: IncidentUpdated) -> None:
        _extend(incident.services, event.services)
        _extend(incident.services, event.new_services)
        if event.fingerprint is not None:
            self._add_fingerprint(incident, event.fingerprint)
        if event.alert_event_id is not None:
            self._remember_alert(event.alert_event_id, incident.incident_id)
        if event.change in _FIRING_CHANGES:
            incident.last_alert_at = max(incident.last_alert_at, event.occurred_at)
        if event.severity is not None and event.change == "severity_changed":
            incident.severity = _worse(incident.severity, event.severity)

    def _hold(self, incident_id: str, event: Event) -> None:
        # Another partition or topic overtook incident.opened: keep the event until it lands.
        held = self._pending.setdefault(incident_id, [])
        if all(e.event_id != event.event_id for e in held):
            held.append(event)
        self._pending.move_to_end(incident_id)
        while len(self._pending) > MAX_PENDING_INCIDENTS:
            self._pending.popitem(last=False)

    def _add_fingerprint(self, incident: TrackedIncident, fingerprint: str) -> None:
        _extend(incident.fingerprints, (fingerprint,))
        self._by_fingerprint.setdefault(fingerprint, set()).add(incident.incident_id)

    def _with_fingerprint(self, fingerprint: str) -> list[TrackedIncident]:
        ids = self._by_fingerprint.get(fingerprint, ())
        return [self._incidents[i] for i in sorted(ids) if i in self._incidents]

    def _remember_alert(self, alert_event_id: str, incident_id: str) -> None:
        self._alerts[alert_event_id] = incident_id
        self._alerts.move_to_end(alert_event_id)
        while len(self._alerts) > MAX_REMEMBERED_ALERTS:
            self._alerts.popitem(last=False)

    def _forget(self, incident: TrackedIncident) -> None:
        del self._incidents[incident.incident_id]
        self._forgotten.add(incident.incident_id)
        for fingerprint in incident.fingerprints:
            ids = self._by_fingerprint.get(fingerprint)
            if ids is not None:
                ids.discard(incident.incident_id)
                if not ids:
                    del self._by_fingerprint[fingerprint]


def _apply_classified(incident: TrackedIncident, event: IncidentClassified) -> None:
    incident.severity = _worse(incident.severity, event.severity)
    incident.auto_remediation_allowed = (
        incident.auto_remediation_allowed and event.auto_remediation_allowed
    )
    _extend(incident.services, event.services)
    last = incident.last_classified
    # The classification that set the current severity is the one a redelivered alert
    # may need to complete (see correlation.Triage.decide); keep the worst, latest one.
    if (
        last is None
        or event.severity.is_worse_than(last.severity)
        or (event.severity is last.severity and event.occurred_at >= last.occurred_at)
    ):
        incident.last_classified = event


def _advance(incident: TrackedIncident, status: IncidentStatus) -> None:
    if _STATUS_ORDER[status] > _STATUS_ORDER[incident.status]:
        incident.status = status


def _worse(current: Severity | None, new: Severity) -> Severity:
    if current is None or new.is_worse_than(current):
        return new
    return current


def _extend(target: list[str], items: tuple[str, ...] | list[str]) -> None:
    for item in items:
        if item not in target:
            target.append(item)


def _recency(incident: TrackedIncident) -> tuple[datetime, str]:
    return (incident.last_alert_at, incident.incident_id)
