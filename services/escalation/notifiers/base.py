"""The notifier interface: one implementation per channel, one module per integration.

A notifier only delivers: it does not decide who, when or whether (the planner
does) and does not record anything (the flow turns the outcome into a
`notification.sent` event). It raises `DeliveryError` (or lets any other
exception escape) when the message was not accepted; the flow records the failure
and retries on a later tick, a bounded number of times.

Every message carries its idempotency key; an integration passes it on in the
form its protocol knows (HTTP `Idempotency-Key` header, e-mail `Message-ID`), so
the rare resend after a crash between sending and recording can be dropped by
the receiver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class DeliveryError(Exception):
    """The channel did not accept the message."""


@dataclass(frozen=True)
class Outbound:
    """One message to one address."""

    idempotency_key: str
    kind: str
    incident_id: str
    recipient: str
    address: str
    subject: str
    text: str
    payload: dict[str, Any]


class Notifier(ABC):
    """Delivers messages over one channel (`email`, `webhook`, ...)."""

    channel: str

    @abstractmethod
    async def send(self, message: Outbound) -> None:
        """Deliver message to its address; raise when it was not accepted."""

    async def aclose(self) -> None:
        """Release connections (called when the service stops)."""
        return
