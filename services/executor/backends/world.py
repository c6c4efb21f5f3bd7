"""The demo world's supervisor HTTP API as an action backend.

The supervisor (`python -m demo.world`) is this product's stand-in for a
production platform API: it restarts, rolls back and deploys services, changes
their log level at runtime and reports per-service health (`GET /status`:
error rate over the last 30 s, up, version). The executor reads the same
`/status` to verify recovery, so the check and the action talk to one source.

Responses are read tolerantly (a list or a `{"services": ...}` wrapper, a
missing field): the world may grow fields, and the executor only needs a few.
Service names are URL-quoted; they are also validated against a strict name
pattern before any run, so a proposal cannot steer a request elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from services.executor.backends import ActionBackend, BackendError, require

AUTHOR = "executor"
"""Author recorded in the world's deploy history for deploys and rollbacks the executor makes."""


class WorldBackend(ActionBackend):
    """Restart, roll back, deploy, set log level and read status through the supervisor."""

    name: ClassVar[str] = "world"
    operations: ClassVar[frozenset[str]] = frozenset({
        "require_service", "status", "restart", "rollback", "deploy",
        "get_log_level", "set_log_level", "current_version", "previous_version",
    })

    def __init__(self, base_url: str, *, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def call(
        self, operation: str, args: Mapping[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Run one supervisor operation."""
        if operation not in self.operations:
            raise BackendError(f"world backend has no operation {operation!r}")
        service = require(args, "service")
        op = getattr(self, f"_op_{operation}")
        result: dict[str, Any] = await op(service, args, {"Idempotency-Key": idempotency_key})
        return result

    async def _op_require_service(self, service: str, _args: Mapping[str, Any],
                                  _headers: dict[str, str]) -> dict[str, Any]:
        return await self.service_status(service)

    _op_status = _op_require_service

    async def _op_restart(self, service: str, args: Mapping[str, Any],
                          headers: dict[str, str]) -> dict[str, Any]:
        mode = str(args.get("mode", "graceful"))
        body = await self._request("POST", f"{_path(service)}/restart", headers,
                                   json={"mode": mode})
        return {"service": service, "mode": mode, **_dict(body)}

    async def _op_rollback(self, service: str, _args: Mapping[str, Any],
                           headers: dict[str, str]) -> dict[str, Any]:
        body = await self._request("POST", f"{_path(service)}/rollback", headers,
                                   json={"author": AUTHOR})
        return {"service": service, **_dict(body)}

    async def _op_deploy(self, service: str, args: Mapping[str, Any],
                         headers: dict[str, str]) -> dict[str, Any]:
        version = require(args, "version")
        change = str(args.get("change") or f"redeploy {version} (executor rollback)")
        body = await self._request("POST", f"{_path(service)}/deploy", headers,
                                   json={"version": version, "author": AUTHOR,
                                         "change": change})
        return {"service": service, "version": version, **_dict(body)}

    async def _op_get_log_level(self, service: str, _args: Mapping[str, Any],
                                headers: dict[str, str]) -> dict[str, Any]:
        body = _dict(await self._request("GET", f"{_path(service)}/log-level", headers))
        if "level" not in body:
            raise BackendError(f"log level of {service} not reported: {body}")
        return {"service": service, "level": str(body["level"])}

    async def _op_set_log_level(self, service: str, args: Mapping[str, Any],
                                headers: dict[str, str]) -> dict[str, Any]:
        level = require(args, "level")
        body = await self._request("POST", f"{_path(service)}/log-level", headers,
                                   json={"level": level})
        return {"service": service, "level": level, **_dict(body)}

    async def _op_current_version(self, service: str, _args: Mapping[str, Any],
                                  _headers: dict[str, str]) -> dict[str, Any]:
        status = await self.service_status(service)
        if not status.get("version"):
            raise BackendError(f"version of {service} not reported")
        return {"service": service, "version": status["version"]}

    async def _op_previous_version(self, service: str, args: Mapping[str, Any],
                                   _headers: dict[str, str]) -> dict[str, Any]:
        found = await self._previous_version(service)
        expect = str(args.get("expect") or "")
        if expect and expect != found["previous"]:
            raise BackendError(f"{service} would roll back to {found['previous']}, "
                               f"not to the proposed {expect}")
        return found

    async def status(self) -> dict[str, dict[str, Any]]:
        """Health of every service: name -> {error_rate, up, version}."""
        return _services(await self._request("GET", "/status", {}))

    async def service_status(self, service: str) -> dict[str, Any]:
        """Health of one service; BackendError when the world does not know it."""
        services = await self.status()
        if service not in services:
            raise BackendError(f"service {service!r} is not in the world (known: "
                               f"{', '.join(sorted(services)) or 'none'})")
        entry = services[service]
        return {
            "service": service,
            "error_rate": _float(entry.get("error_rate")),
            "up": bool(entry.get("up", False)),
            "version": entry.get("version"),
        }

    async def _previous_version(self, service: str) -> dict[str, Any]:
        body = await self._request("GET", "/deploys", {}, params={"service": service})
        deploys = body.get("deploys", []) if isinstance(body, dict) else body
        mine = [d for d in deploys or [] if isinstance(d, dict)
                and d.get("service", service) == service]
        if not mine:
            raise BackendError(f"no deploy history for {service}: nothing to roll back to")
        current = await self.service_status(service)
        versions = [str(d.get("version")) for d in mine if d.get("version")]
        latest = mine[-1]
        previous = latest.get("previous_version")
        if not previous:
            earlier = [v for v in versions if v != current.get("version")]
            previous = earlier[-1] if earlier else None
        if not previous or previous == current.get("version"):
            raise BackendError(f"{service} has no earlier version to roll back to")
        return {"service": service, "current": current.get("version"), "previous": previous}

    async def _request(self, method: str, path: str, headers: dict[str, str],
                       **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"world API unreachable ({method} {path}): "
                               f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise BackendError(f"world API {method} {path} -> HTTP {response.status_code}: "
                               f"{response.text[:300]}")
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"world API {method} {path} answered non-JSON") from exc


def _path(service: str) -> str:
    return f"/services/{quote(service, safe='')}"


def _dict(body: Any) -> dict[str, Any]:
    return dict(body) if isinstance(body, dict) else {"response": body}


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _services(body: Any) -> dict[str, dict[str, Any]]:
    """Normalise `/status` (or `/services`) into name -> entry."""
    if isinstance(body, dict) and "services" in body:
        body = body["services"]
    if isinstance(body, list):
        return {str(e["name"]): e for e in body if isinstance(e, dict) and "name" in e}
    if isinstance(body, dict):
        return {str(k): v for k, v in body.items() if isinstance(v, dict)}
    return {}
