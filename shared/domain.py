"""Domain enums shared by every service: severity, risk tier, incident phase.

Severity follows DOMAIN.md: the product speaks SEV0..SEV4 and accepts the
aliases of the seed documents (P0..P3, SEV-1..SEV-4 where SEV-1 is our SEV0,
and the usual monitoring words) as input only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Severity(StrEnum):
    """Incident severity, SEV0 (critical) to SEV4 (informational)."""

    SEV0 = "SEV0"
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"

    @property
    def rank(self) -> int:
        """0 for SEV0 (worst) to 4 for SEV4."""
        return int(self.value[-1])

    @property
    def label(self) -> str:
        """The matrix label: Critical, High, Medium, Low, Informational."""
        return _LABELS[self]

    def is_worse_than(self, other: Severity) -> bool:
        """True when self is more severe than other."""
        return self.rank < other.rank

    @classmethod
    def from_rank(cls, rank: int) -> Severity:
        """The severity of a rank, clamped to SEV0..SEV4."""
        return cls(f"SEV{min(max(rank, 0), 4)}")

    @classmethod
    def parse(cls, raw: str | None) -> Severity | None:
        """Map a source's severity word to ours; None when it is not recognised."""
        if raw is None:
            return None
        return _parse_word(raw)


@functools.lru_cache(maxsize=1024)
def _parse_word(raw: str) -> Severity | None:
    """The alias lookup of `Severity.parse` (memoised: every alert carries a severity word)."""
    return _ALIASES.get(re.sub(r"[\s_]", "", raw.strip().lower()))


_LABELS = {
    Severity.SEV0: "Critical",
    Severity.SEV1: "High",
    Severity.SEV2: "Medium",
    Severity.SEV3: "Low",
    Severity.SEV4: "Informational",
}

_ALIASES: dict[str, Severity] = {
    # Our own names.
    **{f"sev{i}": Severity(f"SEV{i}") for i in range(5)},
    # Seed 001: P0..P3 (P4 is accepted as the informational level).
    **{f"p{i}": Severity(f"SEV{i}") for i in range(5)},
    # Seeds 002/003: SEV-1..SEV-4, where SEV-1 is the most severe (our SEV0).
    **{f"sev-{i}": Severity(f"SEV{i - 1}") for i in range(1, 5)},
    # Monitoring vocabularies (Alertmanager, Grafana, PagerDuty, Datadog, CloudWatch).
    "critical": Severity.SEV0,
    "fatal": Severity.SEV0,
    "emergency": Severity.SEV0,
    "page": Severity.SEV1,
    "high": Severity.SEV1,
    "error": Severity.SEV1,
    "major": Severity.SEV1,
    "alarm": Severity.SEV1,
    "medium": Severity.SEV2,
    "warning": Severity.SEV2,
    "warn": Severity.SEV2,
    "minor": Severity.SEV3,
    "low": Severity.SEV3,
    "info": Severity.SEV4,
    "informational": Severity.SEV4,
    "none": Severity.SEV4,
    "ok": Severity.SEV4,
}


class RiskTier(StrEnum):
    """Risk of a remediation action; decided by the policy table, never by an LLM."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class AlertStatus(StrEnum):
    """Whether the source says the condition is firing or has resolved."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"


class IncidentPhase(StrEnum):
    """The six lifecycle phases of DOMAIN.md, as an incident moves through them."""

    TRIAGE = "triage"
    NOTIFICATION = "notification"
    INVESTIGATION = "investigation"
    REMEDIATION = "remediation"
    VERIFICATION = "verification"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class ResponseSla:
    """DOMAIN.md response-time targets of one severity (None = best effort)."""

    detect: timedelta
    acknowledge: timedelta
    resolve: timedelta | None


SLA: dict[Severity, ResponseSla] = {
    Severity.SEV0: ResponseSla(timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=30)),
    Severity.SEV1: ResponseSla(timedelta(minutes=5), timedelta(minutes=10), timedelta(hours=1)),
    Severity.SEV2: ResponseSla(timedelta(minutes=10), timedelta(minutes=30), timedelta(hours=4)),
    Severity.SEV3: ResponseSla(timedelta(minutes=30), timedelta(hours=2), timedelta(hours=24)),
    Severity.SEV4: ResponseSla(timedelta(hours=1), timedelta(hours=4), None),
}
