"""Alert intake without a broker: receipt time, repeats within a request, refusal before connect."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.gateway import api
from services.gateway.delivery import AlertDelivery, EventLogUnavailableError, admits
from services.gateway.intake import AlertIntake
from services.gateway.metrics import GatewayMetrics
from services.gateway.normalise import AlertDraft
from shared.catalog import ServiceCatalog
from shared.clock import ManualClock
from shared.domain import AlertStatus
from shared.events import AlertReceived
from shared.kafka import EventBus
from shared.settings import KafkaSettings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def intake() -> tuple[AlertIntake, CollectorRegistry]:
    registry = CollectorRegistry()
    bus = EventBus(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "gateway", registry=registry)
    return AlertIntake(
        delivery=AlertDelivery(bus), catalog=ServiceCatalog(), clock=ManualClock(T0),
        metrics=GatewayMetrics(registry),
    ), registry


def draft(name: str) -> AlertDraft:
    return AlertDraft(source="generic", status=AlertStatus.FIRING, name=name,
                      labels={"service": "search"})


def test_verbatim_repeats_in_one_request_are_one_event() -> None:
    """Two identical alerts in a request become one event; distinct ones stay, in order."""
    gateway, _ = intake()
    alerts = gateway.normalise([draft("A"), draft("B"), draft("A")])
    assert [a.name for a in alerts] == ["A", "B"]
    assert {a.received_at for a in alerts} == {T0}


async def test_alerts_are_refused_before_the_broker_connected() -> None:
    """Before the first connection a request is refused at once and counted as unavailable."""
    gateway, registry = intake()
    with pytest.raises(EventLogUnavailableError, match="not connected"):
        await gateway.accept([draft("A"), draft("B")], source="generic")

    def alerts(outcome: str) -> float | None:
        labels = {"source": "generic", "outcome": outcome}
        return registry.get_sample_value("ir_gateway_alerts_total", labels)

    assert alerts("unavailable") == 2
    assert alerts("accepted") is None


def test_in_flight_limit_admits_an_oversized_batch_only_when_idle() -> None:
    """Within the limit: admitted; over it: refused, unless nothing else is waiting."""
    assert admits(in_flight=5, batch=5, limit=10)
    assert not admits(in_flight=6, batch=5, limit=10)
    assert admits(in_flight=0, batch=50, limit=10)


def test_accepted_body_is_the_documented_model() -> None:
    """The 202 body, serialised straight from the events, validates as `AlertsAccepted`."""
    alerts, _ = intake()
    events = alerts.normalise([draft("HighErrorRate"), draft("HighLatency")])
    response = api._accepted(events)
    body = api.AlertsAccepted.model_validate_json(bytes(response.body))
    assert response.status_code == 202
    assert body.accepted == 2
    assert [(a.event_id, a.fingerprint, a.name, a.service, a.correlation_key) for a in body.alerts] \
        == [(e.event_id, e.fingerprint, e.name, e.service, e.correlation_key) for e in events]


def test_normalised_events_are_valid_contracts() -> None:
    """What the gateway builds passes the contract it publishes under (JSON round trip)."""
    alerts, _ = intake()
    for event in alerts.normalise([draft("HighErrorRate")]):
        assert AlertReceived.model_validate_json(event.model_dump_json()) == event
