"""Wiring of the escalation service to the bus: restore, subscribe, tick.

Start-up replays the lifecycle topics it reads and its own outputs into the
book (`bus.restore`), so deadlines and idempotency records are back before the
first live message; the deadline loop then acts on whatever fell due while the
service was down. Live events go through the same `flow.handle`, which is
idempotent on `event_id`, so the overlap between replay and subscription is
harmless.
"""

from __future__ import annotations

import logging

from services.escalation.flow import EscalationFlow
from shared.runtime import ServiceRuntime
from shared.topics import STORM_TOPICS, Topic, prompt_topics

log = logging.getLogger(__name__)

INPUT_TOPICS: tuple[Topic, ...] = (
    Topic.INCIDENT_OPENED,
    Topic.INCIDENT_CLASSIFIED,
    Topic.INCIDENT_UPDATED,
    Topic.INCIDENT_ACKNOWLEDGED,
    Topic.INCIDENT_RESOLVED,
    Topic.RUNBOOK_FAILED,
    Topic.RUNBOOK_ROLLED_BACK,
)
OUTPUT_TOPICS: tuple[Topic, ...] = (
    Topic.ESCALATION_TRIGGERED,
    Topic.NOTIFICATION_SENT,
    Topic.STATUS_UPDATED,
)


def register(runtime: ServiceRuntime, flow: EscalationFlow, *, tick_s: float) -> None:
    """Restore at start, subscribe to the lifecycle topics, run the deadline loop."""
    bus = runtime.bus
    bus.declare_outputs(OUTPUT_TOPICS)

    async def restore() -> None:
        count = await bus.restore((*INPUT_TOPICS, *OUTPUT_TOPICS), flow.restore)
        flow.prune()
        log.info("restored escalation state from %s events (%s incidents)", count,
                 len(flow.book.incidents))

    async def deadlines() -> None:
        await flow.run(tick_s)

    runtime.on_start.append(restore)
    runtime.background.append(deadlines)
    runtime.on_stop.append(flow.aclose)

    # Batches: an alert storm turns into one incident.updated per alert, and
    # committing each one alone kept a new incident's first page waiting seconds
    # behind them at 1,000 alerts/s. Updates are read in the background (their
    # own group, a few fetches a second): the notices they can cause (new
    # services, a severity change) may wait half a second, while fetching them
    # as fast as they came cost the broker more than any other consumer. The
    # pages of new incidents and acknowledgements stay prompt.
    bus.subscribe_batch(prompt_topics(INPUT_TOPICS), flow.handle_batch)
    bus.subscribe_background(STORM_TOPICS, flow.handle_batch)
