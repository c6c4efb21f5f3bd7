"""Each alert format's normalisation, and errors that name the bad field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.gateway.api import field_errors
from services.gateway.formats import alertmanager, generic, grafana, pagerduty
from services.gateway.normalise import (
    SERVICE_UNKNOWN_LABEL,
    AlertDraft,
    IntakeContext,
    InvalidAlertError,
    to_alert_received,
)
from shared.catalog import ServiceCatalog
from shared.clock import ManualClock
from shared.domain import AlertStatus, Severity
from shared.events import AlertReceived

pytestmark = pytest.mark.unit

CLOCK = ManualClock(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))


def received(drafts: list[AlertDraft]) -> list[AlertReceived]:
    """The events of drafts; each is also checked to be what validation would have built."""
    ctx = IntakeContext(received_at=CLOCK.now(), catalog=ServiceCatalog())
    alerts = [to_alert_received(d, ctx) for d in drafts]
    for alert in alerts:  # built without validation (`AlertReceived.trusted`): prove it
        assert AlertReceived.model_validate(alert.model_dump()) == alert
        assert alert.encode() == alert.model_dump_json().encode()
    return alerts


def errors_of(model: type[BaseModel], payload: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return field_errors(caught.value.errors())


def am_alert(**overrides: Any) -> dict[str, Any]:
    alert: dict[str, Any] = copy.deepcopy(alertmanager.EXAMPLE["alerts"][0])
    alert.update(overrides)
    return alert


class TestAlertmanager:
    """Alertmanager webhook v4."""

    def test_every_alert_of_group_becomes_one_event(self) -> None:
        """A group of firing and resolved alerts gives one event each, in order."""
        body = copy.deepcopy(alertmanager.EXAMPLE)
        body["alerts"] = [
            am_alert(),
            am_alert(labels={"alertname": "HighErrorRate", "app": "checkout"},
                     fingerprint="f2"),
            am_alert(status="resolved", endsAt="2026-11-21T12:05:00Z", fingerprint="f3"),
        ]
        alerts = received(alertmanager.to_drafts(
            alertmanager.AlertmanagerWebhook.model_validate(body)
        ))
        assert [a.status for a in alerts] == [
            AlertStatus.FIRING, AlertStatus.FIRING, AlertStatus.RESOLVED
        ]
        assert [a.service for a in alerts] == ["payments", "checkout", "payments"]
        assert [a.fingerprint for a in alerts] == ["c6eadffa33fcdf37", "f2", "f3"]
        assert alerts[2].ends_at == datetime(2026, 11, 21, 12, 5, tzinfo=UTC)
        assert {a.source for a in alerts} == {"alertmanager"}

    def test_fields_map_onto_alert(self) -> None:
        """alertname, annotations, severity label, startsAt and generatorURL are carried."""
        (alert,) = received(alertmanager.to_drafts(
            alertmanager.AlertmanagerWebhook.model_validate(alertmanager.EXAMPLE)
        ))
        assert alert.name == "HighErrorRate"
        assert alert.summary == "5xx ratio above 20% on payments"
        assert alert.description == "error ratio 0.31 over 5m"
        assert (alert.source_severity, alert.severity) == ("critical", Severity.SEV0)
        assert alert.starts_at == datetime(2026, 11, 21, 11, 58, tzinfo=UTC)
        assert alert.ends_at is None
        assert alert.generator_url is not None
        assert alert.generator_url.startswith("http://prometheus")

    def test_firing_alert_end_estimate_is_dropped(self) -> None:
        """A firing alert's endsAt (resolve_timeout estimate) is not an end time."""
        body = {"alerts": [am_alert(endsAt="2026-11-21T12:10:00Z")]}
        (alert,) = received(alertmanager.to_drafts(
            alertmanager.AlertmanagerWebhook.model_validate(body)
        ))
        assert alert.ends_at is None

    def test_summary_names_alert_without_alertname(self) -> None:
        """Without `alertname` the summary annotation is the name."""
        body = {"alerts": [am_alert(labels={"service": "payments"})]}
        (alert,) = received(alertmanager.to_drafts(
            alertmanager.AlertmanagerWebhook.model_validate(body)
        ))
        assert alert.name == "5xx ratio above 20% on payments"

    def test_nameless_alerts_are_all_reported(self) -> None:
        """Every alert with neither alertname nor summary is named in one error."""
        body = {"alerts": [am_alert(), am_alert(labels={}, annotations={}),
                           am_alert(labels={"x": "y"}, annotations={})]}
        with pytest.raises(InvalidAlertError) as caught:
            alertmanager.to_drafts(alertmanager.AlertmanagerWebhook.model_validate(body))
        assert [e.split(":")[0] for e in caught.value.errors] == [
            "alerts[1].labels.alertname", "alerts[2].labels.alertname",
        ]

    def test_bad_status_and_labels_name_their_fields(self) -> None:
        """Schema errors read `alerts[i].<field>: <what>` with the sender's spelling."""
        errors = errors_of(alertmanager.AlertmanagerWebhook, {"alerts": [
            am_alert(status="burning"), am_alert(labels={"n": 1}),
            am_alert(startsAt="yesterday"),
        ]})
        assert any(e.startswith("alerts[0].status: ") for e in errors)
        assert any(e.startswith("alerts[1].labels.n: ") for e in errors)
        assert any(e.startswith("alerts[2].startsAt: ") for e in errors)

    def test_empty_group_is_rejected(self) -> None:
        """A notification without alerts is an error naming `alerts`."""
        assert errors_of(alertmanager.AlertmanagerWebhook, {"alerts": []})[0].startswith(
            "alerts: "
        )


