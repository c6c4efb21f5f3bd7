"""Service discovery: where each service's metrics endpoint lives.

Two modes, chosen in `evidence.yaml`: `world` asks the demo world's supervisor
(`GET /services`, which also reports each process's status, version and log
level), `static` reads a fixed name -> metrics URL map (a real deployment
without a supervisor; Kubernetes users point the Prometheus API source at their
Prometheus instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from pydantic import AwareDatetime, ValidationError

from services.investigator.sources._http import SourceError, get_json
from shared.events import Model


class ServiceEndpoint(Model):
    """One service as discovery knows it."""

    name: str
    url: str | None = None
    metrics_url: str | None = None
    status: str | None = None
    version: str | None = None
    log_level: str | None = None
    pid: int | None = None
    started_at: AwareDatetime | None = None


class ServiceDirectory(Protocol):
    """Finds the endpoints of services."""

    async def endpoints(self) -> dict[str, ServiceEndpoint]:
        """Every known service by name; raises when discovery itself fails."""
        ...


class StaticDirectory:
    """A fixed map of service name -> metrics URL."""

    def __init__(self, targets: Mapping[str, str]) -> None:
        self._endpoints = {
            name: ServiceEndpoint(name=name, metrics_url=url) for name, url in targets.items()
        }

    async def endpoints(self) -> dict[str, ServiceEndpoint]:
        """The configured endpoints."""
        return dict(self._endpoints)


class WorldDirectory:
    """The demo world's supervisor: `GET {world_url}/services`."""

    def __init__(self, client: httpx.AsyncClient, world_url: str) -> None:
        self._client = client
        self._url = world_url.rstrip("/") + "/services"

    async def endpoints(self) -> dict[str, ServiceEndpoint]:
        """Every service the supervisor runs, keyed by name."""
        body = await get_json(self._client, self._url)
        return parse_services(body)


def parse_services(body: Any) -> dict[str, ServiceEndpoint]:
    """Decode a `GET /services` answer (a list, or `{"services": [...]}`)."""
    if isinstance(body, Mapping) and "services" in body:
        body = body["services"]
    if not isinstance(body, list):
        raise SourceError("GET /services did not answer a list of services")
    found: dict[str, ServiceEndpoint] = {}
    for item in body:
        try:
            endpoint = ServiceEndpoint.model_validate(item)
        except ValidationError as exc:
            raise SourceError(f"GET /services returned an invalid entry: {item!r:.200}") from exc
        found[endpoint.name] = endpoint
    return found
