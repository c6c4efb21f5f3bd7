"""`irctl approvals | approve | deny | incidents | ack | resolve`: humans on the command line.

The commands are thin clients of the approval service's JSON API (never of
Kafka): the service applies the rules, signs approvals and audits refusals,
so the CLI cannot do anything the web page could not. The URL comes from
`IR_APPROVAL_URL` (default http://127.0.0.1:8085) and the bearer token from
`IR_TOKEN` (or `--url` / `--token`). A refusal prints the server's reason and
exits 1; an unreachable server exits 1 with what to check; a missing token
exits 2.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8085"

UrlOption = Annotated[str, typer.Option("--url", envvar="IR_APPROVAL_URL",
                                        help="Approval service base URL")]
TokenOption = Annotated[str, typer.Option("--token", envvar="IR_TOKEN",
                                          help="Your approver token (approvers.yaml)")]
AllOption = Annotated[bool, typer.Option("--all", help="Include decided / resolved ones")]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Kept in the audit trail")]

_RISK_STYLE = {"HIGH": "bold red", "MEDIUM": "yellow", "LOW": "cyan"}
_STATUS_STYLE = {"pending": "yellow", "granted": "green", "denied": "red", "expired": "dim",
                 "open": "red", "acknowledged": "yellow", "resolved": "green"}


class ApprovalClient:
    """A small synchronous client of the approval API that turns failures into exits."""

    def __init__(self, url: str, token: str, console: Console) -> None:
        self.url = url.rstrip("/")
        self.console = console
        if not token:
            console.print("[red]no token: set IR_TOKEN or pass --token "
                          "(see demo/config/approvers.yaml)[/red]")
            raise typer.Exit(2)
        import httpx  # lazy: keeps `irctl --help` and the other commands fast

        self._http = httpx.Client(base_url=self.url, timeout=10.0,
                                  headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; returns the JSON answer or exits with a clear message."""
        import httpx

        try:
            with self._http as http:
                response = http.request(method, path, json=body)
        except httpx.TransportError as exc:
            self._fail(f"cannot reach the approval service at {self.url} ({exc}); is it "
                       "running? (set IR_APPROVAL_URL)")
        if response.status_code >= 400:
            self._fail(f"refused ({response.status_code}): {_detail(response)}")
        return response.json()

    def _fail(self, message: str) -> NoReturn:
        self.console.print(f"[red]{message}[/red]")
        raise typer.Exit(1)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                         for d in detail)
    return str(detail)


def _styled(value: str, styles: dict[str, str]) -> str:
    style = styles.get(value)
    return f"[{style}]{value}[/{style}]" if style else value


def _ago(moment: str | None) -> str:
    if not moment:
        return "-"
    return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M:%S")


def _remaining(seconds: float) -> str:
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def approvals(url: UrlOption = DEFAULT_URL, token: TokenOption = "",
              all_: AllOption = False) -> None:
    """List approval requests (pending ones, or all with --all)."""
    console = Console()
    items = ApprovalClient(url, token, console).call(
        "GET", f"/api/approvals?status={'all' if all_ else 'pending'}")
    table = Table(title="Approval requests" if all_ else "Pending approvals")
    for column in ("Request", "Incident", "Action", "Target", "Parameters", "Risk",
                   "Requested by", "Expires in", "Status"):
        table.add_column(column, overflow="fold")
    for a in items:
        risk = a.get("policy_risk") or a["risk"]
        table.add_row(
            a["request_id"], a["incident_id"], a["runbook"], a["target"],
            ", ".join(f"{k}={v}" for k, v in sorted(a["parameters"].items())) or "-",
            _styled(risk, _RISK_STYLE), a["requested_by"],
            _remaining(a["expires_in_s"]) if a["status"] == "pending" else "-",
            _styled(a["status"], _STATUS_STYLE)
            + (f" by {a['decision']['approver']}" if a.get("decision") else ""),
        )
    console.print(table if items else "[dim]no approval requests[/dim]")


