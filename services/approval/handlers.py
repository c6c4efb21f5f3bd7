"""Kafka wiring of the approval service: what it reads, what it writes, how it rebuilds.

The service reads approval requests and decisions, runbook outcomes and the
incident lifecycle into one projection (`ResponseBoard`); it writes decisions,
acknowledgements, manual resolutions and audit records from the desk, never
from a handler. Handlers only fold events into the projection.

`audit.recorded` is deliberately not declared as an output: its ids are random
(each refused attempt is its own fact), so there is nothing to de-duplicate,
and replaying every service's audit trail at start-up would only cost time.
"""

from __future__ import annotations

import logging

import structlog

from services.approval.board import ResponseBoard
from shared.events import Event
from shared.kafka import each
from shared.runtime import ServiceRuntime
from shared.topics import STORM_TOPICS, Topic, prompt_topics

log = logging.getLogger(__name__)

CONSUMED: tuple[Topic, ...] = (
    Topic.APPROVAL_REQUESTED,
    Topic.APPROVAL_GRANTED,
    Topic.APPROVAL_DENIED,
    Topic.RUNBOOK_STARTED,
    Topic.RUNBOOK_COMPLETED,
    Topic.RUNBOOK_FAILED,
    Topic.RUNBOOK_ROLLED_BACK,
    Topic.INCIDENT_OPENED,
    Topic.INCIDENT_CLASSIFIED,
    Topic.INCIDENT_UPDATED,
    Topic.INCIDENT_ACKNOWLEDGED,
    Topic.INCIDENT_RESOLVED,
)

DEDUPED_OUTPUTS: tuple[Topic, ...] = (
    Topic.APPROVAL_GRANTED,
    Topic.APPROVAL_DENIED,
    Topic.INCIDENT_ACKNOWLEDGED,
    Topic.INCIDENT_RESOLVED,
)


def register(runtime: ServiceRuntime, board: ResponseBoard) -> None:
    """Rebuild the projection at start-up and keep it current from the live topics."""
    bus = runtime.bus
    bus.declare_outputs(DEDUPED_OUTPUTS)

    async def restore() -> None:
        count = await bus.restore(CONSUMED, board.apply)
        log.info("projection rebuilt from %d events: %d approvals, %d incidents",
                 count, len(board.approvals), len(board.incidents))

    async def handle(event: Event) -> None:
        with structlog.contextvars.bound_contextvars(incident_id=event.incident_id):
            board.check(event)
            board.apply(event)

    runtime.on_start.append(restore)
    bus.subscribe(prompt_topics(CONSUMED), handle)
    # incident.updated only refreshes an incident's severity and services on the page.
    bus.subscribe_background(STORM_TOPICS, each(handle))
