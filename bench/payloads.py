"""Request bodies: the same alerts as an Alertmanager webhook (to the gateway) or as
Alertmanager's own `POST /api/v2/alerts` list (to Alertmanager).

Both carry identical labels, annotations and times, so a side-by-side run
compares the two receivers on the same work. The `bench_id` annotation is how
an alert is traced through the pipeline; annotations take no part in the
gateway's fingerprint or in Alertmanager's label-set identity.
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import PlannedAlert

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
GENERATOR_URL = "http://prometheus.bench:9090/graph"


def alert_annotations(alert: PlannedAlert) -> dict[str, str]:
    """The alert's annotations, including its tracing id."""
    return {
        "summary": f"{alert.name} on {alert.service} ({alert.instance})",
        "bench_id": alert.bench_id,
    }


def webhook_body(alerts: list[PlannedAlert]) -> dict[str, Any]:
    """An Alertmanager v4 webhook notification carrying alerts (what the gateway receives)."""
    return {
        "version": "4",
        "groupKey": "{}:{bench=\"load\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "incident-orchestrator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": a.labels(),
                "annotations": alert_annotations(a),
                "startsAt": a.starts_at_iso(),
                "endsAt": GO_ZERO_TIME,
                "generatorURL": GENERATOR_URL,
                "fingerprint": a.fingerprint(),
            }
            for a in alerts
        ],
    }


def alertmanager_body(alerts: list[PlannedAlert]) -> list[dict[str, Any]]:
    """The same alerts as Alertmanager's v2 API takes them (a JSON list, no status)."""
    return [
        {
            "labels": a.labels(),
            "annotations": alert_annotations(a),
            "startsAt": a.starts_at_iso(),
            "generatorURL": GENERATOR_URL,
        }
        for a in alerts
    ]