def approve(
    request_id: Annotated[str, typer.Argument(help="Approval request id")],
    comment: CommentOption = "", url: UrlOption = DEFAULT_URL, token: TokenOption = "",
) -> None:
    """Approve a request: the service signs a token bound to that exact action."""
    console = Console()
    result = ApprovalClient(url, token, console).call(
        "POST", f"/api/approvals/{quote(request_id, safe='')}/approve", {"comment": comment})
    console.print(f"[green]approved[/green] {request_id} as {result['approver']} "
                  f"(event {result['event_id']})")


def deny(
    request_id: Annotated[str, typer.Argument(help="Approval request id")],
    comment: CommentOption = "", url: UrlOption = DEFAULT_URL, token: TokenOption = "",
) -> None:
    """Deny a request."""
    console = Console()
    result = ApprovalClient(url, token, console).call(
        "POST", f"/api/approvals/{quote(request_id, safe='')}/deny", {"comment": comment})
    console.print(f"[red]denied[/red] {request_id} as {result['approver']}")


def incidents(url: UrlOption = DEFAULT_URL, token: TokenOption = "",
              all_: AllOption = False) -> None:
    """List incidents (open ones, or all with --all)."""
    console = Console()
    items = ApprovalClient(url, token, console).call(
        "GET", f"/api/incidents?status={'all' if all_ else 'open'}")
    table = Table(title="Incidents" if all_ else "Open incidents")
    for column in ("Incident", "Severity", "Title", "Services", "Status", "Opened",
                   "Remediation"):
        table.add_column(column, overflow="fold")
    for i in items:
        status = _styled(i["status"], _STATUS_STYLE)
        if i.get("acknowledged_by") and i["status"] != "resolved":
            status += f" by {i['acknowledged_by']}"
        if i["status"] == "resolved":
            checked = "verified" if i.get("verified") else "unverified"
            status += f" ({i.get('resolution')}, {checked})"
        table.add_row(i["incident_id"], i.get("severity") or "-", i["title"] or "-",
                      ", ".join(i["services"]), status, _ago(i.get("opened_at")),
                      i.get("remediation") or "-")
    console.print(table if items else "[dim]no incidents[/dim]")


def ack(
    incident_id: Annotated[str, typer.Argument(help="Incident id, e.g. INC-3F9A2C")],
    comment: CommentOption = "", url: UrlOption = DEFAULT_URL, token: TokenOption = "",
) -> None:
    """Acknowledge an incident (stops escalation timers)."""
    console = Console()
    result = ApprovalClient(url, token, console).call(
        "POST", f"/api/incidents/{quote(incident_id, safe='')}/acknowledge", {"comment": comment})
    console.print(f"[green]acknowledged[/green] {incident_id} as {result['acknowledged_by']}")


def resolve(
    incident_id: Annotated[str, typer.Argument(help="Incident id, e.g. INC-3F9A2C")],
    summary: Annotated[str, typer.Option("--summary", "-s", help="What fixed it (required)")],
    verified: Annotated[bool, typer.Option(
        "--verified", help="State that you verified recovery (metrics at baseline, "
        "no recurring errors); otherwise recorded as unverified")] = False,
    url: UrlOption = DEFAULT_URL, token: TokenOption = "",
) -> None:
    """Resolve an incident manually (recorded as manual; unverified unless --verified)."""
    console = Console()
    result = ApprovalClient(url, token, console).call(
        "POST", f"/api/incidents/{quote(incident_id, safe='')}/resolve",
        {"summary": summary, "verified": verified})
    state = "verified" if result["verified"] else "unverified"
    console.print(f"[green]resolved[/green] {incident_id} manually ({state}) "
                  f"as {result['resolved_by']}")


def register(app: typer.Typer) -> None:
    """Add the approval commands to the irctl app."""
    app.command("approvals")(approvals)
    app.command("approve")(approve)
    app.command("deny")(deny)
    app.command("incidents")(incidents)
    app.command("ack")(ack)
    app.command("resolve")(resolve)
