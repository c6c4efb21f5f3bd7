"""A recorded demo world behind `httpx.MockTransport`: the investigator's sources read it unchanged.

Each case folder holds what a real demo world answered during a fault (see
`record.py`). `RecordedWorld` serves it in the world's API shape: `/services`,
`/status`, `/deploys` (filtered by service and since, like the real one),
`/logs/{name}` (the ERROR recording when `level` is given, else the sample,
filtered by since) and each service's metrics URL (first, then second scrape;
a service without a recording refuses the connection, as a dead process does).
With a `base_url` the same answers can be served by a real HTTP server, the
metrics then living at `<base_url>/metrics/<name>`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

CASES = Path(__file__).parent
WORLD_URL = "http://world.test"


def _since(request: httpx.Request) -> datetime | None:
    raw = request.url.params.get("since")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class RecordedWorld:
    """Serves one recorded case; counts requests per path."""

    def __init__(self, case: str, base_url: str | None = None) -> None:
        self.folder = CASES / case
        self.meta: dict[str, Any] = json.loads((self.folder / "meta.json").read_text())
        self.services: list[dict[str, Any]] = json.loads(
            (self.folder / "services.json").read_text())
        self.requests: list[str] = []
        self._scrapes: dict[str, int] = {}
        self._metrics = {
            httpx.URL(s["metrics_url"]).port: s["name"] for s in self.services
        }
        if base_url is not None:
            # Served by a real HTTP server: metrics move to <base_url>/metrics/<name>.
            self._metrics = {}
            for s in self.services:
                s["metrics_url"] = f"{base_url}/metrics/{s['name']}"

    @property
    def first_anomaly_at(self) -> datetime:
        """When the alert says the anomaly began."""
        return _ts(self.meta["first_anomaly_at"])

    @property
    def recorded_at(self) -> datetime:
        """When the case was recorded (the investigation's "now")."""
        return _ts(self.meta["recorded_at"])

    def transport(self) -> httpx.MockTransport:
        """The mock transport answering like the world did."""
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        """An async client wired to the recording."""
        return httpx.AsyncClient(transport=self.transport())

    def _json(self, name: str) -> Any:
        return json.loads((self.folder / name).read_text())

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request from the recording."""
        path = request.url.path
        self.requests.append(path)
        if request.url.port in self._metrics:
            return self._scrape(self._metrics[request.url.port], request)
        if path.startswith("/metrics/"):
            return self._scrape(path.removeprefix("/metrics/"), request)
        if path == "/services":
            return httpx.Response(200, json=self.services)
        if path == "/status":
            return httpx.Response(200, json=self._json("status.json"))
        if path == "/deploys":
            service, since = request.url.params.get("service"), _since(request)
            deploys = [
                d for d in self._json("deploys.json")
                if (not service or d["service"] == service)
                and (since is None or _ts(d["deployed_at"]) >= since)
            ]
            return httpx.Response(200, json=deploys)
        if path.startswith("/logs/"):
            name = path.removeprefix("/logs/")
            kind = "errors" if request.url.params.get("level") else "sample"
            file = self.folder / "logs" / f"{name}.{kind}.json"
            if not file.exists():
                return httpx.Response(404, json={"detail": f"unknown service {name!r}"})
            since = _since(request)
            lines = [r for r in json.loads(file.read_text())
                     if since is None or _ts(r["ts"]) >= since]
            return httpx.Response(200, json=lines)
        return httpx.Response(404, json={"detail": "not found"})

    def _scrape(self, name: str, request: httpx.Request) -> httpx.Response:
        n = self._scrapes[name] = min(self._scrapes.get(name, 0) + 1, 2)
        file = self.folder / "metrics" / f"{name}.{n}.txt"
        if not file.exists():
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, text=file.read_text(),
                              headers={"content-type": "text/plain; version=0.0.4"})
