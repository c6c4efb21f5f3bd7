"""Logs from an HTTP JSON log API, in the demo world's shape.

`GET <url>?since=ISO&limit=N&level=ERROR` answers a JSON list of log lines
(`ts`, `level`, `service`, `msg`, `version`, ...), oldest first. Per service the
source asks twice: the latest ERROR lines since the window start (the error
pattern), and the latest lines of any level (the mix of levels, which reveals
excessive DEBUG logging). A service the API does not know (HTTP 404) simply has
no logs; other failures of one service are noted and the rest still count.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import ValidationError

from services.investigator.evidence import (
    EvidenceBundle,
    EvidenceQuery,
    LogRecord,
    ServiceLogs,
    SourceNote,
)
from services.investigator.sources._http import SourceError, fill, get_json


def parse_log_lines(body: Any, service: str) -> tuple[LogRecord, ...]:
    """Decode a JSON list of log lines; lines without a timestamp are skipped."""
    if isinstance(body, dict) and "lines" in body:
        body = body["lines"]
    if not isinstance(body, list):
        raise SourceError(f"logs of {service} are not a JSON list")
    records = []
    for item in body:
        if not isinstance(item, dict):
            continue
        try:
            records.append(LogRecord.model_validate({
                "service": service,
                **item,
                "msg": str(item.get("msg", item.get("message", ""))),
                "level": str(item.get("level", "INFO")).upper(),
            }))
        except ValidationError:
            continue
    return tuple(records)


class HttpLogSource:
    """Error lines and a level sample per service from a JSON log API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        world_url: str = "",
        error_limit: int = 100,
        sample_limit: int = 300,
    ) -> None:
        self._client = client
        self._template = url
        self._world_url = world_url.rstrip("/")
        self._error_limit = error_limit
        self._sample_limit = sample_limit

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "logs:http"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """Logs of every queried service; a failing service becomes a note."""
        results = await asyncio.gather(
            *(self._service(s, query) for s in query.services), return_exceptions=True
        )
        logs: dict[str, ServiceLogs] = {}
        notes: list[SourceNote] = []
        for service, result in zip(query.services, results, strict=True):
            if isinstance(result, BaseException):
                notes.append(SourceNote(source=self.name,
                                        detail=f"logs of {service} unavailable: {result}"))
            elif result is not None:
                logs[service] = result
        if notes and not logs:
            raise SourceError("; ".join(n.detail for n in notes))
        return EvidenceBundle(logs=logs, notes=tuple(notes))

    async def _service(self, service: str, query: EvidenceQuery) -> ServiceLogs | None:
        url = fill(self._template, world_url=self._world_url, service=service)
        since = query.since.isoformat()
        try:
            errors, sample = await asyncio.gather(
                get_json(self._client, url,
                         params={"since": since, "limit": self._error_limit, "level": "ERROR"}),
                get_json(self._client, url, params={"since": since, "limit": self._sample_limit}),
            )
        except SourceError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return ServiceLogs(
            service=service,
            errors=tuple(r for r in parse_log_lines(errors, service) if r.is_error),
            sample=parse_log_lines(sample, service),
        )
