"""Approval service on the real broker behind a real uvicorn: API, page, events, restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from click.testing import Result
from typer.testing import CliRunner

from irctl.app import app as cli
from services.approval.decisions import acknowledgement_event_id, decision_event_id
from services.approval.main import create_runtime
from services.approval.settings import ApprovalSettings
from shared.approval_token import load_public_key, verify_approval
from shared.clock import ManualClock
from shared.domain import IncidentPhase, RiskTier, Severity
from shared.events import (
    ApprovalGranted,
    AuditRecorded,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentResolved,
    IncidentUpdated,
    parse_event,
)
from shared.kafka import DLQ_HEADER_ERROR, EventBus
from shared.policy import ApprovalPolicy
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic
from tests.integration.test_event_bus import read_topic, wait_for
from tests.unit.test_approval_decisions import (
    ACTION,
    APPROVERS_YAML,
    approval_requested,
    incident_opened,
)

pytestmark = pytest.mark.integration

BOB = {"Authorization": "Bearer bob-token"}
ALICE = {"Authorization": "Bearer alice-token"}
CAROL = {"Authorization": "Bearer carol-token"}
VICTOR = {"Authorization": "Bearer victor-token"}


@dataclass
class RunningService:
    """One approval service process-in-a-task: its runtime, HTTP server and URL."""

    runtime: ServiceRuntime
    tasks: list[asyncio.Task[None]]
    server: uvicorn.Server
    server_task: asyncio.Task[None]
    url: str

    async def close(self) -> None:
        """Stop HTTP first (no new decisions), then the bus."""
        self.server.should_exit = True
        await self.server_task
        await stop(self.runtime, self.tasks)


@dataclass
class World:
    """What a test drives: the service, a producer on the same topics, the clock, the key."""

    kafka: KafkaSettings
    producer: EventBus
    clock: ManualClock
    state_dir: Path
    approvers: Path
    service: RunningService | None = None

    @property
    def url(self) -> str:
        assert self.service is not None
        return self.service.url

    async def launch(self) -> RunningService:
        """Start (or restart) the service on the test's topics and state directory."""
        runtime = create_runtime(
            kafka=self.kafka,
            settings=ServiceSettings(config_dir=str(self.approvers.parent),
                                     state_dir=str(self.state_dir), log_format="console"),
            approval=ApprovalSettings(approvers_file=self.approvers),
            clock=self.clock,
        )
        tasks = await start(runtime)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(runtime.http, log_config=None, lifespan="off"))
        server_task = asyncio.create_task(server.serve(sockets=[sock]))
        await wait_for(lambda: server.started, 10, "uvicorn start")
        self.service = RunningService(runtime, tasks, server, server_task,
                                      f"http://127.0.0.1:{port}")
        return self.service

    def topic(self, topic: Topic) -> str:
        """The physical name of a topic under the test's prefix."""
        return self.producer.topic(topic)

    async def events(self, topic: Topic, count: int) -> list[Event]:
        """At least count events of topic, from the beginning (or what arrived before timeout)."""
        records = await read_topic(self.kafka.bootstrap_servers, self.topic(topic), count,
                                   timeout=15)
        return [parse_event(r.value or b"") for r in records]


@pytest.fixture
async def world(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> AsyncIterator[World]:
    """A running approval service on fresh topics, a producer, and a manual clock at now."""
    approvers = tmp_path / "config" / "approvers.yaml"
    approvers.parent.mkdir()
    approvers.write_text(APPROVERS_YAML)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                          session_timeout_ms=3000, fetch_max_wait_ms=50, create_topics=False)
    producer = EventBus(kafka, "tests")
    await producer.start()
    now = datetime.now(UTC).replace(microsecond=0)
    world = World(kafka, producer, ManualClock(now), tmp_path / "state", approvers)
    await world.launch()
    try:
        yield world
    finally:
        if world.service is not None:
            await world.service.close()
        await producer.stop()


