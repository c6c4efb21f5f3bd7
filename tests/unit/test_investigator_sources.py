"""Evidence sources: parsing each integration's answers, and failing without failing the case."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.investigator.evidence import EvidenceBundle, EvidenceCollector, EvidenceQuery
from services.investigator.sources._http import SourceError
from services.investigator.sources.config import EvidenceConfig, build_sources
from services.investigator.sources.deploys import HttpDeploySource
from services.investigator.sources.directory import StaticDirectory
from services.investigator.sources.file_logs import FileLogSource
from services.investigator.sources.http_logs import HttpLogSource
from services.investigator.sources.prometheus_api import PrometheusApiSource
from services.investigator.sources.prometheus_scrape import (
    PrometheusScrapeSource,
    histogram_quantile,
    parse_scrape,
    signals,
)
from services.investigator.sources.world import WorldStatusSource

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "investigator_cases"
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
QUERY = EvidenceQuery(incident_id="INC-1", services=("payments", "checkout"),
                      since=T0 - timedelta(minutes=30), until=T0 + timedelta(minutes=1),
                      first_anomaly_at=T0)


def _client(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _metrics(ok: float, errors: float, buckets: dict[str, float], *, up: float = 1) -> str:
    lines = [
        f'http_requests_total{{code="200",service="payments"}} {ok}',
        f'http_requests_total{{code="500",service="payments"}} {errors}',
        *(f'http_request_duration_seconds_bucket{{le="{le}",service="payments"}} {n}'
          for le, n in buckets.items()),
        f'http_request_duration_seconds_count{{service="payments"}} {ok + errors}',
        f'http_request_duration_seconds_sum{{service="payments"}} {(ok + errors) * 0.1}',
        f'demo_service_up{{service="payments"}} {up}',
        'demo_service_version_info{service="payments",version="v2.4.1"} 1.0',
    ]
    return "\n".join(lines) + "\n"


class TestPrometheusScrape:
    """Two scrapes, deltas, and unreachable targets."""

    def test_error_ratio_comes_from_the_delta_between_scrapes(self) -> None:
        """100 ok + 0 errors, then 110 ok + 90 errors: 90% errors now, not 45% since start."""
        first = parse_scrape(_metrics(100, 0, {"0.1": 100, "+Inf": 100}), "payments", at=0.0)
        second = parse_scrape(_metrics(110, 90, {"0.1": 110, "+Inf": 200}), "payments", at=2.0)
        got = signals("payments", first, second)
        assert got.error_ratio == pytest.approx(0.9)
        assert got.request_rate == pytest.approx(50.0)
        assert got.window_s == pytest.approx(2.0)
        assert got.version == "v2.4.1"
        assert got.up is True

    def test_a_restart_between_scrapes_falls_back_to_the_latest_totals(self) -> None:
        """Counters that went down mean a new process: its own totals are used."""
        first = parse_scrape(_metrics(1000, 0, {}), "payments", at=0.0)
        second = parse_scrape(_metrics(5, 5, {}), "payments", at=1.0)
        got = signals("payments", first, second)
        assert got.error_ratio == pytest.approx(0.5)
        assert got.window_s is None

    def test_p99_is_interpolated_within_its_bucket(self) -> None:
        """90 requests under 0.1 s and 10 between 0.1 and 1 s: p99 is 0.91 s."""
        assert histogram_quantile(0.99, {0.1: 90, 1.0: 100, float("inf"): 100}) == \
            pytest.approx(0.91)
        assert histogram_quantile(0.99, {}) is None

    async def test_unreachable_target_is_reported_down_not_as_a_failure(self) -> None:
        """checkout refuses connections: up=False for checkout, payments still measured."""
        calls: dict[str, int] = {}

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "checkout":
                raise httpx.ConnectError("refused", request=request)
            calls["payments"] = calls.get("payments", 0) + 1
            text = _metrics(100, 0, {}) if calls["payments"] == 1 else _metrics(100, 50, {})
            return httpx.Response(200, text=text)

        directory = StaticDirectory({"payments": "http://payments/metrics",
                                     "checkout": "http://checkout/metrics"})
        async with _client(handler) as client:
            bundle = await PrometheusScrapeSource(client, directory, 0.001).collect(QUERY)
        assert bundle.metrics["checkout"].up is False
        assert bundle.metrics["payments"].error_ratio == pytest.approx(1.0)
        assert calls["payments"] == 2

    async def test_garbage_metrics_fail_the_source_with_the_target_named(self) -> None:
        """A body that is not Prometheus text raises a SourceError naming the service."""
        directory = StaticDirectory({"payments": "http://payments/metrics"})
        async with _client(lambda r: httpx.Response(200, text="<html>{oops")) as client:
            with pytest.raises(SourceError, match="payments metrics"):
                await PrometheusScrapeSource(client, directory, 0).collect(QUERY)


class TestWorldStatus:
    """Process states from the supervisor."""

    async def test_stopped_service_is_down_and_status_fills_rates(self) -> None:
        """The recorded crash: checkout stopped (up False), payments with its error rate."""
        folder = CASES / "crash_checkout"

        def handler(request: httpx.Request) -> httpx.Response:
            name = {"/services": "services.json", "/status": "status.json"}[request.url.path]
            return httpx.Response(200, json=json.loads((folder / name).read_text()))

        async with _client(handler) as client:
            bundle = await WorldStatusSource(client, "http://world").collect(QUERY)
        assert bundle.states["checkout"].up is False
        assert bundle.states["checkout"].status == "stopped"
        assert bundle.states["payments"].up is True
        assert bundle.states["payments"].error_rate is not None
        assert set(bundle.states) == {"payments", "checkout"}

    async def test_failing_status_endpoint_keeps_process_states(self) -> None:
        """/status answers 500: states from /services still count, with a note."""
        services = [{"name": "payments", "status": "running", "log_level": "debug"}]

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/services":
                return httpx.Response(200, json=services)
            return httpx.Response(500)

        async with _client(handler) as client:
            bundle = await WorldStatusSource(client, "http://world").collect(QUERY)
        assert bundle.states["payments"].log_level == "DEBUG"
        assert "GET /status unavailable" in bundle.notes[0].detail


class TestHttpLogs:
    """The demo world's log API."""

    async def test_errors_and_sample_are_read_per_service_and_404_means_no_logs(self) -> None:
        """payments has logs; checkout is unknown to the API (404) and is simply absent."""
        seen: list[dict[str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(dict(request.url.params))
            if request.url.path.endswith("/checkout"):
                return httpx.Response(404, json={"detail": "unknown"})
            line = {"ts": "2026-11-21T11:59:00.000Z", "level": "ERROR", "service": "payments",
                    "msg": "boom", "version": "v2"}
            return httpx.Response(200, json=[line, {"no": "timestamp"}])

        async with _client(handler) as client:
            source = HttpLogSource(client, "{world_url}/logs/{service}", "http://world")
            bundle = await source.collect(QUERY)
        assert set(bundle.logs) == {"payments"}
        assert bundle.logs["payments"].errors[0].msg == "boom"
        assert len(bundle.logs["payments"].sample) == 1
        assert [p.get("level") for p in seen].count("ERROR") == 2  # one ERROR query per service
        assert sum("level" not in p for p in seen) == 2  # and one unfiltered sample each
        assert all(p["since"] == QUERY.since.isoformat() for p in seen)

    async def test_api_down_for_every_service_fails_the_source(self) -> None:
        """Every request answering 503 raises, which the collector turns into a note."""
        async with _client(lambda r: httpx.Response(503)) as client:
            source = HttpLogSource(client, "{world_url}/logs/{service}", "http://world")
            with pytest.raises(SourceError, match="HTTP 503"):
                await source.collect(QUERY)


class TestDeploys:
    """Deploy history over HTTP."""

    async def test_entries_outside_query_are_dropped_even_if_the_server_ignores_filters(
        self,
    ) -> None:
        """Old deploys, other services and malformed rows are not passed to the rules."""
        rows = [
            {"service": "payments", "version": "v2", "previous_version": "v1",
             "deployed_at": "2026-11-21T11:55:00Z", "author": "ci-bot", "change": "x"},
            {"service": "payments", "version": "v1", "deployed_at": "2026-11-20T10:00:00Z"},
            {"service": "catalog", "version": "v9", "deployed_at": "2026-11-21T11:58:00Z"},
            {"service": "payments", "version": "bad-row"},
        ]
        async with _client(lambda r: httpx.Response(200, json=rows)) as client:
            bundle = await HttpDeploySource(client, "{world_url}/deploys", "http://w").collect(
                QUERY)
        assert [(d.service, d.version) for d in bundle.deploys] == [("payments", "v2")]

    async def test_non_list_answer_is_a_clear_error(self) -> None:
        """A JSON object that is not a deploy list raises SourceError."""
        async with _client(lambda r: httpx.Response(200, json={"oops": 1})) as client:
            with pytest.raises(SourceError, match="not a JSON list"):
                await HttpDeploySource(client, "http://w/deploys").collect(QUERY)


class TestPrometheusApi:
    """Instant queries against a Prometheus server."""

    async def test_vectors_become_signals_of_the_queried_services(self) -> None:
        """Each query's vector is keyed by the service label; other services are ignored."""
        answers = {
            "error_ratio": [("payments", "0.42"), ("reporting", "0.9")],
            "up": [("payments", "1"), ("checkout", "0")],
        }

        def handler(request: httpx.Request) -> httpx.Response:
            signal = request.url.params["query"]
            result = [{"metric": {"service": s}, "value": [T0.timestamp(), v]}
                      for s, v in answers[signal]]
            return httpx.Response(200, json={"status": "success",
                                             "data": {"resultType": "vector", "result": result}})

        async with _client(handler) as client:
            source = PrometheusApiSource(client, "http://prom:9090",
                                         {"error_ratio": "error_ratio", "up": "up"})
            bundle = await source.collect(QUERY)
        assert bundle.metrics["payments"].error_ratio == pytest.approx(0.42)
        assert bundle.metrics["payments"].up is True
        assert bundle.metrics["checkout"].up is False
        assert "reporting" not in bundle.metrics

    async def test_query_error_fails_the_source(self) -> None:
        """A Prometheus error answer raises SourceError with its message."""
        body = {"status": "error", "error": "parse error at char 3"}
        async with _client(lambda r: httpx.Response(200, json=body)) as client:
            with pytest.raises(SourceError, match="parse error"):
                await PrometheusApiSource(client, "http://prom").collect(QUERY)

    def test_unknown_signal_names_are_refused(self) -> None:
        """A query for a signal the rules do not know is a configuration error."""
        with pytest.raises(ValueError, match="unknown signal"):
            PrometheusApiSource(httpx.AsyncClient(), "http://prom", {"errors": "x"})


class TestFileLogs:
    """Tailing local log files."""

    async def test_json_and_plain_lines_are_read_and_missing_files_noted(
        self, tmp_path: Path
    ) -> None:
        """JSON and `ts LEVEL msg` lines parse; a missing file is a note, not a failure."""
        (tmp_path / "payments.log").write_text(
            '{"ts": "2026-11-21T11:59:00Z", "level": "error", "msg": "json boom"}\n'
            "2026-11-21T11:59:30Z ERROR plain boom\n"
            "2026-11-21T11:59:31Z DEBUG chatter\n"
            "not a log line\n"
            "2026-11-21T10:00:00Z ERROR too old\n"
        )
        source = FileLogSource(str(tmp_path / "{service}.log"))
        bundle = await source.collect(QUERY)
        logs = bundle.logs["payments"]
        assert [r.msg for r in logs.errors] == ["json boom", "plain boom"]
        assert len(logs.sample) == 3
        assert "checkout" in bundle.notes[0].detail

    async def test_only_the_tail_of_a_big_file_is_read(self, tmp_path: Path) -> None:
        """With tail_bytes 1024 only the last lines are parsed (the first cut line dropped)."""
        line = "2026-11-21T11:59:30Z ERROR line {}\n"
        (tmp_path / "payments.log").write_text("".join(line.format(i) for i in range(500)))
        bundle = await FileLogSource(str(tmp_path / "{service}.log"), tail_bytes=1024).collect(
            QUERY.model_copy(update={"services": ("payments",)}))
        msgs = [r.msg for r in bundle.logs["payments"].errors]
        assert msgs[-1] == "line 499"
        assert len(msgs) < 40


class TestCollector:
    """Sources that fail or hang become notes; the rest still count."""

    async def test_failing_and_hanging_sources_become_notes(self) -> None:
        """One raises, one exceeds its deadline, one answers: the answer is kept."""

        class Answers:
            name = "good"

            async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
                return EvidenceBundle(states={})

        class Raises:
            name = "broken"

            async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
                raise httpx.ConnectError("connection refused")

        class Hangs:
            name = "slow"

            async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

        bundle = await EvidenceCollector([Answers(), Raises(), Hangs()], timeout_s=0.05).collect(
            QUERY)
        notes = {n.source: n.detail for n in bundle.notes}
        assert bundle.sources == ("good",)
        assert notes["broken"] == "source unavailable: ConnectError: connection refused"
        assert notes["slow"] == "source unavailable: no answer within 0.05 s"


class TestConfig:
    """evidence.yaml."""

    def test_demo_config_builds_its_four_sources(self) -> None:
        """The shipped file: world status, scrape, HTTP logs and deploys."""
        config = EvidenceConfig.load(ROOT / "demo/config/evidence.yaml")
        sources = build_sources(config, httpx.AsyncClient(), "http://127.0.0.1:9100")
        assert [s.name for s in sources] == ["status:world", "metrics:scrape", "logs:http",
                                             "deploys:http"]

    def test_typos_and_unknown_kinds_are_refused(self) -> None:
        """An unknown kind or a misspelt option fails loudly instead of dropping a source."""
        with pytest.raises(ValidationError):
            EvidenceConfig.model_validate({"sources": [{"kind": "loki"}]})
        with pytest.raises(ValidationError):
            EvidenceConfig.model_validate({"sources": [{"kind": "http_logs", "ur": "x"}]})

    def test_disabled_sources_are_skipped(self) -> None:
        """enabled: false removes a source without deleting its configuration."""
        config = EvidenceConfig.model_validate({"sources": [
            {"kind": "http_deploys", "enabled": False},
            {"kind": "file_logs", "path": "/var/log/{service}.log"},
        ]})
        assert [s.name for s in build_sources(config, httpx.AsyncClient(), "")] == ["logs:file"]
