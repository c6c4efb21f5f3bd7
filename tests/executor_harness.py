"""An executor wired to fakes, for unit tests of its decisions and runs (no Kafka).

The bus is replaced by a list that records what would be published; the world
and Redis by fakes that record every call, so "nothing ran" is checkable.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.executor.backends import ActionBackend, BackendError
from services.executor.backends.redis_keys import RedisBackend
from services.executor.backends.world import WorldBackend
from services.executor.execution import RunbookRunner
from services.executor.flows import Executor, PublicKeySource
from services.executor.ledger import Ledger
from shared.approval_token import ApprovalClaims, action_digest, sign_approval
from shared.catalog import CatalogService, ServiceCatalog
from shared.clock import ManualClock
from shared.domain import RiskTier
from shared.events import (
    ActionSpec,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    Event,
    Evidence,
    InvestigationCompleted,
)
from shared.policy import ApprovalPolicy, RoleGrant
from shared.runbooks import RUNBOOKS_DIR, RunbookLibrary


class FakeWorld(ActionBackend):
    """Records calls; error rates come from a script (last value repeats)."""

    name: ClassVar[str] = "world"
    operations: ClassVar[frozenset[str]] = WorldBackend.operations

    def __init__(self, rates: list[float] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rates = list(rates or [0.0])
        self.level = "INFO"
        self.fail: set[str] = set()

    def mutations(self) -> list[str]:
        """Operations that change the world."""
        return [op for op, _ in self.calls
                if op in {"restart", "rollback", "deploy", "set_log_level"}]

    async def call(self, operation: str, args: Mapping[str, Any], *,
                   idempotency_key: str) -> dict[str, Any]:
        self.calls.append((operation, dict(args)))
        if operation in self.fail:
            raise BackendError(f"{operation} refused by the world")
        if operation == "require_service":
            return {"service": args["service"], "up": True}
        if operation == "status":
            rate = self.rates.pop(0) if len(self.rates) > 1 else self.rates[0]
            return {"service": args["service"], "error_rate": rate, "up": True, "version": "v2"}
        if operation == "get_log_level":
            return {"level": self.level}
        if operation == "set_log_level":
            self.level = str(args["level"])
        if operation == "current_version":
            return {"version": "v2"}
        if operation == "previous_version":
            return {"current": "v2", "previous": "v1"}
        return {"ok": True}


class FakeRedis(ActionBackend):
    """Records calls in order."""

    name: ClassVar[str] = "redis"
    operations: ClassVar[frozenset[str]] = RedisBackend.operations

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: set[str] = set()

    async def call(self, operation: str, args: Mapping[str, Any], *,
                   idempotency_key: str) -> dict[str, Any]:
        self.calls.append(operation)
        if operation in self.fail:
            raise BackendError(f"redis {operation} failed")
        if operation == "dump":
            return {"ref": idempotency_key, "count": 2, "keys": ["demo:cache:a", "demo:cache:b"]}
        return {"ok": True}


OPERATIONS = {f"{b.name}.{op}" for b in (WorldBackend, RedisBackend) for op in b.operations}
POLICY = ApprovalPolicy(roles={
    "sre": RoleGrant(services=("*",), max_risk=RiskTier.HIGH),
    "payments-oncall": RoleGrant(services=("payments",), max_risk=RiskTier.MEDIUM),
})


class Harness:
    """An Executor wired to fakes, a manual clock and a list as the event log."""

    def __init__(self, rates: list[float] | None = None, ledger: Ledger | None = None,
                 key: Ed25519PrivateKey | None = None) -> None:
        self.clock = ManualClock()
        self.world = FakeWorld(rates)
        self.redis = FakeRedis()
        self.key = key or Ed25519PrivateKey.generate()
        self.log: list[Event] = []
        runner = RunbookRunner(backends={"world": self.world, "redis": self.redis},
                               clock=self.clock, emit=self._unused,
                               recovery_hold=timedelta(seconds=30))
        self.executor = Executor(
            library=RunbookLibrary.load(RUNBOOKS_DIR, operations=OPERATIONS),
            runner=runner, clock=self.clock, publish=self._publish, approval_policy=POLICY,
            public_key=PublicKeySource(key=self.key.public_key()),
            catalog=ServiceCatalog(services=tuple(
                CatalogService(name=name) for name in ("payments", "catalog", "checkout"))),
            ledger=ledger,
        )

    async def _unused(self, event: Event) -> None:
        raise AssertionError("runner must emit through the executor")

    async def _publish(self, event: Event) -> bool:
        if any(e.event_id == event.event_id for e in self.log):
            return False
        self.log.append(event)
        return True

    def of(self, kind: type[Event]) -> list[Any]:
        """Published events of one type."""
        return [e for e in self.log if isinstance(e, kind)]

    def audits(self, decision: str) -> list[AuditRecorded]:
        """Audit events of one decision kind."""
        return [e for e in self.of(AuditRecorded) if e.subject.get("decision") == decision]

    async def propose(self, runbook: str, target: str, incident: str = "INC-1",
                      **params: Any) -> InvestigationCompleted:
        """Deliver an investigation proposing an action, and wait for the run."""
        event = InvestigationCompleted(
            producer="investigator", incident_id=incident, correlation_id=incident,
            investigator="rules", hypothesis="bad deploy", confidence=0.8,
            evidence=(Evidence(source="deploys", kind="deploy_before_anomaly",
                               summary="v2 deployed 3 min before the spike"),),
            proposed_action=ActionSpec(runbook=runbook, target=target, parameters=params),
            rationale="risk LOW, safe to run without approval",
        )
        await self.executor.on_investigation(event)
        await self.executor.wait_idle()
        return event

    def grant(self, request: ApprovalRequested, *, approver: str = "alice",
              roles: tuple[str, ...] = ("sre",), action: ActionSpec | None = None,
              key: Ed25519PrivateKey | None = None, token_id: str | None = None,
              expires_in: timedelta = timedelta(minutes=10)) -> ApprovalGranted:
        """A signed approval of request (tweakable to forge bad ones)."""
        now = self.clock.now()
        claims = ApprovalClaims(
            token_id=token_id or str(uuid.uuid4()), request_id=request.request_id,
            incident_id=request.incident_id or "",
            action_digest=action_digest(action or request.action, request.incident_id or ""),
            service=request.service, risk=request.risk, approver=approver,
            approver_roles=roles, requested_by="executor", issued_at=now,
            expires_at=now + expires_in,
        )
        return ApprovalGranted(
            producer="approval", **request.caused(), request_id=request.request_id,
            approver=approver, token=sign_approval(claims, key or self.key),
        )

    async def deliver(self, event: ApprovalGranted | ApprovalDenied) -> None:
        """Deliver an approval answer and wait for any run it started."""
        if isinstance(event, ApprovalGranted):
            await self.executor.on_granted(event)
        else:
            await self.executor.on_denied(event)
        await self.executor.wait_idle()
