"""Escalation policy: ack windows, the tier ladder, immediate triggers, ack and resolution.

Each test runs the real flow (planner + projection) in memory with a manual clock
(`services.escalation.testing.Drill`) and reads the escalations it recorded.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.escalation.policy import EscalationPolicy
from services.escalation.state import risk_flags
from services.escalation.testing import Drill
from shared.domain import IncidentPhase, Severity
from shared.events import EscalationTriggered, StatusUpdated

pytestmark = pytest.mark.unit

MIN = timedelta(minutes=1)


async def open_incident(drill: Drill, severity: Severity | None = Severity.SEV1,
                        reasons: tuple[str, ...] = ("payments is tier 1",),
                        services: tuple[str, ...] = ("payments",)) -> None:
    """Feed incident.opened (+ incident.classified unless severity is None) at the drill start."""
    script = drill.script()
    await drill.feed(script.opened(services))
    if severity is not None:
        await drill.feed(script.classified(severity, reasons))


class TestAckWindow:
    """The SLA acknowledgement window of each severity."""

    @pytest.mark.parametrize(("severity", "minutes"), [
        (Severity.SEV0, 5), (Severity.SEV1, 10), (Severity.SEV2, 30), (Severity.SEV3, 120),
        (Severity.SEV4, 240),
    ])
    def test_window_per_severity(self, severity: Severity, minutes: int) -> None:
        """Ack windows are DOMAIN.md's acknowledge SLAs."""
        assert EscalationPolicy().ack_window(severity) == timedelta(minutes=minutes)

    def test_windows_are_scaled(self) -> None:
        """The clock's time scale multiplies every threshold."""
        policy = EscalationPolicy(lambda t: t * 0.01)
        assert policy.ack_window(Severity.SEV1) == timedelta(seconds=6)
        assert policy.tier_due_after_open(4) == timedelta(seconds=36)

    @pytest.mark.parametrize(("severity", "minute", "trigger"), [
        (Severity.SEV0, 5, "ack_timeout"),
        (Severity.SEV1, 10, "ack_timeout"),
        (Severity.SEV2, 15, "tier_timer"),  # the 15-minute ladder is stricter than 30 min
        (Severity.SEV3, 15, "tier_timer"),
    ])
    async def test_unacknowledged_first_page_escalates_at_earlier_deadline(
        self, severity: Severity, minute: int, trigger: str
    ) -> None:
        """Tier 2 comes exactly when the ack window or the ladder expires, whichever is first."""
        drill = Drill()
        await open_incident(drill, severity)
        await drill.run_until(minute * MIN - timedelta(seconds=15))
        assert drill.escalations() == [(1, "initial")]
        await drill.run_until(minute * MIN)
        assert drill.escalations() == [(1, "initial"), (2, trigger)]
        assert drill.escalation_minutes() == [0, minute]

    async def test_each_tier_gets_its_own_window(self) -> None:
        """A SEV0 nobody acknowledges walks up the chain every 5 minutes: 0, 5, 10, 15."""
        drill = Drill()
        await open_incident(drill, Severity.SEV0)
        await drill.run_until(30 * MIN)
        assert drill.escalation_minutes() == [0, 5, 10, 15]
        assert [t for t, _ in drill.escalations()] == [1, 2, 3, 4]

    async def test_scaled_clock_runs_the_same_table_faster(self) -> None:
        """At time scale 0.01 a SEV1's 10-minute window is 6 seconds."""
        drill = Drill(time_scale=0.01)
        await open_incident(drill, Severity.SEV1)
        await drill.run_until(timedelta(seconds=5), step=timedelta(seconds=1))
        assert len(drill.escalations()) == 1
        await drill.run_until(timedelta(seconds=6), step=timedelta(seconds=1))
        assert drill.escalations()[-1] == (2, "ack_timeout")


