"""Reporter wiring: every lifecycle topic in, report.published out."""

from __future__ import annotations

from services.reporter.publisher import ReportDesk
from shared.kafka import EventBus, each
from shared.topics import LIFECYCLE_TOPICS, STORM_TOPICS, Topic, prompt_topics

INPUTS = tuple(t for t in LIFECYCLE_TOPICS if t is not Topic.REPORT_PUBLISHED)


def register(bus: EventBus, desk: ReportDesk) -> None:
    """Subscribe the desk to every lifecycle topic."""
    bus.declare_outputs([Topic.REPORT_PUBLISHED])
    bus.subscribe(prompt_topics(INPUTS), desk.on_event)
    # Reports are debounced and rewritten when an event arrives late: updates can wait.
    bus.subscribe_background(STORM_TOPICS, each(desk.on_event))
