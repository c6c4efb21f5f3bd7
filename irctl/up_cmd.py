"""`irctl up`: the whole product on one machine, no Docker needed."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def up(
    state_dir: Annotated[Path, typer.Option(help="Where broker data, logs, keys, mail and "
                                            "reports live")] = Path(".state"),
    memory: Annotated[bool, typer.Option(help="Throwaway in-memory broker")] = False,
    bootstrap_servers: Annotated[str | None, typer.Option(
        envvar="KAFKA_BOOTSTRAP_SERVERS", help="Use this Kafka instead of the embedded one"),
    ] = None,
    time_scale: Annotated[float, typer.Option(
        help="Multiply every domain threshold (0.02 turns 15 min into 18 s)")] = 0.02,
    demo: Annotated[bool, typer.Option(help="Start the simulated production world")] = True,
    redis_url: Annotated[str, typer.Option(help="Redis of the demo world's cache")]
    = "redis://127.0.0.1:6379/0",
) -> None:
    """Start broker, every service, the demo world and the approval page; Ctrl-C stops all."""
    from irctl.stack import Stack, StackConfig

    console = Console()
    config = StackConfig(state_dir=state_dir, memory=memory, bootstrap_servers=bootstrap_servers,
                         time_scale=time_scale, demo=demo, redis_url=redis_url)
    stack = Stack(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with console.status("starting broker, services and demo world..."):
        try:
            stack.start()
        except Exception as exc:
            stack.stop()
            console.print(f"[red]start-up failed:[/red] {exc}")
            raise typer.Exit(1) from exc
    table = Table(title="Incident orchestrator is running", show_header=True)
    table.add_column("what")
    table.add_column("where")
    table.add_row("Kafka bootstrap", stack.bootstrap)
    table.add_row("Approval page",
                  f"{stack.url('approval')}/  (tokens: demo/config/approvers.yaml)")
    table.add_row("Alert webhooks", f"{stack.url('gateway')}/alerts/alertmanager  "
                  f"(Bearer {config.gateway_token})")
    table.add_row("API docs", f"{stack.url('gateway')}/docs, {stack.url('approval')}/docs")
    if demo:
        table.add_row("Demo world", stack.url("world"))
    table.add_row("Reports", str(stack.reports_dir))
    table.add_row("Mailbox (SMTP sink)", str(stack.state_dir / "mail"))
    table.add_row("Logs", str(stack.state_dir / "logs"))
    console.print(table)
    console.print("Try: [bold]irctl demo[/bold] in another terminal. Ctrl-C stops everything.")
    try:
        while not stop.wait(1.0):
            for name, proc in list(stack.procs.items()):
                if proc.poll() is not None:
                    console.print(f"[yellow]{name} exited ({proc.returncode}); restarting[/yellow]")
                    if name == "world":
                        continue
                    stack.start_service(name)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping..."):
            stack.stop()
        console.print("stopped")
