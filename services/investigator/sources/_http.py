"""The one way sources read JSON over HTTP: explicit errors, never a silent empty answer."""

from __future__ import annotations

from typing import Any

import httpx


class SourceError(RuntimeError):
    """A source answered with something the investigator cannot use."""


async def get_json(
    client: httpx.AsyncClient, url: str, params: dict[str, Any] | None = None
) -> Any:
    """GET url and decode its JSON body; raises SourceError on a non-2xx or non-JSON answer."""
    response = await client.get(url, params=params)
    if response.status_code >= 400:
        raise SourceError(f"GET {url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise SourceError(f"GET {url} did not answer JSON") from exc


def fill(template: str, **values: str) -> str:
    """A URL or path template with its `{world_url}`/`{service}` placeholders filled."""
    try:
        return template.format(**values)
    except (KeyError, IndexError) as exc:
        raise SourceError(f"template {template!r} uses an unknown placeholder {exc}") from exc
