"""Normalisation of any source's alert into one `AlertReceived`: the rules every format shares.

Each format module (`formats/*.py`) only maps its payload onto an `AlertDraft`;
everything that must be the same whatever the source is decided here, once:

- **Service.** An explicit service (the generic format's field, a PagerDuty
  routing key bound to a service) wins; else the first of the labels
  `service`, `app`, `job`, `component`; else the format's own fallbacks
  (PagerDuty's `payload.component`, then `payload.source`). Only when all are
  missing is the service `"unknown"`, and the alert then carries the label
  `ir_service_unknown="true"` so nobody mistakes it for a real service.
- **Fingerprint** (the stable identity of the alert *condition*). The source's
  own fingerprint / dedup key when it gives one (Alertmanager and Grafana
  fingerprints, PagerDuty `dedup_key`, the generic `fingerprint`). Otherwise
  sha256 over the source, the alert name, the service and the *identifying
  labels*: every label except `severity` and `priority` (an escalation from
  warning to critical is the same condition getting worse, not a new one),
  labels starting with `__` (internal to Prometheus/Grafana) and our own `ir_`
  labels. Annotations never take part: they carry values that change between
  notifications of one condition.
- **Event id.** `derive_event_id("alert.received", source, fingerprint,
  status, content digest, window)` where the digest covers every normalised
  field except receipt times and the window is the receipt time divided into
  `dedup_window_s` slots (default 60 s). A sender's retry of the same
  notification (after a 503 whose records reached the log late, or a lost
  response) therefore gets the same id, and consumers drop it as a duplicate;
  a *repeat* of a still-firing alert minutes later is a new event, so triage
  can notice a condition that is still firing after its incident was
  resolved. A retry that straddles a window boundary arrives as a repeat,
  which triage must tolerate anyway (Alertmanager repeats firing alerts).
- **Correlation id.** The sender's `X-Correlation-ID` when given, else derived
  from the source and fingerprint, so every alert of one condition shares it.
- **Correlation key** (the Kafka key): the service's connected component in
  the catalog's dependency graph, so alerts triage may merge meet in one
  partition.
- **Severity.** The source's word is kept as `source_severity`; `severity` is
  `Severity.parse` of it (None when unrecognised: triage computes the real
  severity, this is only one signal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from shared.catalog import ServiceCatalog
from shared.domain import AlertStatus, Severity
from shared.events import AlertReceived, derive_event_id

PRODUCER = "gateway"
UNKNOWN_SERVICE = "unknown"
SERVICE_UNKNOWN_LABEL = "ir_service_unknown"
SERVICE_LABELS: tuple[str, ...] = ("service", "app", "job", "component")
SEVERITY_LABELS: tuple[str, ...] = ("severity", "priority")
NON_IDENTIFYING_LABELS = frozenset(SEVERITY_LABELS)
DEFAULT_DEDUP_WINDOW_S = 60


class InvalidAlertError(ValueError):
    """A payload that parses but cannot become an alert; each error names its field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(slots=True)
class AlertDraft:
    """What a format module extracts from its payload, before the shared rules apply.

    Read-only by convention, not `frozen`: a frozen dataclass's `__init__`
    costs three times as much, once per alert on the gateway's hot path.
    """

    source: str
    status: AlertStatus
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None
    service_fallbacks: tuple[str | None, ...] = ()
    summary: str = ""
    description: str = ""
    source_severity: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None
    dedup_key: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class IntakeContext:
    """Per-request facts: when it arrived, the catalog, an incoming correlation id."""

    received_at: datetime
    catalog: ServiceCatalog
    correlation_id: str | None = None
    dedup_window_s: int = DEFAULT_DEDUP_WINDOW_S
    window: int = field(init=False)  # the dedup slot of received_at (see `to_alert_received`)

    def __post_init__(self) -> None:
        window = int(self.received_at.timestamp()) // max(self.dedup_window_s, 1)
        object.__setattr__(self, "window", window)


