"""PagerDuty Events API v2 (`POST /v2/enqueue`), so anything that can page PagerDuty can page us.

Decisions:

- **Authentication is the routing key**, as at PagerDuty (senders such as
  Grafana's PagerDuty contact point cannot add headers). When routing keys are
  configured, an event whose `routing_key` is not one of them is an invalid
  event (400, PagerDuty's own answer for a bad key). A routing key may be bound
  to a service (`key=payments`): at PagerDuty a routing key *is* a service's
  integration, and it is the only service hint an `acknowledge` or `resolve`
  event carries.
- **Action-dependent rules** are checked after the schema: a `trigger` needs
  `payload.summary`, `payload.source` and `payload.severity`; `acknowledge` and
  `resolve` need `dedup_key` (PagerDuty ignores their payload, so it is not
  validated further). Every error reads `<field>: <what>`.
- **dedup_key** is the fingerprint. A trigger without one gets a *stable*
  generated key: sha256 of the routing key, `source`, `component`, `group`,
  `class` and `summary`, so the same condition sent twice deduplicates (PagerDuty
  would generate a random key; ours lets the sender resolve later by re-sending
  the same trigger fields). The key is returned in the 202 body, as PagerDuty does.
- **Service**: the routing key's bound service, else the labels rule shared by
  every source (`component` is one of its labels), else `payload.source`. An
  `acknowledge`/`resolve` has no payload: its service and name come from the
  trigger this gateway process saw for the same dedup_key (`ConditionMemory`,
  bounded, in memory), else the routing key's service, else `unknown`.
- Status: trigger -> firing, acknowledge -> acknowledged, resolve -> resolved.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.gateway.normalise import AlertDraft, InvalidAlertError
from shared.domain import AlertStatus

SOURCE = "pagerduty"
SEVERITIES = ("critical", "error", "warning", "info")
_STATUS = {
    "trigger": AlertStatus.FIRING,
    "acknowledge": AlertStatus.ACKNOWLEDGED,
    "resolve": AlertStatus.RESOLVED,
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class PagerDutyPayload(_Payload):
    """What happened; `summary`, `source` and `severity` are required for a trigger."""

    summary: str | None = Field(None, min_length=1, max_length=1024)
    source: str | None = Field(None, min_length=1, max_length=255)
    severity: Literal["critical", "error", "warning", "info"] | None = None
    timestamp: AwareDatetime | None = Field(None, description="when the condition began")
    component: str | None = Field(None, max_length=255)
    group: str | None = Field(None, max_length=255)
    class_: str | None = Field(None, alias="class", max_length=255)
    custom_details: dict[str, Any] | str | None = None


class PagerDutyImage(_Payload):
    """An image attached to the event."""

    src: str
    href: str | None = None
    alt: str | None = None


class PagerDutyLink(_Payload):
    """A link attached to the event."""

    href: str
    text: str | None = None


class PagerDutyEvent(_Payload):
    """An Events API v2 event."""

    routing_key: str = Field(min_length=1, max_length=255)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(None, min_length=1, max_length=255)
    payload: PagerDutyPayload | None = None
    images: list[PagerDutyImage] = Field(default_factory=list)
    links: list[PagerDutyLink] = Field(default_factory=list)
    client: str | None = None
    client_url: str | None = None


TRIGGER_EXAMPLE: dict[str, Any] = {
    "routing_key": "R0UT1NGKEY0000000000000000000000",
    "event_action": "trigger",
    "dedup_key": "payments-5xx",
    "payload": {
        "summary": "payments 5xx ratio above 20%",
        "source": "payments-0.prod",
        "severity": "critical",
        "timestamp": "2026-11-21T11:58:00Z",
        "component": "payments",
        "group": "prod",
        "class": "http_errors",
        "custom_details": {"error_ratio": 0.31},
    },
    "links": [{"href": "http://grafana:3000/d/payments", "text": "dashboard"}],
    "client": "Prometheus",
    "client_url": "http://prometheus:9090",
}
RESOLVE_EXAMPLE: dict[str, Any] = {
    "routing_key": "R0UT1NGKEY0000000000000000000000",
    "event_action": "resolve",
    "dedup_key": "payments-5xx",
}


@dataclass(frozen=True)
class KnownCondition:
    """What a trigger told us about a dedup_key, for its later acknowledge/resolve."""

    service: str
    name: str


class ConditionMemory:
    """dedup_key -> the service and name of its trigger; forgets the oldest past `maxlen`."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self._known: OrderedDict[str, KnownCondition] = OrderedDict()
        self.maxlen = maxlen

    def remember(self, dedup_key: str, condition: KnownCondition) -> None:
        """Record the trigger of dedup_key."""
        self._known[dedup_key] = condition
        self._known.move_to_end(dedup_key)
        while len(self._known) > self.maxlen:
            self._known.popitem(last=False)

    def recall(self, dedup_key: str) -> KnownCondition | None:
        """The trigger seen for dedup_key, if this process saw one."""
        return self._known.get(dedup_key)


