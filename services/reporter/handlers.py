"""Reporter wiring: every lifecycle topic in, report.published out."""

from __future__ import annotations

from services.reporter.publisher import ReportDesk
from shared.kafka import EventBus
from shared.topics import LIFECYCLE_TOPICS, Topic

INPUTS = tuple(t for t in LIFECYCLE_TOPICS if t is not Topic.REPORT_PUBLISHED)


def register(bus: EventBus, desk: ReportDesk) -> None:
    """Subscribe the desk to every lifecycle topic."""
    bus.declare_outputs([Topic.REPORT_PUBLISHED])
    bus.subscribe(INPUTS, desk.on_event)
