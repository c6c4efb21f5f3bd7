"""The approval desk (reservation, publish failure, audit), sessions, keys and page rendering."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.approval.board import ResponseBoard
from services.approval.decisions import DecisionRefused, RefusalKind, SigningAuthority
from services.approval.desk import ApprovalDesk, DecisionNotRecorded
from services.approval.keys import SigningKeyError, load_signing_key
from services.approval.page import format_duration, template_environment
from services.approval.sessions import SessionStore
from services.approval.settings import ApprovalSettings
from services.approval.views import approval_view, incident_view
from shared.approval_token import load_public_key, verify_approval
from shared.clock import ManualClock
from shared.events import ApprovalGranted, AuditRecorded, Event
from shared.settings import ServiceSettings
from tests.unit.test_approval_decisions import (
    ACTION,
    ALICE,
    BOB,
    POLICY,
    T0,
    approval_requested,
    incident_opened,
)

pytestmark = pytest.mark.unit


class Log:
    """A stand-in for bus.publish that records events; decisions can be held or made to fail."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def publish(self, event: Event) -> bool:
        if self.gate is not None and not isinstance(event, AuditRecorded):
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker down")
        self.events.append(event)
        return True


def make_desk(log: Log, clock: ManualClock) -> tuple[ApprovalDesk, ResponseBoard]:
    board = ResponseBoard()
    board.apply(incident_opened())
    board.apply(approval_requested())
    authority = SigningAuthority(policy=POLICY, private_key=Ed25519PrivateKey.generate(),
                                 token_ttl=timedelta(minutes=10))
    return ApprovalDesk(board=board, authority=authority, clock=clock, publish=log.publish), board


class TestDesk:
    async def test_concurrent_clicks_make_one_decision(self) -> None:
        """While alice's grant is being published, a concurrent deny is refused (409)."""
        log, clock = Log(), ManualClock(T0)
        desk, _ = make_desk(log, clock)
        log.gate = asyncio.Event()
        first = asyncio.create_task(desk.approve("req-1", ALICE, "go"))
        await asyncio.sleep(0)
        with pytest.raises(DecisionRefused) as info:
            await desk.deny("req-1", ALICE, "wait")
        assert info.value.kind is RefusalKind.CONFLICT
        log.gate.set()
        granted = await first
        decisions = [e for e in log.events if not isinstance(e, AuditRecorded)]
        assert decisions == [granted]

    async def test_publish_failure_decides_nothing(self) -> None:
        """A failed publish raises DecisionNotRecorded and leaves the request pending."""
        log, clock = Log(), ManualClock(T0)
        desk, board = make_desk(log, clock)
        log.fail = True
        with pytest.raises(DecisionNotRecorded):
            await desk.approve("req-1", ALICE, "go")
        record = board.approval("req-1")
        assert record is not None
        assert record.decision is None
        log.fail = False
        assert isinstance(await desk.approve("req-1", ALICE, "go"), ApprovalGranted)

    async def test_refusal_is_audited_and_decision_is_visible_at_once(self) -> None:
        """bob's self-approval is audited; alice's grant shows in the projection immediately."""
        log, clock = Log(), ManualClock(T0)
        desk, board = make_desk(log, clock)
        with pytest.raises(DecisionRefused):
            await desk.approve("req-1", BOB, "mine")
        audits = [e for e in log.events if isinstance(e, AuditRecorded)]
        assert len(audits) == 1
        assert audits[0].actor == "bob"
        await desk.approve("req-1", ALICE, "ok")
        record = board.approval("req-1")
        assert record is not None
        assert isinstance(record.decision, ApprovalGranted)

    async def test_expiry_follows_the_injected_clock(self) -> None:
        """After the ManualClock passes expires_at, approving is refused as expired."""
        log, clock = Log(), ManualClock(T0)
        desk, _ = make_desk(log, clock)
        clock.advance(timedelta(minutes=16))
        with pytest.raises(DecisionRefused) as info:
            await desk.approve("req-1", ALICE, "late")
        assert info.value.kind is RefusalKind.EXPIRED


class TestSessions:
    def test_csrf_token_must_match(self) -> None:
        """Only the session's own CSRF token is accepted."""
        store = SessionStore(60)
        session = store.create(ALICE)
        assert session.csrf_valid(session.csrf_token)
        assert not session.csrf_valid("forged")
        assert not session.csrf_valid(None)
        other = store.create(ALICE)
        assert not session.csrf_valid(other.csrf_token)

    def test_sessions_expire_and_end(self) -> None:
        """A session is gone after its lifetime or after sign-out."""
        now = [0.0]
        store = SessionStore(60, now=lambda: now[0])
        session = store.create(ALICE)
        assert store.get(session.session_id) is session
        now[0] = 61
        assert store.get(session.session_id) is None
        again = store.create(ALICE)
        store.end(again.session_id)
        assert store.get(again.session_id) is None