class TestGrafana:
    """Grafana unified alerting webhook."""

    def test_extras_are_tolerated_and_kept_as_annotations(self) -> None:
        """orgId/title/state are accepted; links and values land in annotations."""
        webhook = grafana.GrafanaWebhook.model_validate(grafana.EXAMPLE)
        (alert,) = received(grafana.to_drafts(webhook))
        assert alert.source == "grafana"
        assert alert.name == "CheckoutLatencyHigh"
        assert alert.service == "checkout"
        assert alert.fingerprint == "57c6d9296de2ad39"
        assert alert.annotations["dashboard_url"] == "http://grafana:3000/d/shop"
        assert alert.annotations["values"] == '{"B": 2.41, "C": 1}'
        assert "image_url" not in alert.annotations
        assert alert.starts_at == datetime(2026, 11, 21, 10, 58, tzinfo=UTC)
        assert alert.severity == Severity.SEV2

    def test_grafana_errors_name_fields(self) -> None:
        """A bad Grafana `values` entry is reported with its path."""
        body = copy.deepcopy(grafana.EXAMPLE)
        body["alerts"][0]["status"] = "alerting"
        errors = errors_of(grafana.GrafanaWebhook, body)
        assert any(e.startswith("alerts[0].status: ") for e in errors)


def pd_event(**overrides: Any) -> pagerduty.PagerDutyEvent:
    body = copy.deepcopy(pagerduty.TRIGGER_EXAMPLE)
    body.update(overrides)
    return pagerduty.PagerDutyEvent.model_validate(body)


class TestPagerDuty:
    """PagerDuty Events API v2."""

    def test_trigger_maps_payload(self) -> None:
        """Summary names the alert; component is the service; dedup_key is the fingerprint."""
        event = pd_event()
        (alert,) = received(pagerduty.to_drafts(event))
        assert alert.status == AlertStatus.FIRING
        assert alert.name == alert.summary == "payments 5xx ratio above 20%"
        assert alert.service == "payments"
        assert alert.fingerprint == alert.dedup_key == "payments-5xx"
        assert (alert.source_severity, alert.severity) == ("critical", Severity.SEV0)
        assert alert.labels == {"source": "payments-0.prod", "component": "payments",
                                "group": "prod", "class": "http_errors"}
        assert alert.annotations["error_ratio"] == "0.31"
        assert alert.generator_url == "http://prometheus:9090"
        assert alert.starts_at == datetime(2026, 11, 21, 11, 58, tzinfo=UTC)

    def test_service_falls_back_to_source_and_routing_key_wins(self) -> None:
        """Without component the source names the service; a bound routing key beats both."""
        payload = {"summary": "disk full", "source": "db-1", "severity": "error"}
        (alert,) = received(pagerduty.to_drafts(pd_event(payload=payload)))
        assert alert.service == "db-1"
        (bound,) = received(pagerduty.to_drafts(pd_event(), routing_service="billing"))
        assert bound.service == "billing"

    def test_generated_dedup_key_is_stable(self) -> None:
        """A trigger without dedup_key gets the same generated key each time it is sent."""
        first = pagerduty.dedup_key_of(pd_event(dedup_key=None))
        assert first == pagerduty.dedup_key_of(pd_event(dedup_key=None))
        assert len(first) == 32
        other = pd_event(dedup_key=None, routing_key="another-key")
        assert pagerduty.dedup_key_of(other) != first

    def test_acknowledge_and_resolve_borrow_from_their_trigger(self) -> None:
        """Follow-ups reuse the remembered trigger's service and name, same fingerprint."""
        known = pagerduty.KnownCondition(service="payments", name="payments 5xx")
        for action, status in (("acknowledge", AlertStatus.ACKNOWLEDGED),
                               ("resolve", AlertStatus.RESOLVED)):
            event = pd_event(event_action=action, payload=None)
            (alert,) = received(pagerduty.to_drafts(event, known=known))
            assert (alert.status, alert.service, alert.name) == (status, "payments", "payments 5xx")
            assert alert.fingerprint == "payments-5xx"

    def test_unknown_follow_up_is_flagged(self) -> None:
        """A resolve whose trigger was never seen and no routing service: `unknown`, flagged."""
        (alert,) = received(pagerduty.to_drafts(pd_event(event_action="resolve", payload=None)))
        assert alert.service == "unknown"
        assert alert.labels[SERVICE_UNKNOWN_LABEL] == "true"

    def test_action_rules_name_fields(self) -> None:
        """Trigger needs payload fields, follow-ups need dedup_key, keys must be known."""
        assert pagerduty.problems(pd_event(payload=None)) == [
            "payload: required when event_action is trigger"
        ]
        assert pagerduty.problems(pd_event(payload={"summary": "x"})) == [
            "payload.source: required when event_action is trigger",
            "payload.severity: required when event_action is trigger",
        ]
        assert pagerduty.problems(pd_event(event_action="resolve", dedup_key=None)) == [
            "dedup_key: required when event_action is resolve"
        ]
        assert pagerduty.problems(pd_event(), frozenset({"other"})) == [
            "routing_key: not a routing key this gateway accepts"
        ]
        accepted = frozenset({pagerduty.TRIGGER_EXAMPLE["routing_key"]})
        assert pagerduty.problems(pd_event(), accepted) == []

    def test_schema_errors_name_fields(self) -> None:
        """Bad severity and action are reported by field."""
        body = copy.deepcopy(pagerduty.TRIGGER_EXAMPLE)
        body["payload"]["severity"] = "sev0"
        body["event_action"] = "poke"
        errors = errors_of(pagerduty.PagerDutyEvent, body)
        assert any(e.startswith("payload.severity: ") for e in errors)
        assert any(e.startswith("event_action: ") for e in errors)

    def test_condition_memory_is_bounded(self) -> None:
        """The oldest remembered trigger is forgotten past maxlen."""
        memory = pagerduty.ConditionMemory(maxlen=2)
        for key in ("a", "b", "c"):
            memory.remember(key, pagerduty.KnownCondition("s", key))
        assert memory.recall("a") is None
        assert memory.recall("c") == pagerduty.KnownCondition("s", "c")


