"""Gateway settings (`IR_GATEWAY_*`), read in the factory, never at import time.

Comma-separated lists come in as plain strings (`IR_GATEWAY_TOKENS=a,b`), not
JSON, because that is how operators write them in compose files and
Kubernetes secrets. Secrets are excluded from `repr` so they never reach a log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HTTP_PORT = 8080


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class GatewaySettings(BaseSettings):
    """How the gateway accepts alerts and hands them to the event log."""

    model_config = SettingsConfigDict(env_prefix="IR_GATEWAY_", extra="ignore")

    http_port: int | None = Field(
        None, description="listen port; else IR_HTTP_PORT when set, else 8080"
    )
    tokens: Annotated[tuple[str, ...], NoDecode] = Field(
        (), repr=False,
        description="bearer tokens accepted (comma separated); none = unauthenticated",
    )
    pagerduty_routing_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), repr=False,
        description="accepted PagerDuty routing keys, each `key` or `key=service`",
    )
    catalog_path: str | None = Field(
        None, description="service catalog; else <config_dir>/catalog.yaml"
    )
    publish_timeout_s: float = Field(5.0, gt=0, description="broker ack deadline per request")
    retry_after_s: int = Field(5, ge=1, description="Retry-After of a 503")
    max_body_bytes: int = Field(5 * 1024 * 1024, gt=0, description="larger bodies get 413")
    max_in_flight_alerts: int = Field(10_000, gt=0, description="more unacked alerts get 503")
    dedup_window_s: int = Field(60, ge=1, description="a retry within it keeps its event id")
    connect_retry_max_s: float = Field(10.0, gt=0, description="cap of the broker retry backoff")
    workers: int = Field(
        1, ge=1, le=64,
        description="gateway processes sharing the port (SO_REUSEPORT); about one per core",
    )

    @field_validator("tokens", "pagerduty_routing_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    def port(self, service_port: int) -> int:
        """The port to listen on, given the generic IR_HTTP_PORT (0 when unset)."""
        if self.http_port is not None:
            return self.http_port
        return service_port or DEFAULT_HTTP_PORT

    def catalog_file(self, config_dir: str) -> Path:
        """Where the service catalog is read from."""
        return Path(self.catalog_path) if self.catalog_path else Path(config_dir) / "catalog.yaml"

    def routing_services(self) -> dict[str, str | None]:
        """PagerDuty routing key -> the service it is bound to (None when unbound)."""
        out: dict[str, str | None] = {}
        for entry in self.pagerduty_routing_keys:
            key, _, service = entry.partition("=")
            out[key.strip()] = service.strip() or None
        return out
