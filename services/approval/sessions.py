"""Web sign-in sessions and CSRF tokens for the approval page.

Design decisions:

- A session is server-side: the cookie holds only a random id (256 bits), is
  HttpOnly (no script can read it) and SameSite=Strict (no other site can make
  the browser send it), and the store maps it to the user. Signing out or a
  restart ends it; nothing in the cookie can be forged into another user.
- Every state-changing form carries the session's CSRF token, compared in
  constant time. SameSite=Strict already blocks cross-site posts in current
  browsers; the token also covers older ones and same-site subdomains.
- The sign-in form is protected by a double-submit token (a short-lived cookie
  whose value the form repeats), so another site cannot sign a browser in
  under the attacker's identity.
- Sessions expire after a fixed lifetime (real time, not the scaled domain
  clock: a demo running 60x faster must not sign people out every minute).
- One-shot notices (the outcome of the last click) live in the session, not in
  the redirect URL, so nobody can craft a link that shows a fake outcome.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.approval.approvers import Approver

NoticeLevel = Literal["success", "error"]


@dataclass
class WebSession:
    """One signed-in browser."""

    session_id: str
    approver: Approver
    csrf_token: str
    expires_at: float
    notices: list[tuple[NoticeLevel, str]] = field(default_factory=list)

    def csrf_valid(self, presented: str | None) -> bool:
        """True when presented is this session's CSRF token (constant-time compare)."""
        return bool(presented) and hmac.compare_digest(
            self.csrf_token.encode(), (presented or "").encode()
        )

    def notify(self, level: NoticeLevel, text: str) -> None:
        """Queue a notice for the next page view."""
        self.notices.append((level, text))

    def take_notices(self) -> list[tuple[NoticeLevel, str]]:
        """The queued notices, cleared."""
        notices, self.notices = self.notices, []
        return notices


class SessionStore:
    """In-memory sessions with a lifetime and a cap (oldest evicted first)."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_sessions: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._now = now
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()

    def create(self, approver: Approver) -> WebSession:
        """Start a session for approver."""
        session = WebSession(
            session_id=secrets.token_urlsafe(32),
            approver=approver,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self._now() + self.ttl_s,
        )
        self._sessions[session.session_id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> WebSession | None:
        """The live session with this id, or None (expired ones are dropped)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._now() >= session.expires_at:
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        """Forget a session (sign-out)."""
        if session_id:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)
