"""Alert intake: drafts of one request become `AlertReceived` events and reach the log together.

The HTTP layer parses a format into drafts; this flow stamps them with the
receipt time from the injected clock, applies the shared normalisation rules,
delivers the whole request as one batch and counts the outcome. It knows
nothing of HTTP, so it is the seam the unit tests drive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.gateway.delivery import AlertDelivery, EventLogUnavailableError
from services.gateway.metrics import GatewayMetrics
from services.gateway.normalise import AlertDraft, IntakeContext, to_alert_received
from shared.catalog import ServiceCatalog
from shared.clock import Clock
from shared.events import AlertReceived

log = logging.getLogger(__name__)


class AlertIntake:
    """Normalise a request's drafts and deliver them; raises EventLogUnavailableError on no ack."""

    def __init__(
        self,
        *,
        delivery: AlertDelivery,
        catalog: ServiceCatalog,
        clock: Clock,
        metrics: GatewayMetrics,
        dedup_window_s: int = 60,
    ) -> None:
        self.delivery = delivery
        self.catalog = catalog
        self.clock = clock
        self.metrics = metrics
        self.dedup_window_s = dedup_window_s

    def normalise(
        self, drafts: Sequence[AlertDraft], *, correlation_id: str | None = None
    ) -> list[AlertReceived]:
        """The events for drafts, as received now, without verbatim repeats."""
        ctx = IntakeContext(
            received_at=self.clock.now(),
            catalog=self.catalog,
            correlation_id=correlation_id,
            dedup_window_s=self.dedup_window_s,
        )
        alerts = (to_alert_received(draft, ctx) for draft in drafts)
        # A request that repeats an alert verbatim carries one event, not two copies of it.
        return list({alert.event_id: alert for alert in alerts}.values())

    async def accept(
        self, drafts: Sequence[AlertDraft], *, source: str, correlation_id: str | None = None
    ) -> list[AlertReceived]:
        """Normalise and deliver every draft of one request; all acknowledged or an error."""
        alerts = self.normalise(drafts, correlation_id=correlation_id)
        try:
            published = await self.delivery.deliver(alerts)
        except EventLogUnavailableError as exc:
            self.metrics.alerts.labels(source, "unavailable").inc(len(alerts))
            log.warning("refused %d %s alerts: %s", len(alerts), source, exc)
            raise
        self.metrics.alerts.labels(source, "accepted").inc(len(alerts))
        log.debug(  # per request: the counters above are the record at volume
            "accepted %d %s alerts (%d already in the log)",
            len(alerts), source, len(alerts) - published,
        )
        return alerts
