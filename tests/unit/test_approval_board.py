"""The approval projection: idempotent, order-tolerant, time-aware, and the approver directory."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from services.approval.approvers import ApproverConfigError, ApproverDirectory
from services.approval.board import (
    ApprovalStatus,
    IncidentStatus,
    InvalidApprovalRequest,
    ResponseBoard,
)
from services.approval.decisions import decision_event_id
from shared.domain import RiskTier
from shared.events import (
    ApprovalDenied,
    ApprovalGranted,
    IncidentAcknowledged,
    IncidentResolved,
    IncidentUpdated,
    RunbookFailed,
    RunbookStarted,
)
from shared.policy import ApprovalPolicy
from tests.unit.test_approval_decisions import (
    ACTION,
    APPROVERS_YAML,
    POLICY,
    T0,
    approval_requested,
    incident_opened,
)

pytestmark = pytest.mark.unit


def granted(request_id: str = "req-1", approver: str = "alice") -> ApprovalGranted:
    return ApprovalGranted(event_id=decision_event_id(request_id), producer="approval",
                           incident_id="INC-000001", correlation_id="corr-1", occurred_at=T0,
                           request_id=request_id, approver=approver, token="t.s")


class TestApprovals:
    def test_pending_until_expiry_then_expired(self) -> None:
        """Status is computed from the clock: pending before expires_at, expired at it."""
        board = ResponseBoard()
        board.apply(approval_requested())
        record = board.approval("req-1")
        assert record is not None
        assert record.status(T0 + timedelta(minutes=14)) is ApprovalStatus.PENDING
        assert record.status(T0 + timedelta(minutes=15)) is ApprovalStatus.EXPIRED
        assert board.list_approvals(T0 + timedelta(minutes=15), pending_only=True) == []
        assert len(board.list_approvals(T0 + timedelta(minutes=15), pending_only=False)) == 1

    def test_replayed_events_apply_once(self) -> None:
        """Applying the same event twice changes nothing the second time."""
        board = ResponseBoard()
        request = approval_requested()
        assert board.apply(request) is True
        assert board.apply(request) is False
        assert list(board.approvals) == ["req-1"]

    def test_decision_before_request_is_kept(self) -> None:
        """A grant that arrives before its request (another topic) still counts."""
        board = ResponseBoard()
        board.apply(granted())
        assert board.approval("req-1") is None
        board.apply(approval_requested())
        record = board.approval("req-1")
        assert record is not None
        assert record.status(T0) is ApprovalStatus.GRANTED

    def test_first_decision_wins(self) -> None:
        """A denial sharing the grant's event id (same request) is ignored."""
        board = ResponseBoard()
        board.apply(approval_requested())
        board.apply(granted())
        board.apply(ApprovalDenied(event_id=decision_event_id("req-1"), producer="approval",
                                   incident_id="INC-000001", correlation_id="c",
                                   request_id="req-1", approver="bob"))
        record = board.approval("req-1")
        assert record is not None
        assert record.status(T0) is ApprovalStatus.GRANTED

    def test_runbook_outcome_is_linked_to_the_request(self) -> None:
        """runbook.started/failed for the request's run show on the approval and incident."""
        board = ResponseBoard()
        board.apply(incident_opened())
        board.apply(approval_requested())
        board.apply(RunbookStarted(producer="executor", incident_id="INC-000001",
                                   correlation_id="c", run_id="run-req-1", action=ACTION,
                                   risk=RiskTier.HIGH, approval_request_id="req-1"))
        board.apply(RunbookFailed(producer="executor", incident_id="INC-000001",
                                  correlation_id="c", run_id="run-req-1", action=ACTION,
                                  reason="verification failed"))
        record = board.approval("req-1")
        assert record is not None
        assert (record.run_status, record.run_detail) == ("failed", "verification failed")
        incident = board.incident("INC-000001")
        assert incident is not None
        assert incident.remediation.endswith("failed")

    def test_request_without_incident_is_refused_live(self) -> None:
        """check() refuses a request with no incident (the bus dead-letters it); apply skips it."""
        request = approval_requested(incident_id="")
        with pytest.raises(InvalidApprovalRequest):
            ResponseBoard.check(request)
        board = ResponseBoard()
        assert board.apply(request) is False
        assert board.approval("req-1") is None


