"""The escalation service end to end on the real broker, real SMTP and a real webhook receiver.

Each test starts the service in-process (`create_runtime` + `start`) on its own topic
prefix, drives it by producing lifecycle events with a plain Kafka producer (so the
same event id can be produced twice), and observes three things: the mail the SMTP
server received, the calls the webhook receiver got, and the service's output topics,
tailed from the beginning. Time-dependent tests run the real tables under a small
`time_scale`; they wait on conditions (an e-mail, an event), never on bare sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from pydantic import ValidationError

from services.escalation.handlers import OUTPUT_TOPICS
from services.escalation.main import create_runtime
from services.escalation.settings import EscalationSettings
from services.escalation.testing import IncidentScript
from shared.clock import SystemClock
from shared.domain import Severity
from shared.embedded import free_port
from shared.events import (
    EscalationTriggered,
    Event,
    NotificationSent,
    StatusUpdated,
    parse_event,
)
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic, topic_name
from tests.integration.test_escalation_notifiers import HookReceiver, Mailbox

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Wait for condition, failing with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class World:
    """The outside of the service: broker, SMTP server, webhook receiver, output topics."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path, box: Mailbox, smtp_port: int,
                 hooks: HookReceiver) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.tmp = tmp
        self.box = box
        self.smtp_port = smtp_port
        self.hooks = hooks
        self.outputs: list[Event] = []
        self.started_at = datetime.now(UTC)
        self.incident_id = f"INC-{uuid.uuid4().hex[:6].upper()}"
        self.script = IncidentScript(self.incident_id, SystemClock())
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._tail: asyncio.Task[None] | None = None
        self.oncall = self._write_schedule()

    def _write_schedule(self) -> Path:
        """One person per rotation, so who is paged does not depend on today's date."""
        rotation = {"length": "7d", "handoff": "09:00", "timezone": "UTC", "start": "2026-01-05"}
        people = [
            {"name": "alice", "email": "alice@example.com",
             "webhook": f"{self.hooks.url}/people/alice"},
            {"name": "dave", "email": "dave@example.com",
             "webhook": f"{self.hooks.url}/people/dave"},
            *({"name": n, "email": f"{n}@example.com"} for n in (
                "bob", "erin", "grace", "heidi", "olivia", "sre")),
        ]
        schedule = {
            "people": people,
            "teams": {"payments": {
                "oncall": {"participants": ["alice"], **rotation},
                "senior_oncall": {"participants": ["dave"], **rotation},
                "lead": "bob", "manager": "erin",
            }},
            "organisation": {"director": "grace", "vp_engineering": "heidi",
                             "executives": ["olivia"], "fallback": ["sre"]},
            "default_team": "payments",
            "stakeholders": {"webhook": f"{self.hooks.url}/stakeholders"},
        }
        path = self.tmp / "oncall.yaml"
        path.write_text(yaml.safe_dump(schedule))
        return path

    def service(self, time_scale: float) -> ServiceRuntime:
        """A fresh escalation service process (in-process) for this world."""
        return create_runtime(
            kafka=KafkaSettings(bootstrap_servers=self.bootstrap, topic_prefix=self.prefix,
                                session_timeout_ms=3000, fetch_max_wait_ms=50,
                                create_topics=False),
            settings=ServiceSettings(time_scale=time_scale, config_dir=str(self.tmp),
                                     log_level="WARNING"),
            escalation=EscalationSettings(
                oncall_file=str(self.oncall), catalog_file=str(ROOT / "demo/config/catalog.yaml"),
                smtp_host="127.0.0.1", smtp_port=self.smtp_port, smtp_timeout_s=5,
                webhook_timeout_s=2, tick_s=0.05, ui_url="http://approval.test",
            ),
        )

    async def open(self) -> None:
        """Start producing and tailing the output topics."""
        await self.producer.start()
        consumer = AIOKafkaConsumer(
            *(topic_name(t, self.prefix) for t in OUTPUT_TOPICS),
            bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=50,
        )
        await consumer.start()

        async def tail() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=100)
                    for records in batch.values():
                        for record in records:
                            with contextlib.suppress(ValidationError):
                                self.outputs.append(parse_event(record.value or b""))
            finally:
                await consumer.stop()

        self._tail = asyncio.create_task(tail())

    async def close(self) -> None:
        """Stop the producer and the tail."""
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail
        await self.producer.stop()

    async def publish(self, *events: Event) -> None:
        """Produce events as other services would (no dedupe: a repeat is really produced)."""
        for event in events:
            await self.producer.send_and_wait(
                topic_name(event.TOPIC, self.prefix), event.model_dump_json().encode(),
                key=event.partition_key(),
            )

    async def consuming(self, runtime: ServiceRuntime) -> None:
        """Wait until the service has joined its group and consumes (a harmless probe event)."""
        probe = IncidentScript(f"probe-{uuid.uuid4().hex[:6]}", SystemClock()).acknowledged()
        await self.publish(probe)
        topic = topic_name(Topic.INCIDENT_ACKNOWLEDGED, self.prefix)
        await until(lambda: (runtime.bus.registry.get_sample_value(
            "ir_events_handled_total", {"topic": topic, "outcome": "ok"}) or 0) >= 1,
            "the service to consume")

    def handled(self, runtime: ServiceRuntime, topic: Topic) -> float:
        """How many messages of topic the service finished with (handled or duplicate)."""
        name = topic_name(topic, self.prefix)
        return sum(runtime.bus.registry.get_sample_value(
            "ir_events_handled_total", {"topic": name, "outcome": o}) or 0
            for o in ("ok", "duplicate"))

    # --- observations -----------------------------------------------------------------

    def mails_to(self, address: str) -> list[Any]:
        """Messages the SMTP server accepted for address, about this world's incident."""
        return [m for rcpts, m in self.box.messages
                if address in rcpts and self.incident_id in str(m["Subject"])]

    def hook_calls(self, path: str) -> list[dict[str, Any]]:
        """JSON bodies the webhook receiver got on path, about this world's incident."""
        return [body for p, _, body in self.hooks.requests
                if p == path and body.get("incident_id") == self.incident_id]

    def of(self, kind: type[Any]) -> list[Any]:
        """Output events of one type about this world's incident."""
        return [e for e in self.outputs
                if isinstance(e, kind) and e.incident_id == self.incident_id]

    def escalations(self) -> list[tuple[int, str]]:
        """(tier, trigger) of the incident's escalations, in log order."""
        return [(e.tier, e.trigger) for e in self.of(EscalationTriggered)]


