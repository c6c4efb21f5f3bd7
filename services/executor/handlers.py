"""Kafka wiring of the executor: three input topics, one handler each, a few lines apiece.

The bus decodes (invalid -> DLQ), dedupes on event id and retries; these
handlers only bind the incident to the log context and hand the event to the
domain (`flows.Executor`), which publishes what follows.
"""

from __future__ import annotations

from structlog.contextvars import bound_contextvars

from services.executor.flows import Executor
from shared.events import ApprovalDenied, ApprovalGranted, Event, InvestigationCompleted
from shared.kafka import EventBus
from shared.topics import Topic

INPUT_TOPICS = (Topic.INVESTIGATION_COMPLETED, Topic.APPROVAL_GRANTED, Topic.APPROVAL_DENIED)
OUTPUT_TOPICS = (
    Topic.APPROVAL_REQUESTED,
    Topic.RUNBOOK_STARTED,
    Topic.RUNBOOK_STEP,
    Topic.RUNBOOK_COMPLETED,
    Topic.RUNBOOK_FAILED,
    Topic.RUNBOOK_ROLLED_BACK,
    Topic.INCIDENT_RESOLVED,
    Topic.AUDIT_RECORDED,
)


def register(bus: EventBus, executor: Executor) -> None:
    """Subscribe the executor to its input topics and declare its outputs."""
    bus.declare_outputs(OUTPUT_TOPICS)

    async def handle(event: Event) -> None:
        with bound_contextvars(incident_id=event.incident_id):
            match event:
                case InvestigationCompleted():
                    await executor.on_investigation(event)
                case ApprovalGranted():
                    await executor.on_granted(event)
                case ApprovalDenied():
                    await executor.on_denied(event)
                case _:
                    pass  # tolerant reader: other event types are not ours

    bus.subscribe(list(INPUT_TOPICS), handle)
