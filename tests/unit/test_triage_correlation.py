"""Correlation, recurrence and redelivery in triage, on the pure domain with a manual clock."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

import pytest

from services.triage.correlation import (
    Triage,
    TriageDecision,
    UncorrelatableAlertError,
    incident_id_for,
)
from services.triage.projection import IncidentBook
from shared.clock import ManualClock
from shared.domain import AlertStatus, Severity
from shared.events import (
    AlertReceived,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    derive_event_id,
)
from tests.unit.test_triage_support import CATALOG, T0, make_alert

pytestmark = pytest.mark.unit

WINDOW = timedelta(minutes=5)
RECURRENCE = timedelta(hours=1)


class World:
    """A triage engine with its projection, applying what it decides like the handler does."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.book = IncidentBook(recurrence_window=RECURRENCE)
        self.triage = Triage(book=self.book, catalog=CATALOG, clock=self.clock,
                             correlation_window=WINDOW)

    def send(self, alert: AlertReceived) -> TriageDecision:
        """Decide, then apply every event (publish succeeded)."""
        decision = self.triage.decide(alert)
        self.apply(decision.events)
        return decision

    def apply(self, events: Sequence[Event]) -> None:
        for event in events:
            self.book.apply(event)

    def resolve(self, incident_id: str) -> None:
        """Another service (executor/approval) resolves the incident."""
        self.book.apply(IncidentResolved(
            occurred_at=self.clock.now(), producer="executor", incident_id=incident_id,
            correlation_id=incident_id, resolved_by="executor",
            resolution="verified_recovery", verified=True,
        ))


@pytest.fixture
def world() -> World:
    return World()


def kinds(decision: TriageDecision) -> list[str]:
    return [
        f"{e.event_type}:{e.change}" if isinstance(e, IncidentUpdated) else e.event_type
        for e in decision.events
    ]


class TestNewIncident:
    """The first alert opens an incident and classifies it."""

    def test_opened_then_classified_with_derived_ids(self, world: World) -> None:
        """incident.opened then incident.classified, keyed by the incident, ids from the alert."""
        alert = make_alert("storefront")
        decision = world.send(alert)
        assert decision.outcome == "opened"
        assert kinds(decision) == ["incident.opened", "incident.classified"]
        opened, classified = decision.events
        assert isinstance(opened, IncidentOpened)
        assert isinstance(classified, IncidentClassified)
        incident_id = decision.incident_id
        assert incident_id is not None
        assert re.fullmatch(r"INC-[A-Z2-7]{6}", incident_id)
        assert incident_id == incident_id_for(alert.event_id)
        assert opened.event_id == derive_event_id("incident.opened", incident_id, alert.event_id)
        assert classified.event_id == derive_event_id(
            "incident.classified", incident_id, alert.event_id)
        assert {e.partition_key() for e in decision.events} == {incident_id.encode()}
        assert {e.causation_id for e in decision.events} == {alert.event_id}
        assert opened.occurred_at == T0
        assert opened.alert_received_at == alert.received_at
        assert opened.first_anomaly_at == alert.starts_at
        assert opened.recurrence_of is None
        assert opened.title == "HighErrorRate on storefront: storefront is failing"
        assert classified.severity is Severity.SEV0
        assert classified.previous_severity is None

    def test_incident_id_is_deterministic(self) -> None:
        """The same opening alert derives the same incident id in a fresh triage."""
        alert = make_alert("payments")
        assert World().send(alert).incident_id == World().send(alert).incident_id

    def test_id_collision_takes_the_next_derivation(self, world: World) -> None:
        """A derived id already taken by another incident is not reused."""
        alert = make_alert("payments")
        taken = incident_id_for(alert.event_id)
        world.book.apply(IncidentOpened(
            producer="triage", incident_id=taken, correlation_id=taken, title="older",
            services=("ledger",), fingerprints=("fp-old",), alert_event_id="another-alert",
            alert_received_at=T0, occurred_at=T0,
        ))
        decision = world.send(alert)
        assert decision.incident_id == incident_id_for(alert.event_id, 1)
        assert decision.incident_id != taken

    def test_resolved_alert_never_opens(self, world: World) -> None:
        """A resolved alert for no open incident is ignored: no events."""
        decision = world.send(make_alert("storefront", status=AlertStatus.RESOLVED))
        assert decision.outcome == "ignored"
        assert decision.events == ()
        assert len(world.book) == 0


class TestBadInput:
    """Alerts triage cannot correlate are refused with a clear error."""

    @pytest.mark.parametrize("field", ["fingerprint", "service"])
    def test_blank_identity_is_refused(self, world: World, field: str) -> None:
        """A blank fingerprint or service raises (the bus dead-letters it) and changes nothing."""
        alert = make_alert("payments").model_copy(update={field: "  "})
        with pytest.raises(UncorrelatableAlertError, match=f"has no {field}"):
            world.triage.decide(alert)
        assert len(world.book) == 0