@pytest.fixture
async def world(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
                ) -> AsyncIterator[World]:
    """Broker topics, SMTP server, webhook receiver and an output tail for one test."""
    box = Mailbox()
    smtp_port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    hooks = HookReceiver()
    hooks.thread.start()
    w = World(kafka_bootstrap, topic_prefix, tmp_path, box, smtp_port, hooks)
    await w.open()
    try:
        yield w
    finally:
        await w.close()
        hooks.server.shutdown()
        hooks.server.server_close()
        controller.stop()


@contextlib.asynccontextmanager
async def running(world: World, time_scale: float) -> AsyncIterator[ServiceRuntime]:
    """The service, started and consuming; stopped on exit."""
    runtime = world.service(time_scale)
    tasks = await start(runtime)
    world.started_at = datetime.now(UTC)
    try:
        await world.consuming(runtime)
        yield runtime
    finally:
        await stop(runtime, tasks)


class TestPaging:
    """First page, and no double paging on redelivery."""

    async def test_first_page_once_per_channel_and_never_again_on_redelivery(
        self, world: World
    ) -> None:
        """opened+classified: one e-mail and one webhook call to the on-call person, one
        notification.sent each; the same incident.opened produced again pages nobody."""
        async with running(world, time_scale=1.0) as runtime:
            opened = world.script.opened(("payments",))
            await world.publish(opened, world.script.classified(
                Severity.SEV1, ("payments is tier 1", "error rate 35%")))
            await until(lambda: len(world.of(NotificationSent)) >= 2, "two notification.sent")
            assert len(world.mails_to("alice@example.com")) == 1
            assert len(world.hook_calls("/people/alice")) == 1

            await world.publish(opened)  # same event id, really produced again
            await until(lambda: world.handled(runtime, Topic.INCIDENT_OPENED) >= 2,
                        "the repeated incident.opened to be consumed")

        assert len(world.mails_to("alice@example.com")) == 1
        assert len(world.hook_calls("/people/alice")) == 1
        sent = world.of(NotificationSent)
        assert sorted((n.channel, n.recipient, n.tier, n.delivered) for n in sent) == [
            ("email", "alice", 1, True), ("webhook", "alice", 1, True)]
        assert world.escalations() == [(1, "initial")]
        mail = world.mails_to("alice@example.com")[0]
        key = next(n.idempotency_key for n in sent if n.channel == "email")
        assert mail["Message-ID"] == f"<{key}@localhost>"
        body = mail.get_body(("plain",)).get_content()
        for fact in ("SEV1 (High)", "payments is tier 1; error rate 35%", "Services: payments",
                     "http://approval.test/#" + world.incident_id):
            assert fact in body
        [(_, headers, payload)] = [r for r in world.hooks.requests if r[0] == "/people/alice"]
        webhook_key = next(n.idempotency_key for n in sent if n.channel == "webhook")
        assert headers["Idempotency-Key"] == webhook_key
        assert payload["severity"] == "SEV1"