class TestGeneric:
    """The gateway's own format."""

    def test_single_alert_is_a_batch_of_one(self) -> None:
        """A bare object is accepted; defaults fill status and severity stays optional."""
        batch = generic.GenericAlerts.model_validate({"name": "Down", "service": "search"})
        (alert,) = received(generic.to_drafts(batch))
        assert (alert.name, alert.service, alert.status) == ("Down", "search", AlertStatus.FIRING)
        assert alert.severity is None

    def test_batch_and_aliases(self) -> None:
        """Severity aliases map to SEV levels; service falls back to labels; scalars stringify."""
        batch = generic.GenericAlerts.model_validate({"alerts": [
            {"name": "A", "severity": "P1", "labels": {"job": "search", "replicas": 3,
                                                       "canary": True}},
            {"name": "B", "service": "x", "severity": "SEV-1", "status": "resolved"},
        ]})
        first, second = received(generic.to_drafts(batch))
        assert (first.service, first.severity) == ("search", Severity.SEV1)
        assert first.labels["replicas"] == "3"
        assert first.labels["canary"] == "true"
        assert (second.severity, second.status) == (Severity.SEV0, AlertStatus.RESOLVED)

    def test_given_fingerprint_is_kept_else_derived(self) -> None:
        """`fingerprint` is used as is; without it the same alert derives the same one."""
        given = received(generic.to_drafts(generic.GenericAlerts.model_validate(
            {"name": "A", "service": "s", "fingerprint": "mine"})))
        assert given[0].fingerprint == "mine"
        one = received(generic.to_drafts(generic.GenericAlerts.model_validate(
            {"name": "A", "service": "s", "labels": {"a": "1", "b": "2"}})))
        two = received(generic.to_drafts(generic.GenericAlerts.model_validate(
            {"name": "A", "service": "s", "labels": {"b": "2", "a": "1"}, "summary": "new"})))
        assert one[0].fingerprint == two[0].fingerprint

    def test_errors_name_fields(self) -> None:
        """Missing name, naive timestamps, nested labels and empty batches are named."""
        assert errors_of(generic.GenericAlerts, {"service": "s"}) == [
            "alerts[0].name: Field required"
        ]
        errors = errors_of(generic.GenericAlerts, {"alerts": [
            {"name": "A", "starts_at": "2026-01-01T00:00:00"},
            {"name": "B", "labels": {"x": {"nested": 1}}},
            {"name": "C", "status": "exploded"},
        ]})
        assert errors[0] == "alerts[0].starts_at: Input should have timezone info"
        assert errors[1].startswith("alerts[1].labels.x: ")
        assert errors[2].startswith("alerts[2].status: ")
        assert errors_of(generic.GenericAlerts, {"alerts": []})[0].startswith("alerts: ")


class TestFieldErrors:
    """Rendering of FastAPI's error locations."""

    def test_body_header_and_json_errors(self) -> None:
        """Body paths drop `body`, headers say so, invalid JSON says where."""
        assert field_errors([
            {"loc": ("body", "alerts", 0, "status"), "msg": "bad", "type": "x"},
            {"loc": ("header", "X-Correlation-ID"), "msg": "too long", "type": "x"},
            {"loc": ("body", 7), "msg": "JSON decode error", "type": "json_invalid",
             "ctx": {"error": "Expecting value"}},
            {"loc": ("body",), "msg": "Field required", "type": "missing"},
        ]) == [
            "alerts[0].status: bad",
            "header X-Correlation-ID: too long",
            "body: invalid JSON (Expecting value at character 7)",
            "body: Field required",
        ]
