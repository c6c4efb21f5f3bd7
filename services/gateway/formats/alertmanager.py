"""Prometheus Alertmanager webhook, payload version 4.

Alertmanager posts one notification per alert group; every alert of the group
(firing and resolved alike) becomes one `AlertReceived`. Per-alert `labels`
and `annotations` already contain the group's common ones, so the group-level
maps are accepted but not merged again. `fingerprint` is Alertmanager's
label-set hash and is used as is; `endsAt` of a firing alert is Go's zero time
and becomes None. The name is the `alertname` label, else the `summary`
annotation; an alert with neither is rejected with an error naming the field.

Unknown fields are ignored and `version` is not enforced (tolerant reader: a
future compatible version must not stop paging). `truncatedAlerts` > 0 means
Alertmanager dropped alerts of the group before sending (its `max_alerts`);
the gateway cannot recover them, so it counts and logs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.gateway.normalise import AlertDraft, InvalidAlertError, source_severity_of
from shared.domain import AlertStatus

SOURCE = "alertmanager"

T = TypeVar("T")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class AlertmanagerAlert(_Payload):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(description="identifying labels; `alertname` names the alert")
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime | None = Field(None, alias="startsAt")
    ends_at: AwareDatetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field("", max_length=256)


class AlertmanagerWebhook(_Payload):
    """The webhook body Alertmanager posts (`version` "4")."""

    version: str = "4"
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


EXAMPLE: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "incident-orchestrator",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "payments",
                       "severity": "critical", "instance": "payments-0"},
            "annotations": {"summary": "5xx ratio above 20% on payments",
                            "description": "error ratio 0.31 over 5m"},
            "startsAt": "2026-11-21T11:58:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "fingerprint": "c6eadffa33fcdf37",
        },
    ],
}


def alert_draft(
    alert: AlertmanagerAlert,
    *,
    source: str,
    index: int,
    extra_annotations: dict[str, str] | None = None,
) -> AlertDraft:
    """One Alertmanager-shaped alert as a draft (shared with Grafana, which copies the shape)."""
    name = alert.labels.get("alertname") or alert.annotations.get("summary")
    if not name:
        raise InvalidAlertError([
            f"alerts[{index}].labels.alertname: missing (and no annotations.summary to name it)"
        ])
    return AlertDraft(
        source=source,
        status=AlertStatus(alert.status),
        name=name,
        labels=alert.labels,
        annotations=(
            {**alert.annotations, **extra_annotations} if extra_annotations
            else alert.annotations
        ),
        summary=alert.annotations.get("summary", ""),
        description=alert.annotations.get("description") or alert.annotations.get("message", ""),
        source_severity=source_severity_of(alert.labels),
        starts_at=alert.starts_at,
        ends_at=_ends_at(alert.status, alert.ends_at),
        generator_url=alert.generator_url or None,
        fingerprint=alert.fingerprint or None,
    )


def to_drafts(webhook: AlertmanagerWebhook) -> list[AlertDraft]:
    """Every alert of the notification, firing and resolved, as drafts."""
    return collect_drafts(
        webhook.alerts, lambda i, alert: alert_draft(alert, source=SOURCE, index=i)
    )


def collect_drafts(
    items: Sequence[T], draft: Callable[[int, T], AlertDraft]
) -> list[AlertDraft]:
    """Draft every item, or raise one InvalidAlertError listing the errors of every bad item."""
    out: list[AlertDraft] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        try:
            out.append(draft(index, item))
        except InvalidAlertError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidAlertError(errors)
    return out


def _ends_at(status: str, ends_at: datetime | None) -> datetime | None:
    # A firing alert's endsAt is Go's zero time or Alertmanager's resolve_timeout
    # estimate: neither is when the condition ended.
    return ends_at if status == "resolved" else None