class TestCorrelation:
    """Which alerts join an open incident and which open a new one."""

    def test_same_fingerprint_joins_even_after_the_window(self, world: World) -> None:
        """An alert of an open incident's fingerprint joins it, however late."""
        first = world.send(make_alert("catalog", source_severity="warning"))
        world.clock.advance(timedelta(hours=3))
        again = world.send(make_alert("catalog", source_severity="warning", n=1))
        assert again.incident_id == first.incident_id
        assert kinds(again) == ["incident.updated:alert_added"]

    def test_related_service_inside_window_joins_and_escalates(self, world: World) -> None:
        """storefront depends on payments: its alert joins, adds the service, escalates."""
        first = world.send(make_alert("payments", source_severity="warning"))
        world.clock.advance(timedelta(minutes=4))
        alert = make_alert("storefront")
        joined = world.send(alert)
        assert joined.incident_id == first.incident_id
        assert kinds(joined) == [
            "incident.updated:service_added", "incident.classified",
            "incident.updated:severity_changed",
        ]
        added, classified, changed = joined.events
        assert isinstance(added, IncidentUpdated)
        assert added.new_services == ("storefront",)
        assert added.services == ("payments", "storefront")
        assert isinstance(classified, IncidentClassified)
        assert classified.severity is Severity.SEV0
        assert classified.previous_severity is Severity.SEV2
        assert "escalated from SEV2 by alert HighErrorRate" in classified.reasons
        assert isinstance(changed, IncidentUpdated)
        assert changed.severity is Severity.SEV0
        assert changed.event_id == derive_event_id(
            "incident.updated:severity_changed", first.incident_id, alert.event_id)

    def test_related_service_outside_window_opens_another(self, world: World) -> None:
        """Past the window after the incident's last alert, a related alert opens a new one."""
        first = world.send(make_alert("payments"))
        world.clock.advance(WINDOW + timedelta(seconds=1))
        second = world.send(make_alert("checkout"))
        assert second.outcome == "opened"
        assert second.incident_id != first.incident_id

    def test_window_counts_from_the_last_alert(self, world: World) -> None:
        """Each joining alert restarts the window."""
        first = world.send(make_alert("payments"))
        world.clock.advance(timedelta(minutes=4))
        world.send(make_alert("payments", n=1))
        world.clock.advance(timedelta(minutes=4))
        later = world.send(make_alert("checkout"))
        assert later.incident_id == first.incident_id

    def test_unrelated_services_make_two_incidents(self, world: World) -> None:
        """catalog and payments share no dependency path: two incidents."""
        a = world.send(make_alert("catalog"))
        b = world.send(make_alert("payments"))
        assert a.incident_id != b.incident_id
        assert b.outcome == "opened"

    def test_resolved_alert_joins_by_fingerprint_without_reclassifying(self, world: World) -> None:
        """A resolved alert of the incident is recorded as alert_resolved, nothing else."""
        first = world.send(make_alert("payments"))
        resolved = world.send(make_alert("payments", status=AlertStatus.RESOLVED))
        assert resolved.incident_id == first.incident_id
        assert kinds(resolved) == ["incident.updated:alert_resolved"]

    def test_resolved_alert_does_not_join_by_relation(self, world: World) -> None:
        """A resolved alert of a related service with another fingerprint is ignored."""
        world.send(make_alert("payments"))
        decision = world.send(make_alert("checkout", status=AlertStatus.RESOLVED))
        assert decision.outcome == "ignored"

    def test_severity_never_drops(self, world: World) -> None:
        """A milder alert on a SEV0 incident adds the alert and changes no severity."""
        first = world.send(make_alert("storefront"))
        milder = world.send(make_alert("storefront", source_severity="info", n=1))
        assert kinds(milder) == ["incident.updated:alert_added"]
        incident = world.book.get(first.incident_id or "")
        assert incident is not None
        assert incident.severity is Severity.SEV0

    def test_security_label_on_a_sev0_incident_disables_auto_remediation(self, world: World
                                                                          ) -> None:
        """Same severity, but auto-remediation turns off: classified, no severity_changed."""
        world.send(make_alert("storefront"))
        decision = world.send(make_alert("storefront", n=1, labels={"security": "true"}))
        assert kinds(decision) == ["incident.updated:alert_added", "incident.classified"]
        classified = decision.events[1]
        assert isinstance(classified, IncidentClassified)
        assert classified.severity is classified.previous_severity is Severity.SEV0
        assert classified.auto_remediation_allowed is False
        later = world.send(make_alert("storefront", n=2))
        assert kinds(later) == ["incident.updated:alert_added"]

    def test_acknowledged_incident_still_correlates(self, world: World) -> None:
        """Acknowledgement does not close the incident for correlation."""
        from shared.events import IncidentAcknowledged

        first = world.send(make_alert("payments"))
        assert first.incident_id is not None
        world.book.apply(IncidentAcknowledged(
            producer="approval", incident_id=first.incident_id, correlation_id="c",
            acknowledged_by="alice",
        ))
        assert world.send(make_alert("payments", n=1)).incident_id == first.incident_id


