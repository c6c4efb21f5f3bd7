"""Unit tests of the demo alerter: rule state machine, Alertmanager v4 payload, delivery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from demo.alerter import Alerter, AlerterConfig, ServiceHealth, fingerprint, severity_for

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _cfg(**kw: Any) -> AlerterConfig:
    base: dict[str, Any] = {
        "webhook_url": "http://receiver/alerts",
        "token": "s3cret",
        "external_url": "http://127.0.0.1:9100",
        "for_count": 2,
        "repeat_seconds": 30.0,
        "window_seconds": 30.0,
    }
    base.update(kw)
    return AlerterConfig(**base)


def _health(
    service: str = "payments", rate: float = 0.0, up: bool = True, tier: int = 1
) -> ServiceHealth:
    return ServiceHealth(service=service, tier=tier, up=up, error_rate=rate, requests=100.0)


def _run(alerter: Alerter, steps: list[list[ServiceHealth]]) -> list[list[dict[str, Any]]]:
    return [alerter.evaluate(h, T0 + timedelta(seconds=i), float(i)) for i, h in enumerate(steps)]


def test_fingerprint_matches_prometheus_label_set_fingerprint() -> None:
    # Test vectors of prometheus/common model.labelSetToFingerprint.
    assert int(fingerprint({}), 16) == 14695981039346656037
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert int(fingerprint(labels), 16) == 5799056148416392346
    assert len(fingerprint(labels)) == 16


def test_severity_depends_on_tier() -> None:
    assert severity_for("HighErrorRate", 1) == "critical"
    assert severity_for("HighErrorRate", 2) == "warning"
    assert severity_for("ServiceDown", 1) == "critical"
    assert severity_for("CacheErrors", 1) == "warning"


def test_fires_after_two_evaluations_and_resolves_after_two_clear() -> None:
    a = Alerter(_cfg())
    out = _run(
        a,
        [
            [_health(rate=0.5)],
            [_health(rate=0.5)],
            [_health(rate=0.5)],
            [_health(rate=0.01)],
            [_health(rate=0.01)],
            [_health(rate=0.01)],
        ],
    )
    assert [len(o) for o in out] == [0, 1, 0, 0, 1, 0]
    firing, resolved = out[1][0], out[4][0]
    assert firing["status"] == "firing"
    assert resolved["status"] == "resolved"
    f_alert, r_alert = firing["alerts"][0], resolved["alerts"][0]
    assert f_alert["labels"] == {
        "alertname": "HighErrorRate",
        "service": "payments",
        "severity": "critical",
    }
    assert f_alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert f_alert["startsAt"] == "2025-01-01T12:00:00.000Z"  # when the condition first held
    assert r_alert["startsAt"] == f_alert["startsAt"]
    assert r_alert["endsAt"] == "2025-01-01T12:00:04.000Z"
    assert r_alert["fingerprint"] == f_alert["fingerprint"]
    # The resolution keeps the annotations the alert fired with.
    assert r_alert["annotations"] == f_alert["annotations"]
    assert a.active() == []


def test_single_bad_evaluation_does_not_fire() -> None:
    a = Alerter(_cfg())
    out = _run(a, [[_health(rate=0.9)], [_health(rate=0.0)], [_health(rate=0.9)]])
    assert all(o == [] for o in out)


def test_firing_alert_is_repeated_every_repeat_interval() -> None:
    a = Alerter(_cfg(repeat_seconds=3.0))
    out = _run(a, [[_health(rate=0.5)] for _ in range(9)])
    sent_at = [i for i, o in enumerate(out) if o]
    assert sent_at == [1, 4, 7]
    assert {o[0]["alerts"][0]["startsAt"] for o in out if o} == {"2025-01-01T12:00:00.000Z"}


def test_low_traffic_does_not_fire() -> None:
    a = Alerter(_cfg(min_requests=10))
    h = ServiceHealth(service="reporting", tier=4, up=True, error_rate=1.0, requests=2.0)
    assert _run(a, [[h], [h], [h]]) == [[], [], []]


def test_service_down_and_cache_errors() -> None:
    a = Alerter(_cfg())
    down = _health(service="payments", up=False)
    cache = ServiceHealth(
        service="catalog",
        tier=2,
        up=True,
        error_rate=0.9,
        requests=50.0,
        cache_error_rate=0.8,
        cache_lookups=60.0,
    )
    out = _run(a, [[down, cache], [down, cache]])
    names = sorted(
        (p["alerts"][0]["labels"]["alertname"], p["alerts"][0]["labels"]["severity"])
        for p in out[1]
    )
    assert names == [
        ("CacheErrors", "warning"),
        ("HighErrorRate", "warning"),
        ("ServiceDown", "critical"),
    ]
    assert {(x["alertname"], x["service"]) for x in a.active()} == {
        ("CacheErrors", "catalog"),
        ("HighErrorRate", "catalog"),
        ("ServiceDown", "payments"),
    }


def test_payload_is_alertmanager_webhook_v4() -> None:
    a = Alerter(_cfg(receiver="ir"))
    payload = _run(a, [[_health(rate=0.5)], [_health(rate=0.5)]])[1][0]
    assert set(payload) >= {
        "version",
        "groupKey",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert payload["version"] == "4"
    assert payload["receiver"] == "ir"
    assert payload["groupKey"] == '{}:{alertname="HighErrorRate", service="payments"}'
    assert payload["groupLabels"] == {"alertname": "HighErrorRate", "service": "payments"}
    assert payload["commonLabels"] == payload["alerts"][0]["labels"]
    assert payload["externalURL"] == "http://127.0.0.1:9100"
    alert = payload["alerts"][0]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert set(alert["annotations"]) == {"summary", "description"}
    assert "50%" in alert["annotations"]["description"]
    assert alert["generatorURL"].startswith("http://127.0.0.1:9100/graph?g0.expr=")
    json.dumps(payload)  # serialisable as is


async def test_delivery_retries_on_503_and_sends_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503 if len(seen) < 3 else 200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    a = Alerter(_cfg(backoff_max=0.01), client=client)
    payload = _run(a, [[_health(rate=0.5)], [_health(rate=0.5)]])[1][0]
    assert await a.deliver(payload) is True
    assert len(seen) == 3
    assert seen[-1].headers["authorization"] == "Bearer s3cret"
    assert json.loads(seen[-1].content) == payload
    assert list(a.sent) == [payload]
    await client.aclose()


async def test_delivery_gives_up_after_max_attempts_and_on_4xx() -> None:
    calls = 0

    def refused(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refused))
    a = Alerter(_cfg(max_attempts=3, backoff_max=0.01), client=client)
    payload = _run(a, [[_health(rate=0.5)], [_health(rate=0.5)]])[1][0]
    assert await a.deliver(payload) is False
    assert calls == 3
    await client.aclose()

    calls = 0

    def unauthorized(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401)

    client = httpx.AsyncClient(transport=httpx.MockTransport(unauthorized))
    a = Alerter(_cfg(backoff_max=0.01), client=client)
    assert await a.deliver(payload) is False
    assert calls == 1
    assert a.failed == 1
    await client.aclose()


def test_rules_hold_their_state_during_maintenance_and_without_data() -> None:
    a = Alerter(_cfg())
    restarting = ServiceHealth(
        service="payments", tier=1, up=False, error_rate=1.0, requests=0.0, maintenance=True
    )
    # A planned restart neither fires ServiceDown nor resolves a firing HighErrorRate.
    out = _run(
        a,
        [
            [_health(rate=0.5)],
            [_health(rate=0.5)],
            [restarting],
            [restarting],
            [restarting],
            [_health(rate=0.5, up=False)],
            [_health(rate=0.5, up=False)],
        ],
    )
    assert [[p["alerts"][0]["labels"]["alertname"] for p in o] for o in out] == [
        [],
        ["HighErrorRate"],
        [],
        [],
        [],
        [],
        ["ServiceDown"],
    ]
    assert {x["alertname"] for x in a.active()} == {"HighErrorRate", "ServiceDown"}