class TestSigningKey:
    def test_generated_on_first_start_and_reused(self, tmp_path: Path) -> None:
        """With no key, a pair is generated under <state_dir>/keys/ and kept for the next start."""
        service = ServiceSettings(state_dir=str(tmp_path))
        settings = ApprovalSettings()
        key = load_signing_key(settings, service)
        public = load_public_key(tmp_path / "keys" / "approval.pub")
        assert public.public_bytes_raw() == key.public_key().public_bytes_raw()
        again = load_signing_key(settings, service)
        assert again.private_bytes_raw() == key.private_bytes_raw()

    def test_configured_key_missing_is_an_error(self, tmp_path: Path) -> None:
        """An explicit IR_APPROVAL_PRIVATE_KEY that does not exist is never replaced."""
        settings = ApprovalSettings(private_key=tmp_path / "prod.pem")
        with pytest.raises(SigningKeyError, match="does not exist"):
            load_signing_key(settings, ServiceSettings(state_dir=str(tmp_path)))

    def test_no_generation_without_key_is_an_error(self, tmp_path: Path) -> None:
        """With generation off and no key, start-up fails with what to set."""
        with pytest.raises(SigningKeyError, match="GENERATE_KEYS"):
            load_signing_key(ApprovalSettings(generate_keys=False),
                             ServiceSettings(state_dir=str(tmp_path)))

    def test_mismatched_public_key_is_refused_when_not_generating(self, tmp_path: Path) -> None:
        """A public key that does not match the private key stops start-up (no silent swap)."""
        service = ServiceSettings(state_dir=str(tmp_path))
        load_signing_key(ApprovalSettings(), service)
        other = tmp_path / "other"
        load_signing_key(ApprovalSettings(), ServiceSettings(state_dir=str(other)))
        (tmp_path / "keys" / "approval.pub").write_bytes(
            (other / "keys" / "approval.pub").read_bytes())
        with pytest.raises(SigningKeyError, match="another public key"):
            load_signing_key(ApprovalSettings(generate_keys=False), service)

    async def test_token_verifies_with_the_public_key_file(self, tmp_path: Path) -> None:
        """A grant signed with the loaded key verifies with the .pub file the executor reads."""
        service = ServiceSettings(state_dir=str(tmp_path))
        key = load_signing_key(ApprovalSettings(), service)
        log, clock = Log(), ManualClock(T0)
        desk, _ = make_desk(log, clock)
        desk.authority = SigningAuthority(policy=POLICY, private_key=key,
                                          token_ttl=timedelta(minutes=5))
        event = await desk.approve("req-1", ALICE, "ok")
        claims = verify_approval(
            event.token, load_public_key(tmp_path / "keys" / "approval.pub"), action=ACTION,
            incident_id="INC-000001", request_id="req-1", requested_by="bob",
            required_roles={"sre"}, now=T0, used_token_ids=set())
        assert claims.approver == "alice"


class TestPageRendering:
    def test_event_text_is_escaped(self) -> None:
        """Markup in a rationale or parameter is rendered as text, never as HTML."""
        board = ResponseBoard()
        board.apply(incident_opened())
        board.apply(approval_requested(
            rationale="<script>alert('x')</script>",
            action=ACTION.model_copy(update={"parameters": {"note": "<img src=x onerror=1>"}})))
        record = board.approval("req-1")
        assert record is not None
        html = template_environment().get_template("dashboard.html").render(
            nonce="n", user=ALICE, csrf_token="c", notices=[("error", "<b>bad</b>")],
            pending=[approval_view(record, board, T0)], decided=[],
            incidents=[incident_view(board.incidents["INC-000001"], board, T0)])
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html
        assert "<img src=x" not in html
        assert "<b>bad</b>" not in html
        assert "Approve" in html
        assert "service_restart" in html
        assert "15m 00s" in html

    @pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (125, "2m 05s"), (3720, "1h 02m"),
                                                   (-3, "0s")])
    def test_durations(self, seconds: float, text: str) -> None:
        """Remaining time reads as a human would say it."""
        assert format_duration(seconds) == text
