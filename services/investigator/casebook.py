"""The investigator's projection of the event log: what each incident is, and what was investigated.

Rebuilt at start-up by replaying the lifecycle topics (`bus.restore`), then
kept current by the live subscriptions; `apply` is idempotent, so an event
seen by both the replay and the live subscription changes nothing twice.

Investigation policy (one place, `next_investigation`):

- the first `incident.classified` of an incident starts its investigation;
  later (re)classifications do not start another;
- an `incident.updated` with `change=service_added` starts one more, when the
  incident was already investigated and at least one of its services was not
  covered yet (a classification still to come covers them otherwise);
- resolved incidents are not investigated (a fresh consumer group reading an
  old log must not investigate history).

Which services an investigation covered is not in `investigation.completed`:
it is the incident's services as of the triggering event, which the replay
sees before the completion (both are in the log, ordered by time). Alert
details (names, labels) come from `alert.received` seen live; that topic is not
replayed (it is high volume), so after a restart earlier alerts are known by
the incident's title only.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from services.investigator.investigation import AlertBrief, IncidentBrief
from shared.domain import Severity
from shared.events import (
    AlertReceived,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    InvestigationCompleted,
)


@dataclass
class IncidentCase:
    """One incident as the investigator tracks it."""

    incident_id: str
    correlation_id: str
    title: str = ""
    services: list[str] = field(default_factory=list)
    severity: Severity | None = None
    first_anomaly_at: datetime | None = None
    opened_at: datetime | None = None
    alert_ids: list[str] = field(default_factory=list)
    opened: bool = False
    resolved: bool = False
    covered: set[str] = field(default_factory=set)
    investigations: list[InvestigationCompleted] = field(default_factory=list)

    def add_services(self, names: tuple[str, ...]) -> None:
        """Append services not yet known, keeping first-seen order."""
        self.services.extend(n for n in names if n not in self.services)

    @property
    def investigated(self) -> bool:
        """At least one investigation was published."""
        return bool(self.investigations)


@dataclass(frozen=True)
class Trigger:
    """An event that asks for an investigation, and what it should cover."""

    event: Event
    services: tuple[str, ...]
    new_services: tuple[str, ...] = ()


class CaseBook:
    """Incidents, the alerts that opened them, and their investigations."""

    def __init__(self, producer: str, max_cases: int = 20_000, max_alerts: int = 20_000) -> None:
        self.producer = producer
        self._cases: OrderedDict[str, IncidentCase] = OrderedDict()
        self._alerts: OrderedDict[str, AlertBrief] = OrderedDict()
        self._trigger_services: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._opened: dict[str, asyncio.Event] = {}
        self._max_cases = max_cases
        self._max_alerts = max_alerts

    def get(self, incident_id: str) -> IncidentCase | None:
        """The case of an incident, if known."""
        return self._cases.get(incident_id)

    def apply(self, event: Event) -> None:
        """Fold one event into the projection (idempotent)."""
        if isinstance(event, AlertReceived):
            self._remember_alert(event)
            return
        if event.incident_id is None:
            return
        case = self._case(event)
        match event:
            case IncidentOpened():
                case.title = event.title
                case.add_services(event.services)
                case.first_anomaly_at = event.first_anomaly_at or case.first_anomaly_at
                case.opened_at = event.alert_received_at
                if event.alert_event_id not in case.alert_ids:
                    case.alert_ids.append(event.alert_event_id)
                case.opened = True
                self._opened_flag(event.incident_id).set()
            case IncidentClassified():
                case.severity = event.severity
                case.add_services(event.services or event.blast_radius.affected)
                self._note_trigger(event.event_id, case)
            case IncidentUpdated():
                case.add_services(event.services)
                case.add_services(event.new_services)
                if event.severity is not None:
                    case.severity = event.severity
                if event.alert_event_id and event.alert_event_id not in case.alert_ids:
                    case.alert_ids.append(event.alert_event_id)
                if event.change == "recurred":
                    case.resolved = False
                self._note_trigger(event.event_id, case)
            case IncidentResolved():
                case.resolved = True
            case InvestigationCompleted() if event.producer == self.producer:
                self.record_investigation(event)

    def next_investigation(self, event: Event) -> Trigger | None:
        """The investigation event should start, or None (see the module's policy)."""
        case = self._cases.get(event.incident_id or "")
        if case is None or case.resolved:
            return None
        services = tuple(case.services)
        if isinstance(event, IncidentClassified):
            if case.investigated:
                return None
            return Trigger(event, services)
        if isinstance(event, IncidentUpdated) and event.change == "service_added":
            new = tuple(s for s in services if s not in case.covered)
            if not case.investigated or not new:
                return None
            return Trigger(event, services, new)
        return None

    def record_investigation(self, event: InvestigationCompleted) -> None:
        """Mark an incident investigated, covering the services its trigger saw."""
        case = self._case(event)
        if any(i.event_id == event.event_id for i in case.investigations):
            return
        case.investigations.append(event)
        covered = self._trigger_services.get(event.causation_id or "", tuple(case.services))
        case.covered.update(covered)

    def brief(self, incident_id: str) -> IncidentBrief:
        """What an investigator is told about an incident."""
        case = self._cases[incident_id]
        return IncidentBrief(
            id=incident_id,
            title=case.title,
            services=tuple(case.services),
            severity=case.severity,
            first_anomaly_at=case.first_anomaly_at,
            opened_at=case.opened_at,
            alerts=tuple(self._alerts[a] for a in case.alert_ids if a in self._alerts),
        )

    async def wait_opened(self, incident_id: str, timeout_s: float) -> bool:
        """Wait until the incident's `incident.opened` was applied; False on timeout."""
        flag = self._opened_flag(incident_id)
        try:
            async with asyncio.timeout(timeout_s):
                await flag.wait()
        except TimeoutError:
            return False
        return True

    # --- internals ------------------------------------------------------------

    def _case(self, event: Event) -> IncidentCase:
        incident_id = event.incident_id or ""
        case = self._cases.get(incident_id)
        if case is None:
            case = IncidentCase(incident_id=incident_id, correlation_id=event.correlation_id)
            self._cases[incident_id] = case
            while len(self._cases) > self._max_cases:
                old, _ = self._cases.popitem(last=False)
                self._opened.pop(old, None)
        return case

    def _opened_flag(self, incident_id: str) -> asyncio.Event:
        return self._opened.setdefault(incident_id, asyncio.Event())

    def _note_trigger(self, event_id: str, case: IncidentCase) -> None:
        self._trigger_services.setdefault(event_id, tuple(case.services))
        while len(self._trigger_services) > self._max_cases * 4:
            self._trigger_services.popitem(last=False)

    def _remember_alert(self, alert: AlertReceived) -> None:
        self._alerts[alert.event_id] = AlertBrief(
            event_id=alert.event_id, name=alert.name, service=alert.service,
            labels=alert.labels, summary=alert.summary, starts_at=alert.starts_at,
        )
        while len(self._alerts) > self._max_alerts:
            self._alerts.popitem(last=False)
