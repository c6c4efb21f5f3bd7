"""Handing alerts to the event log: 202 means every alert of the request is in Kafka.

Decisions:

- **Acknowledged or refused, never "probably".** A request's alerts are
  published together (`EventBus.publish_many`: one record batch per partition,
  one `acks=all` round trip for the lot, not one per alert) and the request
  waits for every acknowledgement, up to
  `publish_timeout_s`. A timeout, a broker error or a broker never reached
  raises `EventLogUnavailableError`, which the API turns into 503 + Retry-After: the
  sender keeps the alerts and retries. Records of a timed-out request may
  still reach the log later (the producer keeps retrying in the background);
  the retry then carries the same event ids (see `normalise`), so consumers
  drop the copy.
- **Start-up never waits for the broker.** `connect()` runs as a background
  task: probe the bootstrap servers with a short-lived client, create the
  topics, start the producer; on failure back off (0.2 s doubling to
  `retry_max_s`) and try again. Until it succeeds every request gets 503 at
  once (no point waiting for a timeout) and `/healthz` says 503. After that the
  producer reconnects by itself when the broker comes and goes. The probe
  exists because a failed `KafkaBroker.start()` leaks an unclosed producer in
  faststream 0.7.8; probing first keeps those failures to a rare race.
- **Bounded waiting.** At most `max_in_flight` alerts may await acknowledgement;
  beyond that the gateway answers 503 instead of queueing without limit while
  the broker is slow. A single request larger than the limit is still admitted
  when nothing else is waiting, so it is never refused forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from shared.events import AlertReceived
from shared.kafka import EventBus, security_kwargs

log = logging.getLogger(__name__)


class EventLogUnavailableError(Exception):
    """The event log did not acknowledge the alerts; nothing of the request is claimed."""


class AlertDelivery:
    """Connects the bus in the background and publishes alert batches with a deadline."""

    def __init__(
        self,
        bus: EventBus,
        *,
        timeout_s: float = 5.0,
        max_in_flight: int = 10_000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._connected = False
        self._in_flight = 0

    @property
    def connected(self) -> bool:
        """True once the producer started (it reconnects by itself afterwards)."""
        return self._connected

    async def connect(self) -> None:
        """Connect to the broker, retrying with backoff until it works (run in the background)."""
        delay = self.retry_initial_s
        attempt = 0
        while not self._connected:
            attempt += 1
            try:
                await self._probe()
                await self.bus.ensure_topics()
                await self.bus.broker.start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means "not yet": keep serving 503 and retry
                log.warning(
                    "event log unreachable at %s (attempt %d: %s: %s); retrying in %.1f s",
                    self.bus.settings.bootstrap_servers, attempt, type(exc).__name__, exc, delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self._connected = True
            log.info("connected to the event log at %s", self.bus.settings.bootstrap_servers)

    async def _probe(self) -> None:
        client = AIOKafkaClient(
            bootstrap_servers=self.bus.settings.bootstrap_servers,
            request_timeout_ms=min(self.bus.settings.request_timeout_ms, 5000),
            **security_kwargs(self.bus.settings),
        )
        try:
            await client.bootstrap()
        finally:
            await client.close()

    async def deliver(self, alerts: Sequence[AlertReceived]) -> int:
        """Publish every alert and wait for all acks; the count newly published (not repeats)."""
        if not self._connected:
            raise EventLogUnavailableError("not connected to the event log yet")
        if not admits(self._in_flight, len(alerts), self.max_in_flight):
            raise EventLogUnavailableError(
                f"{self._in_flight} alerts of other requests await the broker's acknowledgement"
                f" (limit {self.max_in_flight})"
            )
        self._in_flight += len(alerts)
        try:
            async with asyncio.timeout(self.timeout_s):  # no task per request, unlike wait_for
                return await self.bus.publish_many(alerts, headers=_headers)
        except TimeoutError:
            raise EventLogUnavailableError(
                f"the event log did not acknowledge within {self.timeout_s:g} s"
            ) from None
        except (KafkaError, OSError, RuntimeError) as exc:
            raise EventLogUnavailableError(
                f"alerts not acknowledged: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._in_flight -= len(alerts)


def admits(in_flight: int, batch: int, limit: int) -> bool:
    """Whether a batch may wait for acks now; a batch above the limit waits for an idle moment."""
    return in_flight == 0 or in_flight + batch <= limit


def _headers(event: AlertReceived) -> tuple[tuple[str, bytes], ...]:
    return (
        ("correlation-id", event.correlation_id.encode()),
        ("alert-source", event.source.encode()),
    )
