"""Alert rules of the demo world: a tiny Prometheus + Alertmanager stand-in.

Prometheus evaluates rules and Alertmanager notifies receivers; here one class
does both, so the demo needs neither binary, yet the receiver (the
orchestrator's gateway) sees exactly what a real Alertmanager would POST: the
webhook payload version "4" with `groupKey`, `status`, `receiver`,
`groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL` and
`alerts[]` (`status`, `labels`, `annotations`, `startsAt`, `endsAt`,
`generatorURL`, `fingerprint`), sent with `Authorization: Bearer <token>`.

Rules, evaluated every `interval` seconds over the supervisor's per-service
health (error rate over the sliding window, up, cache error rate):

- `HighErrorRate`: up and error rate > threshold (default 20 %); severity
  `critical` for tier-1 services, `warning` otherwise;
- `ServiceDown`: the process is not up; same severity rule;
- `CacheErrors`: share of failed cache lookups > threshold; `warning`.

Like a rule with `for:`, an alert fires after `for_count` consecutive true
evaluations and resolves after `for_count` consecutive false ones (Prometheus
resolves at once; the symmetric delay avoids flapping around the threshold on a
short window). A rule holds its state (counts neither way) while it has no
data: during a planned restart or deploy of the service (`maintenance`, like
an inhibition), and for the rate rules while the process is down (then
ServiceDown speaks). `startsAt` is when the condition first held. A firing alert is
re-sent every `repeat_seconds` (Alertmanager's `repeat_interval`); a resolved
notification is sent once, with `endsAt`. Each alert is its own group
(grouped by alertname and service), so a notification holds one alert.

The fingerprint is Prometheus' label-set fingerprint (FNV-1a 64 over the
sorted label names and values, 0xff separators), so it is stable across
re-sends and processes. Delivery is sequential (a firing notification is never
overtaken by its own resolution) and retried with exponential backoff on
connection errors and 429/5xx, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger("demo.alerter")

ZERO_TIME = "0001-01-01T00:00:00Z"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ALERTNAMES = ("HighErrorRate", "ServiceDown", "CacheErrors")

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class ServiceHealth:
    """What the rules see of one service at one evaluation."""

    service: str
    tier: int
    up: bool
    error_rate: float
    requests: float
    cache_error_rate: float | None = None
    cache_lookups: float = 0.0
    maintenance: bool = False
    """A planned restart or deploy is in progress: every rule holds its state."""


@dataclass
class AlerterConfig:
    """Rule thresholds and notification settings."""

    webhook_url: str
    token: str | None = None
    external_url: str = "http://127.0.0.1:9100"
    receiver: str = "incident-orchestrator"
    interval: float = 1.0
    for_count: int = 2
    repeat_seconds: float = 30.0
    threshold: float = 0.2
    min_requests: float = 3.0
    window_seconds: float = 30.0
    max_attempts: int = 6
    backoff_max: float = 4.0


@dataclass
class _RuleState:
    true_count: int = 0
    false_count: int = 0
    active_since: datetime | None = None
    firing: bool = False
    last_sent: float = 0.0
    last_firing: ServiceHealth | None = None


class _RetryableError(Exception):
    """A delivery failure worth retrying (connection error, 429, 5xx)."""


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' fingerprint of a label set, as 16 hex digits."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h ^= byte
                h = (h * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def rfc3339(moment: datetime) -> str:
    """Alertmanager's timestamp format (UTC, `Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def severity_for(alertname: str, tier: int) -> str:
    """critical for tier-1 services' HighErrorRate/ServiceDown, warning otherwise."""
    if alertname in ("HighErrorRate", "ServiceDown") and tier == 1:
        return "critical"
    return "warning"


def _expr(alertname: str, service: str, cfg: AlerterConfig) -> str:
    w = f"{cfg.window_seconds:g}s"
    if alertname == "HighErrorRate":
        return (
            f'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[{w}])) / '
            f'sum(rate(http_requests_total{{service="{service}"}}[{w}])) > {cfg.threshold:g}'
        )
    if alertname == "ServiceDown":
        return f'up{{service="{service}"}} == 0'
    return (
        f'sum(rate(demo_cache_errors_total{{service="{service}"}}[{w}])) / '
        f'sum(rate({{__name__=~"demo_cache_(hits|misses|errors)_total",service="{service}"}}'
        f"[{w}])) > {cfg.threshold:g}"
    )


def _annotations(alertname: str, h: ServiceHealth, cfg: AlerterConfig) -> dict[str, str]:
    w = f"{cfg.window_seconds:g}s"
    if alertname == "HighErrorRate":
        return {
            "summary": f"High error rate on {h.service}",
            "description": (
                f"{h.service} answered {h.error_rate:.0%} of {h.requests:.0f} requests with 5xx "
                f"over the last {w} (threshold {cfg.threshold:.0%})."
            ),
        }
    if alertname == "ServiceDown":
        return {
            "summary": f"{h.service} is down",
            "description": (
                f"{h.service} has not answered its metrics scrape for {cfg.for_count} "
                "consecutive checks; the process is not running."
            ),
        }
    return {
        "summary": f"Cache errors on {h.service}",
        "description": (
            f"{(h.cache_error_rate or 0.0):.0%} of {h.cache_lookups:.0f} {h.service} cache "
            f"lookups failed over the last {w} (threshold {cfg.threshold:.0%})."
        ),
    }


def _condition(alertname: str, h: ServiceHealth, cfg: AlerterConfig) -> bool:
    if alertname == "HighErrorRate":
        return h.up and h.requests >= cfg.min_requests and h.error_rate > cfg.threshold
    if alertname == "ServiceDown":
        return not h.up
    return (
        h.up
        and h.cache_error_rate is not None
        and h.cache_lookups >= cfg.min_requests
        and h.cache_error_rate > cfg.threshold
    )


