"""The triage projection: idempotent, order-tolerant, bounded, rebuilt from lifecycle events."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

import pytest

from services.triage.correlation import Triage
from services.triage.projection import IncidentBook
from shared.clock import ManualClock
from shared.domain import Severity
from shared.events import Event, IncidentClassified, IncidentOpened, IncidentResolved
from tests.unit.test_triage_support import CATALOG, T0, make_alert

pytestmark = pytest.mark.unit

RECURRENCE = timedelta(hours=1)


def history() -> tuple[list[Event], ManualClock]:
    """The lifecycle events of a small story: two incidents, one escalated and resolved."""
    clock = ManualClock(T0)
    book = IncidentBook(recurrence_window=RECURRENCE)
    triage = Triage(book=book, catalog=CATALOG, clock=clock,
                    correlation_window=timedelta(minutes=5))
    events: list[Event] = []
    for alert, step in [
        (make_alert("payments", source_severity="warning"), timedelta(0)),
        (make_alert("storefront"), timedelta(minutes=1)),
        (make_alert("payments", source_severity="warning", n=1), timedelta(minutes=1)),
        (make_alert("reporting", fingerprint="fp-nightly", source_severity="info"),
         timedelta(minutes=30)),
    ]:
        clock.advance(step)
        decision = triage.decide(alert)
        events.extend(decision.events)
        for event in decision.events:
            book.apply(event)
    reporting = events[-1].incident_id
    events.append(IncidentResolved(
        occurred_at=clock.now(), producer="executor", incident_id=reporting,
        correlation_id=str(reporting), resolved_by="executor", resolution="verified_recovery",
        verified=True,
    ))
    return events, clock


def snapshot(book: IncidentBook) -> dict[str, dict[str, object]]:
    """Every tracked incident as comparable data (list order of services aside)."""
    out: dict[str, dict[str, object]] = {}
    for incident in book.tracked():
        data = incident.summary()
        data["services"] = sorted(incident.services)
        data["fingerprints"] = sorted(incident.fingerprints)
        data["classified_by"] = (
            incident.last_classified.event_id if incident.last_classified else None
        )
        out[incident.incident_id] = data
    return out


def rebuild(events: Sequence[Event]) -> IncidentBook:
    book = IncidentBook(recurrence_window=RECURRENCE)
    for event in events:
        book.apply(event)
    return book


class TestApply:
    """Applying lifecycle events."""

    def test_replay_twice_changes_nothing(self) -> None:
        """Every event applied twice gives the same projection as once."""
        events, _ = history()
        assert snapshot(rebuild([*events, *events])) == snapshot(rebuild(events))

    def test_any_order_gives_the_same_projection(self) -> None:
        """Shuffled delivery (other topics, other partitions) converges to the same state."""
        events, _ = history()
        expected = snapshot(rebuild(events))
        rng = random.Random(7)
        for _ in range(20):
            shuffled = list(events)
            rng.shuffle(shuffled)
            assert snapshot(rebuild(shuffled)) == expected

    def test_rebuilt_projection_has_the_story(self) -> None:
        """The escalated incident is open at SEV0 with both services; reporting is resolved."""
        events, _ = history()
        book = rebuild(events)
        open_now = list(book.open_incidents())
        assert len(open_now) == 1
        incident = open_now[0]
        assert incident.services == ["payments", "storefront"]
        assert incident.severity is Severity.SEV0
        assert incident.fingerprints == ["fp-payments", "fp-storefront"]
        assert len(book) == 2

    def test_classified_never_lowers_severity(self) -> None:
        """An older, milder classification delivered late does not lower the severity."""
        events, _ = history()
        book = rebuild(events)
        incident = next(book.open_incidents())
        book.apply(IncidentClassified(
            producer="triage", incident_id=incident.incident_id, correlation_id="c",
            severity=Severity.SEV3, reasons=("late",), occurred_at=T0 - timedelta(hours=1),
        ))
        assert incident.severity is Severity.SEV0
        assert incident.last_classified is not None
        assert incident.last_classified.severity is Severity.SEV0

    def test_resolved_by_another_service_closes(self) -> None:
        """incident.resolved from the executor takes the incident out of correlation."""
        events, clock = history()
        book = rebuild(events)
        incident = next(book.open_incidents())
        book.apply(IncidentResolved(
            occurred_at=clock.now(), producer="approval", incident_id=incident.incident_id,
            correlation_id="c", resolved_by="alice", resolution="manual", verified=False,
        ))
        assert list(book.open_incidents()) == []
        assert book.open_with_fingerprint("fp-payments") is None
        assert book.recently_resolved("fp-payments", clock.now()) is incident


class TestBoundedMemory:
    """Closed incidents are dropped after the recurrence window and stay dropped."""

    def test_prune_forgets_and_blocks_resurrection(self) -> None:
        """After pruning, a replayed incident.opened does not bring the incident back."""
        events, clock = history()
        book = rebuild(events)
        resolved_id = events[-1].incident_id
        assert resolved_id is not None
        assert book.prune(clock.now()) == 0
        clock.advance(RECURRENCE + timedelta(seconds=1))
        assert book.prune(clock.now()) == 1
        assert book.get(resolved_id) is None
        for event in events:
            if isinstance(event, IncidentOpened):
                book.apply(event)
        assert book.get(resolved_id) is None
        assert book.knows(resolved_id)
        assert len(book) == 1

    def test_event_for_an_unknown_incident_waits_for_its_opening(self) -> None:
        """A classification that overtakes incident.opened is applied when the opening lands."""
        events, _ = history()
        opened = next(e for e in events if isinstance(e, IncidentOpened))
        classified = next(e for e in events if isinstance(e, IncidentClassified))
        book = IncidentBook(recurrence_window=RECURRENCE)
        book.apply(classified)
        assert len(book) == 0
        book.apply(opened)
        incident = book.get(str(opened.incident_id))
        assert incident is not None
        assert incident.severity is classified.severity
