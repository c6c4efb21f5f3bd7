"""Gateway settings: comma-separated secrets from the environment, port and catalog defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def test_tokens_and_routing_keys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """`IR_GATEWAY_TOKENS=a, b` gives two tokens; routing keys may bind a service."""
    monkeypatch.setenv("IR_GATEWAY_TOKENS", "a, b,,")
    monkeypatch.setenv("IR_GATEWAY_PAGERDUTY_ROUTING_KEYS", "k1=payments,k2")
    settings = GatewaySettings()
    assert settings.tokens == ("a", "b")
    assert settings.routing_services() == {"k1": "payments", "k2": None}


def test_secrets_stay_out_of_repr() -> None:
    """Tokens and routing keys never appear when settings are logged."""
    text = repr(GatewaySettings(tokens=("s3cret",), pagerduty_routing_keys=("rk-s3cret",)))
    assert "s3cret" not in text


def test_port_prefers_own_then_generic_then_8080() -> None:
    """IR_GATEWAY_HTTP_PORT beats IR_HTTP_PORT, which beats the default 8080."""
    assert GatewaySettings(http_port=9000).port(7000) == 9000
    assert GatewaySettings().port(7000) == 7000
    assert GatewaySettings().port(0) == 8080


def test_catalog_path_defaults_to_config_dir() -> None:
    """Without IR_GATEWAY_CATALOG_PATH the catalog is <config_dir>/catalog.yaml."""
    assert GatewaySettings().catalog_file("demo/config") == Path("demo/config/catalog.yaml")
    assert GatewaySettings(catalog_path="/etc/c.yaml").catalog_file("x") == Path("/etc/c.yaml")


def test_publish_timeout_must_be_positive() -> None:
    """A zero publish timeout is a configuration error, not a gateway that always says 503."""
    with pytest.raises(ValueError, match="publish_timeout_s"):
        GatewaySettings(publish_timeout_s=0)
