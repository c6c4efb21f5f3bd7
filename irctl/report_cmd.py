"""`irctl report INC-...`: print an incident's post-incident report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

LOCAL_DIRS = (Path(".state/reports"), Path("reports"))


def report(
    incident_id: Annotated[str, typer.Argument(help="Incident id, e.g. INC-3F9A2C")],
    reports_dir: Annotated[Path | None, typer.Option(
        envvar="IR_REPORTER_REPORTS_DIR",
        help="Where the reporter writes reports (default: .state/reports of `irctl up`, "
             "else ./reports)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown (rendered), raw, json")]
    = "markdown",
) -> None:
    """Print the latest post-incident report of an incident."""
    console = Console()
    if reports_dir is None:
        reports_dir = next((d for d in LOCAL_DIRS if d.exists()), LOCAL_DIRS[-1])
    suffix = ".json" if fmt == "json" else ".md"
    path = reports_dir / f"{incident_id.upper()}{suffix}"
    if not path.exists():
        known = sorted(p.stem for p in reports_dir.glob("INC-*.md")) if reports_dir.exists() else []
        console.print(f"[red]no report for {incident_id} in {reports_dir}[/red]")
        if known:
            console.print("known incidents: " + ", ".join(known[-20:]))
        raise typer.Exit(1)
    text = path.read_text()
    if fmt == "json":
        console.print_json(json.dumps(json.loads(text)))
    elif fmt == "raw":
        print(text)
    else:
        console.print(Markdown(text))
