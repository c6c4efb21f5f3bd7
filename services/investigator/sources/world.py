"""Process state from the demo world's supervisor: status, up, version, log level.

`GET /services` says whether each process runs (and at which version and log
level); `GET /status` adds each service's error rate over the last 30 s. A
stopped or crashed process is direct evidence for the crash rule, and a DEBUG
log level for the logging rule. `/status` is optional: when it fails, the
process states from `/services` still count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from services.investigator.evidence import EvidenceBundle, EvidenceQuery, ServiceState, SourceNote
from services.investigator.sources._http import get_json
from services.investigator.sources.directory import ServiceEndpoint, WorldDirectory

_DOWN_STATUSES = frozenset({"stopped", "crashed", "exited", "dead", "down", "failed", "killed"})


class WorldStatusSource:
    """Service states from the supervisor API of the demo world."""

    def __init__(self, client: httpx.AsyncClient, world_url: str) -> None:
        self._client = client
        self._world_url = world_url.rstrip("/")
        self._directory = WorldDirectory(client, world_url)

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "status:world"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """The state of every queried service the supervisor knows."""
        endpoints = await self._directory.endpoints()
        notes: tuple[SourceNote, ...] = ()
        try:
            rates = parse_status(await get_json(self._client, self._world_url + "/status"))
        except Exception as exc:  # /status is a bonus; /services already answered
            rates = {}
            notes = (SourceNote(source=self.name, detail=f"GET /status unavailable: {exc}"),)
        states = {
            name: to_state(endpoints[name], rates.get(name, {}))
            for name in query.services
            if name in endpoints
        }
        return EvidenceBundle(states=states, notes=notes)


def to_state(endpoint: ServiceEndpoint, status: Mapping[str, Any]) -> ServiceState:
    """Combine a `/services` entry and its `/status` entry into one state."""
    process_status = (endpoint.status or "unknown").lower()
    up_flag = status.get("up")
    up = bool(up_flag) if up_flag is not None else None
    if process_status in _DOWN_STATUSES:
        up = False
    rate = status.get("error_rate")
    cache_rate = status.get("cache_error_rate")
    return ServiceState(
        service=endpoint.name,
        status=process_status,
        up=up,
        version=status.get("version") or endpoint.version,
        log_level=(endpoint.log_level or "").upper() or None,
        error_rate=float(rate) if isinstance(rate, int | float) else None,
        cache_error_rate=float(cache_rate) if isinstance(cache_rate, int | float) else None,
        started_at=endpoint.started_at,
    )


def parse_status(body: Any) -> dict[str, dict[str, Any]]:
    """Decode `GET /status`: `{name: {...}}`, `{"services": ...}` or a list with names."""
    if isinstance(body, Mapping) and isinstance(body.get("services"), list | Mapping):
        body = body["services"]
    if isinstance(body, list):
        return {
            str(item.get("name") or item.get("service")): dict(item)
            for item in body
            if isinstance(item, Mapping) and (item.get("name") or item.get("service"))
        }
    if isinstance(body, Mapping):
        return {str(k): dict(v) for k, v in body.items() if isinstance(v, Mapping)}
    return {}
