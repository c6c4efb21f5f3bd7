"""Folds lifecycle events into incident records and (re)writes their reports.

Regeneration is debounced per incident (an alert storm must not rewrite a
report hundreds of times a second) but never skipped: the last event always
leads to a report, and a resolution is written at once. Files are written
atomically (temp file + rename) so a reader never sees half a report. The
`report.published` event id derives from the incident and the last folded
event, so replaying the same events republishes nothing.

Reports leave the product (they are shared with stakeholders), so the whole
document passes secret and PII redaction before it is rendered.

On resolution the incident is appended to the knowledge base
(`<reports_dir>/knowledge-base.jsonl`, seed 002) once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.reporter.report import build_report, render
from services.reporter.timeline import IncidentRecord
from shared.catalog import ServiceCatalog
from shared.clock import Clock
from shared.events import Event, IncidentResolved, ReportPublished, derive_event_id
from shared.redaction import PatternRedactor, Redactor, redact_value

log = logging.getLogger(__name__)

SUFFIX = {"markdown": ".md", "json": ".json", "html": ".html"}


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temp file and rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ReportDesk:
    """Incident records plus the debounced writing of their reports."""

    def __init__(
        self,
        *,
        reports_dir: Path,
        catalog: ServiceCatalog,
        clock: Clock,
        publish: Callable[[Event], Any],
        debounce_s: float = 1.0,
        formats: tuple[str, ...] = ("markdown", "json", "html"),
        producer: str = "reporter",
        redactor: Redactor | None = None,
    ) -> None:
        self.reports_dir = reports_dir
        self.catalog = catalog
        self.clock = clock
        self.publish = publish
        self.debounce_s = debounce_s
        self.formats = formats
        self.producer = producer
        self.redactor: Redactor = redactor or PatternRedactor()
        self.records: dict[str, IncidentRecord] = {}
        self.revisions: dict[str, int] = {}
        self.published_for: dict[str, str] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._kb_written: set[str] = set()
        reports_dir.mkdir(parents=True, exist_ok=True)

    def fold(self, event: Event) -> bool:
        """Add an event to its incident's record; True when it changed the record."""
        if event.incident_id is None:
            return False
        if isinstance(event, ReportPublished):
            self.revisions[event.incident_id] = max(
                self.revisions.get(event.incident_id, 0), event.revision)
            return False
        record = self.records.setdefault(event.incident_id, IncidentRecord(event.incident_id))
        return record.fold(event)

    async def on_event(self, event: Event) -> None:
        """Fold a live event and schedule the incident's report."""
        if not self.fold(event) or event.incident_id is None:
            return
        if isinstance(event, IncidentResolved):
            await self.write(event.incident_id)
            return
        if event.incident_id not in self._pending or self._pending[event.incident_id].done():
            self._pending[event.incident_id] = asyncio.create_task(
                self._debounced(event.incident_id))

    async def _debounced(self, incident_id: str) -> None:
        await asyncio.sleep(self.debounce_s)
        await self.write(incident_id)

    async def flush(self) -> None:
        """Write every report that is waiting for its debounce."""
        pending = [t for t in self._pending.values() if not t.done()]
        for task in pending:
            task.cancel()
        for incident_id in list(self._pending):
            await self.write(incident_id)
        self._pending.clear()

    async def write(self, incident_id: str) -> ReportPublished | None:
        """Render and write the incident's report files; publish report.published."""
        record = self.records.get(incident_id)
        if record is None or record.opened is None:
            return None
        last = record.ordered()[-1].event_id
        # What the report is made of: the latest event alone would miss an event that
        # happened earlier but arrived later (updates are read in the background).
        version = f"{len(record.events)}:{last}"
        if self.published_for.get(incident_id) == version:
            return None
        report = redact_value(self.redactor, build_report(record, self.catalog, self.clock.now()))
        paths: dict[str, str] = {}
        for fmt in self.formats:
            path = self.reports_dir / f"{incident_id}{SUFFIX[fmt]}"
            text = (json.dumps(report, indent=2) + "\n") if fmt == "json" else render(report, fmt)
            write_atomic(path, text)
            paths[fmt] = str(path)
        if record.resolved is not None:
            self._record_knowledge(incident_id, report)
        revision = self.revisions.get(incident_id, 0) + 1
        self.revisions[incident_id] = revision
        self.published_for[incident_id] = version
        metrics = record.metrics()
        first = record.ordered()[0]
        event = ReportPublished(
            event_id=derive_event_id("report.published", incident_id, version),
            producer=self.producer,
            incident_id=incident_id,
            correlation_id=first.correlation_id,
            causation_id=last,
            occurred_at=self.clock.now(),
            revision=revision,
            paths=paths,
            mttd_seconds=metrics["mttd"],
            mtta_seconds=metrics["mtta"],
            mtti_seconds=metrics["mtti"],
            mttr_seconds=metrics["mttr"],
            status=report["summary"]["status"],
        )
        await self.publish(event)
        log.info("report %s revision %s written", incident_id, revision)
        return event

    def _record_knowledge(self, incident_id: str, report: dict[str, Any]) -> None:
        kb = self.reports_dir / "knowledge-base.jsonl"
        if incident_id in self._kb_written:
            return
        if kb.exists() and any(
            json.loads(line).get("incident_id") == incident_id
            for line in kb.read_text().splitlines() if line.strip()
        ):
            self._kb_written.add(incident_id)
            return
        entry = {
            "incident_id": incident_id,
            "title": report["summary"]["title"],
            "severity": report["summary"]["severity"],
            "services": report["summary"]["affected_services"],
            "cause": report["root_cause"]["cause"],
            "hypothesis": report["root_cause"]["hypothesis"],
            "actions": [a["action"] for a in report["actions"]],
            "metrics": {k: report["metrics"][f"{k}_seconds"]
                        for k in ("mttd", "mtta", "mtti", "mttr")},
        }
        with kb.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        self._kb_written.add(incident_id)
