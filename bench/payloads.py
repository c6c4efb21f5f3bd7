"""Request bodies: the same alerts as an Alertmanager webhook (to the gateway) or as
Alertmanager's own `POST /api/v2/alerts` list (to Alertmanager).

Both carry identical labels, annotations and times, so a side-by-side run
compares the two receivers on the same work. The `bench_id` annotation is how
an alert is traced through the pipeline; annotations take no part in the
gateway's fingerprint or in Alertmanager's label-set identity.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bench.scenarios import ALERT_NAMES, PlannedAlert, ingest_alert

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


class IngestBodies:
    """Request bodies of distinct ingest alerts, formatted from string templates.

    The closed-loop ingest benchmark needs a fresh body per request at tens of
    thousands of alerts per second; building `PlannedAlert`s and dumping dicts
    costs the load generator more CPU than the receivers it measures. The
    result is exactly `webhook_body` / `alertmanager_body` of `ingest_alert`
    (tests/unit/test_bench_payloads.py checks it), only cheaper to make.
    """

    def __init__(self, target: str, services: list[str], run_id: str) -> None:
        for word in (*services, run_id, *(n for names in ALERT_NAMES.values() for n in names)):
            if json.dumps(word) != f'"{word}"':
                raise ValueError(f"{word!r} needs JSON escaping; IngestBodies does not escape")
        self.gateway = target == "gateway"
        self.services = services
        self.run_id = run_id
        self._names = [ALERT_NAMES.get(s.rsplit("-", 1)[-1], ("HighErrorRate",)) for s in services]
        self._starts = [ingest_alert(i, services).starts_at_iso() for i in range(3600)]
        envelope = webhook_body([])
        envelope.pop("alerts")
        self._prefix = (json.dumps(envelope, separators=(",", ":"))[:-1] + ',"alerts":['
                        if self.gateway else "[")
        self._suffix = "]}" if self.gateway else "]"

    def body(self, first: int, count: int) -> bytes:
        """The body of alerts first .. first+count-1."""
        return (self._prefix + ",".join(self._alert(s) for s in range(first, first + count))
                + self._suffix).encode()

    def _alert(self, seq: int) -> str:
        index = seq % len(self.services)
        service, names = self.services[index], self._names[index]
        name = names[seq % len(names)]
        severity = "warning" if seq % 3 else "critical"
        instance = f"pod-{seq}"
        common = (
            f'"labels":{{"alertname":"{name}","service":"{service}","instance":"{instance}",'
            f'"severity":"{severity}"}},"annotations":{{"summary":"{name} on {service} '
            f'({instance})","bench_id":"{self.run_id}{seq:08d}"}},'
            f'"startsAt":"{self._starts[seq % 3600]}"'
        )
        if not self.gateway:
            return f'{{{common},"generatorURL":"{GENERATOR_URL}"}}'
        identity = f"alertname={name},instance={instance},service={service},severity={severity}"
        fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return (f'{{"status":"firing",{common},"endsAt":"{GO_ZERO_TIME}",'
                f'"generatorURL":"{GENERATOR_URL}","fingerprint":"{fingerprint}"}}')
