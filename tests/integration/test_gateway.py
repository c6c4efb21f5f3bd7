"""The gateway as deployed: a real uvicorn server on a free port and a real Kafka-protocol broker.

What these pin: 202 means the records are on `alert.received` (right key,
headers, content); refusals (401, 4xx, 413) publish nothing; a dead broker
gives 503 + Retry-After at once, a gateway started without a broker recovers
when it appears, and a broker lost after start-up turns into 503 at the
publish deadline, never into a 202.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.gateway import main as gateway_main
from services.gateway.formats import alertmanager, pagerduty
from services.gateway.main import GatewayServer, create_runtime
from services.gateway.settings import GatewaySettings
from shared.embedded import EmbeddedBroker, free_port
from shared.events import AlertReceived
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic, topic_name

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTING_KEY = "rk-payments"
CATALOG = """
services:
  - {name: checkout, tier: 1, customer_facing: true, depends_on: [payments]}
  - {name: payments, tier: 1}
  - {name: search, tier: 2}
"""
Records = list[ConsumerRecord[bytes, bytes]]


# --- helpers -----------------------------------------------------------------------------


async def start_gateway(
    bootstrap: str, prefix: str, config_dir: Path, *, request_timeout_ms: int = 5000,
    **gateway: Any,
) -> GatewayServer:
    """A gateway on a free port, pointed at bootstrap, topics under prefix."""
    (config_dir / "catalog.yaml").write_text(CATALOG)
    runtime = create_runtime(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                            request_timeout_ms=request_timeout_ms),
        settings=ServiceSettings(config_dir=str(config_dir), log_level="WARNING"),
        gateway=GatewaySettings(**gateway),
    )
    server = GatewayServer(runtime, host="127.0.0.1", port=0)
    await server.start()
    return server


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 15.0, what: str = "condition"
) -> None:
    """Poll check until true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.05)


def healthz_is(client: httpx.AsyncClient, status: int) -> Callable[[], Awaitable[bool]]:
    """A check that /healthz answers status."""

    async def check() -> bool:
        return (await client.get("/healthz")).status_code == status

    return check


async def read_alerts(
    bootstrap: str, prefix: str, until: Callable[[Records], bool], timeout_s: float = 15.0
) -> Records:
    """`alert.received` records under prefix, read from the start until `until` holds."""
    consumer: AIOKafkaConsumer = AIOKafkaConsumer(
        topic_name(Topic.ALERT_RECEIVED, prefix),
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=50,
    )
    await consumer.start()
    records: Records = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(records)} records within {timeout_s} s")
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def at_least(count: int) -> Callable[[Records], bool]:
    """Read until count records arrived."""
    return lambda records: len(records) >= count


def having(event_id: str) -> Callable[[Records], bool]:
    """Read until the record of event_id arrived."""
    return lambda records: any(headers(r).get("event-id") == event_id for r in records)


def headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """A record's headers as text."""
    return {k: v.decode() for k, v in record.headers}


def alert_of(record: ConsumerRecord[bytes, bytes]) -> AlertReceived:
    """The event a record carries."""
    return AlertReceived.model_validate_json(record.value or b"")


def am_alert(service: str, status: str = "firing", **extra: Any) -> dict[str, Any]:
    """One Alertmanager alert for service."""
    alert: dict[str, Any] = copy.deepcopy(alertmanager.EXAMPLE["alerts"][0])
    alert.update(status=status, fingerprint=f"fp-{service}-{status}", **extra)
    alert["labels"] = {**alert["labels"], "service": service}
    if status == "resolved":
        alert["endsAt"] = "2026-11-21T12:05:00Z"
    return alert


