"""One valid instance of every event type, for round-trip and schema tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import events as ev
from shared.domain import AlertStatus, IncidentPhase, RiskTier, Severity

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ACTION = ev.ActionSpec(runbook="rollback_deployment", parameters={"service": "payments"},
                       target="payments")
ENVELOPE: dict[str, Any] = {
    "producer": "tests", "incident_id": "INC-ABC123", "correlation_id": "corr-1",
    "causation_id": "cause-1", "occurred_at": T0,
}

PAYLOADS: dict[type[ev.Event], dict[str, Any]] = {
    ev.AlertReceived: {
        "incident_id": None, "source": "alertmanager", "fingerprint": "fp1",
        "correlation_key": "catalog", "status": AlertStatus.FIRING, "name": "HighErrorRate",
        "service": "payments", "severity": Severity.SEV0, "labels": {"team": "payments"},
        "starts_at": T0 - timedelta(minutes=1),
    },
    ev.IncidentOpened: {
        "title": "HighErrorRate on payments", "services": ("payments",), "fingerprints": ("fp1",),
        "alert_event_id": "a1", "alert_received_at": T0,
    },
    ev.IncidentClassified: {"severity": Severity.SEV1, "reasons": ("payments is tier 1",)},
    ev.IncidentUpdated: {"change": "service_added", "new_services": ("checkout",)},
    ev.IncidentAcknowledged: {"acknowledged_by": "alice"},
    ev.IncidentResolved: {"resolved_by": "executor", "resolution": "verified_recovery",
                          "verified": True},
    ev.EscalationTriggered: {"tier": 2, "trigger": "ack_timeout", "targets": ("bob",)},
    ev.NotificationSent: {"idempotency_key": "k1", "channel": "email",
                          "recipient": "alice@example.com"},
    ev.StatusUpdated: {"phase": IncidentPhase.INVESTIGATION, "elapsed_seconds": 60.0,
                       "current_action": "investigating", "next_step": "runbook"},
    ev.InvestigationCompleted: {
        "investigator": "rules", "hypothesis": "bad deploy v2", "confidence": 0.8,
        "evidence": (ev.Evidence(source="deploys", kind="deploy_before_anomaly",
                                 summary="v2 at 11:58"),),
        "proposed_action": ACTION,
    },
    ev.ApprovalRequested: {
        "request_id": "r1", "run_id": "run1", "action": ACTION, "risk": RiskTier.HIGH,
        "service": "payments", "rationale": "bad deploy", "expected_impact": "brief restart",
        "rollback_plan": "redeploy v2", "requested_by": "executor",
        "expires_at": T0 + timedelta(minutes=15),
    },
    ev.ApprovalGranted: {"request_id": "r1", "approver": "alice", "token": "x.y"},
    ev.ApprovalDenied: {"request_id": "r1", "approver": "alice"},
    ev.RunbookStarted: {"run_id": "run1", "action": ACTION, "risk": RiskTier.HIGH},
    ev.RunbookStep: {"run_id": "run1", "step": "rollback", "status": "succeeded"},
    ev.RunbookCompleted: {"run_id": "run1", "action": ACTION},
    ev.RunbookFailed: {"run_id": "run1", "action": ACTION, "reason": "verification failed"},
    ev.RunbookRolledBack: {"run_id": "run1", "action": ACTION, "reason": "verification failed"},
    ev.ReportPublished: {"revision": 1, "paths": {"markdown": "reports/INC-ABC123.md"}},
    ev.AuditRecorded: {"actor": "executor", "action": "approval.verify", "outcome": "rejected",
                       "reason": "bad signature"},
}


def sample_event(cls: type[ev.Event], **overrides: Any) -> ev.Event:
    """A valid instance of cls with a fresh event id."""
    return cls.model_validate({**ENVELOPE, **PAYLOADS[cls], **overrides})
