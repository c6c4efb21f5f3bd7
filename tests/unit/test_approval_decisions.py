"""Approval rules: roles, self-approval, expiry, single decision, and the signed token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.approval.approvers import Approver
from services.approval.board import ResponseBoard
from services.approval.decisions import (
    DecisionRefused,
    RefusalKind,
    SigningAuthority,
    acknowledge_incident,
    decision_event_id,
    deny_approval,
    grant_approval,
    refusal_audit,
    resolve_incident_manually,
)
from shared.approval_token import ApprovalClaims, ApprovalRejected, _unb64, verify_approval
from shared.clock import ManualClock
from shared.domain import RiskTier, Severity
from shared.events import (
    ActionSpec,
    ApprovalGranted,
    ApprovalRequested,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
)
from shared.policy import ApprovalPolicy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACTION = ActionSpec(runbook="service_restart", parameters={"mode": "graceful", "replicas": 3},
                    target="checkout")

APPROVERS_YAML = """
roles:
  sre: {services: ["*"], max_risk: HIGH}
  team-lead: {services: ["*"], max_risk: HIGH}
  payments-oncall: {services: [checkout, payments], max_risk: MEDIUM}
  viewer: {services: [], max_risk: LOW}
users:
  - {name: alice, roles: [sre], token: alice-token}
  - {name: bob, roles: [team-lead], token: bob-token}
  - {name: carol, roles: [payments-oncall], token: carol-token}
  - {name: victor, roles: [viewer], token: victor-token}
  - {name: executor, roles: [], token: executor-token}