class TestIncidents:
    def test_lifecycle_open_acknowledged_resolved_recurred(self) -> None:
        """Status follows ack and resolution; a recurrence after resolution reopens it."""
        board = ResponseBoard()
        board.apply(incident_opened())
        incident = board.incident("INC-000001")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN
        board.apply(IncidentAcknowledged(producer="approval", incident_id="INC-000001",
                                         correlation_id="c", occurred_at=T0,
                                         acknowledged_by="alice"))
        assert incident.status is IncidentStatus.ACKNOWLEDGED
        board.apply(IncidentResolved(producer="executor", incident_id="INC-000001",
                                     correlation_id="c", occurred_at=T0 + timedelta(minutes=5),
                                     resolved_by="executor", resolution="verified_recovery",
                                     verified=True))
        assert incident.status is IncidentStatus.RESOLVED
        assert board.list_incidents(open_only=True) == []
        board.apply(IncidentUpdated(producer="triage", incident_id="INC-000001",
                                    correlation_id="c", occurred_at=T0 + timedelta(minutes=9),
                                    change="recurred"))
        assert incident.is_open
        assert incident.recurrences == 1

    def test_events_before_opening_are_kept(self) -> None:
        """An acknowledgement seen before incident.opened is not lost."""
        board = ResponseBoard()
        board.apply(IncidentAcknowledged(producer="approval", incident_id="INC-000002",
                                         correlation_id="c", acknowledged_by="bob"))
        board.apply(incident_opened("INC-000002"))
        incident = board.incident("INC-000002")
        assert incident is not None
        assert (incident.title, incident.status) == ("Checkout 5xx", IncidentStatus.ACKNOWLEDGED)


class TestApproverDirectory:
    def test_tokens_map_to_users(self, tmp_path: Path) -> None:
        """Each token authenticates its user; unknown and empty tokens authenticate nobody."""
        path = tmp_path / "approvers.yaml"
        path.write_text(APPROVERS_YAML)
        directory = ApproverDirectory.load(path, ApprovalPolicy.load(path))
        alice = directory.authenticate("alice-token")
        assert alice is not None
        assert alice.roles == ("sre",)
        assert directory.authenticate("alice-token ") is None
        assert directory.authenticate("") is None
        assert directory.authenticate(None) is None

    def test_hashed_tokens_are_accepted(self, tmp_path: Path) -> None:
        """token_sha256 keeps the secret out of the file and still authenticates."""
        digest = hashlib.sha256(b"s3cret").hexdigest()
        path = tmp_path / "users.yaml"
        path.write_text(f"users:\n  - {{name: alice, roles: [sre], token_sha256: {digest}}}\n")
        directory = ApproverDirectory.load(path, POLICY)
        user = directory.authenticate("s3cret")
        assert user is not None
        assert user.name == "alice"

    @pytest.mark.parametrize(("users", "message"), [
        ("- {name: a, roles: [sre], token: x}\n  - {name: b, roles: [sre], token: x}",
         "same token"),
        ("- {name: a, roles: [sre], token: x}\n  - {name: a, roles: [sre], token: y}",
         "duplicate"),
        ("- {name: a, roles: [root], token: x}", "not in the role table"),
        ("- {name: a, roles: [sre]}", "exactly one of token"),
        ("- {name: a, roles: [sre], token_sha256: zz}", "not hex"),
    ])
    def test_bad_users_file_is_a_clear_error(self, tmp_path: Path, users: str,
                                             message: str) -> None:
        """Duplicates, unknown roles and missing tokens stop start-up with the reason."""
        path = tmp_path / "users.yaml"
        path.write_text(f"users:\n  {users}\n")
        with pytest.raises(ApproverConfigError, match=message):
            ApproverDirectory.load(path, POLICY)

    def test_demo_approvers_file_loads(self) -> None:
        """demo/config/approvers.yaml is valid: alice is an sre."""
        path = Path(__file__).resolve().parents[2] / "demo/config/approvers.yaml"
        directory = ApproverDirectory.load(path, ApprovalPolicy.load(path))
        alice = directory.authenticate("alice-token")
        assert alice is not None
        assert "sre" in alice.roles