class TestRecurrence:
    """A fingerprint of a recently resolved incident opens a new, marked incident."""

    def test_recurrence_is_marked_and_announced(self, world: World) -> None:
        """New incident with recurrence_of, then an incident.updated(recurred)."""
        first = world.send(make_alert("payments"))
        assert first.incident_id is not None
        world.resolve(first.incident_id)
        world.clock.advance(timedelta(minutes=20))
        again = world.send(make_alert("payments", n=1))
        assert again.outcome == "opened"
        assert again.incident_id != first.incident_id
        assert kinds(again) == ["incident.opened", "incident.classified",
                                "incident.updated:recurred"]
        opened, classified, recurred = again.events
        assert isinstance(opened, IncidentOpened)
        assert opened.recurrence_of == first.incident_id
        assert isinstance(classified, IncidentClassified)
        assert any(first.incident_id in r for r in classified.reasons)
        assert isinstance(recurred, IncidentUpdated)
        assert first.incident_id in recurred.detail

    def test_resolved_incident_takes_no_more_alerts(self, world: World) -> None:
        """After resolution, neither the fingerprint nor a related service joins it."""
        first = world.send(make_alert("payments"))
        assert first.incident_id is not None
        world.resolve(first.incident_id)
        related = world.send(make_alert("checkout"))
        assert related.outcome == "opened"
        assert related.incident_id != first.incident_id

    def test_after_the_window_it_is_a_plain_new_incident(self, world: World) -> None:
        """Past the recurrence window the old incident is forgotten; no recurrence mark."""
        first = world.send(make_alert("payments"))
        assert first.incident_id is not None
        world.resolve(first.incident_id)
        world.clock.advance(RECURRENCE + timedelta(minutes=1))
        assert world.book.prune(world.clock.now()) == 1
        again = world.send(make_alert("payments", n=1))
        opened = again.events[0]
        assert isinstance(opened, IncidentOpened)
        assert opened.recurrence_of is None
        assert world.book.get(first.incident_id) is None


class TestRedelivery:
    """A redelivered alert is a no-op, or completes what a crash cut short."""

    def test_redelivered_alert_produces_nothing(self, world: World) -> None:
        """Once applied, the same alert (same event id) decides no events."""
        alert = make_alert("payments", source_severity="warning")
        world.send(alert)
        joining = make_alert("storefront")
        world.send(joining)
        for again in (alert, joining):
            decision = world.send(again)
            assert decision.outcome == "duplicate"
            assert decision.events == ()

    def test_crash_after_opened_completes_with_same_ids(self, world: World) -> None:
        """Opened made it to the log, classified did not: the redelivery emits classified."""
        alert = make_alert("payments")
        first = world.triage.decide(alert)
        world.apply(first.events[:1])
        again = world.triage.decide(alert)
        assert [e.event_id for e in again.events] == [first.events[1].event_id]
        world.apply(again.events)
        assert world.triage.decide(alert).events == ()
        assert again.incident_id == first.incident_id

    def test_crash_after_classified_completes_severity_changed(self, world: World) -> None:
        """The escalation's classified made it, severity_changed did not: it is re-emitted."""
        world.send(make_alert("payments", source_severity="warning"))
        alert = make_alert("storefront")
        first = world.triage.decide(alert)
        world.apply(first.events[:2])
        again = world.triage.decide(alert)
        assert [e.event_id for e in again.events] == [first.events[2].event_id]
        assert kinds(again) == ["incident.updated:severity_changed"]

    def test_crash_mid_recurrence_reemits_the_recurred_update(self, world: World) -> None:
        """Classified and the recurred announcement are re-derived when only opened landed."""
        first = world.send(make_alert("payments"))
        assert first.incident_id is not None
        world.resolve(first.incident_id)
        alert = make_alert("payments", n=1)
        decided = world.triage.decide(alert)
        world.apply(decided.events[:1])
        again = world.triage.decide(alert)
        assert [e.event_id for e in again.events] == [e.event_id for e in decided.events[1:]]
        assert kinds(again) == ["incident.classified", "incident.updated:recurred"]
