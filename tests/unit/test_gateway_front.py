"""The gateway's front answers the alert webhooks exactly as the FastAPI routes behind it would.

The front (services/gateway/front.py) re-does FastAPI's request validation by
hand for speed; this guards against the two drifting apart. Each request goes
to both, on a gateway that never connected to a broker (so a valid request is
a 503 + Retry-After on both), and the answers are compared.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.gateway.formats import alertmanager, generic
from services.gateway.main import create_runtime
from services.gateway.settings import GatewaySettings
from shared.settings import KafkaSettings, ServiceSettings

pytestmark = pytest.mark.unit

TOKEN = {"Authorization": "Bearer t"}
GOOD = alertmanager.EXAMPLE
ALERT = GOOD["alerts"][0]

CASES: dict[str, dict[str, Any]] = {
    "no token": {"path": "/alerts/alertmanager", "json": GOOD, "headers": {}},
    "wrong token": {"path": "/alerts/alertmanager", "json": GOOD,
                    "headers": {"Authorization": "Bearer nope"}},
    "not bearer": {"path": "/alerts/alertmanager", "json": GOOD,
                   "headers": {"Authorization": "Basic dDp0"}},
    "bad status": {"path": "/alerts/alertmanager",
                   "json": {**GOOD, "alerts": [ALERT, {**ALERT, "status": "burning"}]}},
    "no alerts": {"path": "/alerts/alertmanager", "json": {**GOOD, "alerts": []}},
    "nameless": {"path": "/alerts/alertmanager",
                 "json": {**GOOD, "alerts": [{**ALERT, "labels": {"service": "x"},
                                              "annotations": {}}]}},
    "naive time": {"path": "/alerts/grafana",
                   "json": {**GOOD, "alerts": [{**ALERT, "startsAt": "2026-11-21T11:58:00"}]}},
    "generic fields": {"path": "/alerts/generic",
                       "json": {"service": "search", "starts_at": "not a time"}},
    "generic single": {"path": "/alerts/generic", "json": generic.SINGLE_EXAMPLE},
    "long header": {"path": "/alerts/generic", "json": generic.SINGLE_EXAMPLE,
                    "headers": {**TOKEN, "X-Correlation-ID": "x" * 200}},
    "header pattern": {"path": "/alerts/generic", "json": generic.SINGLE_EXAMPLE,
                       "headers": {**TOKEN, "X-Correlation-ID": "has space"}},
    "valid, broker down": {"path": "/alerts/alertmanager", "json": GOOD},
}


@pytest.fixture(scope="module")
def apps() -> tuple[Any, Any]:
    runtime = create_runtime(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        settings=ServiceSettings(log_level="ERROR"),
        gateway=GatewaySettings(tokens=("t",), max_body_bytes=4096),
    )
    return runtime.components["asgi"], runtime.http


async def answer(app: Any, case: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post(
            case["path"], content=json.dumps(case["json"]),
            headers={"Content-Type": "application/json", **case.get("headers", TOKEN)},
        )


@pytest.mark.parametrize("name", CASES)
async def test_front_and_fastapi_answer_alike(apps: tuple[Any, Any], name: str) -> None:
    """Same status, same body, same challenge and Retry-After headers."""
    front, fastapi_app = apps
    mine, theirs = await answer(front, CASES[name]), await answer(fastapi_app, CASES[name])
    assert mine.status_code == theirs.status_code, (mine.text, theirs.text)
    assert mine.json() == theirs.json()
    for header in ("www-authenticate", "retry-after"):
        assert mine.headers.get(header) == theirs.headers.get(header)


async def test_invalid_json_and_oversized_bodies(apps: tuple[Any, Any]) -> None:
    """Both refuse them with the same status; the front's messages are its own but clear."""
    front, fastapi_app = apps
    for app in (front, fastapi_app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            broken = await client.post(
                "/alerts/generic", content=b"{oops",
                headers={**TOKEN, "Content-Type": "application/json"},
            )
            assert broken.status_code == 422
            assert broken.json()["errors"][0].startswith("body: invalid JSON (")
            big = await client.post("/alerts/generic", content=b"x" * 5000, headers=TOKEN)
            assert big.status_code == 413


async def test_other_routes_pass_through(apps: tuple[Any, Any]) -> None:
    """Health, docs and PagerDuty are FastAPI's: the front hands them on untouched."""
    front, _ = apps
    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/openapi.json")).status_code == 200
        pd = await client.post("/v2/enqueue", json={"event_action": "trigger"}, headers=TOKEN)
        assert pd.status_code == 400
        assert pd.json()["status"] == "invalid event"
