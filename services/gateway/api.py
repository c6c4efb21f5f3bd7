"""The gateway's HTTP surface: one webhook route per alert format, documented in OpenAPI.

Decisions:

- **Status codes say what happened to the alerts.** 202 only after the broker
  acknowledged every alert of the request; 503 + `Retry-After` when it did
  not (nothing is claimed, the sender retries); 4xx when the request itself is
  wrong, with every error naming its field as `<path>: <what>` (e.g.
  `alerts[2].status: Input should be 'firing' or 'resolved'`), so a sender's
  log tells the operator what to fix. A request is accepted or refused as a
  whole: a partial 202 would read as "all delivered" to every sender we serve.
- **Our formats answer 422** (`{"detail", "errors"}`); **PagerDuty's route
  answers as PagerDuty does**: 202 `{"status": "success", "message": "Event
  processed", "dedup_key"}` and 400 `{"status": "invalid event", "message":
  "Event object is invalid", "errors": [...]}`, via a route class that
  converts validation failures for that route only.
- **Authentication**: `Authorization: Bearer <token>` against
  `IR_GATEWAY_TOKENS` on every alert route (none configured = open, with a
  warning at start-up). `/v2/enqueue` authenticates by routing key instead
  when `IR_GATEWAY_PAGERDUTY_ROUTING_KEYS` is set, as PagerDuty does; else it
  takes the bearer token like the others. Tokens are compared in constant time.
- **Body size** is capped by FastAPI's own `max_body_size` (413), checked
  against `Content-Length` and while streaming.
- **Trace context**: a sender's W3C `traceparent` is continued, so the Kafka
  publish spans (and every service after) join the sender's trace.
- Request metrics are taken by a small ASGI middleware keyed by route, so
  rejections that never reach a handler (401, 413, 422) are counted too.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import context as otel_context
from opentelemetry import propagate
from pydantic import BaseModel, StringConstraints, TypeAdapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.delivery import EventLogUnavailableError
from services.gateway.formats import alertmanager, generic, grafana, pagerduty
from services.gateway.intake import AlertIntake
from services.gateway.metrics import GatewayMetrics, outcome_of
from services.gateway.normalise import AlertDraft, InvalidAlertError
from shared.domain import AlertStatus
from shared.events import AlertReceived

log = logging.getLogger(__name__)

DESCRIPTION = """
Receives alerts from monitoring systems and puts each one, normalised, on the
`alert.received` topic of the event log, keyed by its correlation group.

**Delivery.** `202` means every alert of the request was acknowledged by the
broker (`acks=all`). `503` with `Retry-After` means none of it is claimed:
retry the same request (a retry within a minute keeps its event ids, so it
cannot duplicate). `4xx` means the request is wrong; the body names each bad
field.

**Authentication.** `Authorization: Bearer <token>` when the gateway has
tokens configured (`IR_GATEWAY_TOKENS`). PagerDuty events authenticate with
their `routing_key` when routing keys are configured.
"""


# --- response bodies -----------------------------------------------------------


class Problem(BaseModel):
    """Why a request was refused; `errors` name the fields at fault."""

    detail: str
    errors: list[str] = []


class AcceptedAlert(BaseModel):
    """One alert as it went onto `alert.received`."""

    event_id: str
    fingerprint: str
    status: AlertStatus
    name: str
    service: str
    correlation_key: str


class AlertsAccepted(BaseModel):
    """Every alert of the request is in the event log."""

    status: Literal["accepted"] = "accepted"
    accepted: int
    alerts: list[AcceptedAlert]


class PagerDutyAccepted(BaseModel):
    """PagerDuty's success body."""

    status: Literal["success"] = "success"
    message: str = "Event processed"
    dedup_key: str


class PagerDutyInvalid(BaseModel):
    """PagerDuty's invalid-event body."""

    status: Literal["invalid event"] = "invalid event"
    message: str = "Event object is invalid"
    errors: list[str]


_UNAVAILABLE = {
    "model": Problem,
    "description": "The event log did not acknowledge; nothing was accepted. Retry after "
                   "`Retry-After` seconds.",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid bearer token"},
    413: {"description": "Body larger than IR_GATEWAY_MAX_BODY_BYTES (default 5 MiB)"},
    503: _UNAVAILABLE,
}
_OUR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_REFUSALS,
    422: {"model": Problem, "description": "Invalid payload; `errors` name each bad field"},
}
_PAGERDUTY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_REFUSALS,
    400: {"model": PagerDutyInvalid, "description": "Invalid event (PagerDuty's own body)"},
}