class Alerter:
    """Evaluates the rules and delivers Alertmanager webhook notifications."""

    def __init__(self, cfg: AlerterConfig, client: httpx.AsyncClient | None = None) -> None:
        self.cfg = cfg
        self._client = client
        self._own_client = client is None
        self._state: dict[tuple[str, str], _RuleState] = {}
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: deque[dict[str, Any]] = deque(maxlen=200)
        self.failed = 0

    # --- rules -------------------------------------------------------------------

    def evaluate(
        self, healths: Iterable[ServiceHealth], now: datetime, mono: float
    ) -> list[dict[str, Any]]:
        """One rule evaluation: the notifications it produces (not yet sent)."""
        out: list[dict[str, Any]] = []
        for h in healths:
            for alertname in ALERTNAMES:
                if alertname == "CacheErrors" and h.cache_error_rate is None:
                    continue
                st = self._state.setdefault((alertname, h.service), _RuleState())
                payload = self._step(st, alertname, h, now, mono)
                if payload is not None:
                    out.append(payload)
        return out

    def _step(
        self, st: _RuleState, alertname: str, h: ServiceHealth, now: datetime, mono: float
    ) -> dict[str, Any] | None:
        cfg = self.cfg
        if h.maintenance or (alertname != "ServiceDown" and not h.up):
            return None  # no data: hold the state, like an inhibited rule
        if _condition(alertname, h, cfg):
            st.true_count += 1
            st.false_count = 0
            if st.active_since is None:
                st.active_since = now
            due = not st.firing or mono - st.last_sent >= cfg.repeat_seconds
            if st.true_count >= cfg.for_count and due:
                st.firing = True
                st.last_sent = mono
                st.last_firing = h
                return self._payload("firing", alertname, h, st.active_since, None)
            return None
        st.true_count = 0
        if not st.firing:
            st.active_since = None
            return None
        st.false_count += 1
        if st.false_count < cfg.for_count:
            return None
        started, last = st.active_since or now, st.last_firing or h
        st.firing, st.active_since, st.false_count, st.last_firing = False, None, 0, None
        # Like Alertmanager, the resolution carries the annotations the alert last fired with.
        return self._payload("resolved", alertname, last, started, now)

    def active(self) -> list[dict[str, Any]]:
        """Alerts currently firing: alertname, service, startsAt."""
        return [
            {
                "alertname": name,
                "service": svc,
                "startsAt": rfc3339(st.active_since) if st.active_since else None,
            }
            for (name, svc), st in sorted(self._state.items())
            if st.firing
        ]

    def _payload(
        self,
        status: str,
        alertname: str,
        h: ServiceHealth,
        starts: datetime,
        ends: datetime | None,
    ) -> dict[str, Any]:
        cfg = self.cfg
        labels = {
            "alertname": alertname,
            "service": h.service,
            "severity": severity_for(alertname, h.tier),
        }
        annotations = _annotations(alertname, h, cfg)
        group_labels = {"alertname": alertname, "service": h.service}
        base = cfg.external_url.rstrip("/")
        alert = {
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends) if ends else ZERO_TIME,
            "generatorURL": f"{base}/graph?g0.expr={quote(_expr(alertname, h.service, cfg))}"
            "&g0.tab=1",
            "fingerprint": fingerprint(labels),
        }
        return {
            "version": "4",
            "groupKey": "{}:{"
            + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
            + "}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": cfg.receiver,
            "groupLabels": group_labels,
            "commonLabels": dict(labels),
            "commonAnnotations": dict(annotations),
            "externalURL": base,
            "alerts": [alert],
        }

    # --- delivery ----------------------------------------------------------------

    def enqueue(self, payloads: Iterable[dict[str, Any]]) -> None:
        """Queue notifications for delivery, in order."""
        for p in payloads:
            self._queue.put_nowait(p)

    async def deliver(self, payload: dict[str, Any]) -> bool:
        """POST one notification with retries; True when the receiver accepted it."""
        client = self._client
        assert client is not None, "deliver() needs the client opened by run()"
        headers = {"Content-Type": "application/json"}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.cfg.max_attempts),
                wait=wait_exponential(multiplier=0.2, max=self.cfg.backoff_max),
                retry=retry_if_exception_type(_RetryableError),
                reraise=True,
            ):
                with attempt:
                    try:
                        resp = await client.post(
                            self.cfg.webhook_url, json=payload, headers=headers
                        )
                    except httpx.TransportError as exc:
                        raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
                    if resp.status_code in RETRY_STATUSES:
                        raise _RetryableError(f"HTTP {resp.status_code}")
                    if resp.status_code >= 400:
                        log.warning(
                            "alert webhook rejected %s %s: HTTP %s %s",
                            payload["status"],
                            payload["groupKey"],
                            resp.status_code,
                            resp.text[:200],
                        )
                        self.failed += 1
                        return False
        except _RetryableError as exc:
            log.warning("alert webhook gave up on %s: %s", payload["groupKey"], exc)
            self.failed += 1
            return False
        self.sent.append(payload)
        log.info("alert %s %s delivered", payload["status"], payload["groupKey"])
        return True

    async def _sender(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self.deliver(payload)
            finally:
                self._queue.task_done()

    async def run(self, source: Callable[[], list[ServiceHealth]]) -> None:
        """Evaluate every interval and deliver notifications until cancelled."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        sender = asyncio.create_task(self._sender())
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.cfg.interval)
                try:
                    self.enqueue(self.evaluate(source(), datetime.now(UTC), loop.time()))
                except Exception:
                    log.exception("alert evaluation failed")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if self._own_client:
                await self._client.aclose()
                self._client = None
