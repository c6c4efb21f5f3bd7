"""Logging, tracing and the health/metrics HTTP surface, set up once for every service.

Logs are JSON lines (structlog) carrying the service, the incident id bound
by the handler, and the current trace id. Traces use the OpenTelemetry SDK;
the exporter is OTLP/HTTP when `IR_OTLP_ENDPOINT` is set, none otherwise
(spans are still created so trace context propagates through Kafka headers).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog
from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from shared.kafka import EventBus


def _drop_colour(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event_dict


def _add_trace_context(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog logs through one JSON (or console) renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_context,
        structlog.processors.EventRenamer("message"),
    ]
    foreign = [*shared_processors, structlog.stdlib.ExtraAdder(), _drop_colour]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.bind_contextvars(service=service)
    # faststream installs its own coloured handler at import: route it through ours.
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "httpcore", "faststream"):
        logger = logging.getLogger(noisy)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.WARNING)


def setup_tracing(
    service: str, otlp_endpoint: str | None = None, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A tracer provider for service; exports to OTLP/HTTP or to the given exporter.

    With nowhere to export, spans are not recorded unless a caller's trace
    context says it samples them (`ParentBased(ALWAYS_OFF)`): they still carry
    trace and span ids, so logs keep their `trace_id` and the context still
    travels in every record's `traceparent`, but a span nobody exports costs
    nothing to fill and end (it was a tenth of the gateway's CPU at one alert
    per request).
    """
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
    resource = Resource.create({"service.name": service})
    if exporter is None:
        return TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _scraped(registry: CollectorRegistry) -> CollectorRegistry:
    """registry, or every worker's metrics when processes share a port (multiprocess mode)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return registry
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return combined


def health_app(service: str, bus: EventBus, registry: CollectorRegistry,
               app: FastAPI | None = None) -> FastAPI:
    """Add `/healthz` (broker reachable) and `/metrics` (Prometheus) to app (or a new one)."""
    app = app or FastAPI(title=f"{service} service", docs_url=None, redoc_url=None)

    @app.get("/healthz", tags=["ops"], summary="Liveness and broker connectivity")
    async def healthz(response: Response) -> dict[str, Any]:
        ok = await bus.ping(2.0)
        response.status_code = 200 if ok else 503
        return {"service": service, "broker": "connected" if ok else "unreachable", "ok": ok}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(_scraped(registry)), media_type=CONTENT_TYPE_LATEST)

    return app
