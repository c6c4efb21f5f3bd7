"""Injected time. Services never call datetime.now() directly.

`time_scale` multiplies every domain threshold (escalation tiers, SLA windows,
status cadence, approval expiry) so a demo or a test can run a 15-minute
escalation in seconds without changing any rule table.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time and of waiting."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for seconds of this clock's time."""
        ...

    def scaled(self, threshold: timedelta) -> timedelta:
        """A domain threshold as it applies under this clock's time scale."""
        ...


class SystemClock:
    """Wall-clock time with a scale applied to domain thresholds."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Sleep for real seconds."""
        await asyncio.sleep(max(seconds, 0.0))

    def scaled(self, threshold: timedelta) -> timedelta:
        """A domain threshold (e.g. 15 min) as it applies under this clock's scale."""
        return threshold * self.time_scale


class ManualClock:
    """A clock tests move by hand; `sleep` advances it instantly."""

    def __init__(self, start: datetime | None = None, time_scale: float = 1.0) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.time_scale = time_scale

    def now(self) -> datetime:
        """The clock's current time."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move time forward."""
        self._now += delta

    async def sleep(self, seconds: float) -> None:
        """Advance instead of waiting."""
        self.advance(timedelta(seconds=max(seconds, 0.0)))
        await asyncio.sleep(0)

    def scaled(self, threshold: timedelta) -> timedelta:
        """A domain threshold under this clock's scale."""
        return threshold * self.time_scale
