"""The approval web page: server-rendered HTML, plain forms, no JavaScript framework.

Design decisions:

- Jinja2 with autoescaping always on and `StrictUndefined`: every value that
  comes from an event (runbook parameters, rationale, alert-derived titles) is
  escaped, and a template typo fails loudly instead of rendering blank.
- Every page is sent with a Content-Security-Policy that allows only this
  response's own inline style and script (a per-response nonce), forbids
  framing (a hidden Approve button under another site's page is the classic
  clickjacking attack on approval screens), and `Cache-Control: no-store`.
- Forms post `application/x-www-form-urlencoded`, parsed here with a size cap,
  so the service needs no multipart dependency. Every post is answered with a
  303 redirect to `/` (post/redirect/get), so a browser refresh never repeats
  a decision; the outcome is shown once from the session's notices.
- The page calls the same `ApprovalDesk` as the API: the rules, the single
  decision guarantee and the audit of refusals are the same on both.
- The only script is an optional countdown of each request's expiry; without
  it the page still shows the remaining time as of rendering.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.approval.approvers import ApproverDirectory
from services.approval.board import ApprovalStatus, ResponseBoard
from services.approval.decisions import DecisionRefused
from services.approval.desk import ApprovalDesk, DecisionNotRecorded
from services.approval.sessions import SessionStore, WebSession
from services.approval.views import approval_view, incident_view
from shared.clock import Clock

log = logging.getLogger(__name__)

SESSION_COOKIE = "ir_session"
LOGIN_COOKIE = "ir_signin"
MAX_FORM_BYTES = 16 * 1024
TEMPLATES = Path(__file__).parent / "templates"


class FormError(ValueError):
    """A form post that cannot be read."""


def template_environment() -> Environment:
    """The Jinja2 environment of the page: autoescape on, strict undefined."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"
    return env