CORRELATION_ID_MAX = 128
CORRELATION_ID_PATTERN = r"^[!-~]+$"
CorrelationHeader = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID", max_length=CORRELATION_ID_MAX, pattern=CORRELATION_ID_PATTERN,
        description="ties these alerts to the sender's own id; else derived from the fingerprint",
    ),
]
# The same constraints for `front.AlertFront`, which validates the header itself.
CORRELATION_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=CORRELATION_ID_MAX, pattern=CORRELATION_ID_PATTERN)]
)


@dataclass(frozen=True)
class AlertRoute:
    """One alert webhook: its source name, body model and how the body becomes drafts."""

    source: str
    model: type[BaseModel]
    to_drafts: Callable[[Any], list[AlertDraft]]
    truncated: Callable[[Any], int] = lambda _: 0


ALERT_ROUTES: dict[str, AlertRoute] = {
    "/alerts/alertmanager": AlertRoute(
        alertmanager.SOURCE, alertmanager.AlertmanagerWebhook, alertmanager.to_drafts,
        lambda webhook: webhook.truncated_alerts,
    ),
    "/alerts/grafana": AlertRoute(
        grafana.SOURCE, grafana.GrafanaWebhook, grafana.to_drafts,
        lambda webhook: webhook.truncated_alerts,
    ),
    "/alerts/generic": AlertRoute(generic.SOURCE, generic.GenericAlerts, generic.to_drafts),
}
ROUTE_SOURCES: dict[str, str] = {
    **{path: route.source for path, route in ALERT_ROUTES.items()},
    "/v2/enqueue": pagerduty.SOURCE,
}


# --- errors ----------------------------------------------------------------------


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[str]:
    """Pydantic/FastAPI validation errors as `<path>: <what>` lines (`alerts[0].status: ...`)."""
    out: list[str] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            if len(loc) > 1:  # FastAPI's: the character position in loc
                reason = f"{reason} at character {loc[1]}"
            out.append(f"body: invalid JSON ({reason})")  # pydantic's: line and column in it
            continue
        out.append(f"{_path(loc)}: {error.get('msg', 'invalid')}")
    return out


def _path(loc: list[Any]) -> str:
    if loc and loc[0] in ("header", "query", "path", "cookie"):
        return f"{loc[0]} {'.'.join(str(p) for p in loc[1:])}"
    if loc and loc[0] == "body":
        loc = loc[1:]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path or "body"


INVALID_PAYLOAD = "invalid alert payload"


def unavailable_detail(exc: Exception) -> str:
    """The 503 body's detail: nothing of the request is claimed."""
    return f"event log unavailable, nothing was accepted: {exc}"


async def _invalid(_: Request, exc: Exception) -> Response:
    errors = field_errors(exc.errors()) if isinstance(exc, RequestValidationError) else (
        exc.errors if isinstance(exc, InvalidAlertError) else [str(exc)]
    )
    return JSONResponse(
        Problem(detail=INVALID_PAYLOAD, errors=errors).model_dump(), status_code=422
    )


ExceptionHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def _unavailable_handler(retry_after_s: int) -> ExceptionHandler:
    async def unavailable(_: Request, exc: Exception) -> Response:
        return JSONResponse(
            Problem(detail=unavailable_detail(exc)).model_dump(),
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    return unavailable


class PagerDutyRoute(APIRoute):
    """A route that reports invalid events in PagerDuty's 400 body instead of FastAPI's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so validation failures become PagerDuty's invalid-event answer."""
        handler = super().get_route_handler()

        async def pagerduty_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _pagerduty_invalid(field_errors(exc.errors()))
            except InvalidAlertError as exc:
                return _pagerduty_invalid(exc.errors)

        return pagerduty_handler


def _pagerduty_invalid(errors: list[str]) -> Response:
    return JSONResponse(PagerDutyInvalid(errors=errors).model_dump(), status_code=400)


# --- authentication and tracing ------------------------------------------------------

_BEARER = HTTPBearer(
    auto_error=False, scheme_name="GatewayToken",
    description="one of IR_GATEWAY_TOKENS (not required when none is configured)",
)
# Module level, not inside `install`: FastAPI resolves these annotations by name.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


UNAUTHORIZED = "missing or invalid bearer token"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (as FastAPI's HTTPBearer reads it)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_ok(tokens: Sequence[str], given_token: str | None) -> bool:
    """Whether given_token is one of tokens (always, when none are configured)."""
    if not tokens:
        return True
    if given_token is None:
        return False
    given = given_token.encode()
    # Check every token (no early exit) so timing does not reveal which one nearly matched.
    matches = [hmac.compare_digest(given, token.encode()) for token in tokens]
    return any(matches)


def _credentials(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


def _unauthorized() -> HTTPException:
    return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


@contextlib.contextmanager
def sender_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Continue the sender's W3C trace (if any) while the alerts are published."""
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


# --- metrics middleware ----------------------------------------------------------------


class RequestMetrics:
    """Counts alert requests by outcome and times them (including the wait for acks)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; record its latency and outcome when it is an alert route."""
        source = ROUTE_SOURCES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if source is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.latency.labels(source).observe(time.perf_counter() - started)
            self.metrics.requests.labels(source, outcome_of(status)).inc()


# --- routes ----------------------------------------------------------------------------


async def admit(
    route: AlertRoute,
    payload: BaseModel,
    intake: AlertIntake,
    metrics: GatewayMetrics,
    *,
    correlation_id: str | None,
    trace_headers: Mapping[str, str],
) -> list[AlertReceived]:
    """A validated webhook body into the log: drafts, then intake (both HTTP paths share it)."""
    drafts = route.to_drafts(payload)
    _note_truncation(metrics, route.source, route.truncated(payload))
    with sender_trace(trace_headers):
        return await intake.accept(drafts, source=route.source, correlation_id=correlation_id)


def _accepted(alerts: list[AlertReceived]) -> Response:
    return Response(accepted_body(alerts), status_code=202, media_type="application/json")


def accepted_body(alerts: list[AlertReceived]) -> bytes:
    """The `AlertsAccepted` body, serialised straight from the events (one per alert)."""
    body = {
        "status": "accepted",
        "accepted": len(alerts),
        "alerts": [
            {
                "event_id": a.event_id, "fingerprint": a.fingerprint, "status": a.status.value,
                "name": a.name, "service": a.service, "correlation_key": a.correlation_key,
            }
            for a in alerts
        ],
    }
    return orjson.dumps(body)


def install(
    app: FastAPI,
    *,
    intake: AlertIntake,
    metrics: GatewayMetrics,
    tokens: Sequence[str],
    routing_services: Mapping[str, str | None],
    retry_after_s: int,
    memory: pagerduty.ConditionMemory | None = None,
) -> None:
    """Add the alert routes, their error handlers and the request metrics to app."""
    tokens = tuple(tokens)
    routing_keys = frozenset(routing_services)
    conditions = memory or pagerduty.ConditionMemory()
    async def require_token(credentials: Credentials) -> None:
        if not token_ok(tokens, _credentials(credentials)):
            raise _unauthorized()

    async def require_token_unless_routing_keys(credentials: Credentials) -> None:
        if not routing_keys and not token_ok(tokens, _credentials(credentials)):
            raise _unauthorized()

    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(InvalidAlertError, _invalid)
    app.add_exception_handler(EventLogUnavailableError, _unavailable_handler(retry_after_s))
    app.add_middleware(RequestMetrics, metrics=metrics)

    alerts = APIRouter(
        tags=["alerts"], dependencies=[Depends(require_token)], responses=_OUR_RESPONSES
    )

    @alerts.post(
        "/alerts/alertmanager",
        status_code=202,
        response_model=AlertsAccepted,
        summary="Receive an Alertmanager webhook (v4)",
        description=(
            "Point an Alertmanager `webhook_configs` receiver here (with "
            "`http_config.authorization` carrying the token). Every alert of the group, "
            "firing or resolved, becomes one `alert.received` event. The name is the "
            "`alertname` label, the service the first of the labels `service`, `app`, "
            "`job`, `component`; Alertmanager's `fingerprint` is kept."
        ),
    )
    async def receive_alertmanager(
        request: Request,
        webhook: Annotated[
            alertmanager.AlertmanagerWebhook,
            Body(openapi_examples={"firing": {"summary": "one firing alert",
                                              "value": alertmanager.EXAMPLE}}),
        ],
        correlation_id: CorrelationHeader = None,
    ) -> Response:
        return _accepted(await admit(
            ALERT_ROUTES["/alerts/alertmanager"], webhook, intake, metrics,
            correlation_id=correlation_id, trace_headers=request.headers,
        ))

    @alerts.post(
        "/alerts/grafana",
        status_code=202,
        response_model=AlertsAccepted,
        summary="Receive a Grafana alerting webhook",
        description=(
            "Point a Grafana webhook contact point here (Authorization header: "
            "`Bearer <token>`). The body is Alertmanager's plus Grafana's own fields "
            "(`orgId`, `title`, `state`, `message`, per alert `values`, `dashboardURL`, "
            "`panelURL`, `silenceURL`), which are tolerated; the links and values are "
            "kept as annotations."
        ),
    )
    async def receive_grafana(
        request: Request,
        webhook: Annotated[
            grafana.GrafanaWebhook,
            Body(openapi_examples={"firing": {"summary": "one firing alert",
                                              "value": grafana.EXAMPLE}}),
        ],
        correlation_id: CorrelationHeader = None,
    ) -> Response:
        return _accepted(await admit(
            ALERT_ROUTES["/alerts/grafana"], webhook, intake, metrics,
            correlation_id=correlation_id, trace_headers=request.headers,
        ))

    @alerts.post(
        "/alerts/generic",
        status_code=202,
        response_model=AlertsAccepted,
        summary="Receive alerts in the gateway's own JSON format",
        description=(
            "One alert object, or `{\"alerts\": [...]}` with up to 1000. Only `name` is "
            "required. `service` defaults to the labels `service`, `app`, `job`, "
            "`component`; `status` to `firing`; `severity` is the sender's word (`critical`, "
            "`P1`, `SEV-2`, ...). Timestamps are ISO 8601 with a timezone. Without a "
            "`fingerprint`, the alert's identity is derived from its name, service and "
            "labels (except `severity`/`priority`)."
        ),
    )
    async def receive_generic(
        request: Request,
        batch: Annotated[
            generic.GenericAlerts,
            Body(openapi_examples={
                "single": {"summary": "one alert", "value": generic.SINGLE_EXAMPLE},
                "batch": {"summary": "several alerts", "value": generic.BATCH_EXAMPLE},
            }),
        ],
        correlation_id: CorrelationHeader = None,
    ) -> Response:
        return _accepted(await admit(
            ALERT_ROUTES["/alerts/generic"], batch, intake, metrics,
            correlation_id=correlation_id, trace_headers=request.headers,
        ))

    events_v2 = APIRouter(
        tags=["pagerduty"], route_class=PagerDutyRoute,
        dependencies=[Depends(require_token_unless_routing_keys)],
        responses=_PAGERDUTY_RESPONSES,
    )

    @events_v2.post(
        "/v2/enqueue",
        status_code=202,
        summary="Receive a PagerDuty Events API v2 event",
        description=(
            "Drop-in for `https://events.pagerduty.com/v2/enqueue`: `trigger`, "
            "`acknowledge` and `resolve` with PagerDuty's request and response bodies. "
            "When routing keys are configured (`IR_GATEWAY_PAGERDUTY_ROUTING_KEYS`, each "
            "`key` or `key=service`) the routing key authenticates the event; otherwise "
            "the bearer token does. A trigger without `dedup_key` gets a stable generated "
            "one, returned in the response. The service is the routing key's service, "
            "else `payload.component`, else `payload.source`."
        ),
    )
    async def enqueue(
        request: Request,
        event: Annotated[
            pagerduty.PagerDutyEvent,
            Body(openapi_examples={
                "trigger": {"summary": "trigger", "value": pagerduty.TRIGGER_EXAMPLE},
                "resolve": {"summary": "resolve", "value": pagerduty.RESOLVE_EXAMPLE},
            }),
        ],
        correlation_id: CorrelationHeader = None,
    ) -> PagerDutyAccepted:
        errors = pagerduty.problems(event, routing_keys)
        if errors:
            raise InvalidAlertError(errors)
        dedup_key = pagerduty.dedup_key_of(event)
        drafts = pagerduty.to_drafts(
            event,
            routing_service=routing_services.get(event.routing_key),
            known=conditions.recall(dedup_key),
        )
        with sender_trace(request.headers):
            accepted = await intake.accept(
                drafts, source=pagerduty.SOURCE, correlation_id=correlation_id
            )
        if event.event_action == "trigger":
            alert = accepted[0]
            conditions.remember(dedup_key, pagerduty.KnownCondition(alert.service, alert.name))
        return PagerDutyAccepted(dedup_key=dedup_key)

    app.include_router(alerts)
    app.include_router(events_v2)
    _drop_default_422(app, "/v2/enqueue")


def _drop_default_422(app: FastAPI, path: str) -> None:
    """Remove FastAPI's automatic 422 from path's OpenAPI: PagerDutyRoute answers 400 instead."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operation in schema.get("paths", {}).get(path, {}).values():
                operation.get("responses", {}).pop("422", None)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _note_truncation(metrics: GatewayMetrics, source: str, truncated: int) -> None:
    if truncated:
        metrics.truncated.labels(source).inc(truncated)
        log.warning("%s dropped %d alerts of a group before sending (max_alerts)",
                    source, truncated)