def resolve_service(
    labels: Mapping[str, str], explicit: str | None = None, fallbacks: tuple[str | None, ...] = ()
) -> str | None:
    """The affected service: explicit, else a service label, else the fallbacks; None if none."""
    if explicit and (stripped := explicit.strip()):
        return stripped
    for key in SERVICE_LABELS:
        if (candidate := labels.get(key)) and (stripped := candidate.strip()):
            return stripped
    for candidate in fallbacks:
        if candidate and (stripped := candidate.strip()):
            return stripped
    return None


def identifying_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that identify an alert condition (see the module docstring)."""
    return {
        k: v
        for k, v in sorted(labels.items())
        if k not in NON_IDENTIFYING_LABELS and not k.startswith(("__", "ir_"))
    }


def condition_fingerprint(source: str, name: str, service: str, labels: Mapping[str, str]) -> str:
    """sha256 of source, name, service and identifying labels: stable for one condition."""
    identity = {
        "source": source, "name": name, "service": service,
        "labels": identifying_labels(labels),
    }
    return hashlib.sha256(_canonical(identity)).hexdigest()


def correlation_id_for(source: str, fingerprint: str) -> str:
    """The correlation id every alert of one condition shares when the sender gave none."""
    return derive_event_id("alert.correlation", source, fingerprint)


def source_severity_of(labels: Mapping[str, str]) -> str | None:
    """The severity word a label-based source (Alertmanager, Grafana) attached, if any."""
    for key in SEVERITY_LABELS:
        if value := labels.get(key):
            return value
    return None


def real_time(value: datetime | None) -> datetime | None:
    """None for Go's zero time (Alertmanager's `endsAt` of a firing alert), else value."""
    if value is None or value.year <= 1:
        return None
    return value


def to_alert_received(draft: AlertDraft, ctx: IntakeContext) -> AlertReceived:
    """Apply the shared rules (service, fingerprint, ids, key, severity) to a draft."""
    labels = dict(draft.labels)
    service = resolve_service(labels, draft.service, draft.service_fallbacks)
    if service is None:
        service = UNKNOWN_SERVICE
        labels[SERVICE_UNKNOWN_LABEL] = "true"
    fingerprint = draft.fingerprint or condition_fingerprint(
        draft.source, draft.name, service, labels
    )
    starts_at = real_time(draft.starts_at)
    ends_at = real_time(draft.ends_at)
    annotations = dict(draft.annotations)
    content = {
        "name": draft.name, "service": service, "summary": draft.summary,
        "description": draft.description, "source_severity": draft.source_severity,
        "labels": labels, "annotations": annotations,
        "starts_at": starts_at,  # orjson writes what isoformat() gives, 3x faster
        "ends_at": ends_at,
        "generator_url": draft.generator_url, "dedup_key": draft.dedup_key,
    }
    event_id = derive_event_id(
        "alert.received", draft.source, fingerprint, draft.status.value,
        hashlib.sha256(_canonical(content)).hexdigest(), ctx.window,
    )
    # Every field below is typed by the draft (from a validated body) or built here:
    # validating them again would cost a fifth of the gateway's CPU per alert.
    return AlertReceived.trusted({
        "event_id": event_id,
        "event_type": "alert.received",
        "schema_version": AlertReceived.SCHEMA_VERSION,
        "occurred_at": ctx.received_at,
        "producer": PRODUCER,
        "incident_id": None,
        "correlation_id": ctx.correlation_id or correlation_id_for(draft.source, fingerprint),
        "causation_id": None,
        "source": draft.source,
        "fingerprint": fingerprint,
        "correlation_key": ctx.catalog.correlation_group(service),
        "status": draft.status,
        "name": draft.name,
        "service": service,
        "summary": draft.summary,
        "description": draft.description,
        "source_severity": draft.source_severity,
        "severity": Severity.parse(draft.source_severity),
        "labels": labels,
        "annotations": annotations,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "received_at": ctx.received_at,
        "generator_url": draft.generator_url or None,
        "dedup_key": draft.dedup_key,
    })


def _canonical(value: object) -> bytes:
    """Sorted-key compact JSON (orjson: the gateway digests every alert it receives)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