def format_duration(seconds: float) -> str:
    """Seconds as '1h 02m', '4m 05s' or '12s'."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form post (first value of each), size-capped."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError("expected a url-encoded form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("form too large")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("unreadable form") from exc
    return {key: values[0] for key, values in fields.items()}


class ApprovalPage:
    """The page's routes, bound to the projection, the desk and the session store."""

    def __init__(
        self,
        *,
        board: ResponseBoard,
        desk: ApprovalDesk,
        directory: ApproverDirectory,
        sessions: SessionStore,
        clock: Clock,
        cookie_secure: bool,
    ) -> None:
        self.board = board
        self.desk = desk
        self.directory = directory
        self.sessions = sessions
        self.clock = clock
        self.cookie_secure = cookie_secure
        self.env = template_environment()

    def router(self) -> APIRouter:
        """The router of the web page (`/` and its form posts); not in the OpenAPI schema."""
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/", self.dashboard, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/session", self.sign_in, methods=["POST"])
        router.add_api_route("/session/end", self.sign_out, methods=["POST"])
        router.add_api_route("/approvals/{request_id}/approve", self.approve, methods=["POST"])
        router.add_api_route("/approvals/{request_id}/deny", self.deny, methods=["POST"])
        router.add_api_route("/incidents/{incident_id}/acknowledge", self.acknowledge,
                             methods=["POST"])
        router.add_api_route("/incidents/{incident_id}/resolve", self.resolve, methods=["POST"])
        return router

    # --- pages -------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        """Pending approvals, open incidents and recent decisions; sign-in when anonymous."""
        session = self._session(request)
        if session is None:
            return self._signin_page()
        now, board = self.clock.now(), self.board
        pending = [approval_view(r, board, now)
                   for r in board.list_approvals(now, pending_only=True)]
        decided = [approval_view(r, board, now)
                   for r in board.list_approvals(now, pending_only=False)
                   if r.status(now) is not ApprovalStatus.PENDING][:10]
        incidents = [incident_view(r, board, now) for r in board.list_incidents(open_only=True)]
        return self._render(
            "dashboard.html",
            user=session.approver,
            csrf_token=session.csrf_token,
            notices=session.take_notices(),
            pending=pending,
            decided=decided,
            incidents=incidents,
        )

    async def sign_in(self, request: Request) -> Response:
        """Check the token of the sign-in form and start a session."""
        try:
            form = await read_form(request)
        except FormError as exc:
            return self._signin_page(str(exc), 400)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        presented = form.get("login_token", "")
        if not expected or not secrets.compare_digest(expected.encode(), presented.encode()):
            return self._signin_page("The sign-in form expired; please try again.", 403)
        approver = self.directory.authenticate(form.get("token", "").strip())
        if approver is None:
            client = request.client.host if request.client else "?"
            log.warning("failed web sign-in from %s", client)
            return self._signin_page("Unknown token.", 401)
        session = self.sessions.create(approver)
        response = _to_dashboard()
        response.set_cookie(SESSION_COOKIE, session.session_id,
                            max_age=int(self.sessions.ttl_s), httponly=True,
                            samesite="strict", secure=self.cookie_secure, path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def sign_out(self, request: Request) -> Response:
        """End the session (CSRF-checked, so another site cannot sign you out)."""
        async def act(session: WebSession, form: dict[str, str]) -> str:
            self.sessions.end(session.session_id)
            return "Signed out."
        response = await self._guarded(request, act)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def approve(self, request_id: str, request: Request) -> Response:
        """Approve from the page."""
        async def act(session: WebSession, form: dict[str, str]) -> str:
            await self.desk.approve(request_id, session.approver, _comment(form))
            return f"Approved {request_id}; the signed approval was sent to the executor."
        return await self._guarded(request, act)

    async def deny(self, request_id: str, request: Request) -> Response:
        """Deny from the page."""
        async def act(session: WebSession, form: dict[str, str]) -> str:
            await self.desk.deny(request_id, session.approver, _comment(form))
            return f"Denied {request_id}."
        return await self._guarded(request, act)

    async def acknowledge(self, incident_id: str, request: Request) -> Response:
        """Acknowledge from the page."""
        async def act(session: WebSession, form: dict[str, str]) -> str:
            await self.desk.acknowledge(incident_id, session.approver, _comment(form), via="web")
            return f"Acknowledged {incident_id}."
        return await self._guarded(request, act)

    async def resolve(self, incident_id: str, request: Request) -> Response:
        """Resolve manually from the page; unverified unless the box is ticked."""
        async def act(session: WebSession, form: dict[str, str]) -> str:
            verified = form.get("verified") == "on"
            summary = form.get("summary", "")[:4000]
            await self.desk.resolve(incident_id, session.approver, summary, verified=verified)
            state = "verified" if verified else "unverified"
            return f"Resolved {incident_id} manually ({state})."
        return await self._guarded(request, act)

    # --- helpers -------------------------------------------------------------------

    def _session(self, request: Request) -> WebSession | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def _render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = self.env.get_template(name).render(nonce=nonce, **context)
        response = HTMLResponse(html, status_code=status_code)
        response.headers.update({
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        })
        return response

    def _signin_page(self, error: str = "", status_code: int = 200) -> HTMLResponse:
        login_token = secrets.token_urlsafe(24)
        response = self._render("signin.html", status_code, login_token=login_token, error=error)
        response.set_cookie(LOGIN_COOKIE, login_token, max_age=600, httponly=True,
                            samesite="strict", secure=self.cookie_secure, path="/")
        return response

    async def _guarded(
        self, request: Request, act: Callable[[WebSession, dict[str, str]], Awaitable[str]]
    ) -> Response:
        """Run a form action for a signed-in session with a valid CSRF token."""
        session = self._session(request)
        if session is None:
            return _to_dashboard()
        try:
            form = await read_form(request)
        except FormError as exc:
            session.notify("error", str(exc))
            return _to_dashboard()
        if not session.csrf_valid(form.get("csrf_token")):
            return self._render("error.html", 403, message=(
                "This form is no longer valid (missing or stale security token). "
                "Reload the page and try again."))
        try:
            session.notify("success", await act(session, form))
        except DecisionRefused as refusal:
            session.notify("error", f"Refused: {refusal.reason}")
        except DecisionNotRecorded as exc:
            session.notify("error", str(exc))
        return _to_dashboard()


def _to_dashboard() -> RedirectResponse:
    # 303: the browser follows with a GET, so a refresh never re-posts a decision.
    return RedirectResponse("/", status_code=303)


def _comment(form: dict[str, str]) -> str:
    return form.get("comment", "").strip()[:2000]
