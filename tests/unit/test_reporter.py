"""Reporter: timeline folding, MTTx from event timestamps, report sections."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from services.reporter.publisher import ReportDesk
from services.reporter.report import SECTIONS, build_report, render
from services.reporter.timeline import IncidentRecord
from shared.catalog import ServiceCatalog
from shared.clock import ManualClock
from shared.events import (
    Event,
    Evidence,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    InvestigationCompleted,
    RunbookCompleted,
    RunbookStarted,
)
from tests.samples import ACTION, T0, sample_event

pytestmark = pytest.mark.unit
CATALOG = ServiceCatalog.load(Path(__file__).resolve().parents[2] / "demo/config/catalog.yaml")


def lifecycle() -> list[Event]:
    """A full incident: anomaly 90 s before the alert, ack at +4 min, cause at +2 min."""
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    return [
        sample_event(IncidentOpened, occurred_at=at(1), first_anomaly_at=at(-90),
                     alert_received_at=T0),
        sample_event(IncidentClassified, occurred_at=at(2)),
        sample_event(InvestigationCompleted, occurred_at=at(120), root_cause_identified=True,
                     cause="bad_deploy", evidence=(Evidence(
                         source="deploys", kind="deploy_before_anomaly",
                         summary="payments v2.4.1 deployed 2 min before", data={"version": "v2.4.1"}),)),
        sample_event(IncidentAcknowledged, occurred_at=at(240)),
        sample_event(RunbookStarted, occurred_at=at(300), approved_by="alice"),
        sample_event(RunbookCompleted, occurred_at=at(400), action=ACTION),
        sample_event(IncidentResolved, occurred_at=at(600)),
    ]


class TestMetrics:
    def test_mttx_come_from_event_timestamps(self) -> None:
        """MTTD/MTTA/MTTI/MTTR are differences of the events' own timestamps."""
        record = IncidentRecord("INC-ABC123")
        for event in lifecycle():
            record.fold(event)
        assert record.metrics() == {"mttd": 90.0, "mtta": 240.0, "mtti": 120.0, "mttr": 600.0}

    def test_open_incident_has_no_resolution_metrics(self) -> None:
        """Moments that have not happened are None, not zero."""
        record = IncidentRecord("INC-ABC123")
        for event in lifecycle()[:2]:
            record.fold(event)
        assert record.metrics()["mttr"] is None
        assert record.metrics()["mtta"] is None

    def test_folding_is_idempotent(self) -> None:
        """A redelivered event changes nothing."""
        record = IncidentRecord("INC-ABC123")
        events = lifecycle()
        assert all(record.fold(e) for e in events)
        assert not any(record.fold(e) for e in events)
        assert len(record.events) == len(events)


class TestReport:
    def test_sections_in_the_seed_order(self) -> None:
        """Markdown has every section of DOMAIN.md, in order, with the computed metrics."""
        record = IncidentRecord("INC-ABC123")
        for event in lifecycle():
            record.fold(event)
        report = build_report(record, CATALOG, T0 + timedelta(hours=1))
        text = render(report, "markdown")
        positions = [text.index(f"## {name}") for name in SECTIONS]
        assert positions == sorted(positions)
        assert "| MTTD | 1m 30s |" in text
        assert "| MTTR | 10m 00s |" in text
        assert report["summary"]["status"] == "resolved"
        assert report["root_cause"]["cause"] == "bad_deploy"
        assert any("v2.4.1" in i["item"] for i in report["remediation_items"])
        assert all(i["owner"] and i["due"] for i in report["remediation_items"])

    async def test_reports_are_redacted(self, tmp_path: Path) -> None:
        """A secret or a customer's e-mail in alert text never reaches the report files."""
        published: list[object] = []

        async def publish(event: object) -> None:
            published.append(event)

        desk = ReportDesk(reports_dir=tmp_path, catalog=CATALOG, clock=ManualClock(T0),
                          publish=publish)
        desk.fold(sample_event(IncidentOpened, alert_received_at=T0,
                               title="login fails for jane.doe@example.com password=hunter2"))
        await desk.write("INC-ABC123")
        for suffix in (".md", ".json", ".html"):
            text = (tmp_path / f"INC-ABC123{suffix}").read_text()
            assert "jane.doe@example.com" not in text
            assert "hunter2" not in text
        assert published

    def test_html_is_escaped(self) -> None:
        """Alert text cannot inject markup into the HTML report."""
        record = IncidentRecord("INC-ABC123")
        record.fold(sample_event(IncidentOpened, title="<script>alert(1)</script>",
                                 alert_received_at=T0))
        html = render(build_report(record, CATALOG, T0), "html")
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;" in html


