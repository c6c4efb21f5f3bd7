"""Golden signals from a Prometheus server's HTTP API (`GET /api/v1/query`).

For real deployments, where Prometheus already scrapes every service: one
instant query per signal, each grouped `by (<service label>)`, evaluated at the
time of the investigation. The queries are configuration (`evidence.yaml`),
because metric and label names differ between shops; the defaults match the
demo world's series. A failed or malformed query makes the source unavailable
(a Prometheus that answers half the questions is not one to trust).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from services.investigator.evidence import EvidenceBundle, EvidenceQuery, ServiceMetrics
from services.investigator.sources._http import SourceError, get_json

DEFAULT_QUERIES: dict[str, str] = {
    "error_ratio": (
        'sum by (service) (rate(http_requests_total{code=~"5.."}[2m]))'
        " / sum by (service) (rate(http_requests_total[2m]))"
    ),
    "request_rate": "sum by (service) (rate(http_requests_total[2m]))",
    "latency_p99_s": (
        "histogram_quantile(0.99, sum by (service, le) "
        "(rate(http_request_duration_seconds_bucket[2m])))"
    ),
    "up": "max by (service) (demo_service_up)",
    "cache_errors": "sum by (service) (increase(demo_cache_errors_total[5m]))",
}
"""Signal name (a `ServiceMetrics` field) -> PromQL grouped by the service label."""

WINDOW_S = 120.0


class PrometheusApiSource:
    """Instant queries against a Prometheus server."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        queries: Mapping[str, str] | None = None,
        service_label: str = "service",
    ) -> None:
        unknown = set(queries or {}) - set(ServiceMetrics.model_fields)
        if unknown:
            raise ValueError(f"unknown signal(s) in prometheus queries: {sorted(unknown)}")
        self._client = client
        self._url = url.rstrip("/") + "/api/v1/query"
        self._queries = dict(queries or DEFAULT_QUERIES)
        self._label = service_label

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "metrics:prometheus"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """One value per signal and queried service, at the investigation's time."""
        values: dict[str, dict[str, Any]] = {}
        for signal, promql in self._queries.items():
            body = await get_json(
                self._client, self._url,
                params={"query": promql, "time": query.until.timestamp()},
            )
            for service, value in self._vector(body, promql).items():
                if service in query.services:
                    values.setdefault(service, {})[signal] = value
        metrics = {}
        for service, fields in values.items():
            if "up" in fields:
                fields["up"] = fields["up"] > 0
            metrics[service] = ServiceMetrics(
                service=service, window_s=WINDOW_S, origin="prometheus", **fields
            )
        return EvidenceBundle(metrics=metrics)

    def _vector(self, body: Any, promql: str) -> dict[str, float]:
        if not isinstance(body, Mapping) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, Mapping) else None
            raise SourceError(f"prometheus query failed ({error or 'no success status'}): "
                              f"{promql}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise SourceError(f"prometheus query did not return a vector: {promql}")
        out: dict[str, float] = {}
        for item in data.get("result", []):
            service = (item.get("metric") or {}).get(self._label)
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise SourceError(f"malformed prometheus sample {item!r:.200}") from exc
            if service and not math.isnan(value):
                out[str(service)] = value
        return out
