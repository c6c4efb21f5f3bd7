"""The rules every alert source shares: service, fingerprint, event id, correlation, severity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.normalise import (
    SERVICE_UNKNOWN_LABEL,
    AlertDraft,
    IntakeContext,
    condition_fingerprint,
    correlation_id_for,
    resolve_service,
    to_alert_received,
)
from shared.catalog import CatalogService, ServiceCatalog
from shared.clock import ManualClock
from shared.domain import AlertStatus, Severity

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
CATALOG = ServiceCatalog(services=(
    CatalogService(name="checkout", depends_on=("payments",)),
    CatalogService(name="payments"),
    CatalogService(name="search"),
))


def ctx(clock: ManualClock | None = None, correlation_id: str | None = None) -> IntakeContext:
    return IntakeContext(
        received_at=(clock or ManualClock(T0)).now(), catalog=CATALOG,
        correlation_id=correlation_id,
    )


def draft(**overrides: object) -> AlertDraft:
    fields: dict[str, object] = {
        "source": "generic", "status": AlertStatus.FIRING, "name": "HighErrorRate",
        "labels": {"service": "payments", "instance": "payments-0", "severity": "critical"},
        "summary": "5xx above 20%", "source_severity": "critical",
    }
    fields.update(overrides)
    return AlertDraft(**fields)  # type: ignore[arg-type]


class TestServiceResolution:
    """Which field names the affected service."""

    def test_label_order_is_service_app_job_component(self) -> None:
        """`service` beats `app` beats `job` beats `component`."""
        labels = {"component": "d", "job": "c", "app": "b", "service": "a"}
        assert resolve_service(labels) == "a"
        del labels["service"]
        assert resolve_service(labels) == "b"
        del labels["app"]
        assert resolve_service(labels) == "c"
        del labels["job"]
        assert resolve_service(labels) == "d"

    def test_explicit_service_wins_and_fallbacks_come_last(self) -> None:
        """An explicit service beats labels; format fallbacks only fill a gap; blanks skip."""
        assert resolve_service({"service": "a"}, explicit="x") == "x"
        assert resolve_service({"service": " "}, fallbacks=(None, "host-1")) == "host-1"
        assert resolve_service({}) is None

    def test_unknown_service_is_flagged_in_labels(self) -> None:
        """With no service anywhere the alert says `unknown` and carries a label saying so."""
        alert = to_alert_received(draft(labels={"instance": "x"}), ctx())
        assert alert.service == "unknown"
        assert alert.labels[SERVICE_UNKNOWN_LABEL] == "true"
        assert alert.correlation_key == "unknown"

    def test_known_service_has_no_unknown_flag(self) -> None:
        """The flag appears only on the last-resort path."""
        assert SERVICE_UNKNOWN_LABEL not in to_alert_received(draft(), ctx()).labels


class TestFingerprint:
    """The identity of an alert condition."""

    def test_source_fingerprint_is_kept(self) -> None:
        """A fingerprint given by the source is used verbatim."""
        assert to_alert_received(draft(fingerprint="abc123"), ctx()).fingerprint == "abc123"

    def test_derived_fingerprint_is_stable_across_label_order_and_severity(self) -> None:
        """Same condition, labels in another order and a worse severity: same fingerprint."""
        first = to_alert_received(draft(), ctx())
        again = to_alert_received(draft(
            labels={"severity": "warning", "instance": "payments-0", "service": "payments"},
            summary="different text", annotations={"value": "0.93"},
        ), ctx())
        assert first.fingerprint == again.fingerprint
        assert len(first.fingerprint) == 64

    def test_identifying_label_change_is_a_new_condition(self) -> None:
        """Another instance, another name or another source is another condition."""
        base = condition_fingerprint("generic", "A", "payments", {"instance": "1"})
        assert condition_fingerprint("generic", "A", "payments", {"instance": "2"}) != base
        assert condition_fingerprint("generic", "B", "payments", {"instance": "1"}) != base
        assert condition_fingerprint("grafana", "A", "payments", {"instance": "1"}) != base

    def test_internal_labels_do_not_identify(self) -> None:
        """`__` labels and our own `ir_` labels never change the fingerprint."""
        base = condition_fingerprint("generic", "A", "s", {"k": "v"})
        assert condition_fingerprint(
            "generic", "A", "s", {"k": "v", "__alert_rule_uid__": "u", "ir_x": "y"}
        ) == base


class TestEventIds:
    """Event ids: a retry keeps its id, a later repeat does not."""

    def test_retry_within_window_keeps_event_id(self) -> None:
        """The same notification received twice in one window has one event id."""
        clock = ManualClock(T0)
        first = to_alert_received(draft(), ctx(clock))
        clock.advance(timedelta(seconds=20))
        assert to_alert_received(draft(), ctx(clock)).event_id == first.event_id

    def test_repeat_after_window_is_a_new_event(self) -> None:
        """A still-firing alert re-sent minutes later is a new event with the same fingerprint."""
        clock = ManualClock(T0)
        first = to_alert_received(draft(), ctx(clock))
        clock.advance(timedelta(minutes=5))
        later = to_alert_received(draft(), ctx(clock))
        assert later.event_id != first.event_id
        assert later.fingerprint == first.fingerprint

    def test_status_or_content_change_is_a_new_event(self) -> None:
        """Resolving, or changed annotations, make a different event in the same window."""
        first = to_alert_received(draft(), ctx())
        assert to_alert_received(draft(status=AlertStatus.RESOLVED), ctx()).event_id != (
            first.event_id
        )
        assert to_alert_received(draft(annotations={"v": "2"}), ctx()).event_id != first.event_id

    def test_sender_correlation_header_does_not_change_event_id(self) -> None:
        """A retry with another X-Correlation-ID is still the same event."""
        assert to_alert_received(draft(), ctx(correlation_id="c-1")).event_id == (
            to_alert_received(draft(), ctx()).event_id
        )


class TestEnvelope:
    """Correlation, key, severity and times."""

    def test_correlation_id_from_header_else_from_fingerprint(self) -> None:
        """The sender's id wins; otherwise every alert of the condition shares one."""
        assert to_alert_received(draft(), ctx(correlation_id="req-7")).correlation_id == "req-7"
        alert = to_alert_received(draft(fingerprint="fp"), ctx())
        assert alert.correlation_id == correlation_id_for("generic", "fp")

    def test_correlation_key_is_the_catalog_component(self) -> None:
        """Dependent services share a key; an unrelated or uncatalogued one has its own."""
        keys = {
            s: to_alert_received(draft(labels={"service": s}), ctx()).correlation_key
            for s in ("checkout", "payments", "search", "billing")
        }
        assert keys["checkout"] == keys["payments"]
        assert keys["search"] != keys["payments"]
        assert keys["billing"] == "billing"

    def test_severity_is_parsed_and_source_word_kept(self) -> None:
        """`critical` maps to SEV0; an unknown word keeps source_severity and no severity."""
        alert = to_alert_received(draft(), ctx())
        assert (alert.source_severity, alert.severity) == ("critical", Severity.SEV0)
        odd = to_alert_received(draft(source_severity="purple"), ctx())
        assert (odd.source_severity, odd.severity) == ("purple", None)

    def test_go_zero_time_is_no_time_and_receipt_uses_clock(self) -> None:
        """`0001-01-01T00:00:00Z` means unset; received_at is the injected clock's now."""
        zero = datetime(1, 1, 1, tzinfo=UTC)
        alert = to_alert_received(draft(starts_at=T0 - timedelta(minutes=3), ends_at=zero), ctx())
        assert alert.ends_at is None
        assert alert.starts_at == T0 - timedelta(minutes=3)
        assert alert.received_at == T0 == alert.occurred_at
        assert alert.producer == "gateway"