class TestEscalation:
    """Deadlines under a small time scale: escalation without ack, none after ack."""

    async def test_no_ack_escalates_to_tier_two_and_pages_its_people(self, world: World) -> None:
        """SEV0 at time scale 0.002 (5 min window = 0.6 s): tier 2 by ack_timeout, and the
        senior on-call and the team lead are paged, once each."""
        async with running(world, time_scale=0.002):
            await world.publish(world.script.opened(("payments",)),
                                world.script.classified(Severity.SEV0))
            await until(lambda: world.mails_to("dave@example.com")
                        and world.mails_to("bob@example.com"), "tier-2 pages")
            await until(lambda: any(e.tier == 2 for e in world.of(EscalationTriggered)),
                        "escalation.triggered tier 2 in the log")
        tier2 = next(e for e in world.of(EscalationTriggered) if e.tier == 2)
        assert (tier2.trigger, tier2.previous_tier) == ("ack_timeout", 1)
        assert tier2.targets == ("dave", "bob")
        assert len(world.mails_to("dave@example.com")) == 1
        assert len(world.mails_to("bob@example.com")) == 1
        assert len(world.hook_calls("/people/dave")) == 1
        assert len(world.mails_to("alice@example.com")) == 1

    async def test_ack_within_window_prevents_tier_two(self, world: World) -> None:
        """Acknowledged right after the first page: when the second status update arrives
        (30 min scaled: past both the 10-min window and the 15-min ladder), there is still
        no tier-2 escalation."""
        async with running(world, time_scale=0.003):  # window 1.8 s, update every 2.7 s
            await world.publish(world.script.opened(("payments",)),
                                world.script.classified(Severity.SEV1))
            await until(lambda: world.mails_to("alice@example.com"), "the first page")
            await world.publish(world.script.acknowledged("alice"))
            await until(lambda: any(u.sequence >= 2 for u in world.of(StatusUpdated)),
                        "the second status update (30 min scaled)")
        assert world.escalations() == [(1, "initial")]
        assert not world.mails_to("dave@example.com")
        assert not world.mails_to("bob@example.com")
        updates = world.of(StatusUpdated)
        assert "acknowledged, escalation timers stopped" in updates[-1].text
        posts = world.hook_calls("/stakeholders")
        assert [p["kind"] for p in posts][:2] == ["status_update", "status_update"]

    async def test_restart_mid_incident_no_duplicate_pages_and_deadline_fires(
        self, world: World
    ) -> None:
        """Service A pages tier 1 and stops; service B rebuilds from the log: it pages nobody
        again and still escalates to tier 2 when the deadline set under A expires."""
        async with running(world, time_scale=0.005):  # SEV1 window: 3 s
            await world.publish(world.script.opened(("payments",)),
                                world.script.classified(Severity.SEV1))
            await until(lambda: len(world.of(NotificationSent)) >= 2, "tier-1 pages recorded")
            await until(lambda: world.escalations() == [(1, "initial")], "tier 1 in the log")

        async with running(world, time_scale=0.005):
            await until(lambda: world.mails_to("dave@example.com"), "tier-2 page after restart")
            await until(lambda: len(world.of(EscalationTriggered)) >= 2, "tier 2 in the log")

        tier1, tier2 = world.of(EscalationTriggered)[:2]
        assert (tier2.tier, tier2.trigger) == (2, "ack_timeout")
        # The deadline is the one set under A (tier 1 + 3 s): not earlier, and not restarted
        # from B's start (B would then escalate 3 s after its start, past the tolerance).
        window = timedelta(seconds=3)
        assert tier2.occurred_at >= tier1.occurred_at + window
        assert tier2.occurred_at <= max(tier1.occurred_at + window, world.started_at) + \
            timedelta(seconds=1.5)
        assert len(world.mails_to("alice@example.com")) == 1
        assert len(world.hook_calls("/people/alice")) == 1
        alice = [n for n in world.of(NotificationSent) if n.recipient == "alice"]
        assert sorted(n.channel for n in alice) == ["email", "webhook"]
        assert len(world.mails_to("bob@example.com")) == 1