"""

POLICY = ApprovalPolicy.model_validate({"roles": {
    "sre": {"services": ["*"], "max_risk": "HIGH"},
    "team-lead": {"services": ["*"], "max_risk": "HIGH"},
    "payments-oncall": {"services": ["checkout", "payments"], "max_risk": "MEDIUM"},
    "viewer": {"services": [], "max_risk": "LOW"},
}})
ALICE = Approver(name="alice", roles=("sre",))
BOB = Approver(name="bob", roles=("team-lead",))
CAROL = Approver(name="carol", roles=("payments-oncall",))
VICTOR = Approver(name="victor", roles=("viewer",))
EXECUTOR = Approver(name="executor", roles=())


def approval_requested(
    request_id: str = "req-1", *, incident_id: str = "INC-000001", requested_by: str = "bob",
    expires_in: timedelta = timedelta(minutes=15), now: datetime = T0, **overrides: Any,
) -> ApprovalRequested:
    """A HIGH-risk restart request on checkout, requested by bob, for incident_id."""
    fields: dict[str, Any] = {
        "producer": "executor", "incident_id": incident_id, "correlation_id": "corr-1",
        "occurred_at": now, "request_id": request_id, "run_id": f"run-{request_id}",
        "action": ACTION, "risk": RiskTier.HIGH, "service": "checkout",
        "rationale": "error rate 40% since deploy", "expected_impact": "30 s of 5xx",
        "rollback_plan": "none needed: restart is idempotent", "requested_by": requested_by,
        "expires_at": now + expires_in,
    }
    fields.update(overrides)
    return ApprovalRequested(**fields)


def incident_opened(incident_id: str = "INC-000001", services: tuple[str, ...] = ("checkout",),
                    now: datetime = T0) -> IncidentOpened:
    """incident.opened for incident_id on services."""
    return IncidentOpened(
        producer="triage", incident_id=incident_id, correlation_id="corr-1", occurred_at=now,
        title="Checkout 5xx", services=services, fingerprints=("fp",), alert_event_id="a1",
        alert_received_at=now,
    )


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def authority(key: Ed25519PrivateKey) -> SigningAuthority:
    return SigningAuthority(policy=POLICY, private_key=key, token_ttl=timedelta(minutes=10),
                            new_token_id=lambda: "token-1")


@pytest.fixture
def board() -> ResponseBoard:
    board = ResponseBoard()
    board.apply(incident_opened())
    board.apply(approval_requested())
    return board


def grant(board: ResponseBoard, authority: SigningAuthority, approver: Approver,
          request_id: str = "req-1", now: datetime = T0, in_flight: bool = False
          ) -> ApprovalGranted:
    return grant_approval(board.approval(request_id), approver=approver, comment="ok",
                          authority=authority, incident=board.incident("INC-000001"),
                          in_flight=in_flight, now=now)


def refusal(call: Any) -> DecisionRefused:
    with pytest.raises(DecisionRefused) as info:
        call()
    return info.value


class TestGrant:
    def test_sre_gets_a_token_that_verifies_with_the_public_key(
        self, board: ResponseBoard, authority: SigningAuthority, key: Ed25519PrivateKey
    ) -> None:
        """The granted token passes the executor's own verify_approval for this exact action."""
        event = grant(board, authority, ALICE)
        claims = verify_approval(
            event.token, key.public_key(), action=ACTION, incident_id="INC-000001",
            request_id="req-1", requested_by="bob",
            required_roles=POLICY.roles_allowed("checkout", RiskTier.HIGH),
            now=T0 + timedelta(minutes=1), used_token_ids=set(),
        )
        assert claims.approver == "alice"
        assert claims.approver_roles == ("sre",)
        assert claims.token_id == "token-1"
        assert claims.risk is RiskTier.HIGH
        assert event.event_id == decision_event_id("req-1")
        assert (event.incident_id, event.causation_id) == ("INC-000001",
                                                           board.approvals["req-1"].request.event_id)  # type: ignore[union-attr]

    def test_token_does_not_fit_other_parameters(
        self, board: ResponseBoard, authority: SigningAuthority, key: Ed25519PrivateKey
    ) -> None:
        """A token bound to replicas=3 is rejected for replicas=30."""
        event = grant(board, authority, ALICE)
        other = ACTION.model_copy(update={"parameters": {"mode": "graceful", "replicas": 30}})
        with pytest.raises(ApprovalRejected, match="another action"):
            verify_approval(event.token, key.public_key(), action=other,
                            incident_id="INC-000001", request_id="req-1", requested_by="bob",
                            required_roles={"sre"}, now=T0, used_token_ids=set())

    def test_token_expiry_is_capped_by_the_token_lifetime(
        self, board: ResponseBoard, authority: SigningAuthority
    ) -> None:
        """A request valid 15 min yields a token valid 10 min (the configured lifetime)."""
        event = grant(board, authority, ALICE)
        claims = ApprovalClaims.model_validate_json(_unb64(event.token.split(".")[0]))
        assert claims.expires_at == T0 + timedelta(minutes=10)

    def test_token_expiry_never_outlives_the_request(
        self, board: ResponseBoard, authority: SigningAuthority
    ) -> None:
        """Approved 12 min in, the token expires with the request at 15 min, not at 22."""
        event = grant(board, authority, ALICE, now=T0 + timedelta(minutes=12))
        claims = ApprovalClaims.model_validate_json(_unb64(event.token.split(".")[0]))
        assert claims.expires_at == T0 + timedelta(minutes=15)

    def test_requester_cannot_approve_own_request(
        self, board: ResponseBoard, authority: SigningAuthority
    ) -> None:
        """bob requested the action: bob's approval is refused as self-approval (403)."""
        refused = refusal(lambda: grant(board, authority, BOB))
        assert refused.kind is RefusalKind.FORBIDDEN
        assert refused.kind.http_status == 403
        assert "self-approval" in refused.reason

    def test_self_approval_check_ignores_case(
        self, board: ResponseBoard, authority: SigningAuthority
    ) -> None:
        """'Bob' is the same person as 'bob'."""
        refused = refusal(lambda: grant(board, authority, Approver(name="Bob", roles=("sre",))))
        assert "self-approval" in refused.reason

    @pytest.mark.parametrize("approver", [VICTOR, EXECUTOR, CAROL])
    def test_roles_without_high_on_the_service_are_refused(
        self, board: ResponseBoard, authority: SigningAuthority, approver: Approver
    ) -> None:
        """Viewer, a role-less account, and a MEDIUM-capped on-call role cannot approve HIGH."""
        refused = refusal(lambda: grant(board, authority, approver))
        assert refused.kind is RefusalKind.FORBIDDEN
        assert "sre" in refused.reason
        assert "team-lead" in refused.reason

    def test_only_allowed_roles_are_signed(self, board: ResponseBoard,
                                           authority: SigningAuthority) -> None:
        """A user holding sre and viewer gets only sre in the token."""
        both = Approver(name="dora", roles=("viewer", "sre"))
        event = grant(board, authority, both)
        claims = ApprovalClaims.model_validate_json(_unb64(event.token.split(".")[0]))
        assert claims.approver_roles == ("sre",)

    def test_policy_table_tier_wins_over_a_lower_requested_tier(
        self, authority: SigningAuthority
    ) -> None:
        """A restart requested as MEDIUM is still HIGH: carol (MEDIUM on checkout) is refused."""
        board = ResponseBoard()
        board.apply(approval_requested(risk=RiskTier.MEDIUM))
        refused = refusal(lambda: grant(board, authority, CAROL))
        assert refused.kind is RefusalKind.FORBIDDEN
        assert "HIGH-risk" in refused.reason

    def test_medium_runbook_can_be_approved_by_scoped_oncall(
        self, authority: SigningAuthority
    ) -> None:
        """carol may approve a MEDIUM cache invalidation on checkout."""
        board = ResponseBoard()
        board.apply(approval_requested(
            action=ActionSpec(runbook="cache_invalidation", target="checkout"),
            risk=RiskTier.MEDIUM))
        assert grant(board, authority, CAROL).approver == "carol"

    def test_unknown_runbook_is_not_signed(self, authority: SigningAuthority) -> None:
        """A runbook missing from the risk policy gets no token (422)."""
        board = ResponseBoard()
        board.apply(approval_requested(action=ActionSpec(runbook="drop_tables", target="db")))
        refused = refusal(lambda: grant(board, authority, ALICE))
        assert refused.kind is RefusalKind.INVALID

    def test_expired_request_is_gone(self, board: ResponseBoard,
                                     authority: SigningAuthority) -> None:
        """At the expiry instant (injected clock) approving answers 410."""
        clock = ManualClock(T0)
        clock.advance(timedelta(minutes=15))
        refused = refusal(lambda: grant(board, authority, ALICE, now=clock.now()))
        assert refused.kind is RefusalKind.EXPIRED
        assert refused.kind.http_status == 410

    def test_second_decision_conflicts(self, board: ResponseBoard,
                                       authority: SigningAuthority) -> None:
        """Once granted, another approve or a deny is a 409 naming the first approver."""
        board.apply(grant(board, authority, ALICE))
        again = refusal(lambda: grant(board, authority, Approver(name="zed", roles=("sre",))))
        assert again.kind is RefusalKind.CONFLICT
        assert "alice" in again.reason
        denied = refusal(lambda: deny_approval(board.approval("req-1"), approver=ALICE,
                                               comment="", policy=POLICY, in_flight=False,
                                               now=T0))
        assert denied.kind is RefusalKind.CONFLICT

    def test_decision_in_flight_conflicts(self, board: ResponseBoard,
                                          authority: SigningAuthority) -> None:
        """While another decision is being published, a second one is refused (409)."""
        refused = refusal(lambda: grant(board, authority, ALICE, in_flight=True))
        assert refused.kind is RefusalKind.CONFLICT

    def test_unknown_request_is_not_found(self, board: ResponseBoard,
                                          authority: SigningAuthority) -> None:
        """An id the service never saw answers 404."""
        assert refusal(lambda: grant(board, authority, ALICE, "nope")).kind \
            is RefusalKind.NOT_FOUND

    def test_resolved_incident_gets_no_new_approval(
        self, board: ResponseBoard, authority: SigningAuthority
    ) -> None:
        """A HIGH-risk action for an incident already resolved is refused (409)."""
        board.apply(IncidentResolved(producer="executor", incident_id="INC-000001",
                                     correlation_id="c", occurred_at=T0, resolved_by="executor",
                                     resolution="verified_recovery", verified=True))
        assert refusal(lambda: grant(board, authority, ALICE)).kind is RefusalKind.CONFLICT


