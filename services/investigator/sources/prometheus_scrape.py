"""Golden signals from each service's own `/metrics` (Prometheus text format).

Counters are cumulative since the process started, so one scrape cannot say
what happens *now*: the source scrapes every target twice, `sample_interval_s`
apart, and works on the deltas (error ratio = delta of 5xx / delta of all
requests; latency from the histogram deltas, p99 interpolated the way
`histogram_quantile` does). When the second scrape fails, the first one's
cumulative figures are used and `window_s` stays None so rules know it.

A target that refuses the connection or times out is reported as `up=False`,
exactly as Prometheus sets `up` to 0 for a failed scrape: an unreachable
service is evidence, not a broken source. Only a failed discovery makes the
whole source unavailable.

Series read: `http_requests_total{service,code}`,
`http_request_duration_seconds` (histogram), `demo_service_up`,
`demo_service_version_info{version}`, `demo_cache_errors_total`,
`demo_db_pool_connections_in_use` and `demo_db_pool_connections_max`.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.investigator.evidence import EvidenceBundle, EvidenceQuery, ServiceMetrics
from services.investigator.sources._http import SourceError
from services.investigator.sources.directory import ServiceDirectory


@dataclass
class Scrape:
    """The series of one scrape that the investigator reads."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)
    duration_sum: float = 0.0
    duration_count: float = 0.0
    up: float | None = None
    version: str | None = None
    cache_errors: float | None = None
    pool_in_use: float | None = None
    pool_max: float | None = None


def parse_scrape(text: str, service: str, at: float = 0.0) -> Scrape:
    """Read the series of one service from Prometheus text; raises ValueError when malformed."""
    scrape = Scrape(at=at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("service", service) != service:
                continue
            name, value = sample.name, float(sample.value)
            if name == "http_requests_total":
                code = labels.get("code", labels.get("status", ""))
                scrape.requests[code] = scrape.requests.get(code, 0.0) + value
            elif name == "http_request_duration_seconds_bucket":
                le = float(labels.get("le", "inf"))
                scrape.buckets[le] = scrape.buckets.get(le, 0.0) + value
            elif name == "http_request_duration_seconds_sum":
                scrape.duration_sum += value
            elif name == "http_request_duration_seconds_count":
                scrape.duration_count += value
            elif name == "demo_service_up":
                scrape.up = value
            elif name == "demo_service_version_info" and value > 0:
                scrape.version = labels.get("version")
            elif name == "demo_cache_errors_total":
                scrape.cache_errors = (scrape.cache_errors or 0.0) + value
            elif name == "demo_db_pool_connections_in_use":
                scrape.pool_in_use = value
            elif name == "demo_db_pool_connections_max":
                scrape.pool_max = value
    return scrape


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative buckets (le -> count), interpolated within a bucket."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # the highest finite bucket is the best estimate
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


def signals(service: str, first: Scrape, second: Scrape | None) -> ServiceMetrics:
    """Golden signals from two scrapes (deltas), or from one (cumulative)."""
    latest = second or first
    window: float | None = None
    base = Scrape(at=latest.at)
    if second is not None and _monotonic(first, second):
        base, window = first, max(second.at - first.at, 1e-6)
    total = sum(latest.requests.values()) - sum(base.requests.values())
    errors = sum(v for c, v in latest.requests.items() if c.startswith("5")) - sum(
        v for c, v in base.requests.items() if c.startswith("5")
    )
    count = latest.duration_count - base.duration_count
    buckets = {le: c - base.buckets.get(le, 0.0) for le, c in latest.buckets.items()}
    cache: float | None = None
    if latest.cache_errors is not None:
        cache = latest.cache_errors - (base.cache_errors or 0.0)
    return ServiceMetrics(
        service=service,
        up=None if latest.up is None else latest.up > 0,
        error_ratio=errors / total if total > 0 else None,
        request_rate=total / window if window else None,
        latency_mean_s=(latest.duration_sum - base.duration_sum) / count if count > 0 else None,
        latency_p99_s=histogram_quantile(0.99, buckets),
        cache_errors=cache,
        pool_in_use=latest.pool_in_use,
        pool_max=latest.pool_max,
        version=latest.version,
        window_s=window,
        origin="scrape",
    )


def _monotonic(first: Scrape, second: Scrape) -> bool:
    # A counter that went down means the process restarted between scrapes.
    return sum(second.requests.values()) >= sum(first.requests.values())


class PrometheusScrapeSource:
    """Scrapes each queried service's metrics URL twice and reports the deltas."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        directory: ServiceDirectory,
        sample_interval_s: float = 1.0,
    ) -> None:
        self._client = client
        self._directory = directory
        self._interval = sample_interval_s

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "metrics:scrape"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """Signals of every queried service that discovery knows a metrics URL for."""
        endpoints = await self._directory.endpoints()
        targets = {
            name: ep.metrics_url
            for name in query.services
            if (ep := endpoints.get(name)) is not None and ep.metrics_url
        }
        first = await self._scrape_all(targets)
        second: dict[str, Scrape | None] = {}
        reachable = {n: u for n, u in targets.items() if first[n] is not None}
        if reachable and self._interval > 0:
            await asyncio.sleep(self._interval)
            second = await self._scrape_all(reachable)
        metrics: dict[str, ServiceMetrics] = {}
        for name in targets:
            got = first[name]
            if got is None:
                metrics[name] = ServiceMetrics(service=name, up=False, origin="scrape")
            else:
                metrics[name] = signals(name, got, second.get(name))
        return EvidenceBundle(metrics=metrics)

    async def _scrape_all(self, targets: dict[str, str]) -> dict[str, Scrape | None]:
        results = await asyncio.gather(*(self._scrape(n, u) for n, u in targets.items()))
        return dict(zip(targets, results, strict=True))

    async def _scrape(self, service: str, url: str) -> Scrape | None:
        try:
            response = await self._client.get(url)
        except httpx.TransportError:
            return None
        if response.status_code >= 400:
            return None
        try:
            return parse_scrape(response.text, service, at=time.monotonic())
        except ValueError as exc:
            raise SourceError(f"{service} metrics at {url} are not Prometheus text: {exc}") from exc
