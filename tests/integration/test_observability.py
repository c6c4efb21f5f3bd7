"""Every service's /healthz and /metrics, JSON logs with incident and trace ids."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
import structlog
from opentelemetry import propagate
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events import IncidentOpened
from shared.observability import setup_logging, setup_tracing
from shared.runtime import build_runtime, start, stop
from shared.settings import KafkaSettings
from shared.topics import Topic
from tests.integration.test_event_bus import wait_for
from tests.samples import sample_event

pytestmark = pytest.mark.integration


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")  # type: ignore[arg-type]


class TestHealthAndMetrics:
    async def test_healthz_and_metrics_of_a_running_service(
        self, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """/healthz says the broker is connected; /metrics has faststream's and our metrics
        with no incident id in any label."""
        runtime = build_runtime("observed", kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
            session_timeout_ms=3000))
        seen: list[str] = []

        async def handle(event: object) -> None:
            seen.append("x")

        runtime.bus.subscribe(Topic.INCIDENT_OPENED, handle)  # type: ignore[arg-type]
        tasks = await start(runtime)
        try:
            await runtime.bus.publish(sample_event(IncidentOpened))
            await wait_for(lambda: bool(seen), what="handled event")
            async with client(runtime.http) as http:
                health = await http.get("/healthz")
                metrics = (await http.get("/metrics")).text
            assert health.status_code == 200
            assert health.json()["broker"] == "connected"
            assert "ir_events_published_total" in metrics
            assert 'ir_events_handled_total{outcome="ok"' in metrics
            assert "faststream_received_messages_total" in metrics
            assert "INC-" not in metrics
        finally:
            await stop(runtime, tasks)

    async def test_healthz_is_503_when_the_broker_is_unreachable(self) -> None:
        """A service whose broker does not answer reports itself unhealthy."""
        runtime = build_runtime("lonely", kafka=KafkaSettings(
            bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000))
        async with client(runtime.http) as http:
            health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["broker"] == "unreachable"


@pytest.mark.unit
class TestLogsAndTraces:
    def test_logs_are_json_with_incident_and_trace_ids(self) -> None:
        """A log line inside a handler's context carries service, incident id and trace id."""
        setup_logging("logger-test", "INFO", "json")
        stream = io.StringIO()
        logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
        provider = setup_tracing("logger-test", exporter=InMemorySpanExporter())
        with provider.get_tracer("t").start_as_current_span("work") as span, \
                structlog.contextvars.bound_contextvars(incident_id="INC-ABC123"):
            logging.getLogger("some.module").info("paging on-call")
        line = json.loads(stream.getvalue().strip().splitlines()[-1])
        assert line["message"] == "paging on-call"
        assert line["incident_id"] == "INC-ABC123"
        assert line["service"] == "logger-test"
        assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
        assert line["level"] == "info"

    def test_otlp_exporter_is_configured_by_endpoint(self) -> None:
        """With an OTLP endpoint spans are exported; without one nothing is exported."""
        with_otlp = setup_tracing("a", otlp_endpoint="http://127.0.0.1:4318")
        without = setup_tracing("b")
        assert with_otlp._active_span_processor._span_processors
        assert not without._active_span_processor._span_processors
        with_otlp.shutdown()

    def test_without_an_exporter_spans_are_not_recorded_but_context_travels(self) -> None:
        """No exporter: no span recorded, yet valid ids (for logs and `traceparent`); a
        caller's sampled context is still continued and recorded, an unsampled one not."""
        tracer = setup_tracing("b").get_tracer("t")
        with tracer.start_as_current_span("publish") as span:
            assert not span.is_recording()
            assert span.get_span_context().is_valid
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        trace_id = format(span.get_span_context().trace_id, "032x")
        assert carrier["traceparent"].startswith(f"00-{trace_id}-")
        assert not int(carrier["traceparent"][-2:], 16) & 0x01  # the sampled flag is off

        for flags, recorded in (("01", True), ("00", False)):
            parent = propagate.extract(
                {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{flags}"})
            with tracer.start_as_current_span("consume", context=parent) as child:
                assert child.is_recording() is recorded
                assert child.get_span_context().trace_id == int("ab" * 16, 16)
        exported = setup_tracing("c", exporter=InMemorySpanExporter()).get_tracer("t")
        with exported.start_as_current_span("publish") as span:
            assert span.is_recording()