async def wait_until_listed(client: httpx.AsyncClient, path: str, key: str, value: str) -> None:
    """Poll a listing until an item with key == value appears (the service consumed it)."""
    found = False

    async def poll() -> None:
        nonlocal found
        while not found:
            response = await client.get(path, headers=ALICE)
            found = any(item[key] == value for item in response.json())
            if not found:
                await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), 20)
    except TimeoutError as exc:
        raise AssertionError(f"{value} never appeared in {path}") from exc


async def test_requested_approval_is_listed_granted_once_and_verifiable(world: World) -> None:
    """approval.requested -> listed; requester and viewer refused (audited); alice's grant
    is on Kafka with a token the executor's verify_approval accepts; a second decision is
    409, also after a restart; an expired request is 410."""
    now = world.clock.now()
    await world.producer.publish(incident_opened("INC-100001", now=now))
    await world.producer.publish(approval_requested("req-1", incident_id="INC-100001", now=now))
    await world.producer.publish(approval_requested(
        "req-short", incident_id="INC-100001", now=now, expires_in=timedelta(minutes=1)))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/approvals", "request_id", "req-1")
        await wait_until_listed(client, "/api/approvals", "request_id", "req-short")

        assert (await client.get("/api/approvals")).status_code == 401
        assert (await client.post("/api/approvals/req-1/approve",
                                  headers={"Authorization": "Bearer nope"})).status_code == 401
        detail = (await client.get("/api/approvals/req-1", headers=VICTOR)).json()
        assert (detail["runbook"], detail["target"], detail["policy_risk"]) == (
            "service_restart", "checkout", "HIGH")
        assert "token" not in detail

        self_approval = await client.post("/api/approvals/req-1/approve", headers=BOB,
                                          json={"comment": "mine"})
        assert self_approval.status_code == 403
        assert "self-approval" in self_approval.json()["detail"]
        viewer = await client.post("/api/approvals/req-1/approve", headers=VICTOR, json={})
        assert viewer.status_code == 403
        assert (await client.post("/api/approvals/nope/approve", headers=ALICE)).status_code \
            == 404

        granted = await client.post("/api/approvals/req-1/approve", headers=ALICE,
                                    json={"comment": "restart is safe"})
        assert granted.status_code == 200, granted.text
        assert granted.json()["event_id"] == decision_event_id("req-1")
        second = await client.post("/api/approvals/req-1/deny", headers=ALICE, json={})
        assert second.status_code == 409
        listed = (await client.get("/api/approvals", params={"status": "pending"},
                                   headers=ALICE)).json()
        assert [a["request_id"] for a in listed] == ["req-short"]

        world.clock.advance(timedelta(minutes=2))
        expired = await client.post("/api/approvals/req-short/approve", headers=ALICE)
        assert expired.status_code == 410

    grants = [e for e in await world.events(Topic.APPROVAL_GRANTED, 1)
              if isinstance(e, ApprovalGranted)]
    assert [g.request_id for g in grants] == ["req-1"]
    claims = verify_approval(
        grants[0].token, load_public_key(world.state_dir / "keys" / "approval.pub"),
        action=ACTION, incident_id="INC-100001", request_id="req-1", requested_by="bob",
        required_roles=ApprovalPolicy.load(world.approvers).roles_allowed("checkout", RiskTier.HIGH),
        now=now, used_token_ids=set(),
    )
    assert (claims.approver, claims.approver_roles) == ("alice", ("sre",))
    audits = [e for e in await world.events(Topic.AUDIT_RECORDED, 4)
              if isinstance(e, AuditRecorded)]
    assert {(a.actor, a.subject["http_status"]) for a in audits} >= {
        ("bob", 403), ("victor", 403), ("alice", 409), ("alice", 410)}
    assert all(a.outcome == "rejected" and a.incident_id == "INC-100001" for a in audits)

    assert world.service is not None
    await world.service.close()
    world.service = None
    await world.launch()
    async with httpx.AsyncClient(base_url=world.url) as client:
        after = (await client.get("/api/approvals/req-1", headers=ALICE)).json()
        assert after["status"] == "granted"
        assert after["decision"]["approver"] == "alice"
        again = await client.post("/api/approvals/req-1/approve", headers=ALICE)
        assert again.status_code == 409


