"""`irctl demo`: inject a fault into the demo world and narrate the incident live.

The narrator reads every lifecycle topic from the beginning (Tansu's "latest"
offsets are unreliable) and shows only events that occurred after the fault
was injected. It never drives the pipeline itself, except with
`--approve-as USER`, which approves through the approval API exactly as a
human would with `irctl approve`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import httpx
import typer
from rich.console import Console

from shared.events import (
    AlertReceived,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    EscalationTriggered,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    InvestigationCompleted,
    NotificationSent,
    ReportPublished,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStarted,
    RunbookStep,
    StatusUpdated,
    parse_event,
)
from shared.settings import KafkaSettings
from shared.topics import Topic

console = Console()


class Narrator:
    """Turns events into story lines, leaving out repeats (re-sent alerts, report revisions)."""

    def __init__(self, started: datetime) -> None:
        self.started = started
        self.alerts: set[tuple[str, str]] = set()

    def line(self, event: Event) -> str | None:
        """The line for an event, or None when it adds nothing to the story."""
        if isinstance(event, AlertReceived):
            key = (event.fingerprint, event.status)
            if key in self.alerts:
                return None
            self.alerts.add(key)
        if isinstance(event, IncidentUpdated) and event.change in ("alert_added", "alert_resolved"):
            return None
        if isinstance(event, ReportPublished) and event.status != "resolved":
            return None
        return narrate(event, self.started)


def narrate(event: Event, started: datetime) -> str | None:  # noqa: PLR0911, PLR0912
    """One line of narration for an event, or None to stay quiet."""
    t = f"[dim]+{(event.occurred_at - started).total_seconds():6.1f}s[/dim]"
    match event:
        case AlertReceived():
            return f"{t} [yellow]alert[/yellow] {event.name} on {event.service} ({event.status})"
        case IncidentOpened():
            return f"{t} [bold red]incident {event.incident_id} opened[/bold red]: {event.title}"
        case IncidentClassified():
            return (f"{t} severity [bold]{event.severity}[/bold] "
                    f"({event.severity.label}) because: " + "; ".join(event.reasons))
        case IncidentUpdated():
            return f"{t} incident updated: {event.change.replace('_', ' ')} {event.detail}"
        case EscalationTriggered():
            return f"{t} [magenta]escalation tier {event.tier}[/magenta] ({event.trigger}) -> " \
                   + ", ".join(event.targets)
        case NotificationSent():
            ok = "sent" if event.delivered else f"[red]failed[/red] {event.error}"
            return f"{t} {event.kind} to {event.recipient} by {event.channel}: {ok}"
        case StatusUpdated():
            return f"{t} status update #{event.sequence}: {event.current_action}"
        case InvestigationCompleted():
            action = event.proposed_action
            proposal = f" -> proposes {action.runbook}{action.parameters}" if action else ""
            return (f"{t} [cyan]hypothesis[/cyan] ({event.confidence:.0%}): "
                    f"{event.hypothesis}{proposal}")
        case ApprovalRequested():
            return (f"{t} [bold yellow]approval needed[/bold yellow] for {event.action.runbook} "
                    f"on {event.action.target} ({event.risk}). Approve in the page or run: "
                    f"[bold]irctl approve {event.request_id}[/bold]")
        case ApprovalGranted():
            return f"{t} [green]approved[/green] by {event.approver}"
        case ApprovalDenied():
            return f"{t} [red]denied[/red] by {event.approver}"
        case RunbookStarted():
            return f"{t} runbook {event.action.runbook} started ({event.risk})"
        case RunbookStep():
            return None if event.status == "started" else \
                f"{t}   step {event.step} [{event.phase}] {event.status} {event.output}".rstrip()
        case RunbookCompleted():
            return f"{t} [green]runbook completed[/green]: {event.verification}"
        case RunbookFailed():
            return f"{t} [red]runbook failed[/red]: {event.reason}"
        case RunbookRolledBack():
            return f"{t} [red]rolled back[/red]: {event.reason}"
        case IncidentAcknowledged():
            return f"{t} acknowledged by {event.acknowledged_by}"
        case IncidentResolved():
            return f"{t} [bold green]resolved[/bold green] ({event.resolution}) {event.summary}"
        case ReportPublished():
            return f"{t} report revision {event.revision}: {event.paths.get('markdown', '')}"
        case AuditRecorded():
            return f"{t} audit: {event.action} {event.outcome}: {event.reason}"
    return None


async def _follow(  # noqa: PLR0912 - a plain event loop reads best unsplit
    kafka: KafkaSettings, started: datetime, timeout_s: float,
    approval_url: str, approve_as: str | None,
) -> bool:
    from aiokafka import AIOKafkaConsumer

    names = [f"{kafka.topic_prefix}{t}" for t in Topic]
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    incidents: set[str] = set()
    narrator = Narrator(started)
    deadline = time.monotonic() + timeout_s
    resolved = False
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            events = []
            for records in batch.values():
                for rec in records:
                    try:
                        events.append(parse_event(rec.value or b""))
                    except ValueError:
                        continue
            for event in sorted(events, key=lambda e: e.occurred_at):
                if event.occurred_at < started:
                    continue
                if isinstance(event, IncidentOpened) and event.incident_id:
                    incidents.add(event.incident_id)
                if event.incident_id and incidents and event.incident_id not in incidents:
                    continue
                line = narrator.line(event)
                if line:
                    console.print(line)
                if isinstance(event, ApprovalRequested) and approve_as:
                    await _approve(approval_url, approve_as, event.request_id)
                if isinstance(event, IncidentResolved):
                    resolved = True
                if isinstance(event, ReportPublished) and resolved and event.status == "resolved":
                    console.print(f"\nReport: [bold]irctl report {event.incident_id}[/bold]")
                    return True
    finally:
        await consumer.stop()
    return resolved


async def _approve(url: str, token: str, request_id: str) -> None:
    # The approval service learns of the request from Kafka a moment after we do:
    # a 404 right away means "not yet", so retry briefly.
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(50):
            resp = await client.post(f"{url}/api/approvals/{request_id}/approve",
                                     headers={"Authorization": f"Bearer {token}"},
                                     json={"comment": "approved from irctl demo"})
            if resp.status_code != 404:
                break
            await asyncio.sleep(0.2)
    outcome = "approved" if resp.is_success else f"refused: {resp.text[:200]}"
    console.print(f"[dim]   (--approve-with-token: HTTP {resp.status_code}, {outcome})[/dim]")


def demo(
    fault: Annotated[str, typer.Option(help="bad_deploy, error_spike, stuck_cache, crash")]
    = "bad_deploy",
    service: Annotated[str, typer.Option(help="Service of the demo world to break")]
    = "payments",
    world_url: Annotated[str, typer.Option(envvar="IR_WORLD_URL")] = "http://127.0.0.1:9100",
    approval_url: Annotated[str, typer.Option(envvar="IR_APPROVAL_URL")]
    = "http://127.0.0.1:8085",
    approve_with_token: Annotated[str | None, typer.Option(
        help="Approve requests automatically with this approver token (else: you approve)"),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this many seconds")] = 600.0,
) -> None:
    """Inject a fault into the demo world and narrate the incident until it is resolved."""
    kafka = KafkaSettings()
    started = datetime.now(UTC)
    try:
        resp = httpx.post(f"{world_url}/faults/{fault}", json={"service": service}, timeout=10)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot inject the fault at {world_url}: {exc}[/red] "
                      "(is `make run` / `irctl up` running?)")
        raise typer.Exit(1) from exc
    console.print(f"[bold]Injected {fault} into {service}[/bold]; following the incident...\n")
    ok = asyncio.run(_follow(kafka, started, timeout_s, approval_url, approve_with_token))
    if not ok:
        console.print("[yellow]the incident did not resolve within the timeout[/yellow]")
        raise typer.Exit(2)
