"""irctl approval commands: clear exits when the token is missing or the server is down."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from irctl.app import app

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_missing_token_exits_2_with_a_hint() -> None:
    """Without IR_TOKEN or --token the command explains what to set and exits 2."""
    result = CliRunner().invoke(app, ["approvals"], env={"IR_TOKEN": ""})
    assert result.exit_code == 2
    assert "IR_TOKEN" in result.output


@pytest.mark.parametrize("args", [["approvals"], ["approve", "req-1"], ["ack", "INC-1"],
                                  ["resolve", "INC-1", "--summary", "fixed"]])
def test_unreachable_server_exits_1_naming_the_url(args: list[str]) -> None:
    """A server that does not answer gives exit 1 and the URL from IR_APPROVAL_URL."""
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(app, args, env={"IR_APPROVAL_URL": url, "IR_TOKEN": "t"})
    assert result.exit_code == 1
    assert "cannot reach the approval service" in result.output
    assert url in result.output.replace("\n", "")


def test_resolve_requires_a_summary() -> None:
    """`irctl resolve` without --summary is a usage error before any request is made."""
    result = CliRunner().invoke(app, ["resolve", "INC-1"], env={"IR_TOKEN": "t"})
    assert result.exit_code == 2
