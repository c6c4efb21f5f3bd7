"""The ``irctl`` command line: one Typer app, one module per command.

Kept minimal on purpose: each command lives in its own module and is registered here
with one line, so commands can be added without touching each other's code, and
importing the app stays cheap (commands import their heavy dependencies lazily).
"""

from __future__ import annotations

import typer

from irctl import approval_cmds, broker_cmd, demo_cmd, report_cmd, schemas_cmd, up_cmd

app = typer.Typer(
    help="Incident-response orchestrator: run and operate the local stack.",
    no_args_is_help=True,
)


@app.callback()
def _root() -> None:
    """Incident-response orchestrator: run and operate the local stack."""
    # A callback keeps Typer in multi-command mode even while only one command exists.


app.command("broker")(broker_cmd.broker)
app.command("schemas")(schemas_cmd.schemas)
app.command("report")(report_cmd.report)
app.command("up")(up_cmd.up)
app.command("demo")(demo_cmd.demo)
approval_cmds.register(app)


def main() -> None:
    """Entry point of the ``irctl`` console script."""
    app()


if __name__ == "__main__":
    main()