def problems(event: PagerDutyEvent, routing_keys: frozenset[str] = frozenset()) -> list[str]:
    """Errors the schema cannot express (routing key, action-dependent fields); [] if valid."""
    errors: list[str] = []
    if routing_keys and event.routing_key not in routing_keys:
        errors.append("routing_key: not a routing key this gateway accepts")
    if event.event_action == "trigger":
        payload = event.payload
        if payload is None:
            errors.append("payload: required when event_action is trigger")
        else:
            errors.extend(
                f"payload.{name}: required when event_action is trigger"
                for name in ("summary", "source", "severity")
                if getattr(payload, name) is None
            )
    elif event.dedup_key is None:
        errors.append(f"dedup_key: required when event_action is {event.event_action}")
    return errors


def dedup_key_of(event: PagerDutyEvent) -> str:
    """The event's dedup_key, or the stable one generated for a trigger without one."""
    if event.dedup_key:
        return event.dedup_key
    payload = event.payload or PagerDutyPayload()
    identity = [
        event.routing_key, payload.source, payload.component, payload.group, payload.class_,
        payload.summary,
    ]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def to_drafts(
    event: PagerDutyEvent,
    *,
    routing_service: str | None = None,
    known: KnownCondition | None = None,
) -> list[AlertDraft]:
    """The event as one draft; check `problems` first (else InvalidAlertError is raised)."""
    dedup_key = dedup_key_of(event)
    payload = event.payload
    if event.event_action != "trigger" or payload is None:
        return [_follow_up(event, dedup_key, routing_service, known)]
    if payload.summary is None or payload.source is None or payload.severity is None:
        raise InvalidAlertError(problems(event))
    labels = {
        k: v for k, v in {
            "source": payload.source, "component": payload.component,
            "group": payload.group, "class": payload.class_,
        }.items() if v
    }
    return [AlertDraft(
        source=SOURCE,
        status=AlertStatus.FIRING,
        name=payload.summary,
        labels=labels,
        annotations=_annotations(event),
        service=routing_service,
        service_fallbacks=(payload.source,),
        summary=payload.summary,
        source_severity=payload.severity,
        starts_at=payload.timestamp,
        generator_url=event.client_url or next((link.href for link in event.links), None),
        dedup_key=dedup_key,
        fingerprint=dedup_key,
    )]


def _follow_up(
    event: PagerDutyEvent, dedup_key: str, routing_service: str | None,
    known: KnownCondition | None,
) -> AlertDraft:
    """An acknowledge or resolve: it names only the dedup_key, so borrow from its trigger."""
    return AlertDraft(
        source=SOURCE,
        status=_STATUS[event.event_action],
        name=known.name if known else f"PagerDuty event {dedup_key}",
        annotations=_annotations(event),
        service=known.service if known else routing_service,
        dedup_key=dedup_key,
        fingerprint=dedup_key,
    )


def _annotations(event: PagerDutyEvent) -> dict[str, str]:
    out: dict[str, str] = {}
    details = event.payload.custom_details if event.payload else None
    if isinstance(details, str):
        out["custom_details"] = details
    elif details:
        out.update(
            {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in details.items()}
        )
    if event.client:
        out["client"] = event.client
    if event.client_url:
        out["client_url"] = event.client_url
    if event.links:
        out["links"] = json.dumps([link.model_dump(exclude_none=True) for link in event.links])
    if event.images:
        out["images"] = json.dumps([img.model_dump(exclude_none=True) for img in event.images])
    return out
