"""Reporter on the real broker: lifecycle events in, report files and report.published out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.reporter.main import create_runtime
from services.reporter.settings import ReporterSettings
from shared.events import (
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    ReportPublished,
    parse_event,
)
from shared.kafka import EventBus
from shared.runtime import start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic
from tests.integration.test_event_bus import read_topic, wait_for
from tests.samples import T0, sample_event
from tests.unit.test_reporter import lifecycle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Reporter:
    """A running reporter, a producer on its topics and the directory its reports go to."""

    kafka: KafkaSettings
    producer: EventBus
    reports: Path

    def report(self, incident_id: str) -> dict[str, Any] | None:
        """The incident's JSON report as last written, or None before the first one."""
        path = self.reports / f"{incident_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    async def until(self, incident_id: str, cond: Callable[[dict[str, Any]], bool], what: str,
                    timeout: float = 15) -> dict[str, Any]:
        """The report once cond holds for it (files are replaced atomically)."""
        await wait_for(lambda: (r := self.report(incident_id)) is not None and cond(r),
                       timeout, what)
        report = self.report(incident_id)
        assert report is not None
        return report

    async def published(self, incident_id: str, count: int) -> list[ReportPublished]:
        """The incident's report.published events (at least count, or what came in time)."""
        records = await read_topic(self.kafka.bootstrap_servers,
                                   self.producer.topic(Topic.REPORT_PUBLISHED), count, timeout=15)
        events = [parse_event(r.value or b"") for r in records]
        return [e for e in events if isinstance(e, ReportPublished)
                and e.incident_id == incident_id]


@pytest.fixture
async def reporter(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
                   ) -> AsyncIterator[Reporter]:
    """A reporter (0.2 s debounce, default background fetch settings) on fresh topics."""
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                          session_timeout_ms=3000)
    runtime = create_runtime(
        kafka=kafka,
        settings=ServiceSettings(config_dir=str(ROOT / "demo/config")),
        reporter=ReporterSettings(reports_dir=str(tmp_path), debounce_s=0.2),
    )
    tasks = await start(runtime)
    producer = EventBus(kafka, "tests")
    await producer.start()
    try:
        yield Reporter(kafka, producer, tmp_path)
    finally:
        await producer.stop()
        await stop(runtime, tasks)


async def test_resolved_incident_gets_a_full_report(reporter: Reporter) -> None:
    """Every section is written; report.published carries MTTx equal to the timestamps."""
    events = lifecycle()
    for event in events:
        await reporter.producer.publish(event)
    await reporter.until("INC-ABC123", lambda r: r["summary"]["status"] == "resolved",
                         "resolved report", timeout=30)
    reports = reporter.reports
    md = (reports / "INC-ABC123.md").read_text()
    assert "## FOLLOW-UP ACTION ITEMS" in md
    assert (reports / "INC-ABC123.html").exists()
    kb = (reports / "knowledge-base.jsonl").read_text().splitlines()
    assert [json.loads(line)["incident_id"] for line in kb] == ["INC-ABC123"]
    published = await reporter.published("INC-ABC123", 1)
    final = [p for p in published if p.status == "resolved"]
    assert final, published
    opened, resolved = events[0], events[-1]
    assert final[-1].mttr_seconds == (resolved.occurred_at - opened.alert_received_at
                                      ).total_seconds()
    assert final[-1].mttd_seconds == timedelta(seconds=90).total_seconds()


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _opened_and_classified(incident_id: str) -> list[Event]:
    """incident.opened (checkout) and incident.classified (SEV2, checkout) of incident_id."""
    return [
        sample_event(IncidentOpened, incident_id=incident_id, occurred_at=_at(1),
                     alert_received_at=T0, title="Checkout 5xx", services=("checkout",)),
        sample_event(IncidentClassified, incident_id=incident_id, occurred_at=_at(2),
                     severity="SEV2", services=("checkout",)),
    ]


def _service_added(incident_id: str, service: str, seconds: float) -> IncidentUpdated:
    event = sample_event(IncidentUpdated, incident_id=incident_id, occurred_at=_at(seconds),
                         change="service_added", services=("checkout", service),
                         new_services=(service,), detail=f"{service} joined")
    assert isinstance(event, IncidentUpdated)
    return event


def _updates_in(report: dict[str, Any]) -> list[str]:
    return [e["text"] for e in report["timeline"] if e["kind"] == "incident.updated"]


async def test_update_after_the_resolution_rewrites_the_report(reporter: Reporter) -> None:
    """incident.updated is read in the background: one published before the resolution is in
    the resolved report, and one published after it (a later moment) rewrites the report with
    the new service and the update in the timeline, as a new revision."""
    incident_id = "INC-UPD001"
    for event in _opened_and_classified(incident_id):
        await reporter.producer.publish(event)
    early = _service_added(incident_id, "payments", 60)
    await reporter.producer.publish(early)
    await reporter.until(incident_id, lambda r: "payments" in r["summary"]["affected_services"],
                         "the early update in the open report")
    resolved = sample_event(IncidentResolved, incident_id=incident_id, occurred_at=_at(600))
    await reporter.producer.publish(resolved)
    report = await reporter.until(incident_id, lambda r: r["summary"]["status"] == "resolved",
                                  "the resolved report")
    assert report["summary"]["affected_services"] == ["checkout", "payments"]
    assert _updates_in(report) == ["Updated (service added) payments joined"]

    late = _service_added(incident_id, "storefront", 700)
    await reporter.producer.publish(late)
    report = await reporter.until(
        incident_id, lambda r: "storefront" in r["summary"]["affected_services"],
        "the report rewritten with the late update")
    assert report["summary"]["status"] == "resolved"
    assert report["summary"]["affected_services"] == ["checkout", "payments", "storefront"]
    assert _updates_in(report) == ["Updated (service added) payments joined",
                                   "Updated (service added) storefront joined"]
    assert "storefront joined" in (reporter.reports / f"{incident_id}.md").read_text()
    published = await reporter.published(incident_id, 3)
    final = [p for p in published if p.causation_id == late.event_id]
    assert len(final) == 1, published
    assert final[0].status == "resolved"
    assert final[0].revision == max(p.revision for p in published)
    assert final[0].mttr_seconds == 600.0


async def test_update_read_after_the_resolution_it_preceded_rewrites_the_report(
    reporter: Reporter,
) -> None:
    """An update that happened before the resolution but arrives after the resolved report
    was written (the background subscription is up to 500 ms behind the prompt one) is
    still in the report."""
    incident_id = "INC-UPD002"
    for event in _opened_and_classified(incident_id):
        await reporter.producer.publish(event)
    await reporter.producer.publish(
        sample_event(IncidentResolved, incident_id=incident_id, occurred_at=_at(600)))
    report = await reporter.until(incident_id, lambda r: r["summary"]["status"] == "resolved",
                                  "the resolved report")
    assert report["summary"]["affected_services"] == ["checkout"]
    await reporter.producer.publish(_service_added(incident_id, "payments", 60))
    report = await reporter.until(
        incident_id, lambda r: "payments" in r["summary"]["affected_services"],
        "the report rewritten with the update that preceded the resolution")
    assert _updates_in(report) == ["Updated (service added) payments joined"]
