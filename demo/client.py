"""Async client of the demo world's control API, for the demo CLI and the tests.

A thin wrapper over `httpx.AsyncClient`: one method per endpoint, returning
the decoded JSON as plain dicts and lists (the API is the contract, not a
model layer), raising `httpx.HTTPStatusError` on a non-2xx answer. Two
polling helpers (`wait_healthy`, `wait_until`) exist because "recovered" is
an observation over time (error rate under 5 % and up), never an instant.

    async with DemoWorldClient("http://127.0.0.1:9100") as world:
        await world.inject("bad_deploy", "payments")
        await world.rollback("payments")
        await world.wait_healthy(["payments", "checkout", "storefront"])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def _iso(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


class DemoWorldClient:
    """Client of `python -m demo.world`'s control API."""

    def __init__(
        self, base_url: str, timeout: float = 15.0, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = client or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._own = client is None

    async def __aenter__(self) -> DemoWorldClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (when this object created it)."""
        if self._own:
            await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        resp = await self._http.request(method, path, params=clean or None, json=json)
        resp.raise_for_status()
        return resp.json()

    # --- services ------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """`GET /health`."""
        result: dict[str, Any] = await self._call("GET", "/health")
        return result

    async def services(self) -> list[dict[str, Any]]:
        """`GET /services`: name, port, pid, url, metrics_url, version, status, log_level..."""
        result: list[dict[str, Any]] = await self._call("GET", "/services")
        return result

    async def service(self, name: str) -> dict[str, Any]:
        """`GET /services/{name}`."""
        result: dict[str, Any] = await self._call("GET", f"/services/{name}")
        return result

    async def restart(self, name: str) -> dict[str, Any]:
        """`POST /services/{name}/restart`: the new service record (new pid)."""
        result: dict[str, Any] = await self._call("POST", f"/services/{name}/restart")
        return result

    async def deploys(
        self, service: str | None = None, since: str | datetime | None = None
    ) -> list[dict[str, Any]]:
        """`GET /deploys`: deploy history, oldest first."""
        result: list[dict[str, Any]] = await self._call(
            "GET", "/deploys", params={"service": service, "since": _iso(since)}
        )
        return result

    async def deploy(
        self,
        name: str,
        version: str,
        author: str = "demo",
        change: str = "",
        bad: bool = False,
    ) -> dict[str, Any]:
        """`POST /services/{name}/deploy`: the deploy record."""
        body = {"version": version, "author": author, "change": change, "bad": bad}
        result: dict[str, Any] = await self._call("POST", f"/services/{name}/deploy", json=body)
        return result

    async def rollback(self, name: str, author: str | None = None) -> dict[str, Any]:
        """`POST /services/{name}/rollback`: the deploy record of the rollback."""
        body = {"author": author} if author else None
        result: dict[str, Any] = await self._call("POST", f"/services/{name}/rollback", json=body)
        return result

    async def set_log_level(self, name: str, level: str) -> dict[str, Any]:
        """`POST /services/{name}/log-level`."""
        result: dict[str, Any] = await self._call(
            "POST", f"/services/{name}/log-level", json={"level": level}
        )
        return result

    async def get_log_level(self, name: str) -> str:
        """`GET /services/{name}/log-level`: the level name."""
        result = await self._call("GET", f"/services/{name}/log-level")
        return str(result["level"])

    async def logs(
        self,
        name: str,
        since: str | datetime | None = None,
        level: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """`GET /logs/{name}`: log records, oldest first; level is a minimum."""
        result: list[dict[str, Any]] = await self._call(
            "GET", f"/logs/{name}", params={"since": _iso(since), "level": level, "limit": limit}
        )
        return result

    # --- faults and health -----------------------------------------------------------

    async def inject(self, kind: str, service: str, **params: Any) -> dict[str, Any]:
        """`POST /faults/{kind}` (params: duration_seconds, rate for error_spike)."""
        result: dict[str, Any] = await self._call(
            "POST", f"/faults/{kind}", json={"service": service, **params}
        )
        return result

    async def faults(self) -> list[dict[str, Any]]:
        """`GET /faults`: active faults."""
        result: list[dict[str, Any]] = await self._call("GET", "/faults")
        return result

    async def clear_faults(self) -> dict[str, Any]:
        """`DELETE /faults`: clears every non-deploy fault."""
        result: dict[str, Any] = await self._call("DELETE", "/faults")
        return result

    async def status(self) -> dict[str, dict[str, Any]]:
        """`GET /status`: per service up, error_rate, version, healthy..."""
        result: dict[str, dict[str, Any]] = await self._call("GET", "/status")
        return result

    async def alerts(self) -> dict[str, Any]:
        """`GET /alerts`: the alerter's firing alerts."""
        result: dict[str, Any] = await self._call("GET", "/alerts")
        return result

    # --- waiting ---------------------------------------------------------------------

    async def wait_until(
        self,
        probe: Callable[[], Awaitable[T | None]],
        within: float = 30.0,
        interval: float = 0.25,
        what: str = "condition",
    ) -> T:
        """Poll probe until it returns something truthy; TimeoutError after within seconds."""
        deadline = time.monotonic() + within
        last: Exception | None = None
        while True:
            try:
                value = await probe()
                if value:
                    return value
            except (httpx.HTTPError, KeyError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} not reached within {within:g}s (last error: {last})")
            await asyncio.sleep(interval)

    async def wait_healthy(
        self, services: Iterable[str] | None = None, within: float = 60.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until the services (default all) are up with an error rate under 5 %."""
        wanted = list(services) if services is not None else None

        async def probe() -> dict[str, dict[str, Any]] | None:
            st = await self.status()
            names = wanted if wanted is not None else list(st)
            return st if all(st[n]["healthy"] for n in names) else None

        return await self.wait_until(probe, within, what="healthy world")
