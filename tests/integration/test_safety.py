"""Safety of HIGH-risk actions on the real broker: only a valid signed approval runs one.

One executor serves the module (its own topic prefix); each test uses its own
incident, proposes a HIGH-risk `service_restart`, waits for the executor's
`approval.requested`, then publishes an `approval.granted` straight to Kafka,
as an attacker or a buggy approval service could. Every invalid approval must
leave the world untouched (no restart call reaches the world stub), emit no
`runbook.started`, and produce an `audit.recorded` with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.executor.flows import Executor
from shared.domain import RiskTier
from shared.events import (
    ActionSpec,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    IncidentResolved,
    RunbookCompleted,
    RunbookStarted,
)
from shared.kafka import EventBus
from shared.runtime import ServiceRuntime, start, stop
from shared.settings import KafkaSettings
from tests.integration.test_executor_support import (
    EventTap,
    Signer,
    WorldStub,
    executor_runtime,
    investigation,
    new_prefix,
)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    """The module's executor, world stub, producer and event tap."""

    runtime: ServiceRuntime
    world: WorldStub
    producer: EventBus
    tap: EventTap
    signer: Signer

    @property
    def executor(self) -> Executor:
        """The running Executor."""
        executor: Executor = self.runtime.http.state.executor
        return executor

    async def request_restart(self, target: str = "payments") -> ApprovalRequested:
        """Propose a HIGH-risk restart for a fresh incident; return its approval request."""
        incident = f"INC-{uuid.uuid4().hex[:6].upper()}"
        await self.producer.publish(investigation(incident, "service_restart", target,
                                                  service=target, mode="graceful"))
        [request] = await self.tap.wait_for(ApprovalRequested, incident)
        return request

    async def rejected(self, grant: ApprovalGranted) -> str:
        """Publish grant, wait for the executor's rejection and return its reason."""
        await self.producer.publish(grant)
        [audit] = await self.tap.wait_for(
            AuditRecorded, grant.incident_id or "",
            where=lambda e: e.subject.get("decision") == "approval_rejected"
            and e.causation_id == grant.event_id)
        assert audit.outcome == "rejected"
        assert audit.actor == "executor"
        return str(audit.reason)


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:
    """A started executor with a world stub, on a topic prefix of its own."""
    prefix = await new_prefix(kafka_bootstrap)
    folder: Path = tmp_path_factory.mktemp("safety")
    signer = Signer(folder)
    world = await WorldStub().start()
    runtime = executor_runtime(kafka_bootstrap, prefix, folder, world_url=world.url,
                               public_key=signer.public_path)
    tasks = await start(runtime)
    producer = EventBus(KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix),
                        "tests")
    await producer.start()
    tap = await EventTap(kafka_bootstrap, prefix).start()
    try:
        yield Stack(runtime, world, producer, tap, signer)
    finally:
        await tap.stop()
        await producer.stop()
        await stop(runtime, tasks)
        await world.stop()


async def _nothing_ran(stack: Stack, request: ApprovalRequested, restarts_before: int) -> None:
    """The world saw no new restart and the run never started."""
    assert len(stack.world.mutations()) == restarts_before
    assert not stack.tap.of(RunbookStarted, request.incident_id)
    run = stack.executor.ledger.run(request.run_id)
    assert run is not None
    assert run.status.value == "awaiting_approval"