class TestUpdates:
    """incident.updated arrives on its own, background subscription: it still escalates."""

    async def test_new_service_then_worse_severity_escalate_after_the_first_page(
        self, world: World
    ) -> None:
        """At time scale 0.02 (settle window 2.4 s, tier 2 by the ladder 18 s after open),
        an incident opened 3 s ago (past the settle window) as SEV3 is paged; a
        `service_added` update then escalates to tier 2 (new_services) and a
        `severity_changed` to SEV1 to tier 3 (severity_increase), each within a few seconds
        although updates are fetched in the background."""
        opened_at = datetime.now(UTC) - timedelta(seconds=3)
        async with running(world, time_scale=0.02) as runtime:
            await world.publish(
                world.script.opened(("payments",), occurred_at=opened_at),
                world.script.classified(Severity.SEV3, occurred_at=opened_at))
            await until(lambda: world.mails_to("alice@example.com"), "the first page")
            # The page can reach the mailbox before the tier-1 event reaches our reader.
            await until(lambda: world.escalations() == [(1, "initial")], "tier 1 in the log")

            joined = world.script.updated("service_added", services=("payments", "checkout"),
                                          new_services=("checkout",))
            await world.publish(joined)
            await until(lambda: len(world.escalations()) >= 2, "tier 2 after service_added",
                        timeout=10)
            await until(lambda: world.mails_to("dave@example.com")
                        and world.mails_to("bob@example.com"), "tier-2 pages", timeout=10)

            worse = world.script.updated("severity_changed", severity=Severity.SEV1,
                                         services=("payments", "checkout"))
            await world.publish(worse)
            await until(lambda: len(world.escalations()) >= 3, "tier 3 after severity_changed",
                        timeout=10)
            await until(lambda: world.mails_to("erin@example.com")
                        and world.mails_to("grace@example.com"), "tier-3 pages", timeout=10)
            # The bus counts a message handled after its handler returns, which can be
            # after the handler's pages reached the mailbox.
            await until(lambda: world.handled(runtime, Topic.INCIDENT_UPDATED) >= 2,
                        "both updates counted as handled")

        tier2, tier3 = world.of(EscalationTriggered)[1:3]
        assert (tier2.tier, tier2.trigger, tier2.causation_id) == (2, "new_services", joined.event_id)
        assert "checkout" in tier2.reason
        assert tier2.targets == ("dave", "bob")
        assert (tier3.tier, tier3.trigger, tier3.causation_id) == (
            3, "severity_increase", worse.event_id)
        assert tier3.targets == ("erin", "grace")
        assert world.escalations() == [(1, "initial"), (2, "new_services"), (3, "severity_increase")]
        assert len(world.mails_to("alice@example.com")) == 1
        assert "[SEV1]" in str(world.mails_to("erin@example.com")[0]["Subject"])
