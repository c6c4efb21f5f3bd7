"""Generic webhook notifier: POST the message as JSON, keyed by `Idempotency-Key`.

Retries inside one attempt (tenacity) cover what is usually transient: a refused
or reset connection, a timeout, a 5xx or a 429. A 4xx other than 429 means the
receiver rejected this message and would again, so it fails the attempt at once;
the flow records it, and the attempt bound caps the later retries. The in-call retry
bound is small on purpose: the tick loop retries again later, and a page stuck in
a long backoff would hold up the incident's other pages.
"""

from __future__ import annotations

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from services.escalation.notifiers.base import DeliveryError, Notifier, Outbound


class _TransientError(Exception):
    """A response worth retrying (5xx, 429)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _TransientError | httpx.TransportError)


class WebhookNotifier(Notifier):
    """POSTs JSON to the address (a URL), with the idempotency key as a header."""

    channel = "webhook"

    def __init__(self, *, timeout_s: float = 5.0, attempts: int = 3,
                 backoff_s: float = 0.2, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._attempts = attempts
        self._backoff_s = backoff_s

    async def send(self, message: Outbound) -> None:
        """POST message.payload to message.address; raise DeliveryError unless 2xx."""
        headers = {
            "Idempotency-Key": message.idempotency_key,
            "X-Incident-Id": message.incident_id,
            "User-Agent": "incident-orchestrator-escalation",
        }
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff_s, max=2),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    response = await self._client.post(
                        message.address, json=message.payload, headers=headers
                    )
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _TransientError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise DeliveryError(
                            f"webhook rejected the message: HTTP {response.status_code}")
        except _TransientError as exc:
            raise DeliveryError(f"webhook answered {exc} after {self._attempts} tries") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()
