"""Reporter wiring: every lifecycle topic in, report.published out."""

from __future__ import annotations

from collections.abc import Sequence

from services.reporter.publisher import ReportDesk
from shared.events import Event
from shared.kafka import EventBus
from shared.topics import LIFECYCLE_TOPICS, Topic

INPUTS = tuple(t for t in LIFECYCLE_TOPICS if t is not Topic.REPORT_PUBLISHED)
# A storm brings one incident.updated per alert. Reports are debounced and rewritten
# when a later event arrives, so updates are read in the background, in batches, in a
# group of their own (see KafkaSettings); the rest (resolution above all) stays prompt.
BACKGROUND: tuple[Topic, ...] = (Topic.INCIDENT_UPDATED,)
PROMPT: tuple[Topic, ...] = tuple(t for t in INPUTS if t not in BACKGROUND)


def register(bus: EventBus, desk: ReportDesk) -> None:
    """Subscribe the desk to every lifecycle topic."""
    bus.declare_outputs([Topic.REPORT_PUBLISHED])
    bus.subscribe(PROMPT, desk.on_event)

    async def on_events(events: Sequence[Event]) -> None:
        for event in events:
            await desk.on_event(event)

    bus.subscribe_batch(BACKGROUND, on_events, group=f"{bus.service}.updates",
                        background=True)
