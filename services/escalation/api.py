"""Read-only HTTP views: who is on call, and where an incident stands in the chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from services.escalation.flow import EscalationFlow
from services.escalation.schedule import EscalationRole, OnCallSchedule


def build_router(flow: EscalationFlow, schedule: OnCallSchedule) -> APIRouter:
    """Routes under /oncall and /escalations."""
    router = APIRouter(tags=["escalation"])

    @router.get("/oncall", summary="Who holds each team's rotations (now, or at ?at=)")
    async def oncall(at: datetime | None = None) -> dict[str, Any]:
        when = at or flow.clock.now()
        if when.tzinfo is None:
            raise HTTPException(422, "at must carry a timezone offset")
        return {
            "at": when.isoformat(),
            "teams": {
                team: {
                    "oncall": schedule.who_is_on_call(team, when),
                    "senior_oncall": schedule.who_is_on_call(
                        team, when, EscalationRole.SENIOR_ONCALL),
                }
                for team in schedule.teams
            },
        }

    @router.get("/escalations/{incident_id}", summary="An incident's escalation state")
    async def escalation(incident_id: str) -> dict[str, Any]:
        incident = flow.book.get(incident_id)
        if incident is None or incident.opened_at is None:
            raise HTTPException(404, f"unknown incident {incident_id} (or resolved more than "
                                     "IR_ESCALATION_RETENTION_S ago and forgotten)")
        deadline = flow.planner.next_deadline(incident)
        return {
            "incident_id": incident.incident_id,
            "severity": incident.severity,
            "phase": incident.phase,
            "tier": incident.tier,
            "tiers": {
                t: {"reached_at": r.reached_at.isoformat(), "trigger": r.trigger,
                    "targets": list(r.targets)}
                for t, r in sorted(incident.tiers.items())
            },
            "acknowledged_by": incident.acknowledged_by,
            "resolved": incident.resolved_at is not None,
            "next_escalation_at": deadline[0].isoformat() if deadline else None,
            "next_escalation_trigger": deadline[1] if deadline else None,
            "pending_triggers": [p.trigger for p in incident.pending],
            "undelivered": sorted(k for k, d in incident.deliveries.items() if not d.delivered),
        }

    return router