async def test_high_risk_waits_for_a_valid_approval_then_runs_once(stack: Stack) -> None:
    """Nothing runs on the proposal; a valid signed grant runs the exact action once."""
    before = len(stack.world.mutations())
    request = await stack.request_restart("checkout")
    assert request.risk is RiskTier.HIGH
    assert request.action == ActionSpec(runbook="service_restart", target="checkout",
                                        parameters={"service": "checkout", "mode": "graceful"})
    assert request.requested_by == "executor"
    transport = httpx.ASGITransport(app=stack.runtime.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://executor") as client:
        runs = (await client.get("/runs", params={"incident_id": request.incident_id})).json()
    assert [r["status"] for r in runs] == ["awaiting_approval"]
    assert len(stack.world.mutations()) == before

    grant = stack.signer.grant(request, token_id=f"tok-{uuid.uuid4()}")
    await stack.producer.publish(grant)
    [started] = await stack.tap.wait_for(RunbookStarted, request.incident_id or "")
    assert started.approved_by == "alice"
    assert started.approval_request_id == request.request_id
    await stack.tap.wait_for(RunbookCompleted, request.incident_id or "")
    await stack.tap.wait_for(IncidentResolved, request.incident_id or "")
    assert stack.world.mutations()[before:] == [
        ("restart", "checkout", {"mode": "graceful"})]

    # Replay 1: the same token for the same request, in a new event.
    replay = grant.model_copy(update={"event_id": str(uuid.uuid4())})
    reason = await stack.rejected(replay)
    assert "replay" in reason
    assert len(stack.tap.of(RunbookStarted, request.incident_id)) == 1
    assert len(stack.world.mutations()) == before + 1


async def test_missing_token_runs_nothing(stack: Stack) -> None:
    """approval.granted without a token is rejected."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    reason = await stack.rejected(stack.signer.grant(request, token=""))
    assert "missing signature" in reason
    await _nothing_ran(stack, request, before)


async def test_bad_signature_runs_nothing(stack: Stack) -> None:
    """A token signed by another key than the approval service's is rejected."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    reason = await stack.rejected(stack.signer.grant(request, key=Ed25519PrivateKey.generate()))
    assert "bad signature" in reason
    await _nothing_ran(stack, request, before)


async def test_token_reused_for_another_request_runs_nothing(stack: Stack) -> None:
    """A token that authorised one request does not authorise another."""
    first = await stack.request_restart("storefront")
    token_id = f"tok-{uuid.uuid4()}"
    grant = stack.signer.grant(first, token_id=token_id)
    await stack.producer.publish(grant)
    await stack.tap.wait_for(RunbookCompleted, first.incident_id or "")
    second = await stack.request_restart()
    before = len(stack.world.mutations())
    reused = grant.model_copy(update={
        "event_id": str(uuid.uuid4()), "request_id": second.request_id,
        "incident_id": second.incident_id})
    reason = await stack.rejected(reused)
    assert "another approval request" in reason
    await _nothing_ran(stack, second, before)


async def test_approval_for_other_parameters_runs_nothing(stack: Stack) -> None:
    """An approval of mode=force does not authorise the proposed mode=graceful (or vice versa)."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    other = request.action.model_copy(update={"parameters": {**request.action.parameters,
                                                             "mode": "force"}})
    reason = await stack.rejected(stack.signer.grant(request, action=other))
    assert "another action" in reason
    await _nothing_ran(stack, request, before)


async def test_expired_approval_runs_nothing(stack: Stack) -> None:
    """A signed approval past its expiry is rejected."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    reason = await stack.rejected(stack.signer.grant(request,
                                                     expires_in=timedelta(seconds=-5)))
    assert "expired" in reason
    await _nothing_ran(stack, request, before)


async def test_self_approval_runs_nothing(stack: Stack) -> None:
    """An approval whose approver is the requester (the executor) is rejected."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    reason = await stack.rejected(stack.signer.grant(request, approver="executor"))
    assert "self-approval" in reason
    await _nothing_ran(stack, request, before)


async def test_approver_without_role_runs_nothing(stack: Stack) -> None:
    """carol (payments-oncall, MEDIUM at most) cannot approve a HIGH-risk restart."""
    request = await stack.request_restart()
    before = len(stack.world.mutations())
    reason = await stack.rejected(stack.signer.grant(request, approver="carol",
                                                     roles=("payments-oncall",)))
    assert "lacks a role" in reason
    await _nothing_ran(stack, request, before)
