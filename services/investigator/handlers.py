"""Message adapters: events in, `investigation.completed` out.

Two subscriptions. The context subscription (its own consumer group) folds
`alert.received`, `incident.opened` and `incident.resolved` into the case book
and never blocks; the trigger subscription handles `incident.classified` and
`incident.updated`, asks the case book whether an investigation is due and
runs it. They are separate so that a classification can wait (briefly, with a
deadline) for its `incident.opened`, which lives on another topic and may be
delivered a moment later, without blocking the consumer that delivers it.

Exactly one `investigation.completed` per trigger: its id is derived from
(incident id, trigger event id), the bus skips an id already in the log, and
the case book, rebuilt from the log at start-up, says the incident was already
investigated. A redelivered trigger therefore produces nothing new.
"""

from __future__ import annotations

import logging

import structlog
from fastapi import FastAPI, HTTPException
from prometheus_client import Counter, Histogram

from services.investigator.casebook import CaseBook
from services.investigator.flows import investigate_safely, vet_finding
from services.investigator.investigation import (
    InvestigationContext,
    Investigator,
    completed_event,
)
from services.investigator.settings import InvestigatorSettings
from shared.catalog import ServiceCatalog
from shared.clock import Clock
from shared.events import Event, InvestigationCompleted
from shared.kafka import EventBus
from shared.redaction import Redactor
from shared.runbooks import RunbookLibrary
from shared.topics import Topic

log = logging.getLogger(__name__)

CONTEXT_TOPICS = (Topic.ALERT_RECEIVED, Topic.INCIDENT_OPENED, Topic.INCIDENT_RESOLVED)
TRIGGER_TOPICS = (Topic.INCIDENT_CLASSIFIED, Topic.INCIDENT_UPDATED)
RESTORE_TOPICS = (Topic.INCIDENT_OPENED, Topic.INCIDENT_CLASSIFIED, Topic.INCIDENT_UPDATED,
                  Topic.INCIDENT_RESOLVED, Topic.INVESTIGATION_COMPLETED)


class InvestigationDesk:
    """Starts the investigations the case book calls for and publishes their findings."""

    def __init__(
        self,
        *,
        bus: EventBus,
        casebook: CaseBook,
        investigator: Investigator,
        catalog: ServiceCatalog,
        library: RunbookLibrary,
        redactor: Redactor,
        clock: Clock,
        settings: InvestigatorSettings,
    ) -> None:
        self.bus = bus
        self.casebook = casebook
        self.investigator = investigator
        self.catalog = catalog
        self.library = library
        self.redactor = redactor
        self.clock = clock
        self.settings = settings
        self.completed = Counter(
            "investigations_completed_total", "Investigations published, by cause",
            ["investigator", "cause"], registry=bus.registry)
        self.duration = Histogram(
            "investigation_duration_seconds", "Time from trigger to published finding",
            registry=bus.registry)

    async def on_context(self, event: Event) -> None:
        """Fold an alert, an opening or a resolution into the case book."""
        self.casebook.apply(event)

    async def on_trigger(self, event: Event) -> None:
        """Investigate when a classification or a service_added update calls for it."""
        self.casebook.apply(event)
        trigger = self.casebook.next_investigation(event)
        if trigger is None:
            return
        incident_id = event.incident_id or ""
        with structlog.contextvars.bound_contextvars(incident_id=incident_id):
            case = self.casebook.get(incident_id)
            if case is not None and not case.opened and not await self.casebook.wait_opened(
                incident_id, self.settings.opened_wait_s
            ):
                log.warning("incident.opened of %s not seen; investigating without it",
                            incident_id)
            with self.duration.time():
                completed = await self._investigate(event, trigger.new_services)
            if await self.bus.publish(completed):
                self.completed.labels(completed.investigator, completed.cause).inc()
                log.info("investigation of %s: %s (confidence %.2f, proposes %s)", incident_id,
                         completed.cause, completed.confidence,
                         completed.proposed_action.runbook if completed.proposed_action
                         else "nothing")
            self.casebook.record_investigation(completed)

    async def _investigate(
        self, event: Event, new_services: tuple[str, ...]
    ) -> InvestigationCompleted:
        incident_id = event.incident_id or ""
        context = InvestigationContext(
            incident=self.casebook.brief(incident_id),
            catalog=self.catalog,
            trigger_event_id=event.event_id,
            new_services=new_services,
        )
        finding = await investigate_safely(
            self.investigator, context, timeout_s=self.settings.investigation_timeout_s
        )
        finding = vet_finding(finding, self.catalog, self.redactor, self.library)
        return completed_event(
            finding,
            investigator=self.investigator.name,
            incident_id=incident_id,
            correlation_id=event.correlation_id,
            trigger_event_id=event.event_id,
            occurred_at=self.clock.now(),
            producer=self.bus.service,
        )

    async def restore(self) -> None:
        """Rebuild the case book and the bus's memory of its outputs from the log."""
        count = await self.bus.restore(RESTORE_TOPICS, self.casebook.apply)
        log.info("case book restored from %d events", count)


def subscribe(bus: EventBus, desk: InvestigationDesk) -> None:
    """Wire the desk's handlers to their topics."""
    bus.declare_outputs([Topic.INVESTIGATION_COMPLETED])
    bus.subscribe(CONTEXT_TOPICS, desk.on_context, group=f"{bus.service}.context")
    bus.subscribe(TRIGGER_TOPICS, desk.on_trigger)


def routes(app: FastAPI, casebook: CaseBook) -> None:
    """Read-only HTTP view of published findings."""

    @app.get("/incidents/{incident_id}/investigations", tags=["investigations"],
             summary="Investigations published for an incident, oldest first")
    async def investigations(incident_id: str) -> list[InvestigationCompleted]:
        case = casebook.get(incident_id)
        if case is None or not case.investigations:
            raise HTTPException(404, f"no investigation of {incident_id}")
        return case.investigations
