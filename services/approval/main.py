"""Factory of the approval service: settings, approvers, signing key, projection, HTTP.

`create_runtime` wires everything and returns the `ServiceRuntime` (tests
start it with `shared.runtime.start`); `main` runs it until SIGTERM. The
approvers file and the signing key are checked here, so a misconfiguration
stops the service at start-up with the reason instead of at the first click.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from fastapi import FastAPI

from services.approval.api import build_api_router
from services.approval.approvers import ApproverDirectory
from services.approval.board import ResponseBoard
from services.approval.decisions import SigningAuthority
from services.approval.desk import ApprovalDesk
from services.approval.handlers import register
from services.approval.keys import load_signing_key
from services.approval.page import ApprovalPage
from services.approval.sessions import SessionStore
from services.approval.settings import ApprovalSettings
from shared.clock import Clock, SystemClock
from shared.policy import ApprovalPolicy
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings

SERVICE = "approval"


class ScaledClock(Clock, Protocol):
    """A clock that also scales domain thresholds (SystemClock, ManualClock)."""

    def scaled(self, threshold: timedelta) -> timedelta:
        """threshold under this clock's time scale."""
        ...


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    approval: ApprovalSettings | None = None,
    clock: ScaledClock | None = None,
) -> ServiceRuntime:
    """Build the approval service (not started)."""
    settings = settings or ServiceSettings()
    approval = approval or ApprovalSettings()
    clock = clock or SystemClock(settings.time_scale)
    approvers_path = approval.approvers_path(settings)
    policy = ApprovalPolicy.load(approvers_path)
    directory = ApproverDirectory.load(approval.users_file or approvers_path, policy)
    authority = SigningAuthority(
        policy=policy,
        private_key=load_signing_key(approval, settings),
        token_ttl=clock.scaled(timedelta(seconds=approval.approval_ttl_s)),
    )
    app = FastAPI(
        title="Approval service",
        description="Human decisions on HIGH-risk remediation, acknowledgements and manual "
        "resolutions. Authenticate with `Authorization: Bearer <token>`.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    runtime = build_runtime(SERVICE, kafka=kafka, settings=settings, http=app)
    board = ResponseBoard()
    desk = ApprovalDesk(board=board, authority=authority, clock=clock,
                        publish=runtime.bus.publish)
    app.include_router(build_api_router(board=board, desk=desk, directory=directory, clock=clock))
    page = ApprovalPage(
        board=board, desk=desk, directory=directory, clock=clock,
        sessions=SessionStore(approval.session_ttl_s), cookie_secure=approval.cookie_secure,
    )
    app.include_router(page.router())
    register(runtime, board)
    return runtime


def main() -> None:
    """Run the approval service until SIGTERM (port IR_HTTP_PORT, else IR_APPROVAL_HTTP_PORT)."""
    settings = ServiceSettings()
    approval = ApprovalSettings()
    if "http_port" not in settings.model_fields_set:
        settings = settings.model_copy(update={"http_port": approval.http_port})
    run(create_runtime(settings=settings, approval=approval))