async def test_acknowledge_and_manual_resolve_emit_lifecycle_events(world: World) -> None:
    """carol acknowledges (event id from incident and user), a second ack is 409, resolve
    without summary is 422, with summary emits resolution=manual verified=false."""
    await world.producer.publish(incident_opened("INC-200001", now=world.clock.now()))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/incidents", "incident_id", "INC-200001")
        assert (await client.post("/api/incidents/INC-200001/acknowledge",
                                  headers=VICTOR)).status_code == 403
        ack = await client.post("/api/incidents/INC-200001/acknowledge", headers=CAROL,
                                json={"comment": "looking"})
        assert ack.status_code == 200, ack.text
        assert ack.json()["event_id"] == acknowledgement_event_id("INC-200001", "carol")
        assert (await client.post("/api/incidents/INC-200001/acknowledge",
                                  headers=ALICE)).status_code == 409
        assert (await client.post("/api/incidents/INC-200001/resolve", headers=ALICE,
                                  json={"summary": ""})).status_code == 422
        assert (await client.post("/api/incidents/INC-200001/resolve", headers=ALICE,
                                  json={})).status_code == 422
        resolved = await client.post("/api/incidents/INC-200001/resolve", headers=ALICE,
                                     json={"summary": "rolled back by hand"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["verified"] is False
        open_now = (await client.get("/api/incidents", headers=ALICE)).json()
        assert "INC-200001" not in [i["incident_id"] for i in open_now]
        everything = (await client.get("/api/incidents", params={"status": "all"},
                                       headers=ALICE)).json()
        assert [i["status"] for i in everything if i["incident_id"] == "INC-200001"] == [
            "resolved"]
        whoami = (await client.get("/api/whoami", headers=CAROL)).json()
        assert whoami == {"name": "carol", "roles": ["payments-oncall"]}
        schema = (await client.get("/openapi.json")).json()
        assert "/api/approvals/{request_id}/approve" in schema["paths"]
        assert "HTTPBearer" in schema["components"]["securitySchemes"]

    acks = [e for e in await world.events(Topic.INCIDENT_ACKNOWLEDGED, 1)
            if isinstance(e, IncidentAcknowledged)]
    assert [(a.acknowledged_by, a.via, a.comment) for a in acks] == [("carol", "api", "looking")]
    resolutions = [e for e in await world.events(Topic.INCIDENT_RESOLVED, 1)
                   if isinstance(e, IncidentResolved)]
    assert [(r.resolution, r.verified, r.resolved_by, r.summary) for r in resolutions] == [
        ("manual", False, "alice", "rolled back by hand")]


async def test_live_incident_updates_reach_the_incident_view(world: World) -> None:
    """incident.updated is read on its own background subscription: severity_changed,
    service_added and phase_changed published live after the opening and classification
    still show in the incident's view (the classification alone says SEV3 on checkout)."""
    now = world.clock.now()
    incident_id = "INC-700001"
    await world.producer.publish(incident_opened(incident_id, now=now))
    await world.producer.publish(IncidentClassified(
        producer="triage", incident_id=incident_id, correlation_id="corr-1",
        occurred_at=now + timedelta(seconds=1), severity=Severity.SEV3,
        reasons=("checkout 5xx",), services=("checkout",)))
    async with httpx.AsyncClient(base_url=world.url) as client:

        async def incident() -> dict[str, object]:
            response = await client.get(f"/api/incidents/{incident_id}", headers=ALICE)
            return response.json() if response.status_code == 200 else {}

        async def until(cond: Callable[[dict[str, object]], bool], what: str,
                        timeout: float = 15) -> dict[str, object]:
            deadline = time.monotonic() + timeout
            while True:
                seen = await incident()
                if cond(seen):
                    return seen
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}; last view {seen}")
                await asyncio.sleep(0.1)

        before = await until(lambda i: i.get("severity") == "SEV3", "the classification")
        assert (before["services"], before["phase"]) == (["checkout"], None)

        for change in (
            IncidentUpdated(producer="triage", incident_id=incident_id, correlation_id="corr-1",
                            occurred_at=now + timedelta(seconds=30), change="severity_changed",
                            severity=Severity.SEV1, detail="SEV3 -> SEV1"),
            IncidentUpdated(producer="triage", incident_id=incident_id, correlation_id="corr-1",
                            occurred_at=now + timedelta(seconds=31), change="service_added",
                            services=("checkout", "payments"), new_services=("payments",)),
            IncidentUpdated(producer="triage", incident_id=incident_id, correlation_id="corr-1",
                            occurred_at=now + timedelta(seconds=32), change="phase_changed",
                            phase=IncidentPhase.INVESTIGATION),
        ):
            await world.producer.publish(change)
        after = await until(lambda i: i.get("phase") == "investigation", "the updates")
        assert (after["severity"], after["severity_label"]) == ("SEV1", Severity.SEV1.label)
        assert after["services"] == ["checkout", "payments"]
        assert after["status"] == "open"
        listed = (await client.get("/api/incidents", headers=ALICE)).json()
        assert [(i["severity"], i["services"]) for i in listed
                if i["incident_id"] == incident_id] == [("SEV1", ["checkout", "payments"])]


async def test_unbound_request_is_dead_lettered_and_service_goes_on(world: World) -> None:
    """An approval.requested with no incident goes to the DLQ with the reason; the next
    valid request is still listed."""
    bad = approval_requested("req-unbound", incident_id="INC-X").model_dump(mode="json")
    bad["incident_id"] = None
    producer = AIOKafkaProducer(bootstrap_servers=world.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(world.topic(Topic.APPROVAL_REQUESTED),
                                     json.dumps(bad).encode(), key=b"none")
    finally:
        await producer.stop()
    await world.producer.publish(approval_requested("req-fine", incident_id="INC-500001",
                                                    now=world.clock.now()))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/approvals", "request_id", "req-fine")
        assert (await client.get("/api/approvals/req-unbound", headers=ALICE)).status_code == 404
    records = await read_topic(world.kafka.bootstrap_servers,
                               world.topic(Topic.APPROVAL_REQUESTED) + ".dlq", 1, timeout=15)
    assert len(records) == 1
    headers = {k: v.decode() for k, v in records[0].headers}
    assert "no incident_id" in headers[DLQ_HEADER_ERROR]


async def test_irctl_commands_drive_the_service(world: World) -> None:
    """irctl lists, approves (and shows a refusal's reason), acknowledges and resolves."""
    now = world.clock.now()
    await world.producer.publish(incident_opened("INC-600001", now=now))
    await world.producer.publish(approval_requested("req-cli", incident_id="INC-600001", now=now))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/approvals", "request_id", "req-cli")

    def irctl(*args: str, token: str = "alice-token") -> Result:
        return CliRunner().invoke(cli, [*args, "--url", world.url, "--token", token],
                                  env={"COLUMNS": "220"})

    listed = await asyncio.to_thread(irctl, "approvals")
    assert listed.exit_code == 0, listed.output
    assert "req-cli" in listed.output
    assert "service_restart" in listed.output
    refused = await asyncio.to_thread(irctl, "approve", "req-cli", token="bob-token")
    assert refused.exit_code == 1
    assert "403" in refused.output
    assert "self-approval" in refused.output
    approved = await asyncio.to_thread(irctl, "approve", "req-cli", "--comment", "ok")
    assert approved.exit_code == 0, approved.output
    again = await asyncio.to_thread(irctl, "deny", "req-cli")
    assert again.exit_code == 1
    assert "409" in again.output
    acked = await asyncio.to_thread(irctl, "ack", "INC-600001", token="carol-token")
    assert acked.exit_code == 0, acked.output
    incidents = await asyncio.to_thread(irctl, "incidents")
    assert "INC-600001" in incidents.output
    assert "acknowledged by carol" in incidents.output
    resolved = await asyncio.to_thread(irctl, "resolve", "INC-600001", "--summary", "manual fix")
    assert resolved.exit_code == 0, resolved.output
    assert "unverified" in resolved.output
    everything = await asyncio.to_thread(irctl, "incidents", "--all")
    assert "manual, unverified" in everything.output


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no {name} in page"
    return match.group(1)


async def test_web_page_signs_in_and_approves_with_plain_forms(world: World) -> None:
    """Sign in with a token (HttpOnly SameSite=Strict cookie), see the pending request with
    its rationale, approve through the form; a post without the CSRF token decides nothing."""
    now = world.clock.now()
    await world.producer.publish(incident_opened("INC-300001", now=now))
    await world.producer.publish(approval_requested(
        "req-web", incident_id="INC-300001", now=now, rationale="5xx <b>after</b> deploy"))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/approvals", "request_id", "req-web")
        signin = await client.get("/")
        assert 'name="token"' in signin.text
        assert "frame-ancestors 'none'" in signin.headers["content-security-policy"]
        refused = await client.post("/session", data={
            "token": "wrong", "login_token": _hidden(signin.text, "login_token")})
        assert refused.status_code == 401
        signed_in = await client.post("/session", data={
            "token": "alice-token", "login_token": _hidden(refused.text, "login_token")})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie

        page = await client.get("/")
        assert "req-web" in page.text
        assert "5xx &lt;b&gt;after&lt;/b&gt; deploy" in page.text
        assert "Approve" in page.text
        csrf = _hidden(page.text, "csrf_token")

        forged = await client.post("/approvals/req-web/approve", data={"comment": "x"})
        assert forged.status_code == 403
        still = (await client.get("/api/approvals/req-web", headers=ALICE)).json()
        assert still["status"] == "pending"

        approved = await client.post("/approvals/req-web/approve",
                                     data={"csrf_token": csrf, "comment": "go ahead"})
        assert approved.status_code == 303
        after = await client.get("/")
        assert "Approved req-web" in after.text
        assert 'id="req-req-web"' not in after.text

        anonymous = httpx.AsyncClient(base_url=world.url)
        async with anonymous:
            blind = await anonymous.post("/approvals/req-web/deny", data={"csrf_token": csrf})
            assert blind.status_code == 303
    grants = [e for e in await world.events(Topic.APPROVAL_GRANTED, 1)
              if isinstance(e, ApprovalGranted)]
    assert [(g.request_id, g.approver, g.comment) for g in grants] == [
        ("req-web", "alice", "go ahead")]


def _browser_available() -> str | None:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium"
                                            if os.path.exists("/usr/bin/chromium") else None)
    if chromium is None:
        return "Debian's chromium is not installed (/usr/bin/chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not importable"
    return None


@pytest.mark.skipif(_browser_available() is not None,
                    reason=_browser_available() or "browser available")
async def test_browser_signs_in_and_clicks_approve(world: World) -> None:
    """In a real browser: sign in, click Approve, see the confirmation and the grant."""
    from playwright.async_api import async_playwright

    now = world.clock.now()
    await world.producer.publish(incident_opened("INC-400001", now=now))
    await world.producer.publish(approval_requested("req-ui", incident_id="INC-400001", now=now))
    async with httpx.AsyncClient(base_url=world.url) as client:
        await wait_until_listed(client, "/api/approvals", "request_id", "req-ui")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            # This machine has no network: keep Chromium from dialling out at start.
            args=["--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-quic"])
        try:
            page = await browser.new_page()
            await page.goto(world.url + "/")
            await page.fill("#token", "alice-token")
            # "text=Sign in" would match the intro paragraph first: click the button.
            await page.click("button:has-text('Sign in')")
            await page.fill("#req-req-ui textarea[name=comment]", "clicked in a browser")
            await page.click("#req-req-ui button.approve")
            await page.wait_for_selector("text=Approved req-ui")
            if shot := os.environ.get("IR_TEST_SCREENSHOT"):
                await page.screenshot(path=shot, full_page=True)
        finally:
            with contextlib.suppress(Exception):
                await browser.close()
    grants = [e for e in await world.events(Topic.APPROVAL_GRANTED, 1)
              if isinstance(e, ApprovalGranted)]
    assert [(g.request_id, g.comment) for g in grants] == [("req-ui", "clicked in a browser")]