class TestTierLadder:
    """Tiers at 0/15/30/60 minutes since open, while unacknowledged."""

    async def test_ladder_reaches_tier_four_at_sixty_minutes(self) -> None:
        """An unacknowledged SEV2 reaches tiers 1..4 at 0, 15, 30 and 60 minutes, then stops."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        await drill.run_until(6 * 60 * MIN, step=MIN)
        assert drill.escalation_minutes() == [0, 15, 30, 60]
        assert [t for t, _ in drill.escalations()] == [1, 2, 3, 4]

    async def test_tiers_page_the_roles_of_domain_md(self) -> None:
        """Each escalation names its roles and the people holding them."""
        drill = Drill()
        await open_incident(drill, Severity.SEV0)
        await drill.run_until(15 * MIN)
        got = [(e.tier, e.roles, e.targets) for e in drill.log.of(EscalationTriggered)]
        assert got == [
            (1, ("oncall",), ("alice",)),
            (2, ("senior_oncall", "team_lead"), ("dave", "bob")),
            (3, ("engineering_manager", "director"), ("erin", "grace")),
            (4, ("vp_engineering", "executives"), ("heidi", "olivia")),
        ]

    async def test_overdue_incident_after_downtime_climbs_one_tier_per_step(self) -> None:
        """Discovered 2 h late (service was down), the incident climbs straight to tier 4."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        await drill.at(120 * MIN)
        assert [t for t, _ in drill.escalations()] == [1, 2, 3, 4]


class TestFirstPage:
    """The first page waits briefly for a severity, never forever."""

    async def test_waits_for_classification_within_grace(self) -> None:
        """Opened without classification: no page before 60 s, a page (unclassified) at 60 s."""
        drill = Drill()
        await open_incident(drill, severity=None)
        await drill.at(timedelta(seconds=59))
        assert drill.escalations() == []
        await drill.at(timedelta(seconds=60))
        first = drill.log.of(EscalationTriggered)
        assert [(e.tier, e.trigger) for e in first] == [(1, "initial")]
        assert "not classified" in first[0].reason

    async def test_classification_before_open_pages_on_open(self) -> None:
        """Events of two topics may arrive out of order: classification first still works."""
        drill = Drill()
        script = drill.script()
        classified, opened = script.classified(Severity.SEV1), script.opened()
        await drill.feed(classified)
        assert drill.escalations() == []
        await drill.feed(opened)
        assert drill.escalations() == [(1, "initial")]

    async def test_unclassified_incident_uses_conservative_window(self) -> None:
        """Never classified, the incident escalates on SEV1's 10-minute window."""
        drill = Drill()
        await open_incident(drill, severity=None)
        await drill.run_until(12 * MIN)
        assert drill.escalations() == [(1, "initial"), (2, "ack_timeout")]
        assert drill.escalation_minutes()[1] == pytest.approx(11)  # paged at 1 min, +10


