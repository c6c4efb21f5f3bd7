"""What the investigator observes, and how it gathers observations from many sources.

Every integration (a Prometheus scrape, a Prometheus server, a log API, a log
file, a deploy history) is an `EvidenceSource`: given an `EvidenceQuery` it
returns an `EvidenceBundle` holding only what it saw. The `EvidenceCollector`
asks every source at once, each under its own deadline, and merges the
bundles. A source that raises or times out contributes a `SourceNote`
("source unavailable") instead of observations, so one broken integration
degrades an investigation and never stops it; the rules then state in their
rationale that evidence was missing.

Observations are plain frozen models (not events): rules and recorded test
fixtures construct them directly, and the LLM investigator of a later issue can
serialise them into a prompt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from pydantic import AwareDatetime, Field

from shared.events import Model

log = logging.getLogger(__name__)

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL"})


class DeployRecord(Model):
    """One deployment of a service, as the deploy history reports it."""

    service: str
    version: str
    previous_version: str | None = None
    deployed_at: AwareDatetime
    author: str = ""
    change: str = ""
    id: str | None = None


class LogRecord(Model):
    """One structured log line of a service."""

    ts: AwareDatetime
    level: str = "INFO"
    service: str
    msg: str = ""
    version: str | None = None

    @property
    def is_error(self) -> bool:
        """True for ERROR and worse."""
        return self.level.upper() in ERROR_LEVELS


class ServiceLogs(Model):
    """A service's recent error lines, and an unfiltered sample of its latest lines."""

    service: str
    errors: tuple[LogRecord, ...] = ()
    sample: tuple[LogRecord, ...] = ()

    def level_share(self, level: str) -> float:
        """Fraction of the sampled lines at level (0 when nothing was sampled)."""
        if not self.sample:
            return 0.0
        return sum(1 for r in self.sample if r.level.upper() == level) / len(self.sample)


class ServiceMetrics(Model):
    """Golden signals of one service; None means "not observed", never "zero"."""

    service: str
    up: bool | None = None
    error_ratio: float | None = Field(None, description="5xx / all requests in the window")
    request_rate: float | None = Field(None, description="requests per second")
    latency_p99_s: float | None = None
    latency_mean_s: float | None = None
    cache_errors: float | None = Field(None, description="cache errors in the window")
    pool_in_use: float | None = Field(None, description="DB pool connections checked out")
    pool_max: float | None = Field(None, description="DB pool size")
    version: str | None = None
    window_s: float | None = Field(None, description="length of the observed window")
    origin: str = ""

    def merged(self, other: ServiceMetrics) -> ServiceMetrics:
        """These metrics, with gaps filled from other (the first source to observe wins)."""
        fields = {
            name: value if value is not None else getattr(other, name)
            for name, value in self.model_dump().items()
        }
        if self.origin and other.origin and other.origin not in self.origin:
            fields["origin"] = f"{self.origin}+{other.origin}"
        return ServiceMetrics.model_validate(fields)


class ServiceState(Model):
    """What the platform (supervisor, orchestrator) says about a service's process."""

    service: str
    status: str = "unknown"
    up: bool | None = None
    version: str | None = None
    log_level: str | None = None
    error_rate: float | None = None
    cache_error_rate: float | None = None
    started_at: AwareDatetime | None = None


class SourceNote(Model):
    """A source that could not be read for this investigation, and why."""

    source: str
    detail: str


class EvidenceBundle(Model):
    """Everything observed for one investigation (or by one source)."""

    deploys: tuple[DeployRecord, ...] = ()
    logs: dict[str, ServiceLogs] = Field(default_factory=dict)
    metrics: dict[str, ServiceMetrics] = Field(default_factory=dict)
    states: dict[str, ServiceState] = Field(default_factory=dict)
    notes: tuple[SourceNote, ...] = ()
    sources: tuple[str, ...] = Field((), description="names of the sources that answered")

    def merged(self, other: EvidenceBundle) -> EvidenceBundle:
        """The union of two bundles (deploys de-duplicated, metrics gap-filled)."""
        deploys = {(d.service, d.version, d.deployed_at): d for d in self.deploys}
        for d in other.deploys:
            deploys.setdefault((d.service, d.version, d.deployed_at), d)
        logs = dict(self.logs)
        for name, entry in other.logs.items():
            mine = logs.get(name)
            logs[name] = entry if mine is None else ServiceLogs(
                service=name,
                errors=_unique_lines(mine.errors, entry.errors),
                sample=mine.sample or entry.sample,
            )
        metrics = dict(self.metrics)
        for name, m in other.metrics.items():
            metrics[name] = metrics[name].merged(m) if name in metrics else m
        states = {**other.states, **self.states}
        return EvidenceBundle(
            deploys=tuple(sorted(deploys.values(), key=lambda d: d.deployed_at)),
            logs=logs,
            metrics=metrics,
            states=states,
            notes=self.notes + other.notes,
            sources=self.sources + other.sources,
        )


def _unique_lines(*groups: Iterable[LogRecord]) -> tuple[LogRecord, ...]:
    seen: dict[tuple[datetime, str, str], LogRecord] = {}
    for group in groups:
        for rec in group:
            seen.setdefault((rec.ts, rec.service, rec.msg), rec)
    return tuple(sorted(seen.values(), key=lambda r: r.ts))


class EvidenceQuery(Model):
    """What to look at: which services, over which window, around which anomaly."""

    incident_id: str
    services: tuple[str, ...]
    since: AwareDatetime = Field(description="start of the look-back window")
    until: AwareDatetime = Field(description="when the investigation runs")
    first_anomaly_at: AwareDatetime


class EvidenceSource(Protocol):
    """One integration that observes services (metrics, logs, deploys, process state)."""

    @property
    def name(self) -> str:
        """Stable name used in evidence and notes (e.g. "deploys:http")."""
        ...

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """What this source observed for the query; raises when the source is unavailable."""
        ...


class EvidenceCollector:
    """Asks every source concurrently, each under a deadline, and merges what answered."""

    def __init__(self, sources: Sequence[EvidenceSource], timeout_s: float = 5.0) -> None:
        self.sources = tuple(sources)
        self.timeout_s = timeout_s

    async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
        """The merged evidence of every source; failures become `SourceNote`s."""
        results = await asyncio.gather(*(self._one(s, query) for s in self.sources))
        bundle = EvidenceBundle()
        for result in results:
            bundle = bundle.merged(result)
        return bundle

    async def _one(self, source: EvidenceSource, query: EvidenceQuery) -> EvidenceBundle:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                found = await source.collect(query)
        except TimeoutError:
            detail = f"source unavailable: no answer within {self.timeout_s:g} s"
        except Exception as exc:  # a broken integration must not stop the investigation
            detail = f"source unavailable: {type(exc).__name__}: {exc}"[:300]
        else:
            log.debug("source %s answered in %.2f s", source.name, time.monotonic() - started)
            return found.model_copy(update={"sources": (source.name,)})
        log.warning("evidence source %s failed for %s: %s", source.name, query.incident_id,
                    detail)
        return EvidenceBundle(notes=(SourceNote(source=source.name, detail=detail),))
