"""The investigator's contract: what it is given, what it must return.

An `Investigator` turns an `InvestigationContext` (the incident as the
lifecycle events describe it, plus the service catalog) into a `Finding`: a
root-cause hypothesis with its evidence, a confidence and at most one proposed
runbook. The rule-based investigator implements it today; the LLM investigator
of a later issue implements the same protocol and is chosen by
`IR_INVESTIGATOR_KIND`, so nothing around it changes.

Whatever an investigator returns is vetted by `flows.vet_finding` (the
proposal validated against the allow-list, every text redacted) before it
becomes an `investigation.completed` event: that safety does not depend on the
investigator behaving.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import AwareDatetime, Field

from shared.catalog import ServiceCatalog
from shared.domain import Severity
from shared.events import ActionSpec, Evidence, InvestigationCompleted, Model, derive_event_id


class AlertBrief(Model):
    """The parts of an alert an investigator reads."""

    event_id: str
    name: str
    service: str
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    starts_at: AwareDatetime | None = None


class IncidentBrief(Model):
    """The incident as far as the investigator knows it."""

    id: str
    title: str = ""
    services: tuple[str, ...]
    severity: Severity | None = None
    first_anomaly_at: AwareDatetime | None = None
    opened_at: AwareDatetime | None = None
    alerts: tuple[AlertBrief, ...] = ()


class InvestigationContext(Model):
    """Everything one investigation starts from."""

    incident: IncidentBrief
    catalog: ServiceCatalog = ServiceCatalog()
    trigger_event_id: str = Field(description="the event that asked for this investigation")
    new_services: tuple[str, ...] = Field((), description="services that joined (re-runs)")

    def anomaly_start(self, now: datetime) -> datetime:
        """The first anomaly: from the incident, else the earliest alert, else now."""
        if self.incident.first_anomaly_at is not None:
            return self.incident.first_anomaly_at
        starts = [a.starts_at for a in self.incident.alerts if a.starts_at is not None]
        if starts:
            return min(starts)
        return self.incident.opened_at or now


class Finding(Model):
    """An investigator's conclusion: the payload of `investigation.completed`."""

    hypothesis: str
    cause: str = "unknown"
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: tuple[Evidence, ...] = ()
    proposed_action: ActionSpec | None = None
    rationale: str = ""
    root_cause_identified: bool = False
    root_service: str | None = None


class Investigator(Protocol):
    """Finds the likely root cause of an incident."""

    @property
    def name(self) -> str:
        """Recorded as `investigator` in the event (e.g. "rules", "llm")."""
        ...

    async def investigate(self, context: InvestigationContext) -> Finding:
        """A finding for the incident of context; never raises for missing evidence."""
        ...


def investigation_event_id(incident_id: str, trigger_event_id: str) -> str:
    """The id of the investigation an event triggered: the same on every redelivery."""
    return derive_event_id("investigation.completed", incident_id, trigger_event_id)


def completed_event(
    finding: Finding,
    *,
    investigator: str,
    incident_id: str,
    correlation_id: str,
    trigger_event_id: str,
    occurred_at: datetime,
    producer: str,
) -> InvestigationCompleted:
    """The `investigation.completed` event that carries a finding."""
    return InvestigationCompleted(
        event_id=investigation_event_id(incident_id, trigger_event_id),
        occurred_at=occurred_at,
        producer=producer,
        incident_id=incident_id,
        correlation_id=correlation_id,
        causation_id=trigger_event_id,
        investigator=investigator,
        hypothesis=finding.hypothesis,
        cause=finding.cause,
        confidence=finding.confidence,
        evidence=finding.evidence,
        proposed_action=finding.proposed_action,
        rationale=finding.rationale,
        root_cause_identified=finding.root_cause_identified,
    )
