"""Decisions: given an incident's state and the time, what is due now.

Pure functions of the projection (`state`), the policy, the schedule and the
catalog; the flow carries them out and records them as events, which feed back
into the projection. Because deadlines are computed here from facts in the log
(open time, severity, tier reached and when, acknowledgement), a restarted
service finds exactly the deadlines the stopped one had.

Order of precedence inside one incident:

1. resolved: nothing escalates and no page goes out any more; a final status
   update and a resolution notice to everyone who was paged and to the
   stakeholder channel are due instead;
2. the first page (tier 1) is due when the incident is classified, or when the
   classification grace has passed without one;
3. queued immediate triggers escalate one tier each, acknowledged or not (a
   failed remediation after an acknowledgement still needs more people);
4. unacknowledged: the next tier is due at the earlier of the ack-window and
   ladder deadlines (see `policy`); acknowledged: timers are stopped.

Deliveries are due for every (tier, person, channel) whose key the log does not
show as delivered, until `max_attempts` attempts failed; a failed attempt is
retried no sooner than `retry_after` later (the next tick).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.escalation.messages import (
    Message,
    page_key,
    render_page,
    render_post,
    render_resolution,
    render_status,
    resolution_key,
    stakeholder_key,
)
from services.escalation.policy import MAX_TIER, SETTLING_TRIGGERS, EscalationPolicy
from services.escalation.schedule import OnCallSchedule
from services.escalation.state import IncidentEscalation, TriggerKind
from shared.catalog import ServiceCatalog
from shared.domain import IncidentPhase, Severity

STAKEHOLDERS = "stakeholders"
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EscalationDue:
    """The incident must move to `tier` now."""

    tier: int
    previous_tier: int | None
    trigger: TriggerKind
    reason: str
    cause_id: str | None
    roles: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class StatusDue:
    """A status update must be published now."""

    sequence: int
    phase: IncidentPhase
    severity: Severity | None
    elapsed_seconds: float
    current_action: str
    next_step: str
    escalation_tier: int | None
    text: str
    resolution_of: str | None = None


@dataclass(frozen=True)
class NotificationDue:
    """One message must be (re)sent to one address now."""

    idempotency_key: str
    kind: Literal["page", "status_update", "resolution"]
    channel: str
    recipient: str
    address: str
    attempt: int
    tier: int | None
    cause_id: str | None
    message: Message = field(compare=False)


@dataclass(frozen=True)
class EscalationPlanner:
    """Decides what is due for an incident at a given time."""

    policy: EscalationPolicy
    schedule: OnCallSchedule
    catalog: ServiceCatalog
    channels: frozenset[str]
    ui_url: str = "http://127.0.0.1:8080"
    max_attempts: int = 5
    retry_after: timedelta = timedelta(seconds=1)

    # --- escalation ------------------------------------------------------------

    def teams(self, incident: IncidentEscalation) -> list[str]:
        """Teams owning the incident's services, per the service catalog."""
        teams = (s.team for name in incident.services if (s := self.catalog.get(name)))
        return list(dict.fromkeys(teams))

    def next_deadline(self, incident: IncidentEscalation) -> tuple[datetime, TriggerKind] | None:
        """When the next tier is due by the clock alone, and why (None when timers stopped)."""
        tier = incident.tier
        if not incident.is_open or incident.acknowledged or not 1 <= tier < MAX_TIER:
            return None
        assert incident.opened_at is not None
        ack_due = incident.tiers[tier].reached_at + self.policy.ack_window(incident.severity)
        ladder_due = incident.opened_at + self.policy.tier_due_after_open(tier + 1)
        if ack_due <= ladder_due:
            return ack_due, "ack_timeout"
        return ladder_due, "tier_timer"

    def next_escalation(self, incident: IncidentEscalation, now: datetime) -> EscalationDue | None:
        """The escalation due now, if any."""
        if not incident.is_open or incident.tier >= MAX_TIER:
            return None
        if incident.tier == 0:
            return self._first_page(incident, now)
        self._drop_settling(incident)
        if incident.pending:
            trigger = incident.pending[0]
            return self._due(incident, trigger=trigger.trigger, reason=trigger.reason,
                             cause_id=trigger.cause_id, now=now)
        deadline = self.next_deadline(incident)
        if deadline is None or now < deadline[0]:
            return None
        return self._due(incident, trigger=deadline[1], reason=self._timer_reason(
            incident, deadline[1], now), cause_id=incident.tiers[incident.tier].event_id, now=now)

    def _drop_settling(self, incident: IncidentEscalation) -> None:
        """Forget severity rises and joining services of the incident's first minutes."""
        if incident.opened_at is None:
            return
        settled = incident.opened_at + self.policy.settle_window()
        incident.pending = [
            p for p in incident.pending
            if not (p.trigger in SETTLING_TRIGGERS and p.at is not None and p.at < settled)
        ]

    def _first_page(self, incident: IncidentEscalation, now: datetime) -> EscalationDue | None:
        assert incident.opened_at is not None
        graced = now >= incident.opened_at + self.policy.classification_grace()
        if incident.severity is None and not graced:
            return None
        reason = "first page" if incident.severity else "first page, not classified yet"
        cause = incident.classified_event_id or incident.opened_event_id
        return self._due(incident, trigger="initial", reason=reason, cause_id=cause, now=now)

    def _timer_reason(self, incident: IncidentEscalation, trigger: TriggerKind,
                      now: datetime) -> str:
        assert incident.opened_at is not None
        if trigger == "ack_timeout":
            window = int(self.policy.ack_window(incident.severity).total_seconds())
            return (f"tier {incident.tier} did not acknowledge within {window} s "
                    f"({incident.severity or 'unclassified'})")
        return f"unacknowledged {int((now - incident.opened_at).total_seconds())} s after open"

    def _due(self, incident: IncidentEscalation, *, trigger: TriggerKind, reason: str,
             cause_id: str | None, now: datetime) -> EscalationDue:
        tier = incident.tier + 1
        responders = self.schedule.responders(tier, self.teams(incident), now)
        return EscalationDue(
            tier=tier, previous_tier=incident.tier or None, trigger=trigger, reason=reason,
            cause_id=cause_id, roles=tuple(r.value for r in self.schedule.roles_for(tier)),
            targets=tuple(r.person for r in responders),
        )

    # --- status updates ----------------------------------------------------------

    def next_status_at(self, incident: IncidentEscalation) -> datetime | None:
        """When the next interim status update is due (None when the severity has none)."""
        cadence = self.policy.status_cadence(incident.severity)
        origin = incident.last_status_at or incident.opened_at
        if cadence is None or origin is None or not incident.is_open:
            return None
        return origin + cadence

    def status_update(self, incident: IncidentEscalation, now: datetime) -> StatusDue | None:
        """The status update due now, if any (the final one once resolved)."""
        if incident.opened_at is None:
            return None
        sequence = incident.status_sequence + 1
        if incident.resolved_at is not None:
            if incident.resolution_post is not None:
                return None
            report = render_resolution(incident, now=now)
            return StatusDue(
                sequence=sequence, phase=report.phase, severity=incident.severity,
                elapsed_seconds=report.elapsed.total_seconds(),
                current_action=report.current_action, next_step=report.next_step,
                escalation_tier=incident.tier or None, text=report.text,
                resolution_of=incident.resolved_event_id,
            )
        due_at = self.next_status_at(incident)
        if due_at is None or now < due_at:
            return None
        cadence = self.policy.status_cadence(incident.severity)
        deadline = self.next_deadline(incident)
        report = render_status(
            incident, now=now,
            next_escalation=(incident.tier + 1, max(deadline[0], now)) if deadline else None,
            next_update_at=now + cadence if cadence else None,
        )
        return StatusDue(
            sequence=sequence, phase=report.phase, severity=incident.severity,
            elapsed_seconds=report.elapsed.total_seconds(), current_action=report.current_action,
            next_step=report.next_step, escalation_tier=incident.tier or None, text=report.text,
        )

    # --- deliveries ----------------------------------------------------------------

    def notifications(self, incident: IncidentEscalation, now: datetime) -> list[NotificationDue]:
        """Every message that must be (re)sent now."""
        if incident.opened_at is None:
            return []
        if incident.resolved_at is not None:
            return self._resolution_notices(incident, now)
        return [*self._pages(incident, now), *self._status_posts(incident, now)]

    def settled(self, incident: IncidentEscalation) -> bool:
        """True when nothing can fall due any more: resolved, announced, every notice sent
        or given up (a settled incident never needs another tick)."""
        return (
            incident.resolved_at is not None
            and self.status_update(incident, _END_OF_TIME) is None
            and not self.notifications(incident, _END_OF_TIME)
        )

    def attempt_due(self, incident: IncidentEscalation, key: str, now: datetime) -> int | None:
        """The attempt number to make now for key, or None (delivered, given up, or too soon)."""
        record = incident.deliveries.get(key)
        if record is None:
            return 1
        if record.delivered or record.attempts >= self.max_attempts:
            return None
        if record.last_attempt_at is not None and now < record.last_attempt_at + self.retry_after:
            return None
        return record.attempts + 1

    def _contacts(self, person: str) -> Iterable[tuple[str, str]]:
        found = self.schedule.person(person)
        return found.contacts(sorted(self.channels)) if found is not None else ()

    def _pages(self, incident: IncidentEscalation, now: datetime) -> list[NotificationDue]:
        out = []
        for tier in sorted(incident.tiers):
            reached = incident.tiers[tier]
            for person in reached.targets:
                for channel, address in self._contacts(person):
                    key = page_key(incident.incident_id, tier, person, channel)
                    attempt = self.attempt_due(incident, key, now)
                    if attempt is None:
                        continue
                    message = render_page(incident, reached, recipient=person,
                                          ui_url=self.ui_url, idempotency_key=key)
                    out.append(NotificationDue(
                        idempotency_key=key, kind="page", channel=channel, recipient=person,
                        address=address, attempt=attempt, tier=tier, cause_id=reached.event_id,
                        message=message,
                    ))
        return out

    def _stakeholder_webhook(self) -> str | None:
        url = self.schedule.stakeholders.webhook
        return url if url and "webhook" in self.channels else None

    def _status_posts(self, incident: IncidentEscalation, now: datetime) -> list[NotificationDue]:
        url = self._stakeholder_webhook()
        if url is None:
            return []
        out = []
        for post in sorted(incident.posts.values(), key=lambda p: p.sequence):
            key = stakeholder_key(post.event_id)
            attempt = self.attempt_due(incident, key, now)
            if post.resolution or attempt is None:
                continue
            message = render_post(incident, kind="status_update", text=post.text,
                                  sequence=post.sequence, idempotency_key=key,
                                  recipient=STAKEHOLDERS)
            out.append(NotificationDue(
                idempotency_key=key, kind="status_update", channel="webhook",
                recipient=STAKEHOLDERS, address=url, attempt=attempt, tier=None,
                cause_id=post.event_id, message=message,
            ))
        return out

    def _resolution_notices(self, incident: IncidentEscalation,
                            now: datetime) -> list[NotificationDue]:
        post = incident.resolution_post
        resolved_id = incident.resolved_event_id
        if post is None or resolved_id is None:
            return []
        out = []
        paged = dict.fromkeys(p for t in sorted(incident.tiers) for p in incident.tiers[t].targets)
        for person in paged:
            for channel, address in self._contacts(person):
                key = resolution_key(incident.incident_id, resolved_id, person, channel)
                attempt = self.attempt_due(incident, key, now)
                if attempt is None:
                    continue
                message = render_post(incident, kind="resolution", text=post.text,
                                      sequence=post.sequence, idempotency_key=key,
                                      recipient=person)
                out.append(NotificationDue(
                    idempotency_key=key, kind="resolution", channel=channel, recipient=person,
                    address=address, attempt=attempt, tier=None, cause_id=resolved_id,
                    message=message,
                ))
        url = self._stakeholder_webhook()
        key = stakeholder_key(post.event_id)
        attempt = self.attempt_due(incident, key, now)
        if url is not None and attempt is not None:
            message = render_post(incident, kind="resolution", text=post.text,
                                  sequence=post.sequence, idempotency_key=key,
                                  recipient=STAKEHOLDERS)
            out.append(NotificationDue(
                idempotency_key=key, kind="resolution", channel="webhook",
                recipient=STAKEHOLDERS, address=url, attempt=attempt, tier=None,
                cause_id=post.event_id, message=message,
            ))
        return out
