"""The gateway's OpenAPI page documents every alert route: summary, examples, answers, auth."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.main import create_runtime
from services.gateway.settings import GatewaySettings
from shared.settings import KafkaSettings, ServiceSettings

pytestmark = pytest.mark.unit

ROUTES = ("/alerts/alertmanager", "/alerts/grafana", "/alerts/generic", "/v2/enqueue")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The OpenAPI document of a gateway that was built but never connected."""
    runtime = create_runtime(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        settings=ServiceSettings(log_level="ERROR"),
        gateway=GatewaySettings(tokens=("t",)),
    )
    document: dict[str, Any] = runtime.http.openapi()
    return document


@pytest.mark.parametrize("path", ROUTES)
def test_alert_routes_are_documented(spec: dict[str, Any], path: str) -> None:
    """Each route has a summary, a description, request examples, 202/401/503 and bearer auth."""
    operation = spec["paths"][path]["post"]
    assert operation["summary"]
    assert len(operation["description"]) > 80
    assert operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"202", "401", "413", "503"} <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert operation["security"] == [{"GatewayToken": []}]


def test_pagerduty_route_documents_400_not_422(spec: dict[str, Any]) -> None:
    """PagerDuty senders get PagerDuty's 400 body; FastAPI's default 422 is not advertised."""
    responses = spec["paths"]["/v2/enqueue"]["post"]["responses"]
    assert "400" in responses
    assert "422" not in responses
    assert "422" in spec["paths"]["/alerts/generic"]["post"]["responses"]
