"""Unit tests of verification decisions: consecutive passes, degrading, deadline."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.executor.verification import (
    Sample,
    Verdict,
    error_rate_sample,
    judge,
    unreadable_sample,
    value_sample,
)
from shared.clock import ManualClock

pytestmark = pytest.mark.unit


def _samples(clock: ManualClock, rates: list[float | None], threshold: float = 0.05
             ) -> list[Sample]:
    out = []
    for rate in rates:
        clock.advance(timedelta(seconds=2))
        if rate is None:
            out.append(unreadable_sample(clock.now(), "connection refused"))
        else:
            out.append(error_rate_sample(clock.now(), error_rate=rate, up=True,
                                         threshold=threshold))
    return out


class TestJudge:
    def test_passes_after_consecutive_healthy_checks(self) -> None:
        """Three healthy readings in a row pass; two do not yet."""
        clock = ManualClock()
        deadline = clock.now() + timedelta(seconds=60)
        two = _samples(clock, [0.5, 0.01, 0.01])
        assert judge(two, consecutive=3, deadline=deadline, now=clock.now()).verdict \
            is Verdict.PENDING
        three = [*two, *_samples(clock, [0.02])]
        decision = judge(three, consecutive=3, deadline=deadline, now=clock.now())
        assert decision.verdict is Verdict.PASSED
        assert "3 consecutive" in decision.reason

    def test_an_unhealthy_reading_breaks_the_streak(self) -> None:
        """healthy, unhealthy, healthy, healthy is not three in a row."""
        clock = ManualClock()
        samples = _samples(clock, [0.01, 0.2, 0.01, 0.01])
        assert judge(samples, consecutive=3, deadline=clock.now() + timedelta(seconds=60),
                     now=clock.now()).verdict is Verdict.PENDING

    def test_unreadable_status_never_passes(self) -> None:
        """An unreadable status counts as unhealthy."""
        clock = ManualClock()
        samples = _samples(clock, [None, None, None])
        assert not any(s.healthy for s in samples)
        assert judge(samples, consecutive=3, deadline=clock.now() + timedelta(seconds=60),
                     now=clock.now()).verdict is Verdict.PENDING

    def test_deadline_fails_with_the_last_reading(self) -> None:
        """Past the deadline without the streak, verification fails quoting the last value."""
        clock = ManualClock()
        deadline = clock.now() + timedelta(seconds=5)
        samples = _samples(clock, [0.3, 0.2, 0.12])
        decision = judge(samples, consecutive=3, deadline=deadline, now=clock.now())
        assert decision.verdict is Verdict.FAILED
        assert "deadline" in decision.reason
        assert "12.0%" in decision.reason

    def test_degrading_fails_before_the_deadline(self) -> None:
        """Error rate well above the pre-action baseline for N checks fails at once."""
        clock = ManualClock()
        samples = _samples(clock, [0.35, 0.4, 0.45])
        decision = judge(samples, consecutive=3, deadline=clock.now() + timedelta(hours=1),
                         now=clock.now(), baseline=0.2, degrade_margin=0.1)
        assert decision.verdict is Verdict.FAILED
        assert decision.reason.startswith("degrading")

    def test_slow_recovery_is_not_degrading(self) -> None:
        """A rate still above threshold but not above baseline + margin keeps waiting."""
        clock = ManualClock()
        samples = _samples(clock, [0.25, 0.22, 0.2])
        decision = judge(samples, consecutive=3, deadline=clock.now() + timedelta(hours=1),
                         now=clock.now(), baseline=0.2, degrade_margin=0.1)
        assert decision.verdict is Verdict.PENDING

    def test_down_service_is_unhealthy_even_with_zero_errors(self) -> None:
        """A service that is not up never passes, whatever its error rate."""
        sample = error_rate_sample(ManualClock().now(), error_rate=0.0, up=False, threshold=0.05)
        assert not sample.healthy

    def test_value_sample_compares_case_insensitively(self) -> None:
        """log_level verification passes when the level reads back as set."""
        now = ManualClock().now()
        assert value_sample(now, observed="debug", expected="DEBUG").healthy
        assert not value_sample(now, observed="INFO", expected="DEBUG").healthy
        assert not value_sample(now, observed=None, expected="DEBUG").healthy
