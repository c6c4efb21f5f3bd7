"""Shared data for the triage tests (no tests here): a small catalog and an alert factory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.catalog import ServiceCatalog
from shared.domain import AlertStatus, Severity
from shared.events import AlertReceived, derive_event_id

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# The demo world's shape: storefront -> checkout -> payments, storefront -> catalog,
# reporting -> payments. Kept here so the tests do not move when the demo does.
CATALOG = ServiceCatalog.model_validate({
    "services": [
        {"name": "storefront", "tier": 1, "customer_facing": True,
         "depends_on": ["checkout", "catalog"]},
        {"name": "checkout", "tier": 1, "customer_facing": True, "depends_on": ["payments"]},
        {"name": "payments", "tier": 1, "customer_facing": False},
        {"name": "catalog", "tier": 2, "customer_facing": False},
        {"name": "reporting", "tier": 4, "customer_facing": False, "depends_on": ["payments"]},
        {"name": "ledger", "tier": 1, "customer_facing": False},
        {"name": "search", "tier": 2, "customer_facing": True},
    ]
})


def make_alert(
    service: str,
    *,
    fingerprint: str | None = None,
    status: AlertStatus = AlertStatus.FIRING,
    source_severity: str | None = "critical",
    labels: dict[str, str] | None = None,
    n: int = 0,
    received_at: datetime = T0,
    **extra: Any,
) -> AlertReceived:
    """An alert as the gateway would emit it; n makes a distinct event id."""
    fp = fingerprint or f"fp-{service}"
    return AlertReceived(
        event_id=derive_event_id("test-alert", fp, status, n),
        producer="gateway",
        correlation_id=f"corr-{fp}-{n}",
        source="alertmanager",
        fingerprint=fp,
        correlation_key=CATALOG.correlation_group(service),
        status=status,
        name=extra.pop("name", "HighErrorRate"),
        service=service,
        summary=extra.pop("summary", f"{service} is failing"),
        source_severity=source_severity,
        severity=Severity.parse(source_severity),
        labels=labels or {},
        starts_at=received_at - timedelta(minutes=2),
        received_at=received_at,
        **extra,
    )
