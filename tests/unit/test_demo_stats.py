"""Unit tests of the demo world's sliding-window error rates and metric parsing."""

from __future__ import annotations

import pytest

from demo.world.stats import RollingCounters, Sample, parse_counters

pytestmark = pytest.mark.unit

METRICS = """\
# HELP http_requests_total Requests handled, by status code
# TYPE http_requests_total counter
http_requests_total{code="200",service="catalog"} 90.0
http_requests_total{code="500",service="catalog"} 8.0
http_requests_total{code="502",service="catalog"} 2.0
# TYPE demo_cache_hits_total counter
demo_cache_hits_total{service="catalog"} 150.0
# TYPE demo_cache_misses_total counter
demo_cache_misses_total{service="catalog"} 40.0
# TYPE demo_cache_errors_total counter
demo_cache_errors_total{service="catalog"} 10.0
"""


def test_parse_counters_sums_codes_and_cache_lookups() -> None:
    s = parse_counters(METRICS, t=1.0, pid=42)
    assert (s.requests, s.errors) == (100.0, 10.0)
    assert (s.cache_lookups, s.cache_errors) == (200.0, 10.0)
    assert s.pid == 42


def test_rate_over_window_uses_baseline_before_window() -> None:
    c = RollingCounters(window_seconds=10)
    c.add(Sample(0, 1, 0, 0))
    c.add(Sample(5, 1, 100, 0))
    c.add(Sample(10, 1, 200, 50))
    c.add(Sample(15, 1, 300, 50))
    st = c.stats(now=15)  # window (5, 15]: baseline sample at t=5
    assert st.requests == 200
    assert st.errors == 50
    assert st.error_rate == 0.25


def test_counter_reset_on_restart_counts_new_process_in_full() -> None:
    c = RollingCounters(window_seconds=30)
    c.add(Sample(0, 1, 1000, 500))
    c.add(Sample(1, 1, 1100, 590))
    c.add(Sample(2, 2, 30, 0))  # new pid, counters restarted
    c.add(Sample(3, 2, 60, 0))
    st = c.stats(now=3)
    assert st.requests == 100 + 30 + 30
    assert st.errors == 90
    assert st.error_rate == pytest.approx(90 / 160)


def test_no_traffic_means_zero_rate() -> None:
    c = RollingCounters(window_seconds=5)
    assert c.stats(now=10).error_rate == 0.0
    c.add(Sample(9, 1, 10, 10))
    assert c.stats(now=10).error_rate == 0.0  # a single sample has no increase


def test_old_samples_are_dropped() -> None:
    c = RollingCounters(window_seconds=2)
    for t in range(100):
        c.add(Sample(float(t), 1, float(t), 0))
    assert len(c._samples) <= 4
    assert c.stats(now=99).requests == 2
