"""Deploy history over HTTP JSON (the demo world's `GET /deploys`, or a CD system's API).

`GET <url>?service=<name>&since=ISO` answers a JSON list of
`{id, service, version, previous_version, deployed_at, author, change}`. One
request per queried service; entries of other services or from before the window
are dropped here too, so a server that ignores the filters cannot mislead the
rules. A malformed entry is skipped, a failed request fails the source.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import ValidationError

from services.investigator.evidence import DeployRecord, EvidenceBundle, EvidenceQuery
from services.investigator.sources._http import SourceError, fill, get_json


def parse_deploys(body: Any) -> tuple[DeployRecord, ...]:
    """Decode a deploy list (or `{"deploys": [...]}`); malformed entries are skipped."""
    if isinstance(body, dict) and "deploys" in body:
        body = body["deploys"]
    if not isinstance(body, list):
        raise SourceError("deploy history is not a JSON list")
    found = []
    for item in body:
        try:
            found.append(DeployRecord.model_validate(item))
        except ValidationError:
            continue
    return tuple(found)


class HttpDeploySource:
    """Recent deploys of the queried services."""

    def __init__(self, client: httpx.AsyncClient, url: str, world_url: str = "") -> None:
        self._client = client
        self._url = fill(url, world_url=world_url.rstrip("/"), service="")

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "deploys:http"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """Deploys of the queried services since the window start."""
        bodies = await asyncio.gather(*(
            get_json(self._client, self._url,
                     params={"service": s, "since": query.since.isoformat()})
            for s in query.services
        ))
        deploys = {
            (d.service, d.version, d.deployed_at): d
            for body in bodies
            for d in parse_deploys(body)
            if d.service in query.services and d.deployed_at >= query.since
        }
        return EvidenceBundle(deploys=tuple(sorted(deploys.values(), key=lambda d: d.deployed_at)))