class TestDeny:
    def test_allowed_role_denies_with_the_decision_event_id(self, board: ResponseBoard) -> None:
        """alice's denial carries the same id a grant would have: one decision per request."""
        event = deny_approval(board.approval("req-1"), approver=ALICE, comment="not now",
                              policy=POLICY, in_flight=False, now=T0)
        assert event.event_id == decision_event_id("req-1")
        assert (event.approver, event.comment) == ("alice", "not now")

    def test_requester_may_withdraw_by_denying(self, board: ResponseBoard) -> None:
        """bob (the requester) may deny his own request: a denial can only stop an action."""
        assert deny_approval(board.approval("req-1"), approver=BOB, comment="", policy=POLICY,
                             in_flight=False, now=T0).approver == "bob"

    def test_viewer_cannot_deny(self, board: ResponseBoard) -> None:
        """A viewer cannot block remediation (403)."""
        refused = refusal(lambda: deny_approval(board.approval("req-1"), approver=VICTOR,
                                                comment="", policy=POLICY, in_flight=False,
                                                now=T0))
        assert refused.kind is RefusalKind.FORBIDDEN


class TestIncidentActions:
    def test_acknowledge_by_scoped_role(self, board: ResponseBoard) -> None:
        """carol (on-call for checkout) acknowledges; id derives from (incident, user)."""
        event = acknowledge_incident(board.incident("INC-000001"), approver=CAROL, comment="on it",
                                     via="web", policy=POLICY, in_flight=False, now=T0)
        again = acknowledge_incident(board.incident("INC-000001"), approver=CAROL, comment="",
                                     via="api", policy=POLICY, in_flight=False, now=T0)
        assert event.event_id == again.event_id
        assert (event.acknowledged_by, event.via) == ("carol", "web")

    def test_second_acknowledgement_conflicts(self, board: ResponseBoard) -> None:
        """An incident is acknowledged once; the next one is a 409 naming who did it."""
        board.apply(acknowledge_incident(board.incident("INC-000001"), approver=CAROL,
                                         comment="", via="web", policy=POLICY, in_flight=False,
                                         now=T0))
        refused = refusal(lambda: acknowledge_incident(
            board.incident("INC-000001"), approver=ALICE, comment="", via="api", policy=POLICY,
            in_flight=False, now=T0))
        assert refused.kind is RefusalKind.CONFLICT
        assert "carol" in refused.reason

    def test_viewer_cannot_acknowledge(self, board: ResponseBoard) -> None:
        """A role whose scope covers no service of the incident is refused (403)."""
        refused = refusal(lambda: acknowledge_incident(
            board.incident("INC-000001"), approver=VICTOR, comment="", via="api",
            policy=POLICY, in_flight=False, now=T0))
        assert refused.kind is RefusalKind.FORBIDDEN

    def test_manual_resolution_is_unverified_by_default(self, board: ResponseBoard) -> None:
        """A manual resolve is recorded as manual and verified=False unless stated."""
        event = resolve_incident_manually(
            board.incident("INC-000001"), approver=ALICE, summary="  restarted by hand ",
            verified=False, policy=POLICY, in_flight=False, now=T0)
        assert (event.resolution, event.verified, event.summary) == (
            "manual", False, "restarted by hand")
        stated = resolve_incident_manually(
            board.incident("INC-000001"), approver=ALICE, summary="checked dashboards",
            verified=True, policy=POLICY, in_flight=False, now=T0)
        assert stated.verified is True

    def test_manual_resolution_needs_a_summary(self, board: ResponseBoard) -> None:
        """A blank summary is refused (422)."""
        refused = refusal(lambda: resolve_incident_manually(
            board.incident("INC-000001"), approver=ALICE, summary="   ", verified=True,
            policy=POLICY, in_flight=False, now=T0))
        assert refused.kind is RefusalKind.INVALID

    def test_resolved_incident_cannot_be_resolved_again(self, board: ResponseBoard) -> None:
        """Resolving twice is a 409."""
        board.apply(resolve_incident_manually(
            board.incident("INC-000001"), approver=ALICE, summary="done", verified=False,
            policy=POLICY, in_flight=False, now=T0))
        refused = refusal(lambda: resolve_incident_manually(
            board.incident("INC-000001"), approver=ALICE, summary="done", verified=False,
            policy=POLICY, in_flight=False, now=T0))
        assert refused.kind is RefusalKind.CONFLICT

    def test_unknown_incident_is_not_found(self) -> None:
        """An incident no event named answers 404."""
        refused = refusal(lambda: acknowledge_incident(
            None, approver=ALICE, comment="", via="api", policy=POLICY, in_flight=False, now=T0))
        assert refused.kind is RefusalKind.NOT_FOUND


