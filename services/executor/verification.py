"""Verification decisions: did the action bring the service back, is it degrading?

Pure functions over samples, so every rule is unit-tested with a manual clock.

- Passed: the last `consecutive` samples are all healthy (a single good reading
  right after a restart proves nothing; recovery has to hold for a while).
- Degrading: the last `consecutive` samples all show an error rate at least
  `degrade_margin` above the pre-action baseline. The action made things worse;
  waiting for the deadline would only prolong the damage, so it fails at once
  and is rolled back.
- Failed: the deadline passed without the streak; the reason quotes the last
  reading so the human who gets escalated sees where it stood.
- Otherwise pending: keep polling. An unreadable status is an unhealthy sample:
  it breaks a streak but never counts as a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    """Outcome of a verification so far."""

    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the target's health."""

    at: datetime
    healthy: bool
    value: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict and the reason a human can read."""

    verdict: Verdict
    reason: str


def judge(
    samples: Sequence[Sample],
    *,
    consecutive: int,
    deadline: datetime,
    now: datetime,
    baseline: float | None = None,
    degrade_margin: float | None = None,
) -> Decision:
    """Decide a verification from its samples so far."""
    recent = list(samples[-consecutive:])
    if len(recent) == consecutive and all(s.healthy for s in recent):
        return Decision(Verdict.PASSED, f"{consecutive} consecutive healthy checks; "
                                        f"last: {recent[-1].detail}")
    if (
        baseline is not None
        and degrade_margin is not None
        and len(recent) == consecutive
        and all(s.value is not None and s.value >= baseline + degrade_margin for s in recent)
    ):
        return Decision(Verdict.FAILED, f"degrading: error rate stayed at least "
                                        f"{degrade_margin:.0%} above the pre-action baseline "
                                        f"{baseline:.1%} for {consecutive} checks; "
                                        f"last: {recent[-1].detail}")
    if now >= deadline:
        last = samples[-1].detail if samples else "no reading"
        return Decision(Verdict.FAILED, f"not recovered by the verification deadline; "
                                        f"last: {last}")
    return Decision(Verdict.PENDING, "waiting for consecutive healthy checks")


def error_rate_sample(
    at: datetime, *, error_rate: float | None, up: bool, threshold: float
) -> Sample:
    """A health sample from a status reading: up and error rate below threshold."""
    if error_rate is None:
        return Sample(at, False, None, f"error rate unknown (up={up})")
    healthy = up and error_rate < threshold
    detail = f"error rate {error_rate:.1%} (threshold {threshold:.1%}), up={up}"
    return Sample(at, healthy, error_rate, detail)


def value_sample(at: datetime, *, observed: str | None, expected: str) -> Sample:
    """A sample that passes when an observed setting equals the expected one."""
    healthy = observed is not None and observed.upper() == expected.upper()
    return Sample(at, healthy, None, f"observed {observed!r}, expected {expected!r}")


def unreadable_sample(at: datetime, error: str) -> Sample:
    """A sample for a status that could not be read."""
    return Sample(at, False, None, f"status unreadable: {error}")
