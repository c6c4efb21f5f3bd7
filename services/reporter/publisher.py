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
(`<reports_dir>/knowledge-base.jsonl`, seed 002) once; the ids already in the
file are read once, not per incident.

A restart replays the log: a report whose `report.published` is already in the
log and whose files are all there is not written again (`catch_up`). Memory is
bounded: an incident resolved more than `retention` ago whose report is up to
date is forgotten, and its later events are ignored (`prune`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from services.reporter.report import build_report, render
from services.reporter.timeline import IncidentRecord
from shared.catalog import ServiceCatalog
from shared.clock import Clock
from shared.events import Event, IncidentResolved, ReportPublished, derive_event_id
from shared.kafka import BoundedSet
from shared.redaction import PatternRedactor, Redactor, redact_value

log = logging.getLogger(__name__)

SUFFIX = {"markdown": ".md", "json": ".json", "html": ".html"}
DEFAULT_RETENTION = timedelta(hours=24)
PRUNE_EVERY = timedelta(minutes=1)
MAX_REMEMBERED_REPORTS = 200_000
MAX_FORGOTTEN_INCIDENTS = 100_000
KNOWLEDGE_BASE = "knowledge-base.jsonl"


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
        retention: timedelta = DEFAULT_RETENTION,
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
        self.retention = retention
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._kb_ids: set[str] | None = None  # read from the file at the first resolution
        self._reported = BoundedSet(MAX_REMEMBERED_REPORTS)  # report.published ids in the log
        self._forgotten = BoundedSet(MAX_FORGOTTEN_INCIDENTS)
        self._pruned_at = clock.now()
        reports_dir.mkdir(parents=True, exist_ok=True)

    def fold(self, event: Event) -> bool:
        """Add an event to its incident's record; True when it changed the record."""
        if event.incident_id is None or event.incident_id in self._forgotten:
            return False
        if isinstance(event, ReportPublished):
            self.revisions[event.incident_id] = max(
                self.revisions.get(event.incident_id, 0), event.revision)
            self._reported.add(event.event_id)
            return False
        record = self.records.setdefault(event.incident_id, IncidentRecord(event.incident_id))
        return record.fold(event)

    async def on_event(self, event: Event) -> None:
        """Fold a live event and schedule the incident's report."""
        if self.clock.now() - self._pruned_at >= PRUNE_EVERY:
            self.prune()
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

    async def catch_up(self) -> None:
        """After the start-up replay: write what the log has no report of yet, then prune."""
        for incident_id in list(self.records):
            await self.write(incident_id)
        self.prune()

    def prune(self) -> int:
        """Forget incidents resolved more than `retention` ago whose report is up to date.

        Their events stay in the log and their reports on disk; without this the
        desk would hold every event of every incident it ever saw.
        """
        self._pruned_at = now = self.clock.now()
        expired = [i for i, record in self.records.items() if self._expired(i, record, now)]
        for incident_id in expired:
            del self.records[incident_id]
            self.revisions.pop(incident_id, None)
            self.published_for.pop(incident_id, None)
            self._pending.pop(incident_id, None)
            self._forgotten.add(incident_id)
        if expired:
            log.info("forgot %d incidents resolved more than %s ago", len(expired),
                     self.retention)
        return len(expired)

    def _expired(self, incident_id: str, record: IncidentRecord, now: datetime) -> bool:
        if incident_id in self._pending and not self._pending[incident_id].done():
            return False
        if record.opened is None:  # no report without an opening: forget it once it is old
            return now - record.ordered()[-1].occurred_at > self.retention
        resolved = record.resolved
        return (resolved is not None and now - resolved.occurred_at > self.retention
                and self.published_for.get(incident_id) == _version(record))

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
        version = _version(record)
        if self.published_for.get(incident_id) == version:
            return None
        event_id = derive_event_id("report.published", incident_id, version)
        if event_id in self._reported and all(
            (self.reports_dir / f"{incident_id}{SUFFIX[fmt]}").exists() for fmt in self.formats
        ):  # written before a restart: the log has it, and so has the disk
            self.published_for[incident_id] = version
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
        ordered = record.ordered()
        event = ReportPublished(
            event_id=event_id,
            producer=self.producer,
            incident_id=incident_id,
            correlation_id=ordered[0].correlation_id,
            causation_id=ordered[-1].event_id,
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
        self._reported.add(event_id)
        log.info("report %s revision %s written", incident_id, revision)
        return event

    def _record_knowledge(self, incident_id: str, report: dict[str, Any]) -> None:
        kb = self.reports_dir / KNOWLEDGE_BASE
        if self._kb_ids is None:
            self._kb_ids = _knowledge_ids(kb)
        if incident_id in self._kb_ids:
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
        with kb.open("ab+") as fh:  # appends go to the end whatever was read
            if fh.seek(0, os.SEEK_END) > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut short by a crash: start a new one
                    fh.write(b"\n")
            fh.write(json.dumps(entry).encode() + b"\n")
        self._kb_ids.add(incident_id)


def _version(record: IncidentRecord) -> str:
    """What a report is made of: the number of events and the latest one (the latest
    alone would miss an event that happened earlier but arrived later: updates are
    read in the background)."""
    return f"{len(record.events)}:{record.ordered()[-1].event_id}"


def _knowledge_ids(path: Path) -> set[str]:
    """Incident ids already in the knowledge base file (empty when there is none).

    A line that does not parse (a write cut short by a crash) is skipped with a
    warning: its incident is appended again, whole.
    """
    if not path.exists():
        return set()
    ids: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["incident_id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is not a knowledge-base entry; ignored", path, number)
    return ids
