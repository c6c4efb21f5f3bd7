"""Structured logs of the demo world: one JSON object per line, per service file.

Every service process appends to `<state-dir>/logs/<service>.log`; each line is a
JSON object with at least `ts` (ISO-8601 UTC, millisecond precision, `Z`),
`level`, `service`, `version`, `pid` and `msg`, plus event-specific fields
(`request_id`, `status`, `duration_ms`, `upstream`, `key`, ...). JSON lines are
what log shippers (Loki, Elasticsearch, CloudWatch) ingest, so the investigator
reads them the way it would read real logs.

The threshold is a live property of the writer: the process changes it at
runtime when the supervisor forwards `POST /services/{name}/log-level`.

The same module reads logs back for `GET /logs/{name}`: it reads only the tail
of the file (a few MB), so the API stays fast on a long-running demo, and
rotates a file once it exceeds its size limit (`<file>.1`, one generation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR"}

DEFAULT_TAIL_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def normalize_level(level: str) -> str:
    """The canonical name of a log level (WARN -> WARNING); raises ValueError when unknown."""
    name = level.strip().upper()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return name


def utc_iso(moment: float | datetime | None = None) -> str:
    """An ISO-8601 UTC timestamp with milliseconds and a `Z` suffix."""
    if moment is None:
        dt = datetime.now(UTC)
    elif isinstance(moment, datetime):
        dt = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(moment, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive values are taken as UTC. Raises ValueError."""
    text = value.strip()
    if "T" in text:
        # An unencoded "+00:00" in a query string arrives as " 00:00".
        text = text.replace(" ", "+")
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def log_path(state_dir: str | Path, service: str) -> Path:
    """Where the log file of a service lives."""
    return Path(state_dir) / "logs" / f"{service}.log"


class JsonLogWriter:
    """Appends JSON log lines for one service, filtered by a level changeable at runtime."""

    def __init__(
        self,
        path: str | Path,
        service: str,
        version: str,
        level: str = "INFO",
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        base_fields: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.version = version
        self._level = normalize_level(level)
        self._max_bytes = max_bytes
        self._base = dict(base_fields or {})
        self._file: TextIO = self.path.open("a", encoding="utf-8")
        self._writes = 0

    @property
    def level(self) -> str:
        """The current threshold."""
        return self._level

    @level.setter
    def level(self, value: str) -> None:
        self._level = normalize_level(value)

    def enabled(self, level: str) -> bool:
        """True when a line of this level would be written."""
        return LEVELS[normalize_level(level)] >= LEVELS[self._level]

    def log(self, level: str, msg: str, **fields: Any) -> None:
        """Write one line when level passes the threshold."""
        name = normalize_level(level)
        if LEVELS[name] < LEVELS[self._level]:
            return
        record: dict[str, Any] = {
            "ts": utc_iso(),
            "level": name,
            "service": self.service,
            "version": self.version,
            "pid": os.getpid(),
            "msg": msg,
        }
        record.update(self._base)
        record.update({k: v for k, v in fields.items() if v is not None})
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        self._writes += 1
        if self._writes % 500 == 0:
            self._maybe_rotate()

    def _maybe_rotate(self) -> None:
        try:
            if self.path.stat().st_size < self._max_bytes:
                return
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except OSError:
            pass
        self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one ready-made record (used by the supervisor to log on a dead process's behalf)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def _tail_lines(path: Path, tail_bytes: int) -> Iterator[str]:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - tail_bytes)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    for raw in data.splitlines():
        if raw.strip():
            yield raw.decode("utf-8", errors="replace")


def read_logs(
    path: str | Path,
    since: datetime | None = None,
    level: str | None = None,
    limit: int = 200,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
) -> list[dict[str, Any]]:
    """The last `limit` lines at or above `level` and at or after `since`, oldest first."""
    threshold = LEVELS[normalize_level(level)] if level else 0
    out: list[dict[str, Any]] = []
    for line in _tail_lines(Path(path), tail_bytes):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        raw_level = str(record.get("level", "INFO")).upper()
        rec_level = _ALIASES.get(raw_level, raw_level)
        if LEVELS.get(rec_level, 20) < threshold:
            continue
        if since is not None:
            try:
                if parse_iso(str(record.get("ts", ""))) < since:
                    continue
            except ValueError:
                continue
        out.append(record)
    return out[-limit:] if limit > 0 else []