class TestImmediateTriggers:
    """Causes that escalate to the next tier at once, without waiting for a deadline."""

    async def test_cascade_settling_does_not_escalate(self) -> None:
        """Services joining and severity rising in the first two minutes are the cascade
        arriving, not a worsening: the first page stands, nothing escalates."""
        drill = Drill()
        await open_incident(drill, Severity.SEV3)
        script = drill.script()
        await drill.run_until(timedelta(seconds=30))
        await drill.feed(script.updated("service_added", new_services=("payments",)),
                         script.classified(Severity.SEV0, previous_severity=Severity.SEV3),
                         script.updated("severity_changed", severity=Severity.SEV0))
        await drill.run_until(timedelta(seconds=100))
        assert drill.escalations() == [(1, "initial")]

    @pytest.mark.parametrize(("settle", "escalations"), [
        (None, [(1, "initial"), (2, "new_services")]),
        (timedelta(seconds=750), [(1, "initial")]),
    ])
    async def test_settle_window_is_configurable(
        self, settle: timedelta | None, escalations: list[tuple[int, str]]
    ) -> None:
        """At time scale 0.02 the default window is 2.4 s; a scaled demo whose alert rules run
        in real time sets 750 s (15 real seconds), and a service whose alert comes 5 s after
        the open is then part of the first picture, not a worsening."""
        drill = Drill(time_scale=0.02, **({"settle": settle} if settle else {}))
        await open_incident(drill, Severity.SEV3)
        await drill.run_until(timedelta(seconds=5), step=timedelta(seconds=0.5))
        await drill.feed(drill.script().updated("service_added", new_services=("checkout",)))
        await drill.run_until(timedelta(seconds=10), step=timedelta(seconds=0.5))
        assert drill.escalations() == escalations

    async def test_severity_increase(self) -> None:
        """A reclassification to a worse severity escalates once; a repeat of it does nothing."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        script = drill.script()
        await drill.run_until(3 * MIN)
        await drill.feed(script.classified(Severity.SEV2))
        assert drill.escalations() == [(1, "initial")]
        await drill.feed(script.classified(Severity.SEV0, previous_severity=Severity.SEV2))
        await drill.feed(script.updated("severity_changed", severity=Severity.SEV0))
        assert drill.escalations() == [(1, "initial"), (2, "severity_increase")]

    async def test_reclassification_echoes_out_of_order_escalate_once_per_rise(self) -> None:
        """Two rises reach escalation as both reclassifications first, then both of their
        `severity_changed` updates (the updates' topic is read in the background): the late
        SEV2 echo neither lowers the severity nor makes the SEV1 echo a third rise."""
        drill = Drill()
        await open_incident(drill, Severity.SEV3)
        script = drill.script()
        await drill.run_until(3 * MIN)
        await drill.feed(script.classified(Severity.SEV2, previous_severity=Severity.SEV3),
                         script.classified(Severity.SEV1, previous_severity=Severity.SEV2))
        assert drill.escalations() == [(1, "initial"), (2, "severity_increase"),
                                       (3, "severity_increase")]
        await drill.feed(script.updated("severity_changed", severity=Severity.SEV2),
                         script.updated("severity_changed", severity=Severity.SEV1))
        await drill.run_until(4 * MIN)
        assert drill.escalations() == [(1, "initial"), (2, "severity_increase"),
                                       (3, "severity_increase")]
        assert drill.flow.book.get(script.incident_id).severity is Severity.SEV1

    async def test_severity_increase_before_first_page_is_folded_in(self) -> None:
        """Before anyone was paged (crash before the first page), a worse severity only makes
        the first page say so: replayed opened/SEV3/SEV0 give one page, at SEV0."""
        drill = Drill()
        script = drill.script()
        for event in (script.opened(), script.classified(Severity.SEV3),
                      script.classified(Severity.SEV0, previous_severity=Severity.SEV3)):
            await drill.log.publish(event)
        drill.restart()
        await drill.at(timedelta(seconds=1))
        assert drill.escalations() == [(1, "initial")]
        assert drill.email.to("alice")[0].subject.startswith("[SEV0]")

    async def test_new_services(self) -> None:
        """A newly involved service escalates; a service already known does not."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        script = drill.script()
        await drill.run_until(3 * MIN)
        await drill.feed(script.updated("service_added", new_services=("payments",)))
        assert len(drill.escalations()) == 1
        await drill.feed(script.updated("service_added", new_services=("storefront",)))
        assert drill.escalations()[-1] == (2, "new_services")
        # Team roles now cover the web team too: its manager is paged alongside payments'.
        await drill.feed(script.runbook_failed("run-9"))
        assert drill.log.of(EscalationTriggered)[-1].targets == ("erin", "grace")

    async def test_expired_approval_is_not_a_failed_remediation(self) -> None:
        """An approval request that expired unanswered ran nothing: it does not escalate."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        script = drill.script()
        await drill.run_until(3 * MIN)
        expired = script.runbook_failed("run-1").model_copy(update={"step": "approval"})
        await drill.feed(expired)
        assert drill.escalations() == [(1, "initial")]

    async def test_remediation_failure_escalates_once_per_run(self) -> None:
        """runbook.failed and runbook.rolled_back of one run escalate once; another run again."""
        drill = Drill()
        await open_incident(drill, Severity.SEV2)
        script = drill.script()
        await drill.feed(script.runbook_failed("run-1"),
                         script.runbook_failed("run-1", rolled_back=True))
        assert drill.escalations()[1:] == [(2, "remediation_failed")]
        await drill.feed(script.runbook_failed("run-2", rolled_back=True))
        assert drill.escalations()[1:] == [(2, "remediation_failed"), (3, "remediation_failed")]

    async def test_data_loss_known_at_open_goes_beyond_first_tier(self) -> None:
        """A data-loss reason in the first classification pages tier 1 and at once tier 2."""
        drill = Drill()
        await open_incident(drill, Severity.SEV0, reasons=("data loss risk: writes failing",))
        assert drill.escalations() == [(1, "initial"), (2, "data_loss")]

    async def test_security_risk_in_update_detail(self) -> None:
        """A security risk named in an incident update escalates, once per incident."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        script = drill.script()
        await drill.feed(script.updated("alert_added", detail="possible security breach"))
        await drill.feed(script.updated("alert_added", detail="security breach confirmed"))
        assert drill.escalations() == [(1, "initial"), (2, "security_risk")]

    async def test_immediate_triggers_stop_at_tier_four(self) -> None:
        """Past tier 4 there is nobody left to escalate to: no error, no event."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        script = drill.script()
        for run in range(5):
            await drill.feed(script.runbook_failed(f"run-{run}"))
        assert [t for t, _ in drill.escalations()] == [1, 2, 3, 4]


class TestAcknowledgement:
    """Acknowledgement stops the timers; status updates go on."""

    async def test_no_escalation_after_ack(self) -> None:
        """Acknowledged within the window: six hours later still tier 1, with status updates."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.at(3 * MIN)
        await drill.feed(drill.script().acknowledged("alice"))
        await drill.run_until(6 * 60 * MIN, step=MIN)
        assert drill.escalations() == [(1, "initial")]
        updates = drill.log.of(StatusUpdated)
        assert len(updates) == 24  # SEV1: every 15 min for 6 h
        assert updates[-1].phase is IncidentPhase.INVESTIGATION

    async def test_ack_after_escalation_stops_further_tiers(self) -> None:
        """Acknowledged at tier 2: tier 3 never comes."""
        drill = Drill()
        await open_incident(drill, Severity.SEV0)
        await drill.run_until(6 * MIN)
        await drill.feed(drill.script().acknowledged("dave"))
        await drill.run_until(2 * 60 * MIN, step=MIN)
        assert [t for t, _ in drill.escalations()] == [1, 2]

    async def test_failed_remediation_still_escalates_after_ack(self) -> None:
        """A failed fix needs more people even when acknowledged; timers stay stopped after."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.feed(drill.script().acknowledged("alice"))
        await drill.at(20 * MIN)
        await drill.feed(drill.script().runbook_failed("run-1"))
        await drill.run_until(3 * 60 * MIN, step=MIN)
        assert drill.escalations() == [(1, "initial"), (2, "remediation_failed")]
        assert "Already acknowledged by alice" in drill.email.to("dave")[0].text


class TestResolution:
    """Resolution stops everything and tells everyone who was paged."""

    async def test_nothing_escalates_or_pages_after_resolution(self) -> None:
        """Resolved at tier 2: no tier 3, no more status updates, one resolution notice each."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        await drill.run_until(12 * MIN)
        await drill.feed(drill.script().resolved())
        await drill.run_until(3 * 60 * MIN, step=MIN)
        await drill.feed(drill.script().runbook_failed("late-run"))
        assert [t for t, _ in drill.escalations()] == [1, 2]
        updates = drill.log.of(StatusUpdated)
        assert [u.phase for u in updates] == [IncidentPhase.RESOLVED]
        notices = {m.recipient for m in drill.email.sent if m.kind == "resolution"}
        assert notices == {"alice", "dave", "bob"}
        assert len([m for m in drill.email.sent if m.kind == "resolution"]) == 3

    async def test_settled_incident_is_left_alone(self) -> None:
        """Once resolved and every notice is out, the incident is settled; a failed notice
        keeps it active until the retry delivers it."""
        drill = Drill()
        await open_incident(drill, Severity.SEV1)
        drill.email.fail_first = drill.email.calls + 1  # the resolution e-mail fails once
        await drill.feed(drill.script().resolved())
        incident = drill.flow.book.get("INC-000001")
        assert incident is not None
        assert not drill.flow.planner.settled(incident)
        await drill.at(MIN)
        assert drill.flow.planner.settled(incident)
        assert [m.kind for m in drill.email.to("alice")] == ["page", "resolution"]


class TestBoundedMemory:
    """A settled incident is forgotten after the retention period, live and after a restart."""

    async def test_forgotten_after_retention_and_late_events_ignored(self) -> None:
        """Kept (and served) for the retention period after resolution, then dropped; a late
        event of it neither brings it back nor pages anyone."""
        drill = Drill(retention=timedelta(hours=1))
        await open_incident(drill, Severity.SEV1)
        await drill.at(5 * MIN)
        await drill.feed(drill.script().resolved())
        await drill.at(6 * MIN)
        await drill.at(64 * MIN)
        assert drill.flow.book.get("INC-000001") is not None
        sent = len(drill.email.sent)
        await drill.at(66 * MIN)
        assert drill.flow.book.get("INC-000001") is None
        await drill.feed(drill.script().runbook_failed("late-run"),
                         drill.script().updated("service_added", new_services=("search",)))
        await drill.at(70 * MIN)
        assert drill.flow.book.get("INC-000001") is None
        assert [t for t, _ in drill.escalations()] == [1]
        assert len(drill.email.sent) == sent

    async def test_open_or_unsettled_incidents_are_kept(self) -> None:
        """An open incident, and a resolved one whose resolution notice is still failing,
        outlive the retention period."""
        drill = Drill(max_attempts=1_000, retention=timedelta(minutes=10))
        await open_incident(drill, Severity.SEV3)
        await drill.feed(drill.script("INC-000002").opened(("catalog",)),
                         drill.script("INC-000002").classified(Severity.SEV3))
        await drill.at(MIN)
        drill.email.fail_first = drill.email.calls + 1_000  # every e-mail from now on fails
        await drill.feed(drill.script("INC-000002").resolved())
        await drill.run_until(20 * MIN, step=MIN)
        assert drill.flow.book.get("INC-000001") is not None
        unsettled = drill.flow.book.get("INC-000002")
        assert unsettled is not None
        assert not drill.flow.planner.settled(unsettled)

    async def test_restart_does_not_restore_what_was_forgotten(self) -> None:
        """After a restart the replay rebuilds only what the retention period still covers,
        and nobody is paged again for the old incident."""
        drill = Drill(retention=timedelta(hours=1))
        await open_incident(drill, Severity.SEV1)
        await drill.feed(drill.script().resolved())
        await drill.at(MIN)
        await drill.feed(drill.script("INC-000002").opened(("catalog",)),
                         drill.script("INC-000002").classified(Severity.SEV2))
        await drill.at(2 * 60 * MIN)
        logged = len(drill.log.events)
        drill.restart()
        assert drill.flow.book.get("INC-000001") is None
        assert drill.flow.book.get("INC-000002") is not None
        await drill.at(2 * 60 * MIN + MIN)
        assert not [e for e in drill.log.events[logged:] if e.incident_id == "INC-000001"]


class TestRiskFlags:
    """Which texts count as data loss or security risk."""

    @pytest.mark.parametrize(("text", "flags"), [
        ("label data_loss forces SEV0 (data loss risk)", ["data_loss"]),
        ("label security forces SEV0 (security breach)", ["security_risk"]),
        ("data corruption on replica", ["data_loss"]),
        ("credentials compromised", ["security_risk"]),
        ("security-gateway is tier 2", []),
        ("blast radius: payments, checkout", []),
    ])
    def test_flags(self, text: str, flags: list[str]) -> None:
        """Triage's wording is recognised; a service named after security is not a risk."""
        assert risk_flags((text,)) == flags