def am_group(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager notification holding alerts."""
    return {**copy.deepcopy(alertmanager.EXAMPLE), "alerts": list(alerts)}


async def sentinel(client: httpx.AsyncClient, service: str) -> str:
    """Publish a valid alert for service (same key, same partition) and return its event id.

    Records of one key keep their order, so once the sentinel is read, any
    record a refused request had wrongly published for service would be read too.
    """
    response = await client.post(
        "/alerts/generic", json={"name": "Sentinel", "service": service}, headers=AUTH
    )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["alerts"][0]["event_id"]
    return event_id


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- a gateway on a live broker -----------------------------------------------------------


@pytest.fixture
async def gateway(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A connected gateway with a bearer token, a bound routing key and a 64 KiB body cap."""
    server = await start_gateway(
        kafka_bootstrap, topic_prefix, tmp_path, tokens=TOKEN,
        pagerduty_routing_keys=f"{ROUTING_KEY}=payments,rk-unbound", max_body_bytes=65536,
    )
    client = httpx.AsyncClient(base_url=server.url, timeout=10)
    try:
        await eventually(healthz_is(client, 200), what="gateway connected")
        yield client
    finally:
        await client.aclose()
        await server.stop()


class TestDelivery:
    """202 means the alerts are on the topic, keyed and labelled for their consumers."""

    async def test_alertmanager_group_of_three_is_three_records(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """Two firing and one resolved alert: three records, keyed by correlation group."""
        body = am_group(am_alert("payments"), am_alert("checkout"),
                        am_alert("search", "resolved"))
        response = await gateway.post("/alerts/alertmanager", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["accepted"] == 3
        ids = {a["event_id"] for a in answer["alerts"]}

        records = await read_alerts(kafka_bootstrap, topic_prefix, at_least(3))
        assert {headers(r)["event-id"] for r in records} == ids
        by_service = {alert_of(r).service: r for r in records}
        assert set(by_service) == {"payments", "checkout", "search"}
        # checkout depends on payments: one correlation group, one key; search is alone.
        assert by_service["payments"].key == by_service["checkout"].key == b"checkout"
        assert by_service["search"].key == b"search"
        for service, record in by_service.items():
            alert, head = alert_of(record), headers(record)
            assert head["event-type"] == "alert.received"
            assert head["event-id"] == alert.event_id
            assert head["correlation-id"] == alert.correlation_id
            assert head["alert-source"] == "alertmanager"
            assert alert.fingerprint == f"fp-{service}-{alert.status.value}"
        assert alert_of(by_service["search"]).status == "resolved"

    async def test_pagerduty_trigger_acknowledge_resolve_round_trip(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """PagerDuty's bodies come back; three records of one condition, in order, one key."""
        trigger = {**pagerduty.TRIGGER_EXAMPLE, "routing_key": "rk-unbound"}
        trigger["payload"] = {**trigger["payload"], "component": "search"}
        statuses = []
        for action in ("trigger", "acknowledge", "resolve"):
            body = trigger if action == "trigger" else {
                "routing_key": "rk-unbound", "event_action": action, "dedup_key": "payments-5xx",
            }
            response = await gateway.post("/v2/enqueue", json=body)
            assert response.status_code == 202, response.text
            assert response.json() == {
                "status": "success", "message": "Event processed", "dedup_key": "payments-5xx",
            }
            statuses.append({"trigger": "firing", "acknowledge": "acknowledged",
                             "resolve": "resolved"}[action])

        records = await read_alerts(kafka_bootstrap, topic_prefix, at_least(3))
        alerts = [alert_of(r) for r in records]
        assert [a.status.value for a in alerts] == statuses
        assert {a.fingerprint for a in alerts} == {"payments-5xx"}
        # The follow-ups carry no payload: service and name come from the trigger.
        assert {a.service for a in alerts} == {"search"}
        assert {a.name for a in alerts} == {"payments 5xx ratio above 20%"}
        assert {r.key for r in records} == {b"search"}

    async def test_pagerduty_trigger_without_dedup_key_gets_a_stable_one(
        self, gateway: httpx.AsyncClient
    ) -> None:
        """The generated dedup_key is returned, the same on a resend; the routing key binds."""
        body = {**pagerduty.TRIGGER_EXAMPLE, "routing_key": ROUTING_KEY}
        del body["dedup_key"]
        first = await gateway.post("/v2/enqueue", json=body)
        again = await gateway.post("/v2/enqueue", json=body)
        assert first.status_code == again.status_code == 202
        assert first.json()["dedup_key"] == again.json()["dedup_key"]
        assert len(first.json()["dedup_key"]) == 32

    async def test_correlation_header_and_trace_context_travel(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """X-Correlation-ID becomes the correlation id; the sender's trace id reaches Kafka."""
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = await gateway.post(
            "/alerts/generic", json={"name": "QueueBacklog", "service": "search"},
            headers={**AUTH, "X-Correlation-ID": "req-42",
                     "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 202, response.text
        (record,) = await read_alerts(kafka_bootstrap, topic_prefix, at_least(1))
        assert alert_of(record).correlation_id == "req-42"
        assert headers(record)["correlation-id"] == "req-42"
        assert trace_id in headers(record)["traceparent"]

    async def test_large_batch_is_acknowledged_as_a_whole(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """A 300-alert request answers 202 only with all 300 records in the log."""
        batch = {"alerts": [
            {"name": "PodRestarting", "service": ("search", "payments", "other")[i % 3],
             "labels": {"pod": f"pod-{i}"}}
            for i in range(300)
        ]}
        response = await gateway.post("/alerts/generic", json=batch, headers=AUTH)
        assert response.status_code == 202, response.text
        ids = {a["event_id"] for a in response.json()["alerts"]}
        assert len(ids) == 300
        records = await read_alerts(kafka_bootstrap, topic_prefix, at_least(300))
        assert {headers(r)["event-id"] for r in records} == ids

    async def test_metrics_count_outcomes_by_source(self, gateway: httpx.AsyncClient) -> None:
        """Accepted alerts and refused requests are counted per source on /metrics."""
        body = am_group(am_alert("payments"), am_alert("search"))
        accepted = await gateway.post("/alerts/alertmanager", json=body, headers=AUTH)
        refused = await gateway.post("/alerts/alertmanager", json=body)
        assert (accepted.status_code, refused.status_code) == (202, 401)
        text = (await gateway.get("/metrics")).text
        assert metric(text, "ir_gateway_alerts_total", source="alertmanager",
                      outcome="accepted") == 2
        assert metric(text, "ir_gateway_requests_total", source="alertmanager",
                      outcome="unauthorized") == 1
        assert metric(text, "ir_gateway_request_duration_seconds_count",
                      source="alertmanager") == 2


class TestRefusals:
    """Refused requests say why and publish nothing."""

    async def test_missing_or_wrong_token_is_401_and_publishes_nothing(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """No token and a wrong token both get 401 with a Bearer challenge; no record."""
        body = am_group(am_alert("search"))
        missing = await gateway.post("/alerts/alertmanager", json=body)
        wrong = await gateway.post(
            "/alerts/grafana", json=body, headers={"Authorization": "Bearer nope"}
        )
        for response in (missing, wrong):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
        # Without routing keys matching, PagerDuty refuses by its own rule (invalid event).
        bad_key = await gateway.post(
            "/v2/enqueue", json={**pagerduty.TRIGGER_EXAMPLE, "routing_key": "guess"}
        )
        assert bad_key.status_code == 400
        assert bad_key.json()["errors"] == ["routing_key: not a routing key this gateway accepts"]

        marker = await sentinel(gateway, "search")
        records = await read_alerts(kafka_bootstrap, topic_prefix, having(marker))
        assert [alert_of(r).name for r in records] == ["Sentinel"]

    async def test_invalid_payloads_name_the_field(
        self, gateway: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
    ) -> None:
        """422 for our formats and 400 in PagerDuty's body, each naming the bad field."""
        good = am_alert("search")
        bad_status = await gateway.post(
            "/alerts/alertmanager", json=am_group(good, {**good, "status": "burning"}),
            headers=AUTH,
        )
        assert bad_status.status_code == 422
        assert bad_status.json()["errors"][0].startswith("alerts[1].status: ")

        nameless = await gateway.post(
            "/alerts/alertmanager",
            json=am_group({**good, "labels": {"service": "search"}, "annotations": {}}),
            headers=AUTH,
        )
        assert nameless.status_code == 422
        assert nameless.json()["errors"][0].startswith("alerts[0].labels.alertname: ")

        generic = await gateway.post(
            "/alerts/generic", json={"service": "search", "starts_at": "not a time"}, headers=AUTH
        )
        assert generic.status_code == 422
        assert [e.split(":")[0] for e in generic.json()["errors"]] == [
            "alerts[0].name", "alerts[0].starts_at",
        ]

        not_json = await gateway.post(
            "/alerts/generic", content=b"{oops",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert not_json.status_code == 422
        assert not_json.json()["errors"][0].startswith("body: invalid JSON")

        bad_header = await gateway.post(
            "/alerts/generic", json={"name": "A", "service": "search"},
            headers={**AUTH, "X-Correlation-ID": "x" * 200},
        )
        assert bad_header.status_code == 422
        assert bad_header.json()["errors"][0].startswith("header X-Correlation-ID: ")

        pd = await gateway.post("/v2/enqueue", json={
            "routing_key": ROUTING_KEY, "event_action": "trigger",
            "payload": {"summary": "x", "source": "h", "severity": "sev0"},
        })
        assert pd.status_code == 400
        assert pd.json()["status"] == "invalid event"
        assert pd.json()["message"] == "Event object is invalid"
        assert pd.json()["errors"][0].startswith("payload.severity: ")

        marker = await sentinel(gateway, "search")
        records = await read_alerts(kafka_bootstrap, topic_prefix, having(marker))
        assert [alert_of(r).name for r in records] == ["Sentinel"]

    async def test_oversized_body_is_413(self, gateway: httpx.AsyncClient) -> None:
        """A body over the configured cap is refused before it is parsed."""
        body = am_group(am_alert("search", annotations={"blob": "x" * 70_000}))
        response = await gateway.post("/alerts/alertmanager", json=body, headers=AUTH)
        assert response.status_code == 413


# --- a gateway without a (working) broker -------------------------------------------------


class TestBrokerOutage:
    """503 + Retry-After instead of a false 202; start-up and recovery without the broker."""

    async def test_starts_without_broker_answers_503_then_recovers(self, tmp_path: Path) -> None:
        """Dead port: healthz 503, alerts 503 at once; once a broker listens there, 202."""
        port = free_port()
        server = await start_gateway(
            f"127.0.0.1:{port}", "", tmp_path, retry_after_s=7, connect_retry_max_s=0.3,
        )
        client = httpx.AsyncClient(base_url=server.url, timeout=10)
        broker = EmbeddedBroker(memory=True, port=port, state_dir=tmp_path / "broker")
        try:
            assert (await client.get("/healthz")).status_code == 503
            started = time.monotonic()
            refused = await client.post("/alerts/alertmanager", json=am_group(am_alert("search")))
            assert refused.status_code == 503
            assert time.monotonic() - started < 2.0
            assert refused.headers["retry-after"] == "7"
            assert "nothing was accepted" in refused.json()["detail"]
            text = (await client.get("/metrics")).text
            assert metric(text, "ir_gateway_alerts_total", source="alertmanager",
                          outcome="unavailable") == 1
            assert metric(text, "ir_gateway_alerts_total", source="alertmanager",
                          outcome="accepted") == 0

            await broker.astart()
            await eventually(healthz_is(client, 200), what="gateway reconnected")
            accepted = await client.post(
                "/alerts/alertmanager", json=am_group(am_alert("search"))
            )
            assert accepted.status_code == 202, accepted.text
            (record,) = await read_alerts(broker.bootstrap_servers, "", at_least(1))
            assert headers(record)["event-id"] == accepted.json()["alerts"][0]["event_id"]
        finally:
            await client.aclose()
            await server.stop()
            await broker.astop()

    async def test_broker_lost_after_start_is_503_at_publish_deadline(
        self, tmp_path: Path
    ) -> None:
        """With the broker gone, a request waits at most the publish timeout, then 503."""
        # A short stop timeout kills the broker like a crash; a short request timeout
        # lets the producer give up on the unacknowledged batch when the gateway stops.
        broker = EmbeddedBroker(memory=True, state_dir=tmp_path / "broker", stop_timeout=0.5)
        await broker.astart()
        server = await start_gateway(
            broker.bootstrap_servers, "", tmp_path, request_timeout_ms=1500, publish_timeout_s=1.0
        )
        client = httpx.AsyncClient(base_url=server.url, timeout=10)
        try:
            await eventually(healthz_is(client, 200), what="gateway connected")
            await broker.astop()
            started = time.monotonic()
            response = await client.post(
                "/alerts/generic", json={"name": "Lost", "service": "search"}
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert "did not acknowledge within 1 s" in response.json()["detail"]
            assert 0.9 <= elapsed < 3.0
            assert response.headers["retry-after"] == "5"
        finally:
            await client.aclose()
            await server.stop()
            await broker.astop()


class TestWorkerStart:
    """A worker of IR_GATEWAY_WORKERS joins the shared port only once it reached the broker."""

    async def test_worker_listens_only_when_connected_or_after_the_bound(
        self, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Live broker: connected before listening. Dead broker: listens after the bound."""
        monkeypatch.setattr(gateway_main, "WORKER_READY_WAIT_S", 1.0)
        settings = ServiceSettings(config_dir=str(tmp_path), log_level="WARNING")
        live = create_runtime(
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                                create_topics=False),
            settings=settings, gateway=GatewaySettings(),
        )
        server = GatewayServer(live, host="127.0.0.1", port=free_port())
        await server.start(reuse_port=True)
        try:
            assert live.components["delivery"].connected
        finally:
            await server.stop()

        dead = create_runtime(
            kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=500),
            settings=settings, gateway=GatewaySettings(),
        )
        server = GatewayServer(dead, host="127.0.0.1", port=free_port())
        started = time.monotonic()
        await server.start(reuse_port=True)
        try:
            assert time.monotonic() - started >= 1.0
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert (await client.get("/healthz")).status_code == 503
        finally:
            await server.stop()
