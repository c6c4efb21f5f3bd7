"""Interim status updates: cadence per severity, seed 000's format, stakeholder channel."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.escalation.testing import Drill, drill_schedule
from shared.domain import IncidentPhase, Severity
from shared.events import NotificationSent, StatusUpdated

pytestmark = pytest.mark.unit

MIN = timedelta(minutes=1)


async def open_incident(drill: Drill, severity: Severity) -> None:
    """Open and classify the drill's incident at the start."""
    script = drill.script()
    await drill.feed(script.opened(), script.classified(severity, ("payments is tier 1",)))


def minutes_of_updates(drill: Drill) -> list[float]:
    """Minutes after start of every status update."""
    return [(u.occurred_at - drill.start) / MIN for u in drill.log.of(StatusUpdated)]


class TestCadence:
    """Seed 002: SEV0/SEV1 every 15 min, SEV2 every 30, SEV3 hourly, SEV4 none."""

    @pytest.mark.parametrize(("severity", "expected"), [
        (Severity.SEV0, [15, 30, 45, 60, 75, 90, 105, 120]),
        (Severity.SEV1, [15, 30, 45, 60, 75, 90, 105, 120]),
        (Severity.SEV2, [30, 60, 90, 120]),
        (Severity.SEV3, [60, 120]),
        (Severity.SEV4, []),
    ])
    async def test_cadence_per_severity(self, severity: Severity, expected: list[int]) -> None:
        """Updates come exactly at the severity's interval, numbered 1, 2, ..."""
        drill = Drill()
        await open_incident(drill, severity)
        await drill.feed(drill.script().acknowledged())
        await drill.run_until(120 * MIN, step=MIN)
        assert minutes_of_updates(drill) == expected
        assert [u.sequence for u in drill.log.of(StatusUpdated)] == list(
            range(1, len(expected) + 1))

    async def test_cadence_follows_severity_change(self) -> None:
        """After an upgrade from SEV3 to SEV1 the next update is 15 min after the last one."""
        drill = Drill()
        await open_incident(drill, Severity.SEV3)
        await drill.feed(drill.script().acknowledged())
        await drill.run_until(60 * MIN, step=MIN)
        await drill.feed(drill.script().classified(Severity.SEV1))
        await drill.run_until(100 * MIN, step=MIN)
        assert minutes_of_updates(drill) == [60, 75, 90]

    async def test_late_service_posts_one_update_not_a_burst(self) -> None:
        """Down for an hour, the service posts one overdue update, then resumes the cadence."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.feed(drill.script().acknowledged())
        await drill.at(61 * MIN)
        assert minutes_of_updates(drill) == [61]
        await drill.run_until(80 * MIN, step=MIN)
        assert minutes_of_updates(drill) == [61, 76]


class TestFormat:
    """The interim update in seed 000's abbreviated format."""

    async def test_unacknowledged_update_names_next_escalation(self) -> None:
        """Every field of the seed's format is present and says what happens next."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.run_until(15 * MIN)
        update = drill.log.of(StatusUpdated)[0]
        assert update.text.splitlines() == [
            "=== INCIDENT STATUS UPDATE ===",
            "Incident ID: INC-000001",
            "Severity: SEV1 (High)",
            "Status: notification",
            "Elapsed Time: 00:15:00",
            "Current Action: Paging responders; awaiting acknowledgement from tier 2",
            "Next Step: Escalate to tier 3 at 12:20:00 UTC unless acknowledged; "
            "next update at 12:30:00 UTC",
            "Escalation: tier 2 (senior on-call + team lead); tier 3 at 12:20:00 UTC",
            "=== END UPDATE ===",
        ]
        assert (update.severity, update.phase, update.escalation_tier) == (
            Severity.SEV1, IncidentPhase.NOTIFICATION, 2)
        assert update.elapsed_seconds == 900
        assert update.incident_id == "INC-000001"

    async def test_acknowledged_update_says_timers_stopped(self) -> None:
        """After an ack the update names who acknowledged and that escalation stopped."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.feed(drill.script().acknowledged("alice"))
        await drill.run_until(15 * MIN)
        text = drill.log.of(StatusUpdated)[0].text
        assert "Status: investigation" in text
        assert "(acknowledged by alice)" in text
        assert "Escalation: tier 1 (on-call engineer); acknowledged, escalation timers stopped" \
            in text

    async def test_phase_announced_by_triage_is_used(self) -> None:
        """A phase change from triage shows in the next update, with the matching next step."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        script = drill.script()
        await drill.feed(script.acknowledged(),
                         script.updated("phase_changed", phase=IncidentPhase.REMEDIATION))
        await drill.run_until(15 * MIN)
        update = drill.log.of(StatusUpdated)[0]
        assert update.phase is IncidentPhase.REMEDIATION
        assert update.next_step.startswith("Verify recovery")

    @pytest.mark.parametrize(("verified", "claim"), [
        (True, "Recovery was verified: all services are operating normally."),
        (False, "recovery was not verified by the orchestrator"),
    ])
    async def test_resolution_notice_claims_recovery_only_when_verified(
        self, verified: bool, claim: str
    ) -> None:
        """The final update says "operating normally" only for a verified recovery."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.at(42 * MIN)
        await drill.feed(drill.script().resolved(verified=verified))
        final = drill.log.of(StatusUpdated)[-1]
        assert final.phase is IncidentPhase.RESOLVED
        assert final.text.startswith("=== INCIDENT RESOLVED ===")
        assert claim in final.text
        assert "Duration: 00:42:00" in final.text
        assert ("operating normally" in final.text) is verified


class TestStakeholderChannel:
    """Status updates and the resolution notice go to the stakeholder webhook."""

    async def test_updates_are_posted_to_stakeholders(self) -> None:
        """Each update is posted once to the stakeholder webhook and recorded."""
        drill = Drill(schedule=drill_schedule(
            stakeholders={"webhook": "http://status.test/hook"}))
        await open_incident(drill, Severity.SEV1)
        await drill.feed(drill.script().acknowledged())
        await drill.run_until(30 * MIN)
        await drill.feed(drill.script().resolved())
        posts = [m for m in drill.webhook.sent if m.recipient == "stakeholders"]
        assert [(m.kind, m.address) for m in posts] == [
            ("status_update", "http://status.test/hook"),
            ("status_update", "http://status.test/hook"),
            ("resolution", "http://status.test/hook"),
        ]
        assert posts[0].payload["text"] == drill.log.of(StatusUpdated)[0].text
        recorded = [n for n in drill.log.of(NotificationSent) if n.recipient == "stakeholders"]
        assert [n.kind for n in recorded] == ["status_update", "status_update", "resolution"]
        assert all(n.delivered for n in recorded)

    async def test_no_stakeholder_channel_still_records_updates(self) -> None:
        """Without a stakeholder webhook the update is still an event; nothing is posted."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.run_until(15 * MIN)
        assert len(drill.log.of(StatusUpdated)) == 1
        assert not [m for m in drill.webhook.sent if m.kind == "status_update"]
