"""The gateway's hot path: the alert webhooks served before FastAPI's machinery.

Every alert route is declared in FastAPI (`api.install`): that is where the
contract lives, typed, in the OpenAPI document, and what an in-process client
of the app talks to. But per request FastAPI runs a dozen middleware layers,
dependency solving and a JSON-then-model double parse, and on a two-core
machine that was most of the gateway's CPU at one to ten alerts per request
(py-spy: ~50% of samples were above our handler). The `AlertFront` sits in
front of the app in the gateway's HTTP server and answers `POST` on the
Alertmanager, Grafana and generic routes itself; everything else (PagerDuty,
`/healthz`, `/metrics`, `/docs`) goes through to FastAPI.

It does by hand exactly what FastAPI does declaratively for those routes, with
the same pieces: the bearer check (`api.token_ok`), the body cap (413 before
and while reading), the `X-Correlation-ID` constraints (`api.CORRELATION_ID`),
the body model (pydantic `model_validate_json`, errors as `<path>: <what>` via
`api.field_errors`), then the shared `api.admit` and the same bodies and
status codes (202, 401, 413, 422, 503 + Retry-After). The integration tests
of the gateway run against the real server, so they exercise this path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway import api
from services.gateway.delivery import EventLogUnavailableError
from services.gateway.intake import AlertIntake
from services.gateway.metrics import GatewayMetrics, outcome_of
from services.gateway.normalise import InvalidAlertError

log = logging.getLogger(__name__)

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


class _TooLargeError(Exception):
    pass


class AlertFront:
    """ASGI app answering the alert webhooks itself and passing the rest to app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        intake: AlertIntake,
        metrics: GatewayMetrics,
        tokens: Sequence[str],
        max_body_bytes: int,
        retry_after_s: int,
        routes: Mapping[str, api.AlertRoute] = api.ALERT_ROUTES,
    ) -> None:
        self.app = app
        self.intake = intake
        self.metrics = metrics
        self.tokens = tuple(tokens)
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an alert webhook, or hand the request to the app."""
        route = (
            self.routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, body, headers = await self._serve(route, scope, receive)
        except Exception:  # a bug must not take the server down; the sender retries
            log.exception("%s request failed", route.source)
            status, body, headers = 500, _problem("internal error"), []
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
        })
        await send({"type": "http.response.body", "body": body})
        self.metrics.latency.labels(route.source).observe(time.perf_counter() - started)
        self.metrics.requests.labels(route.source, outcome_of(status)).inc()

    async def _serve(self, route: api.AlertRoute, scope: Scope, receive: Receive) -> Answer:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not api.token_ok(self.tokens, api.bearer_token(headers.get("authorization"))):
            return 401, orjson.dumps({"detail": api.UNAUTHORIZED}), [
                (b"www-authenticate", b"Bearer"),
            ]
        try:
            body = await self._read(headers, receive)
        except _TooLargeError:
            return 413, orjson.dumps({"detail": "Request Entity Too Large"}), []
        errors: list[str] = []
        correlation_id = headers.get("x-correlation-id")
        if correlation_id is not None:
            try:
                api.CORRELATION_ID.validate_python(correlation_id)
            except ValidationError as exc:
                errors += api.field_errors(
                    [{**e, "loc": ("header", "X-Correlation-ID")} for e in exc.errors()]
                )
        try:
            payload = route.model.model_validate_json(body)
        except ValidationError as exc:
            errors += api.field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
        if errors:
            return 422, _problem(api.INVALID_PAYLOAD, errors), []
        try:
            accepted = await api.admit(
                route, payload, self.intake, self.metrics,
                correlation_id=correlation_id, trace_headers=headers,
            )
        except InvalidAlertError as exc:
            return 422, _problem(api.INVALID_PAYLOAD, exc.errors), []
        except EventLogUnavailableError as exc:
            return 503, _problem(api.unavailable_detail(exc)), [
                (b"retry-after", str(self.retry_after_s).encode()),
            ]
        return 202, api.accepted_body(accepted), []

    async def _read(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLargeError
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _problem(detail: str, errors: list[str] | None = None) -> bytes:
    return orjson.dumps({"detail": detail, "errors": errors or []})
