"""The post-incident report: a structured document built from an `IncidentRecord`.

Section order is DOMAIN.md's (seed 000). Everything computable is computed
from events; what only a human can know (revenue lost, where we got lucky)
is marked as an open item for the post-incident review rather than invented.
The JSON form is the source; Markdown and HTML are rendered from it with
jinja2 templates (autoescaped for HTML).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.reporter.timeline import IncidentRecord
from shared.catalog import ServiceCatalog
from shared.domain import SLA, Severity
from shared.events import (
    ApprovalGranted,
    EscalationTriggered,
    IncidentAcknowledged,
    IncidentClassified,
    NotificationSent,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
)

SECTIONS = (
    "INCIDENT SUMMARY",
    "TIMELINE OF EVENTS",
    "ROOT CAUSE ANALYSIS",
    "CUSTOMER IMPACT",
    "ACTIONS TAKEN",
    "REMEDIATION ITEMS",
    "LESSONS LEARNED",
    "METRICS",
    "FOLLOW-UP ACTION ITEMS",
)

REMEDIATION_BY_CAUSE: dict[str, list[tuple[str, str]]] = {
    "bad_deploy": [
        ("P0", "Add a canary stage with automatic rollback on error rate for {service}"),
        ("P1", "Add a regression test for the failure introduced in {version}"),
    ],
    "stuck_cache": [
        ("P1", "Validate cache entries on read and evict corrupt ones automatically in {service}"),
    ],
    "crash": [
        ("P0", "Find why {service} crashed (core dump, OOM, panic) and fix it"),
        ("P1", "Add liveness probing with automatic restart for {service}"),
    ],
    "error_spike": [
        ("P1", "Find the trigger of the error spike in {service} and add a specific alert"),
    ],
}


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def build_report(record: IncidentRecord, catalog: ServiceCatalog, now: datetime) -> dict[str, Any]:
    """The report document (JSON-serialisable) of an incident as of now."""
    opened = record.opened
    classification = record.classification
    resolved = record.resolved
    cause = record.root_cause
    metrics = record.metrics()
    severity = classification.severity if classification else None
    start = opened.alert_received_at if opened else None
    end = resolved.occurred_at if resolved else now
    duration = (end - start).total_seconds() if start else None
    services = record.services
    impact = classification.customer_impact if classification else ""
    facing = list(classification.blast_radius.customer_facing) if classification else []

    key_moments = _key_moments(record)
    actions = _actions(record)
    owner_team = next(
        (s.team for name in services if (s := catalog.get(name)) is not None), "incident owner"
    )
    target = (cause.proposed_action.target if cause and cause.proposed_action else None) or (
        services[0] if services else "the affected service")
    version = ""
    if cause is not None:
        for ev in cause.evidence:
            version = str(ev.data.get("version", "")) or version
    due_base = (resolved.occurred_at if resolved else now)
    remediation = [
        {"priority": prio, "item": text.format(service=target, version=version or "the release"),
         "owner": owner_team, "due": _iso(due_base + timedelta(days=7 if prio != "P0" else 2)),
         "status": "open"}
        for prio, text in REMEDIATION_BY_CAUSE.get(cause.cause if cause else "", [])
    ]
    remediation.append({
        "priority": "P2", "item": "Review alert thresholds and runbook coverage for "
        f"{', '.join(services) or 'the affected services'}", "owner": owner_team,
        "due": _iso(due_base + timedelta(days=14)), "status": "open"})

    sla = SLA.get(severity) if severity else None
    lessons = _lessons(record, metrics, severity)
    return {
        "incident_id": record.incident_id,
        "generated_at": _iso(now),
        "sections": list(SECTIONS),
        "summary": {
            "incident_id": record.incident_id,
            "title": opened.title if opened else record.incident_id,
            "severity": severity.value if severity else None,
            "severity_label": severity.label if severity else None,
            "severity_reasons": list(classification.reasons) if classification else [],
            "status": "resolved" if resolved else "open",
            "duration_seconds": duration,
            "duration": _fmt_duration(duration),
            "affected_services": services,
            "customer_impact": impact or "No customer-facing impact recorded",
            "escalation_tier": record.max_tier,
        },
        "timeline": [
            {"at": _iso(e.at), "kind": e.kind, "text": e.text, "by": e.actor}
            for e in record.timeline()
        ],
        "key_moments": key_moments,
        "root_cause": {
            "identified": bool(cause and cause.root_cause_identified),
            "cause": cause.cause if cause else "unknown",
            "hypothesis": cause.hypothesis if cause else "Not yet identified",
            "confidence": cause.confidence if cause else None,
            "contributing_factors": [e.summary for e in cause.evidence[1:]] if cause else [],
            "evidence": [
                {"source": e.source, "kind": e.kind, "summary": e.summary,
                 "observed_at": _iso(e.observed_at)} for e in (cause.evidence if cause else ())
            ],
            "symptoms": [f"alerts on {s}" for s in services if not cause
                         or not cause.proposed_action or s != cause.proposed_action.target],
        },
        "customer_impact": {
            "customer_facing_services": facing,
            "summary": impact or "No customer-facing service affected",
            "duration": _fmt_duration(duration),
            "users_affected": "to be quantified in the post-incident review",
            "requests_failed": "to be quantified from request metrics",
            "revenue": "to be quantified by the business owner",
            "regions": "all regions served by the affected services",
        },
        "actions": actions,
        "remediation_items": remediation,
        "lessons": lessons,
        "metrics": {
            **{f"{k}_seconds": v for k, v in metrics.items()},
            **{k: _fmt_duration(v) for k, v in metrics.items()},
            "sla": {
                "acknowledge": _fmt_duration(sla.acknowledge.total_seconds()) if sla else None,
                "resolve": _fmt_duration(sla.resolve.total_seconds())
                if sla and sla.resolve else "best effort",
                "acknowledge_met": (metrics["mtta"] is not None and sla is not None
                                    and metrics["mtta"] <= sla.acknowledge.total_seconds()),
                "resolve_met": (metrics["mttr"] is not None and sla is not None
                                and (sla.resolve is None
                                     or metrics["mttr"] <= sla.resolve.total_seconds())),
            },
        },
        "follow_up": [
            {"item": "Hold the post-incident review", "owner": owner_team,
             "due": _iso(due_base + timedelta(hours=48))},
            {"item": "Confirm remediation items have owners and due dates",
             "owner": owner_team, "due": _iso(due_base + timedelta(hours=48))},
            {"item": "Share the resolution notice with stakeholders", "owner": "incident commander",
             "due": _iso(due_base + timedelta(hours=24))},
        ],
    }


def _key_moments(record: IncidentRecord) -> list[dict[str, str | None]]:
    opened = record.opened
    ack = record.first(IncidentAcknowledged)
    classified = record.first(IncidentClassified)
    cause = record.root_cause
    started = record.first(RunbookStarted)
    completed = record.first(RunbookCompleted)
    resolved = record.resolved
    return [
        {"moment": "First anomaly", "at": _iso(opened.first_anomaly_at if opened else None),
         "by": "monitoring"},
        {"moment": "Alert received", "at": _iso(opened.alert_received_at if opened else None),
         "by": "gateway"},
        {"moment": "Acknowledged", "at": _iso(ack.occurred_at if ack else None),
         "by": ack.acknowledged_by if ack else None},
        {"moment": "Investigation began",
         "at": _iso(classified.occurred_at if classified else None), "by": "investigator"},
        {"moment": "Root cause identified",
         "at": _iso(cause.occurred_at if cause and cause.root_cause_identified else None),
         "by": cause.investigator if cause else None},
        {"moment": "Remediation initiated", "at": _iso(started.occurred_at if started else None),
         "by": started.approved_by or "executor" if started else None},
        {"moment": "Recovery confirmed", "at": _iso(completed.occurred_at if completed else None),
         "by": "executor" if completed else None},
        {"moment": "Resolved", "at": _iso(resolved.occurred_at if resolved else None),
         "by": resolved.resolved_by if resolved else None},
    ]


def _actions(record: IncidentRecord) -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    for event in record.ordered():
        match event:
            case RunbookStarted():
                out.append({"at": _iso(event.occurred_at),
                            "action": f"{event.action.runbook} on {event.action.target}",
                            "outcome": "started" + (f" (approved by {event.approved_by})"
                                                    if event.approved_by else "")})
            case RunbookCompleted():
                out.append({"at": _iso(event.occurred_at), "action": event.action.runbook,
                            "outcome": "succeeded, recovery verified"})
            case RunbookFailed():
                out.append({"at": _iso(event.occurred_at), "action": event.action.runbook,
                            "outcome": f"failed: {event.reason}"})
            case RunbookRolledBack():
                out.append({"at": _iso(event.occurred_at), "action": event.action.runbook,
                            "outcome": f"rolled back: {event.reason}"})
            case EscalationTriggered():
                out.append({"at": _iso(event.occurred_at),
                            "action": f"escalated to tier {event.tier}",
                            "outcome": ", ".join(event.targets) or event.trigger})
            case ApprovalGranted():
                out.append({"at": _iso(event.occurred_at), "action": "approval granted",
                            "outcome": f"by {event.approver}"})
            case _:
                pass
    return out


def _lessons(record: IncidentRecord, metrics: dict[str, float | None],
             severity: Severity | None) -> dict[str, list[str]]:
    well: list[str] = []
    poorly: list[str] = []
    sla = SLA.get(severity) if severity else None
    if metrics["mttd"] is not None and sla and metrics["mttd"] <= sla.detect.total_seconds():
        took = _fmt_duration(metrics["mttd"])
        well.append(f"Detected within the {severity} detection target ({took})")
    cause = record.root_cause
    if cause and cause.root_cause_identified:
        well.append(f"Root cause identified automatically ({cause.cause}, "
                    f"confidence {cause.confidence:.0%})")
    if record.first(RunbookCompleted):
        well.append("Automated remediation restored service with verified recovery")
    if record.all(RunbookFailed):
        poorly.append("A remediation attempt failed and had to be rolled back")
    if sla and metrics["mtta"] is None and record.resolved is None:
        poorly.append("Not yet acknowledged")
    elif sla and metrics["mtta"] is not None and metrics["mtta"] > sla.acknowledge.total_seconds():
        poorly.append(f"Acknowledgement missed the {severity} SLA")
    if (record.max_tier or 0) > 1:
        poorly.append(f"Escalation reached tier {record.max_tier}")
    failed = [n for n in record.all(NotificationSent) if not n.delivered]
    if failed:
        poorly.append(f"{len(failed)} notification(s) failed to deliver")
    return {
        "went_well": well or ["To be discussed in the post-incident review"],
        "went_poorly": poorly or ["Nothing recorded by the system"],
        "lucky": ["To be discussed in the post-incident review"],
    }


_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(report: dict[str, Any], fmt: str) -> str:
    """Render a report document as 'markdown' or 'html'."""
    template = _ENV.get_template("report.md.j2" if fmt == "markdown" else "report.html.j2")
    return template.render(r=report)
