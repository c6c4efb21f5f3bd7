"""Reporter on the real broker: lifecycle events in, report files and report.published out."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from services.reporter.main import create_runtime
from services.reporter.settings import ReporterSettings
from shared.events import ReportPublished, parse_event
from shared.kafka import EventBus
from shared.runtime import start, stop
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic
from tests.integration.test_event_bus import read_topic, wait_for
from tests.unit.test_reporter import lifecycle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def test_resolved_incident_gets_a_full_report(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Every section is written; report.published carries MTTx equal to the timestamps."""
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
        events = lifecycle()
        for event in events:
            await producer.publish(event)
        report_file = tmp_path / "INC-ABC123.json"
        await wait_for(lambda: report_file.exists()
                       and json.loads(report_file.read_text())["summary"]["status"] == "resolved",
                       30, "resolved report")
        md = (tmp_path / "INC-ABC123.md").read_text()
        assert "## FOLLOW-UP ACTION ITEMS" in md
        assert (tmp_path / "INC-ABC123.html").exists()
        kb = (tmp_path / "knowledge-base.jsonl").read_text().splitlines()
        assert [json.loads(line)["incident_id"] for line in kb] == ["INC-ABC123"]
        records = await read_topic(kafka_bootstrap, producer.topic(Topic.REPORT_PUBLISHED), 1)
        published = [parse_event(r.value) for r in records]
        final = [p for p in published if isinstance(p, ReportPublished) and p.status == "resolved"]
        assert final, published
        opened, resolved = events[0], events[-1]
        assert final[-1].mttr_seconds == (resolved.occurred_at - opened.alert_received_at
                                          ).total_seconds()
        assert final[-1].mttd_seconds == timedelta(seconds=90).total_seconds()
    finally:
        await producer.stop()
        await stop(runtime, tasks)
