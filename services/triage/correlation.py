"""Correlation: which incident an alert belongs to, and the events that say so.

`Triage.decide(alert)` is pure: it reads the projection (`IncidentBook`) and
returns the events to publish, without changing anything. The handler
publishes them and only then applies them to the book, so a publish that fails
half-way is simply decided again, identically, on the retry.

Rules, in order:

0. An alert without a fingerprint or a service cannot be correlated: it is
   rejected with `UncorrelatableAlertError` (the bus parks it in the DLQ with
   that message; nothing is lost, nothing is guessed).
1. An alert id the book has already applied is a **redelivery**. It changes
   no membership; it only completes what a crash may have cut short (the
   opening sequence, or a classification it caused): everything it caused is
   re-derived with the id it had the first time, and only what the projection
   has not applied (so what never reached the log) is returned.
2. An alert whose **fingerprint** belongs to an open incident joins it
   (`alert_added`, or `alert_resolved` when the source says it resolved).
3. A **resolved** alert never opens anything and never joins by relation: it
   ends a condition no open incident was tracking.
4. An alert of a service **related** in the catalog (one depends
   transitively on the other, or both on a common service) to a service of an
   open incident, inside the correlation window after that incident's last
   alert, joins it (`service_added` when the
   service is new). With several candidates, the most recently active wins.
5. Otherwise a **new incident**: `incident.opened` then `incident.classified`,
   both keyed by the incident id. If the fingerprint belonged to an incident
   resolved within the recurrence window, the new one carries `recurrence_of`
   and an `incident.updated(change="recurred")` follows, so escalation tells a
   human.

Every firing alert re-computes severity over the incident's services; a
worse result (or auto-remediation switching off) emits `incident.classified`
with `previous_severity`, plus `incident.updated(change="severity_changed")`
when the severity itself moved. Severity never drops while open.

Ids: the incident id is `INC-` and six base32 characters of
SHA-256(opening alert's event id), so a redelivered alert re-derives it; on a
collision with an id already taken the hash input gets a counter. Every output
event id is `derive_event_id(kind, incident_id, alert event id)`, with the
change name in the kind of `incident.updated`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.triage.projection import IncidentBook, TrackedIncident
from services.triage.severity import Classification, classify, forcing_labels, source_signal
from shared.catalog import ServiceCatalog
from shared.clock import Clock
from shared.domain import AlertStatus, Severity
from shared.events import (
    AlertReceived,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentUpdated,
    derive_event_id,
)

Outcome = Literal["opened", "joined", "duplicate", "ignored"]
UpdateChange = Literal["alert_added", "alert_resolved", "service_added", "severity_changed",
                       "recurred"]

PRODUCER = "triage"
MAX_MEMOISED_CLASSIFICATIONS = 10_000
_TITLE_MAX = 200


class UncorrelatableAlertError(ValueError):
    """An alert that lacks what correlation needs (fingerprint, service)."""


@dataclass(frozen=True, slots=True)
class TriageDecision:
    """What triage decided for one alert: the outcome and the events to publish, in order."""

    outcome: Outcome
    incident_id: str | None
    events: tuple[Event, ...]
    detail: str


def incident_id_for(alert_event_id: str, attempt: int = 0) -> str:
    """The incident id an opening alert derives (`INC-` + 6 base32 characters)."""
    seed = alert_event_id if attempt == 0 else f"{alert_event_id}#{attempt}"
    digest = hashlib.sha256(seed.encode()).digest()
    return "INC-" + base64.b32encode(digest).decode()[:6]


class Triage:
    """Decides, for each alert, which incident it belongs to and how severe that is."""

    def __init__(
        self,
        *,
        book: IncidentBook,
        catalog: ServiceCatalog,
        clock: Clock,
        correlation_window: timedelta,
        producer: str = PRODUCER,
    ) -> None:
        self.book = book
        self.catalog = catalog
        self.clock = clock
        self.correlation_window = correlation_window
        self.producer = producer
        # classify() is pure in (services, source grading, forcing labels, floor): a storm
        # re-asks the same question for every joining alert, so answers are memoised.
        self._classifications: dict[tuple[object, ...], Classification] = {}

    def decide(self, alert: AlertReceived) -> TriageDecision:
        """The events this alert causes, given the current projection (pure)."""
        missing = [f for f in ("fingerprint", "service") if not getattr(alert, f).strip()]
        if missing:
            raise UncorrelatableAlertError(
                f"alert {alert.event_id} from {alert.source} has no {' and no '.join(missing)}:"
                " cannot correlate it"
            )
        now = self.clock.now()
        known = self.book.incident_of_alert(alert.event_id)
        if known is not None:
            return self._redelivered(known, alert, now)
        incident = self.book.open_with_fingerprint(alert.fingerprint)
        if incident is not None:
            return self._join(incident, alert, now, why=f"fingerprint {alert.fingerprint}")
        if alert.status is AlertStatus.RESOLVED:
            return TriageDecision(
                "ignored", None, (),
                f"resolved alert {alert.fingerprint} matches no open incident",
            )
        incident = self._related_open_incident(alert.service, now)
        if incident is not None:
            return self._join(
                incident, alert, now,
                why=f"{alert.service} is related to {', '.join(incident.services)}",
            )
        return self._open(alert, now)

    # --- the three outcomes ---------------------------------------------------------

    def _open(self, alert: AlertReceived, now: datetime) -> TriageDecision:
        incident_id = self._new_incident_id(alert.event_id)
        previous = self.book.recently_resolved(alert.fingerprint, now)
        recurrence_of = previous.incident_id if previous is not None else None
        events: list[Event] = [self._opened(incident_id, alert, now, recurrence_of)]
        events.extend(self._reclassify(
            incident_id, alert, now,
            services=[alert.service], current=None, auto_allowed=True,
            recurrence_of=recurrence_of,
        ))
        if recurrence_of is not None:
            events.append(self._recurred(incident_id, alert, now, recurrence_of))
        detail = f"new incident for {alert.service}"
        if recurrence_of is not None:
            detail += f", recurrence of {recurrence_of}"
        return TriageDecision("opened", incident_id, tuple(events), detail)

    def _join(
        self, incident: TrackedIncident, alert: AlertReceived, now: datetime, *, why: str
    ) -> TriageDecision:
        services = list(incident.services)
        change: UpdateChange
        if alert.status is AlertStatus.RESOLVED:
            change = "alert_resolved"
        elif alert.service not in services:
            change = "service_added"
            services.append(alert.service)
        else:
            change = "alert_added"
        events: list[Event] = [
            self._updated(
                incident.incident_id, change, alert, now,
                services=services,
                new_services=[alert.service] if change == "service_added" else [],
                severity=incident.severity,
                detail=f"{alert.name} ({alert.status.value}) joined: {why}",
            )
        ]
        if alert.status is not AlertStatus.RESOLVED:
            events.extend(self._reclassify(
                incident.incident_id, alert, now,
                services=services, current=incident.severity,
                auto_allowed=incident.auto_remediation_allowed,
            ))
        return TriageDecision("joined", incident.incident_id, tuple(events), f"{change}: {why}")

    def _redelivered(self, incident_id: str, alert: AlertReceived, now: datetime
                     ) -> TriageDecision:
        incident = self.book.get(incident_id)
        if incident is None or not incident.is_open:
            return TriageDecision("duplicate", incident_id, (), "already applied")
        # Re-derive everything this alert caused the first time, keep what never landed.
        candidates: list[Event] = []
        opening = incident.opening_alert_id == alert.event_id
        if opening:
            candidates.append(self._opened(incident_id, alert, now, incident.recurrence_of))
        last = incident.last_classified
        if last is not None and last.causation_id == alert.event_id:
            candidates.append(last)
            if last.previous_severity is not None and last.severity is not last.previous_severity:
                candidates.append(self._severity_changed(incident_id, alert, now, last))
        elif alert.status is not AlertStatus.RESOLVED:
            candidates.extend(self._reclassify(
                incident_id, alert, now,
                services=incident.services, current=incident.severity,
                auto_allowed=incident.auto_remediation_allowed,
                recurrence_of=incident.recurrence_of if opening else None,
            ))
        if opening and incident.recurrence_of is not None:
            candidates.append(self._recurred(incident_id, alert, now, incident.recurrence_of))
        missing = tuple(e for e in candidates if not self.book.has_applied(e.event_id))
        detail = f"redelivery completed with {len(missing)} events" if missing else (
            "already applied")
        return TriageDecision("duplicate", incident_id, missing, detail)

    # --- severity ------------------------------------------------------------------

    def _reclassify(
        self,
        incident_id: str,
        alert: AlertReceived,
        now: datetime,
        *,
        services: list[str],
        current: Severity | None,
        auto_allowed: bool,
        recurrence_of: str | None = None,
    ) -> list[Event]:
        source = source_signal(alert)
        key = (tuple(services), source, forcing_labels(alert.labels), current)
        result = self._classifications.get(key)
        if result is None:
            if len(self._classifications) >= MAX_MEMOISED_CLASSIFICATIONS:
                self._classifications.clear()
            result = classify(services=services, catalog=self.catalog, source=source,
                              labels=alert.labels, at_least=current)
            self._classifications[key] = result
        escalated = current is None or result.severity.is_worse_than(current)
        loses_auto = auto_allowed and not result.auto_remediation_allowed
        if not escalated and not loses_auto:
            return []
        reasons = list(result.reasons)
        if recurrence_of is not None:
            reasons.insert(-1, f"recurrence of {recurrence_of}, resolved recently: a human is told")
        if current is not None and escalated:
            reasons.insert(-1, f"escalated from {current.value} by alert {alert.name}")
        classified = IncidentClassified(
            event_id=derive_event_id("incident.classified", incident_id, alert.event_id),
            occurred_at=now,
            producer=self.producer,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=alert.event_id,
            severity=result.severity,
            previous_severity=current,
            reasons=tuple(reasons),
            blast_radius=result.blast_radius,
            customer_impact=result.customer_impact,
            services=tuple(services),
            auto_remediation_allowed=auto_allowed and result.auto_remediation_allowed,
        )
        events: list[Event] = [classified]
        if current is not None and escalated:
            events.append(self._severity_changed(incident_id, alert, now, classified))
        return events

    # --- event construction ----------------------------------------------------------

    def _opened(self, incident_id: str, alert: AlertReceived, now: datetime,
                recurrence_of: str | None) -> IncidentOpened:
        title = f"{alert.name} on {alert.service}"
        if alert.summary:
            title = f"{title}: {alert.summary}"
        return IncidentOpened(
            event_id=derive_event_id("incident.opened", incident_id, alert.event_id),
            occurred_at=now,
            producer=self.producer,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=alert.event_id,
            title=title[:_TITLE_MAX],
            services=(alert.service,),
            fingerprints=(alert.fingerprint,),
            alert_event_id=alert.event_id,
            first_anomaly_at=alert.starts_at,
            alert_received_at=alert.received_at,
            recurrence_of=recurrence_of,
        )

    def _updated(
        self,
        incident_id: str,
        change: UpdateChange,
        alert: AlertReceived,
        now: datetime,
        *,
        services: list[str],
        new_services: list[str] | None = None,
        severity: Severity | None = None,
        detail: str = "",
    ) -> IncidentUpdated:
        return IncidentUpdated(
            event_id=derive_event_id(f"incident.updated:{change}", incident_id, alert.event_id),
            occurred_at=now,
            producer=self.producer,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=alert.event_id,
            change=change,
            services=tuple(services),
            new_services=tuple(new_services or ()),
            alert_event_id=alert.event_id,
            fingerprint=alert.fingerprint,
            severity=severity,
            detail=detail,
        )

    def _severity_changed(self, incident_id: str, alert: AlertReceived, now: datetime,
                          classified: IncidentClassified) -> IncidentUpdated:
        previous = classified.previous_severity.value if classified.previous_severity else "none"
        return self._updated(
            incident_id, "severity_changed", alert, now,
            services=list(classified.services),
            severity=classified.severity,
            detail=f"severity {previous} -> {classified.severity.value}",
        )

    def _recurred(self, incident_id: str, alert: AlertReceived, now: datetime,
                  recurrence_of: str) -> IncidentUpdated:
        return self._updated(
            incident_id, "recurred", alert, now,
            services=[alert.service],
            detail=(
                f"{alert.fingerprint} recurred after {recurrence_of} was resolved: "
                "its fix did not hold, a human must look"
            ),
        )

    # --- helpers ---------------------------------------------------------------------

    def _related_open_incident(self, service: str, now: datetime) -> TrackedIncident | None:
        candidates = [
            incident for incident in self.book.open_incidents()
            if now - incident.last_alert_at <= self.correlation_window
            and any(self.catalog.related(service, other) for other in incident.services)
        ]
        return max(candidates, key=lambda i: (i.last_alert_at, i.incident_id), default=None)

    def _new_incident_id(self, alert_event_id: str) -> str:
        attempt = 0
        while self.book.knows(candidate := incident_id_for(alert_event_id, attempt)):
            attempt += 1
        return candidate
