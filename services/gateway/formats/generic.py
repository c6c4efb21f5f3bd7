"""The gateway's own JSON format, for scripts and tools without a native integration.

A request carries one alert object, or `{"alerts": [...]}` with 1 to 1000 of
them (a single object is read as a batch of one, so error paths always read
`alerts[<i>].<field>`). Fields:

| field | required | meaning |
|---|---|---|
| `name` | yes | what is wrong, e.g. `HighErrorRate` |
| `service` | no | affected service; else the labels `service`, `app`, `job`, `component` |
| `status` | no | `firing` (default), `resolved` or `acknowledged` |
| `severity` | no | the sender's word (`critical`, `P1`, `SEV-2`, ...), mapped to SEV0..SEV4 |
| `summary`, `description` | no | one line, and more detail |
| `labels`, `annotations` | no | string maps; numbers and booleans are turned into strings |
| `starts_at`, `ends_at` | no | ISO 8601 with a timezone; `starts_at` is the first anomaly |
| `generator_url` | no | link to the source of the alert |
| `fingerprint` | no | identity of the condition; else derived from name, service, labels |
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.gateway.normalise import AlertDraft
from shared.domain import AlertStatus

SOURCE = "generic"
MAX_ALERTS = 1000


def _scalars_as_strings(value: Any) -> Any:
    """Accept numbers and booleans as label values; anything nested stays invalid."""
    if isinstance(value, dict):
        return {
            k: (str(v).lower() if isinstance(v, bool) else str(v))
            if isinstance(v, int | float | bool) else v
            for k, v in value.items()
        }
    return value


StringMap = Annotated[dict[str, str], BeforeValidator(_scalars_as_strings)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GenericAlert(_Payload):
    """One alert in the gateway's own format."""

    name: str = Field(min_length=1, max_length=512)
    service: str | None = Field(None, min_length=1, max_length=256)
    status: Literal["firing", "resolved", "acknowledged"] = "firing"
    severity: str | None = Field(None, max_length=64)
    summary: str = Field("", max_length=4096)
    description: str = Field("", max_length=65536)
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    generator_url: str | None = None
    fingerprint: str | None = Field(None, min_length=1, max_length=256)


class GenericAlerts(_Payload):
    """A batch of alerts; a bare alert object is accepted as a batch of one."""

    alerts: list[GenericAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    @model_validator(mode="before")
    @classmethod
    def _single_alert_is_a_batch(cls, data: Any) -> Any:
        if isinstance(data, dict) and "alerts" not in data:
            return {"alerts": [data]}
        return data


SINGLE_EXAMPLE: dict[str, Any] = {
    "name": "QueueBacklog",
    "service": "reporting",
    "status": "firing",
    "severity": "warning",
    "summary": "nightly report queue above 10k jobs",
    "labels": {"queue": "nightly", "region": "eu-west-1"},
    "starts_at": "2026-11-21T11:58:00Z",
}
BATCH_EXAMPLE: dict[str, Any] = {
    "alerts": [
        SINGLE_EXAMPLE,
        {"name": "DiskFull", "service": "catalog", "severity": "P2",
         "labels": {"mount": "/var"}, "fingerprint": "catalog-disk-var"},
    ],
}


def to_drafts(batch: GenericAlerts) -> list[AlertDraft]:
    """Every alert of the batch as a draft."""
    return [
        AlertDraft(
            source=SOURCE,
            status=AlertStatus(alert.status),
            name=alert.name,
            labels=alert.labels,
            annotations=alert.annotations,
            service=alert.service,
            summary=alert.summary,
            description=alert.description,
            source_severity=alert.severity,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            generator_url=alert.generator_url,
            fingerprint=alert.fingerprint,
        )
        for alert in batch.alerts
    ]
