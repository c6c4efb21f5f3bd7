"""The JSON API under `/api`, for irctl, chat integrations and scripts.

Authentication is `Authorization: Bearer <token>` only. The API never accepts
the web page's session cookie: cookie-authenticated writes would need CSRF
protection, bearer tokens do not (a browser never attaches them by itself).

Refusals map to HTTP status codes one to one (404 unknown, 403 role or
self-approval, 409 already decided, 410 expired, 422 invalid) with a `detail`
that says why; a decision that could not be written to the log is a 503 and
decided nothing.

This module deliberately has no `from __future__ import annotations`: FastAPI
reads the route signatures at definition time, and the `User` dependency alias
is local to `build_api_router` (it closes over the directory), so string
annotations could not be resolved.
"""

import logging
from collections.abc import Awaitable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from services.approval.approvers import Approver, ApproverDirectory
from services.approval.board import ResponseBoard
from services.approval.decisions import DecisionRefused
from services.approval.desk import ApprovalDesk, DecisionNotRecorded
from services.approval.views import (
    AcknowledgementView,
    ApprovalView,
    DecisionView,
    IncidentView,
    ResolutionView,
    WhoAmI,
    approval_view,
    incident_view,
)
from shared.clock import Clock
from shared.events import ApprovalDenied, ApprovalGranted

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_COMMENT = 2000
MAX_SUMMARY = 4000


class DecisionBody(BaseModel):
    """Body of approve / deny."""

    comment: str = Field("", max_length=MAX_COMMENT, description="why; kept in the audit trail")


class AcknowledgeBody(BaseModel):
    """Body of acknowledge."""

    comment: str = Field("", max_length=MAX_COMMENT)


class ResolveBody(BaseModel):
    """Body of a manual resolve."""

    summary: str = Field(min_length=1, max_length=MAX_SUMMARY,
                         description="what fixed the incident (required)")
    verified: bool = Field(
        False,
        description="true only if you checked recovery (metrics at baseline, no recurring "
        "errors); a manual resolution is otherwise recorded as unverified",
    )


_REFUSALS: dict[int | str, dict[str, str]] = {
    401: {"description": "missing or unknown bearer token"},
    403: {"description": "role not allowed, or self-approval"},
    404: {"description": "unknown request or incident"},
    409: {"description": "already decided (or resolved, acknowledged)"},
    410: {"description": "approval request expired"},
    503: {"description": "decision could not be recorded; nothing was decided"},
}


def decision_view(event: ApprovalGranted | ApprovalDenied) -> DecisionView:
    """The view of a decision event just recorded."""
    return DecisionView(
        outcome="granted" if isinstance(event, ApprovalGranted) else "denied",
        approver=event.approver,
        comment=event.comment,
        decided_at=event.occurred_at,
        event_id=event.event_id,
    )


def build_api_router(
    *, board: ResponseBoard, desk: ApprovalDesk, directory: ApproverDirectory, clock: Clock
) -> APIRouter:
    """The `/api` router bound to this service's projection and desk."""
    router = APIRouter(prefix="/api", tags=["approvals"])
    bearer = HTTPBearer(auto_error=False, description="a user token from approvers.yaml")

    def current_user(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Approver:
        approver = directory.authenticate(credentials.credentials if credentials else None)
        if approver is None:
            client = request.client.host if request.client else "?"
            log.warning("unauthenticated API call %s %s from %s",
                        request.method, request.url.path, client)
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or unknown bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return approver

    User = Annotated[Approver, Depends(current_user)]  # noqa: N806 - a type alias

    @router.get("/whoami", response_model=WhoAmI, summary="The authenticated user")
    async def whoami(user: User) -> WhoAmI:
        return WhoAmI(name=user.name, roles=list(user.roles))

    @router.get("/approvals", response_model=list[ApprovalView], summary="Approval requests")
    async def list_approvals(
        user: User,
        status_filter: Annotated[
            Literal["pending", "all"], Query(alias="status", description="pending or all")
        ] = "pending",
    ) -> list[ApprovalView]:
        now = clock.now()
        records = board.list_approvals(now, pending_only=status_filter == "pending")
        return [approval_view(r, board, now) for r in records]

    @router.get("/approvals/{request_id}", response_model=ApprovalView,
                summary="One approval request", responses={404: _REFUSALS[404]})
    async def get_approval(request_id: str, user: User) -> ApprovalView:
        record = board.approval(request_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such approval request")
        return approval_view(record, board, clock.now())

    @router.post("/approvals/{request_id}/approve", response_model=DecisionView,
                 summary="Approve: signs a token bound to this exact action",
                 responses=_REFUSALS)
    async def approve(
        request_id: str, user: User, body: DecisionBody | None = None
    ) -> DecisionView:
        comment = body.comment if body else ""
        event = await _run(desk.approve(request_id, user, comment))
        return decision_view(event)

    @router.post("/approvals/{request_id}/deny", response_model=DecisionView,
                 summary="Deny", responses=_REFUSALS)
    async def deny(request_id: str, user: User, body: DecisionBody | None = None) -> DecisionView:
        comment = body.comment if body else ""
        event = await _run(desk.deny(request_id, user, comment))
        return decision_view(event)

    @router.get("/incidents", response_model=list[IncidentView], summary="Incidents",
                tags=["incidents"])
    async def list_incidents(
        user: User,
        status_filter: Annotated[
            Literal["open", "all"], Query(alias="status", description="open or all")
        ] = "open",
    ) -> list[IncidentView]:
        now = clock.now()
        records = board.list_incidents(open_only=status_filter == "open")
        return [incident_view(r, board, now) for r in records]

    @router.get("/incidents/{incident_id}", response_model=IncidentView,
                summary="One incident", tags=["incidents"], responses={404: _REFUSALS[404]})
    async def get_incident(incident_id: str, user: User) -> IncidentView:
        record = board.incident(incident_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such incident")
        return incident_view(record, board, clock.now())

    @router.post("/incidents/{incident_id}/acknowledge", response_model=AcknowledgementView,
                 summary="Acknowledge (stops escalation timers)", tags=["incidents"],
                 responses=_REFUSALS)
    async def acknowledge(
        incident_id: str, user: User, body: AcknowledgeBody | None = None
    ) -> AcknowledgementView:
        event = await _run(
            desk.acknowledge(incident_id, user, body.comment if body else "", via="api")
        )
        return AcknowledgementView(
            incident_id=incident_id,
            acknowledged_by=event.acknowledged_by,
            acknowledged_at=event.occurred_at,
            event_id=event.event_id,
        )

    @router.post("/incidents/{incident_id}/resolve", response_model=ResolutionView,
                 summary="Resolve manually (recorded as manual; unverified unless stated)",
                 tags=["incidents"], responses={**_REFUSALS, 422: {"description": "no summary"}})
    async def resolve(incident_id: str, user: User, body: ResolveBody) -> ResolutionView:
        event = await _run(desk.resolve(incident_id, user, body.summary, verified=body.verified))
        return ResolutionView(
            incident_id=incident_id,
            resolved_by=event.resolved_by,
            resolution=event.resolution,
            verified=event.verified,
            summary=event.summary,
            resolved_at=event.occurred_at,
            event_id=event.event_id,
        )

    return router


async def _run(decision: Awaitable[T]) -> T:
    """Await a desk call, mapping refusals and publish failures to HTTP errors."""
    try:
        return await decision
    except DecisionRefused as refusal:
        raise HTTPException(refusal.kind.http_status, detail=refusal.reason) from refusal
    except DecisionNotRecorded as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
