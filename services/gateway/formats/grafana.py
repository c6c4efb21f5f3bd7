"""Grafana unified alerting webhook contact point.

Grafana's body is Alertmanager's (it embeds Alertmanager) plus its own fields:
top-level `orgId`, `title`, `state`, `message`; per alert `values`,
`valueString`, `dashboardURL`, `panelURL`, `silenceURL`, `imageURL`. They are
tolerated and the useful ones kept as annotations (`dashboard_url`,
`panel_url`, `silence_url`, `image_url`, `value_string`, and `values` as
sorted JSON), so the investigator and the report can link back to the panel.
Grafana's `version` is "1"; the alert semantics are those of Alertmanager.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from services.gateway.formats.alertmanager import (
    AlertmanagerAlert,
    AlertmanagerWebhook,
    alert_draft,
    collect_drafts,
)
from services.gateway.normalise import AlertDraft

SOURCE = "grafana"


class GrafanaAlert(AlertmanagerAlert):
    """One alert as Grafana sends it."""

    values: dict[str, Any] | None = None
    value_string: str = Field("", alias="valueString")
    dashboard_url: str = Field("", alias="dashboardURL")
    panel_url: str = Field("", alias="panelURL")
    silence_url: str = Field("", alias="silenceURL")
    image_url: str = Field("", alias="imageURL")


class GrafanaWebhook(AlertmanagerWebhook):
    """The webhook body Grafana posts."""

    version: str = "1"
    org_id: int | None = Field(None, alias="orgId")
    title: str = ""
    state: str = ""
    message: str = ""
    alerts: list[GrafanaAlert] = Field(min_length=1)  # type: ignore[assignment]


EXAMPLE: dict[str, Any] = {
    "receiver": "incident-orchestrator",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "CheckoutLatencyHigh", "service": "checkout",
                       "severity": "warning", "grafana_folder": "Shop"},
            "annotations": {"summary": "p99 latency above 2s"},
            "startsAt": "2026-11-21T11:58:00+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
            "fingerprint": "57c6d9296de2ad39",
            "silenceURL": "http://grafana:3000/alerting/silence/new?...",
            "dashboardURL": "http://grafana:3000/d/shop",
            "panelURL": "http://grafana:3000/d/shop?viewPanel=2",
            "values": {"B": 2.41, "C": 1},
            "valueString": "[ var='B' labels={service=checkout} value=2.41 ]",
        },
    ],
    "groupLabels": {"alertname": "CheckoutLatencyHigh"},
    "commonLabels": {"alertname": "CheckoutLatencyHigh"},
    "commonAnnotations": {},
    "externalURL": "http://grafana:3000/",
    "version": "1",
    "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] CheckoutLatencyHigh (checkout)",
    "state": "alerting",
    "message": "**Firing** ...",
}


def to_drafts(webhook: GrafanaWebhook) -> list[AlertDraft]:
    """Every alert of the notification, firing and resolved, as drafts."""
    return collect_drafts(
        webhook.alerts,
        lambda i, alert: alert_draft(
            alert, source=SOURCE, index=i, extra_annotations=_grafana_annotations(alert)
        ),
    )


def _grafana_annotations(alert: GrafanaAlert) -> dict[str, str]:
    extras = {
        "dashboard_url": alert.dashboard_url,
        "panel_url": alert.panel_url,
        "silence_url": alert.silence_url,
        "image_url": alert.image_url,
        "value_string": alert.value_string,
        "values": json.dumps(alert.values, sort_keys=True, default=str) if alert.values else "",
    }
    return {k: v for k, v in extras.items() if v}
