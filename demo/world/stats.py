"""Error rates from scraped counters: a tiny Prometheus `increase()` over a sliding window.

The supervisor scrapes every service's `/metrics` once per evaluation interval
and keeps the cumulative counters it needs (requests, 5xx responses, cache
lookups and cache errors) as timestamped samples. The error rate of a service
over the window is `increase(errors) / increase(requests)`, computed like
Prometheus does: consecutive samples are differenced, and a counter that went
down (or a new pid) is a restart, whose post-restart value counts in full.

A service's error rate is therefore "from its own traffic": payments is never
called by the traffic generator directly, yet its rate moves with the calls of
checkout and reporting.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one service at one scrape."""

    t: float
    pid: int | None
    requests: float
    errors: float
    cache_lookups: float = 0.0
    cache_errors: float = 0.0


@dataclass(frozen=True)
class WindowStats:
    """Increases over the window and the rates derived from them."""

    requests: float
    errors: float
    cache_lookups: float
    cache_errors: float

    @property
    def error_rate(self) -> float:
        """Share of requests answered with 5xx (0 without traffic)."""
        return self.errors / self.requests if self.requests > 0 else 0.0

    @property
    def cache_error_rate(self) -> float:
        """Share of cache lookups that failed (0 without lookups)."""
        return self.cache_errors / self.cache_lookups if self.cache_lookups > 0 else 0.0


def parse_counters(text: str, t: float, pid: int | None) -> Sample:
    """Extract the counters the world needs from a Prometheus text exposition."""
    requests = errors = hits = misses = cache_errors = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "http_requests_total":
                requests += s.value
                if s.labels.get("code", "").startswith("5"):
                    errors += s.value
            elif s.name == "demo_cache_hits_total":
                hits += s.value
            elif s.name == "demo_cache_misses_total":
                misses += s.value
            elif s.name == "demo_cache_errors_total":
                cache_errors += s.value
    return Sample(t, pid, requests, errors, hits + misses + cache_errors, cache_errors)


def _increase(prev: float, cur: float, reset: bool) -> float:
    return cur if reset or cur < prev else cur - prev


class RollingCounters:
    """Samples of one service over the last window (plus one older sample as a baseline)."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        """Record a scrape; drops samples no longer needed for the window."""
        self._samples.append(sample)
        cutoff = sample.t - self.window
        while len(self._samples) >= 2 and self._samples[1].t <= cutoff:
            self._samples.popleft()

    def stats(self, now: float) -> WindowStats:
        """Increases between the last sample at or before now-window and the newest sample."""
        cutoff = now - self.window
        samples = list(self._samples)
        start = 0
        for i, s in enumerate(samples):
            if s.t <= cutoff:
                start = i
        samples = samples[start:]
        req = err = look = cerr = 0.0
        for prev, cur in itertools.pairwise(samples):
            reset = prev.pid != cur.pid or cur.requests < prev.requests
            req += _increase(prev.requests, cur.requests, reset)
            err += _increase(prev.errors, cur.errors, reset)
            look += _increase(prev.cache_lookups, cur.cache_lookups, reset)
            cerr += _increase(prev.cache_errors, cur.cache_errors, reset)
        return WindowStats(req, err, look, cerr)

    def clear(self) -> None:
        """Forget every sample."""
        self._samples.clear()
