"""The gateway's Prometheus metrics, registered on the service's registry (served at /metrics).

Labels are bounded: the source format and an outcome word, never a service,
fingerprint or incident id. A request's outcome follows its HTTP status
(202 accepted, 400/422 invalid, 401 unauthorized, 413 too_large, 503
unavailable); alerts are counted once their request parsed, as accepted
(acknowledged by the broker) or unavailable (the sender was told to retry).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def outcome_of(status_code: int) -> str:
    """The outcome word of an HTTP status, for request counters."""
    if 200 <= status_code < 300:
        return "accepted"
    return {
        400: "invalid", 401: "unauthorized", 413: "too_large", 422: "invalid", 503: "unavailable",
    }.get(status_code, "error")


class GatewayMetrics:
    """Counters and the latency histogram of alert intake."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ir_gateway_requests_total", "Alert requests by source format and outcome",
            ["source", "outcome"], registry=registry,
        )
        self.alerts = Counter(
            "ir_gateway_alerts_total", "Alerts of parsed requests by source format and outcome",
            ["source", "outcome"], registry=registry,
        )
        self.truncated = Counter(
            "ir_gateway_alerts_truncated_total",
            "Alerts the sender dropped before sending (Alertmanager truncatedAlerts)",
            ["source"], registry=registry,
        )
        self.latency = Histogram(
            "ir_gateway_request_duration_seconds",
            "Alert request latency, including the wait for the broker's acknowledgement",
            ["source"], buckets=LATENCY_BUCKETS, registry=registry,
        )