class TestRefusalAudit:
    def test_refusal_becomes_an_audit_record(self, board: ResponseBoard,
                                             authority: SigningAuthority) -> None:
        """A refused self-approval yields audit.recorded keyed by the incident, with the why."""
        refused = refusal(lambda: grant(board, authority, BOB))
        audit = refusal_audit(refused, actor="bob", action="approval.grant", now=T0)
        assert audit is not None
        assert (audit.incident_id, audit.outcome, audit.actor) == ("INC-000001", "rejected", "bob")
        assert audit.subject["request_id"] == "req-1"
        assert audit.subject["http_status"] == 403

    def test_refusal_without_incident_is_not_audited(self, board: ResponseBoard,
                                                     authority: SigningAuthority) -> None:
        """A 404 names no incident to key the audit by: no audit event."""
        refused = refusal(lambda: grant(board, authority, ALICE, "nope"))
        assert refusal_audit(refused, actor="alice", action="approval.grant", now=T0) is None


def test_classification_feeds_severity(board: ResponseBoard) -> None:
    """incident.classified sets the severity shown to approvers."""
    board.apply(IncidentClassified(producer="triage", incident_id="INC-000001",
                                   correlation_id="c", occurred_at=T0, severity=Severity.SEV1,
                                   reasons=("tier 1",)))
    incident = board.incident("INC-000001")
    assert incident is not None
    assert incident.severity is Severity.SEV1
