"""The case book: when an investigation is due, and how the log rebuilds that knowledge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.investigator.casebook import CaseBook
from services.investigator.investigation import investigation_event_id
from shared.domain import AlertStatus, Severity
from shared.events import (
    AlertReceived,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    InvestigationCompleted,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INC = "INC-AAA111"
ENV = {"producer": "triage", "incident_id": INC, "correlation_id": "corr-1"}


def _opened() -> IncidentOpened:
    return IncidentOpened(event_id="opened-1", occurred_at=T0, title="HighErrorRate on checkout",
                          services=("checkout",), fingerprints=("fp1",), alert_event_id="alert-1",
                          first_anomaly_at=T0 - timedelta(minutes=2), alert_received_at=T0,
                          **ENV)


def _classified(event_id: str = "classified-1", severity: Severity = Severity.SEV1,
                services: tuple[str, ...] = ("checkout",)) -> IncidentClassified:
    return IncidentClassified(event_id=event_id, occurred_at=T0 + timedelta(seconds=1),
                              severity=severity, reasons=("tier 1",), services=services, **ENV)


def _service_added(event_id: str, *new: str) -> IncidentUpdated:
    return IncidentUpdated(event_id=event_id, occurred_at=T0 + timedelta(seconds=5),
                           change="service_added", new_services=new,
                           services=("checkout", *new), **ENV)


def _completed(trigger: str, producer: str = "investigator") -> InvestigationCompleted:
    return InvestigationCompleted(
        event_id=investigation_event_id(INC, trigger), occurred_at=T0 + timedelta(seconds=9),
        producer=producer, incident_id=INC, correlation_id="corr-1", causation_id=trigger,
        investigator="rules", hypothesis="h", confidence=0.5,
    )


def _book(*events: Event) -> CaseBook:
    book = CaseBook(producer="investigator")
    for event in events:
        book.apply(event)
    return book


class TestWhenToInvestigate:
    """One investigation per incident, one more per join of new services."""

    def test_first_classification_starts_an_investigation(self) -> None:
        """incident.classified of an uninvestigated incident is a trigger for its services."""
        book = _book(_opened(), _classified())
        trigger = book.next_investigation(_classified())
        assert trigger is not None
        assert trigger.services == ("checkout",)

    def test_reclassification_after_investigation_starts_nothing(self) -> None:
        """A severity change does not re-run the investigation."""
        book = _book(_opened(), _classified(), _completed("classified-1"))
        again = _classified("classified-2", Severity.SEV0)
        book.apply(again)
        assert book.next_investigation(again) is None

    def test_new_service_after_investigation_starts_one_more(self) -> None:
        """payments joins after the first investigation: a second one, naming payments new."""
        book = _book(_opened(), _classified(), _completed("classified-1"))
        update = _service_added("updated-1", "payments")
        book.apply(update)
        trigger = book.next_investigation(update)
        assert trigger is not None
        assert trigger.new_services == ("payments",)
        assert trigger.services == ("checkout", "payments")

    def test_service_already_covered_starts_nothing(self) -> None:
        """After the second investigation, the same service joining again changes nothing."""
        update = _service_added("updated-1", "payments")
        book = _book(_opened(), _classified(), _completed("classified-1"), update,
                     _completed("updated-1"))
        repeat = _service_added("updated-2", "payments")
        book.apply(repeat)
        assert book.next_investigation(repeat) is None

    def test_service_added_before_the_first_investigation_waits_for_it(self) -> None:
        """Before any investigation the join is folded in; the classification covers it."""
        book = _book(_opened())
        update = _service_added("updated-1", "payments")
        book.apply(update)
        assert book.next_investigation(update) is None
        book.apply(_classified())
        trigger = book.next_investigation(_classified())
        assert trigger is not None
        assert trigger.services == ("checkout", "payments")

    def test_resolved_incident_is_not_investigated(self) -> None:
        """A classification read after the resolution (an old log) starts nothing."""
        resolved = IncidentResolved(event_id="r1", resolved_by="alice", resolution="manual",
                                    verified=False, **ENV)
        book = _book(_opened(), resolved, _classified())
        assert book.next_investigation(_classified()) is None

    def test_other_investigators_output_does_not_count(self) -> None:
        """An investigation.completed by another producer does not mark ours done."""
        book = _book(_opened(), _classified(), _completed("classified-1", producer="llm-canary"))
        assert book.next_investigation(_classified()) is not None


class TestRestoreAndContext:
    """Replay equivalence and what the investigator is told."""

    def test_replayed_log_makes_a_redelivered_trigger_a_no_op(self) -> None:
        """After a restart, the replayed completion stops the redelivered classification."""
        log: list[Event] = [_opened(), _classified(), _completed("classified-1")]
        book = _book(*log)
        for event in log:  # the live subscription delivers again what the replay saw
            book.apply(event)
        case = book.get(INC)
        assert case is not None
        assert len(case.investigations) == 1
        assert case.covered == {"checkout"}
        assert book.next_investigation(_classified()) is None

    def test_brief_carries_anomaly_severity_and_alerts(self) -> None:
        """The brief has the first anomaly, the severity and the alert's name and labels."""
        alert = AlertReceived(
            event_id="alert-1", producer="gateway", correlation_id="corr-1",
            source="alertmanager", fingerprint="fp1", correlation_key="checkout",
            status=AlertStatus.FIRING, name="HighErrorRate", service="checkout",
            labels={"team": "payments"}, starts_at=T0 - timedelta(minutes=2),
        )
        book = _book(alert, _opened(), _classified())
        brief = book.brief(INC)
        assert brief.first_anomaly_at == T0 - timedelta(minutes=2)
        assert brief.severity is Severity.SEV1
        assert [(a.name, a.labels) for a in brief.alerts] == [("HighErrorRate",
                                                               {"team": "payments"})]

    async def test_wait_opened_returns_once_the_opening_is_applied(self) -> None:
        """A classification that arrives first can wait for its incident.opened."""
        book = _book(_classified())
        assert not await book.wait_opened(INC, 0.01)
        book.apply(_opened())
        assert await book.wait_opened(INC, 0.01)
