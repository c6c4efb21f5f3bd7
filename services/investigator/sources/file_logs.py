"""Logs from local files: the tail of one file per service.

For hosts without a log API. The path is a template (`/var/log/{service}.log`).
Only the last `tail_bytes` of a file are read, so a huge log costs a bounded
read. Lines are JSON objects (`ts`, `level`, `msg`, `version`) or plain text
`<ISO timestamp> <LEVEL> <message>`; anything else is skipped. A missing file is
noted, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from services.investigator.evidence import (
    EvidenceBundle,
    EvidenceQuery,
    LogRecord,
    ServiceLogs,
    SourceNote,
)
from services.investigator.sources._http import SourceError, fill

_PLAIN = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d[T ][\d:.]+(?:Z|[+-]\d\d:?\d\d)?)\s+\[?(?P<level>[A-Za-z]+)\]?\s+"
    r"(?P<msg>.*)$"
)


def parse_line(line: str, service: str) -> LogRecord | None:
    """One log line as a record, or None when it is neither JSON nor `ts LEVEL msg`."""
    text = line.strip()
    fields: dict[str, object]
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        fields = {"ts": raw.get("ts", raw.get("timestamp")), "level": raw.get("level", "INFO"),
                  "msg": raw.get("msg", raw.get("message", "")), "version": raw.get("version")}
    else:
        match = _PLAIN.match(text)
        if match is None:
            return None
        fields = match.groupdict()
    try:
        record = LogRecord.model_validate({**fields, "service": service,
                                           "level": str(fields["level"]).upper()})
    except ValidationError:
        return None
    return record


def tail(path: Path, tail_bytes: int) -> list[str]:
    """The complete lines within the last tail_bytes of path."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - tail_bytes)
        fh.seek(start)
        data = fh.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if start > 0 and lines else lines


class FileLogSource:
    """The tail of a log file per service."""

    def __init__(
        self,
        path: str,
        tail_bytes: int = 2 * 1024 * 1024,
        error_limit: int = 100,
        sample_limit: int = 300,
    ) -> None:
        self._template = path
        self._tail_bytes = tail_bytes
        self._error_limit = error_limit
        self._sample_limit = sample_limit

    @property
    def name(self) -> str:
        """Source name in evidence."""
        return "logs:file"

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """Error lines and a level sample since the window start, per service with a file."""
        logs: dict[str, ServiceLogs] = {}
        notes: list[SourceNote] = []
        for service in query.services:
            path = Path(fill(self._template, service=service, world_url=""))
            try:
                lines = await asyncio.to_thread(tail, path, self._tail_bytes)
            except OSError as exc:
                notes.append(SourceNote(source=self.name,
                                        detail=f"log file of {service} unreadable: {exc}"))
                continue
            logs[service] = self._digest(service, lines, query.since)
        if notes and not logs:
            raise SourceError("; ".join(n.detail for n in notes))
        return EvidenceBundle(logs=logs, notes=tuple(notes))

    def _digest(self, service: str, lines: list[str], since: datetime) -> ServiceLogs:
        records = [
            r for line in lines
            if (r := parse_line(line, service)) is not None and _utc(r.ts) >= since
        ]
        return ServiceLogs(
            service=service,
            errors=tuple(r for r in records if r.is_error)[-self._error_limit:],
            sample=tuple(records[-self._sample_limit:]),
        )


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
