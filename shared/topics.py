"""The topic catalog: one topic per event type, its key, partitions and retention.

This is the only place topic names are spelled. Lifecycle topics keep their
data forever (they are the audit trail and every projection is rebuilt from
them); the alert topic is high volume and keeps a week.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Topic(StrEnum):
    """Every topic of the product; the value is the Kafka topic name (before any prefix)."""

    ALERT_RECEIVED = "alert.received"
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_CLASSIFIED = "incident.classified"
    INCIDENT_UPDATED = "incident.updated"
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged"
    INCIDENT_RESOLVED = "incident.resolved"
    ESCALATION_TRIGGERED = "escalation.triggered"
    NOTIFICATION_SENT = "notification.sent"
    STATUS_UPDATED = "status.updated"
    INVESTIGATION_COMPLETED = "investigation.completed"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_DENIED = "approval.denied"
    RUNBOOK_STARTED = "runbook.started"
    RUNBOOK_STEP = "runbook.step"
    RUNBOOK_COMPLETED = "runbook.completed"
    RUNBOOK_FAILED = "runbook.failed"
    RUNBOOK_ROLLED_BACK = "runbook.rolled_back"
    REPORT_PUBLISHED = "report.published"
    AUDIT_RECORDED = "audit.recorded"

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return f"{self.value}.dlq"

    @property
    def spec(self) -> TopicSpec:
        """This topic's catalog entry."""
        return CATALOG[self]


FOREVER = -1
WEEK_MS = 7 * 24 * 3600 * 1000
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created: key field, partition count and retention."""

    topic: Topic
    key: str
    partitions: int
    retention_ms: int
    lifecycle: bool


def _lifecycle(topic: Topic, partitions: int = 6) -> TopicSpec:
    return TopicSpec(topic, "incident_id", partitions, FOREVER, lifecycle=True)


CATALOG: dict[Topic, TopicSpec] = {
    Topic.ALERT_RECEIVED: TopicSpec(
        Topic.ALERT_RECEIVED, "correlation_key", 12, WEEK_MS, lifecycle=False
    ),
    **{t: _lifecycle(t) for t in Topic if t is not Topic.ALERT_RECEIVED},
}

LIFECYCLE_TOPICS: tuple[Topic, ...] = tuple(t for t in Topic if CATALOG[t].lifecycle)

# One event per alert in a storm, from which every reader but triage only keeps state:
# services read them with `EventBus.subscribe_background`, everything else promptly.
STORM_TOPICS: tuple[Topic, ...] = (Topic.INCIDENT_UPDATED,)


def prompt_topics(topics: Sequence[Topic]) -> tuple[Topic, ...]:
    """topics without the storm topics (those a service reads in the background)."""
    return tuple(t for t in topics if t not in STORM_TOPICS)


def topic_name(topic: Topic | str, prefix: str = "") -> str:
    """The physical topic name: the catalog name behind an optional prefix (tests, tenants)."""
    return f"{prefix}{topic}"


def all_topic_specs(
    prefix: str = "", max_partitions: int | None = None
) -> list[tuple[str, int, int]]:
    """(name, partitions, retention_ms) of every topic and its DLQ, for creation at start-up.

    max_partitions caps every topic's partition count (the embedded broker's layout:
    `shared.embedded.EMBEDDED_MAX_PARTITIONS`).
    """
    out: list[tuple[str, int, int]] = []
    for spec in CATALOG.values():
        partitions = min(spec.partitions, max_partitions or spec.partitions)
        out.append((topic_name(spec.topic, prefix), partitions, spec.retention_ms))
        out.append((topic_name(spec.topic.dlq, prefix), 1, DLQ_RETENTION_MS))
    return out
