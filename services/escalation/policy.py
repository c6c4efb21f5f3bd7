"""The escalation policy of DOMAIN.md as one table of thresholds.

Two clocks drive an unacknowledged incident up the chain, and whichever expires
first wins:

- the tier ladder: tier 2 is due 15 min after the incident opened, tier 3 at 30,
  tier 4 at 60 (trigger `tier_timer`, seed 000's "extended outage");
- the acknowledgement window of the severity (SEV0 5 min ... SEV4 4 h), counted
  from the moment the current tier was paged: a tier that does not acknowledge in
  time hands over to the next one at once (trigger `ack_timeout`). Each tier gets
  its own window, so a SEV0 walks 5/10/15 min up the chain.

For SEV3/SEV4 the ladder is stricter than the ack SLA, and it is the ladder that
moves them: a page nobody answers for 15 minutes is itself a problem, whatever the
severity. The SLA window is what makes SEV0/SEV1 escalate faster.

Before the first classification arrives the incident is treated as SEV1 ("when
uncertain, escalate to a human"); the first page waits at most
`CLASSIFICATION_GRACE` for a classification so that it can carry the severity.

Every threshold goes through `scaled` (the clock's time scale), so a demo or a
test runs the same tables in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from shared.domain import SLA, Severity

MAX_TIER = 4

TIER_LADDER: dict[int, timedelta] = {
    1: timedelta(0),
    2: timedelta(minutes=15),
    3: timedelta(minutes=30),
    4: timedelta(minutes=60),
}

# DOMAIN.md's acknowledge SLA, from the one table in shared.domain.
ACK_WINDOW: dict[Severity, timedelta] = {sev: sla.acknowledge for sev, sla in SLA.items()}

# Seed 002's cadence; SEV4 (informational) gets no interim updates.
STATUS_CADENCE: dict[Severity, timedelta | None] = {
    Severity.SEV0: timedelta(minutes=15),
    Severity.SEV1: timedelta(minutes=15),
    Severity.SEV2: timedelta(minutes=30),
    Severity.SEV3: timedelta(hours=1),
    Severity.SEV4: None,
}

UNCLASSIFIED_SEVERITY = Severity.SEV1
CLASSIFICATION_GRACE = timedelta(seconds=60)
# A cascade's alerts arrive over a minute or two (every dependent of the broken
# service alerts on its own evaluation cycle). Services joining and severity
# rising in that time are the initial picture, not a worsening: they do not
# escalate. After it, DOMAIN.md's immediate triggers apply. It is a property of
# the alert sources' evaluation cycles, not of DOMAIN.md's tables: configurable
# (`IR_ESCALATION_SETTLE_WINDOW_S`), so a scaled demo whose alert rules run in
# real time can keep it in real seconds.
SETTLE_WINDOW = timedelta(minutes=2)
SETTLING_TRIGGERS = frozenset({"severity_increase", "new_services"})


def unscaled(threshold: timedelta) -> timedelta:
    """The identity scale (production time)."""
    return threshold


@dataclass(frozen=True)
class EscalationPolicy:
    """Thresholds of the escalation chain under a time scale."""

    scaled: Callable[[timedelta], timedelta] = unscaled
    settle: timedelta = SETTLE_WINDOW

    def effective_severity(self, severity: Severity | None) -> Severity:
        """The severity timers use: the classified one, else the conservative default."""
        return severity or UNCLASSIFIED_SEVERITY

    def ack_window(self, severity: Severity | None) -> timedelta:
        """How long a tier has to acknowledge before the next tier is paged."""
        return self.scaled(ACK_WINDOW[self.effective_severity(severity)])

    def tier_due_after_open(self, tier: int) -> timedelta:
        """Time since open at which the ladder reaches tier."""
        return self.scaled(TIER_LADDER[tier])

    def status_cadence(self, severity: Severity | None) -> timedelta | None:
        """Interval between interim status updates, None when the severity has none."""
        cadence = STATUS_CADENCE[self.effective_severity(severity)]
        return self.scaled(cadence) if cadence is not None else None

    def settle_window(self) -> timedelta:
        """How long after open joining services and rising severity are not escalations."""
        return self.scaled(self.settle)

    def classification_grace(self) -> timedelta:
        """How long the first page waits for a severity before going out without one."""
        return self.scaled(CLASSIFICATION_GRACE)