class TestDesk:
    """The desk after a restart and over time: no needless rewrites, bounded memory."""

    @staticmethod
    def desk(tmp_path: Path, clock: ManualClock, published: list[Event],
             retention: timedelta = timedelta(hours=1)) -> ReportDesk:
        async def publish(event: Event) -> None:
            published.append(event)

        return ReportDesk(reports_dir=tmp_path, catalog=CATALOG, clock=clock, publish=publish,
                          retention=retention)

    async def replayed(self, tmp_path: Path, clock: ManualClock, published: list[Event],
                       events: list[Event]) -> ReportDesk:
        """A desk that replayed events (as at start-up) and caught up."""
        desk = self.desk(tmp_path, clock, published)
        for event in events:
            desk.fold(event)
        await desk.catch_up()
        return desk

    async def test_restart_rewrites_only_what_the_log_or_disk_lacks(self, tmp_path: Path) -> None:
        """The replay of events and their report.published writes nothing again; a report
        file that went missing is written again; the knowledge base keeps one entry."""
        clock = ManualClock(T0 + timedelta(minutes=20))
        published: list[Event] = []
        events = lifecycle()
        await self.replayed(tmp_path, clock, published, events)
        assert len(published) == 1
        await self.replayed(tmp_path, clock, published, [*events, *published])
        assert len(published) == 1
        (tmp_path / "INC-ABC123.html").unlink()
        await self.replayed(tmp_path, clock, published, [*events, *published])
        assert len(published) == 2
        assert (tmp_path / "INC-ABC123.html").exists()
        kb = (tmp_path / "knowledge-base.jsonl").read_text().splitlines()
        assert len(kb) == 1

    async def test_resolved_incident_is_forgotten_after_retention(self, tmp_path: Path) -> None:
        """Kept while the retention period runs, then dropped; a late event of it is ignored."""
        clock = ManualClock(T0 + timedelta(minutes=20))
        published: list[Event] = []
        desk = await self.replayed(tmp_path, clock, published, lifecycle())
        clock.advance(timedelta(minutes=30))
        assert desk.prune() == 0
        clock.advance(timedelta(minutes=30))
        assert desk.prune() == 1
        assert "INC-ABC123" not in desk.records
        late = sample_event(IncidentAcknowledged, occurred_at=T0 + timedelta(minutes=5))
        await desk.on_event(late)
        assert "INC-ABC123" not in desk.records
        assert len(published) == 1

    async def test_open_or_unwritten_incidents_are_kept(self, tmp_path: Path) -> None:
        """An open incident, and a resolved one whose latest event is not in its report yet,
        outlive the retention period; an incident never opened is forgotten once old."""
        clock = ManualClock(T0 + timedelta(minutes=20))
        published: list[Event] = []
        desk = await self.replayed(tmp_path, clock, published, lifecycle())
        desk.fold(sample_event(IncidentAcknowledged, occurred_at=T0 + timedelta(minutes=5)))
        for event in lifecycle()[:2]:
            desk.fold(event.model_copy(update={"incident_id": "INC-OPEN"}))
        desk.fold(sample_event(RunbookStarted, incident_id="INC-ORPHAN"))
        clock.advance(timedelta(days=2))
        assert desk.prune() == 1
        assert set(desk.records) == {"INC-ABC123", "INC-OPEN"}

    async def test_a_torn_knowledge_base_line_is_skipped(self, tmp_path: Path) -> None:
        """A line cut short by a crash does not stop the knowledge base: the incident it may
        have held is appended whole."""
        (tmp_path / "knowledge-base.jsonl").write_text('{"incident_id": "INC-OLD"}\n{"incid')
        await self.replayed(tmp_path, ManualClock(T0 + timedelta(minutes=20)), [], lifecycle())
        lines = (tmp_path / "knowledge-base.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["incident_id"] == "INC-ABC123"
