"""Synthetic users: a steady open-loop request stream into the world's entry points.

Requests are started on a fixed schedule (`rps` per second in total, split by
weight between the entry points, storefront 60 %, catalog and reporting 20 %
each) without waiting for earlier ones to finish, the way independent users
behave: a slow service accumulates in-flight requests instead of slowing the
generator down. In-flight requests are capped, beyond which ticks are skipped,
so a hung service cannot exhaust the supervisor.

The generator only produces load; error rates are read from the services' own
counters (see `demo.world.stats`). It keeps client-side totals per target for
the curious (`GET /status` does not depend on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass
class TargetCounts:
    """Client-side outcome counts of one target."""

    sent: int = 0
    ok: int = 0
    failed: int = 0


class TrafficGenerator:
    """Open-loop request generator over weighted targets."""

    def __init__(
        self,
        targets: Callable[[], list[tuple[str, str, float]]],
        rps: float,
        *,
        timeout: float = 3.0,
        max_in_flight: int = 200,
    ) -> None:
        self._targets = targets
        self.rps = rps
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self.counts: dict[str, TargetCounts] = {}
        self.skipped = 0

    async def run(self) -> None:
        """Send requests until cancelled (returns at once when rps <= 0)."""
        if self.rps <= 0:
            return
        limits = httpx.Limits(max_connections=self._max_in_flight, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=self._timeout, limits=limits) as client:
            loop = asyncio.get_running_loop()
            interval = 1.0 / self.rps
            next_at = loop.time()
            try:
                while True:
                    self._tick(client)
                    next_at += interval
                    delay = next_at - loop.time()
                    if delay < -1.0:  # fell far behind (suspended, overloaded): do not burst
                        next_at = loop.time()
                    await asyncio.sleep(max(delay, 0.0))
            finally:
                for task in list(self._in_flight):
                    task.cancel()
                for task in list(self._in_flight):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _tick(self, client: httpx.AsyncClient) -> None:
        targets = self._targets()
        if not targets:
            return
        if len(self._in_flight) >= self._max_in_flight:
            self.skipped += 1
            return
        names = [t[0] for t in targets]
        weights = [t[2] for t in targets]
        name = random.choices(names, weights=weights)[0]
        url = next(t[1] for t in targets if t[0] == name)
        task = asyncio.create_task(self._one(client, name, url))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _one(self, client: httpx.AsyncClient, name: str, url: str) -> None:
        counts = self.counts.setdefault(name, TargetCounts())
        counts.sent += 1
        try:
            resp = await client.get(url + "/", headers={"x-request-id": uuid.uuid4().hex[:16]})
        except httpx.HTTPError:
            counts.failed += 1
            return
        if resp.status_code < 500:
            counts.ok += 1
        else:
            counts.failed += 1
