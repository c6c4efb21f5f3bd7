"""From raw evidence to per-service health, and where a service sits in the dependency chain.

Rules do not read metrics, logs and process states separately: `assess`
condenses a bundle into one `ServiceHealth` per service (down? error ratio?
error lines? cache errors? latency? log level?), with the observation each
verdict rests on kept for the evidence trail.

"Erroring" trusts the current error ratio (metrics or supervisor status) over
log lines: the look-back window of the logs easily holds the errors of an
earlier, already resolved incident, while a ratio says what happens now. ERROR
lines only decide when no ratio was observed, and only lines from just before
the first anomaly on count.

Root-cause service: when a chain fails (storefront -> checkout -> payments),
every caller reports errors, but the cause sits at the deepest failing
service. `deepest_failing` keeps the failing services none of whose
(transitive) dependencies fail, which is the DOMAIN.md distinction of "root
cause vs symptoms".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field

from services.investigator.evidence import EvidenceBundle, LogRecord
from shared.catalog import ServiceCatalog
from shared.events import Model

_CACHE_FAULT = re.compile(
    r"\bcache\b.*\b(corrupt\w*|stale|poison\w*|invalid|deserializ\w*|malformed)"
    r"|\b(corrupt\w*|stale|poison\w*)\b.*\bcache\b",
    re.IGNORECASE,
)
_POOL_EXHAUSTED = re.compile(
    r"pool\b.*\bexhausted|exhausted.*\bpool\b|too many connections|"
    r"timeout waiting for (a )?connection|could not acquire (a )?connection",
    re.IGNORECASE,
)


class Thresholds(Model):
    """When an observation counts as a symptom; every value can be tuned per deployment."""

    error_ratio: float = Field(0.05, ge=0, le=1, description="5xx share that means failing")
    error_lines: int = Field(3, ge=1, description="ERROR lines in the window that mean failing")
    latency_p99_s: float = Field(1.0, gt=0, description="p99 latency that means saturated")
    debug_share: float = Field(0.5, ge=0, le=1, description="DEBUG share that is excessive")
    debug_min_lines: int = Field(50, ge=1, description="lines needed to judge the level mix")


@dataclass(frozen=True)
class ServiceHealth:
    """What the evidence says about one service."""

    service: str
    process_status: str | None = None
    process_down: bool = False
    scrape_down: bool = False
    error_ratio: float | None = None
    error_ratio_origin: str = ""
    error_lines: tuple[LogRecord, ...] = ()
    cache_error_lines: tuple[LogRecord, ...] = ()
    cache_errors_metric: float | None = None
    cache_error_rate: float | None = None
    pool_error_lines: tuple[LogRecord, ...] = ()
    pool_in_use: float | None = None
    pool_max: float | None = None
    latency_p99_s: float | None = None
    log_level: str | None = None
    debug_share: float = 0.0
    sampled_lines: int = 0
    observed: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def down(self) -> bool:
        """The process is not running or cannot be reached."""
        return self.process_down or self.scrape_down

    @property
    def erroring(self) -> bool:
        """Errors above threshold: the current error ratio, or ERROR lines when none is known."""
        if self.error_ratio is not None:
            return self.error_ratio >= self.thresholds.error_ratio
        return len(self.error_lines) >= self.thresholds.error_lines

    @property
    def failing(self) -> bool:
        """Down or erroring: a symptom the incident can be explained by."""
        return self.down or self.erroring

    @property
    def healthy(self) -> bool:
        """Observed and neither down nor erroring (unobserved is not healthy)."""
        return self.observed and not self.failing

    @property
    def pool_exhausted(self) -> bool:
        """Every connection of the database pool is checked out."""
        return (self.pool_in_use is not None and bool(self.pool_max)
                and self.pool_in_use >= (self.pool_max or 0))

    @property
    def saturated(self) -> bool:
        """p99 latency above threshold."""
        p99 = self.latency_p99_s
        return p99 is not None and p99 >= self.thresholds.latency_p99_s

    @property
    def verbose_logging(self) -> bool:
        """Running at DEBUG, or mostly DEBUG lines in a large enough sample."""
        share = (self.sampled_lines >= self.thresholds.debug_min_lines
                 and self.debug_share >= self.thresholds.debug_share)
        return self.log_level == "DEBUG" or share

    def errors_since(self, moment: datetime) -> tuple[LogRecord, ...]:
        """ERROR lines at or after moment."""
        return tuple(r for r in self.error_lines if r.ts >= moment)

    def top_errors(self, limit: int = 3) -> list[tuple[str, int]]:
        """The most frequent error messages with their counts."""
        return Counter(r.msg for r in self.error_lines).most_common(limit)


def assess(
    bundle: EvidenceBundle,
    services: Iterable[str],
    thresholds: Thresholds | None = None,
    *,
    errors_since: datetime | None = None,
) -> dict[str, ServiceHealth]:
    """One health verdict per service; only ERROR lines from errors_since on count."""
    limits = thresholds or Thresholds()
    out: dict[str, ServiceHealth] = {}
    for name in services:
        state = bundle.states.get(name)
        metrics = bundle.metrics.get(name)
        logs = bundle.logs.get(name)
        ratio, ratio_origin = None, ""
        if metrics is not None and metrics.error_ratio is not None:
            ratio, ratio_origin = metrics.error_ratio, metrics.origin or "metrics"
        elif state is not None and state.error_rate is not None:
            ratio, ratio_origin = state.error_rate, "status"
        errors = tuple(r for r in (logs.errors if logs else ())
                       if errors_since is None or r.ts >= errors_since)
        out[name] = ServiceHealth(
            service=name,
            process_status=state.status if state else None,
            process_down=state is not None and state.up is False,
            scrape_down=metrics is not None and metrics.up is False,
            error_ratio=ratio,
            error_ratio_origin=ratio_origin,
            error_lines=errors,
            cache_error_lines=tuple(r for r in errors if _CACHE_FAULT.search(r.msg)),
            cache_errors_metric=metrics.cache_errors if metrics else None,
            cache_error_rate=state.cache_error_rate if state else None,
            pool_error_lines=tuple(r for r in errors if _POOL_EXHAUSTED.search(r.msg)),
            pool_in_use=metrics.pool_in_use if metrics else None,
            pool_max=metrics.pool_max if metrics else None,
            latency_p99_s=metrics.latency_p99_s if metrics else None,
            log_level=state.log_level if state else None,
            debug_share=logs.level_share("DEBUG") if logs else 0.0,
            sampled_lines=len(logs.sample) if logs else 0,
            observed=state is not None or metrics is not None or logs is not None,
            thresholds=limits,
        )
    return out


def dependencies(catalog: ServiceCatalog, name: str) -> set[str]:
    """Every service name depends on, directly or transitively."""
    return catalog.dependencies(name)


def scope(catalog: ServiceCatalog, services: Iterable[str]) -> tuple[str, ...]:
    """The incident's services and everything they depend on: where a cause can hide."""
    found: set[str] = set()
    for name in services:
        found.add(name)
        found |= dependencies(catalog, name)
    return tuple(sorted(found))


def deepest(catalog: ServiceCatalog, services: Iterable[str]) -> list[str]:
    """The services none of whose dependencies are among services (sorted by name)."""
    members = set(services)
    return sorted(s for s in members if not dependencies(catalog, s) & members)


def layer(catalog: ServiceCatalog, name: str, _path: frozenset[str] = frozenset()) -> int:
    """How far up a chain a service sits: 0 for a leaf, 1 + its deepest dependency's layer."""
    svc = catalog.get(name)
    deps = [d for d in (svc.depends_on if svc else ()) if d not in _path]  # cycles end here
    if not deps:
        return 0
    return 1 + max(layer(catalog, d, _path | {name}) for d in deps)
