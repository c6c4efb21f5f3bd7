"""Executor restarts on the real broker: half-finished HIGH runs are reported, never re-run.

The first executor is stopped while a HIGH-risk restart hangs inside the world
(the stub holds the request), with a second incident's approval still
pending. A new executor rebuilds its state from the log alone: it reports the
interrupted run (`runbook.failed(interrupted=True)` and an "interrupted"
audit), asks a human again with a fresh `approval.requested`, does not call
the world, and still honours the pending approval exactly once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.executor.ledger import rerun_ids
from shared.events import (
    ApprovalRequested,
    AuditRecorded,
    RunbookCompleted,
    RunbookFailed,
    RunbookStarted,
    RunbookStep,
)
from shared.kafka import EventBus
from shared.runtime import start, stop
from shared.settings import KafkaSettings
from tests.integration.test_executor_support import (
    EventTap,
    Signer,
    WorldStub,
    executor_runtime,
    investigation,
)

pytestmark = pytest.mark.integration


async def test_restart_reports_interrupted_run_and_keeps_pending_approval(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Interrupted HIGH run -> failed(interrupted) + new request, no action; pending grant runs once."""
    signer = Signer(tmp_path)
    world = await WorldStub().start()
    world.block_restart.clear()  # the first restart hangs inside the world
    producer = EventBus(KafkaSettings(bootstrap_servers=kafka_bootstrap,
                                      topic_prefix=topic_prefix), "tests")
    await producer.start()
    tap = await EventTap(kafka_bootstrap, topic_prefix).start()
    first = executor_runtime(kafka_bootstrap, topic_prefix, tmp_path, world_url=world.url,
                             public_key=signer.public_path)
    tasks = await start(first)
    second_tasks = None
    try:
        hung, pending = f"INC-{uuid.uuid4().hex[:6]}", f"INC-{uuid.uuid4().hex[:6]}"
        await producer.publish(investigation(hung, "service_restart", "payments"))
        await producer.publish(investigation(pending, "service_restart", "checkout"))
        [hung_request] = await tap.wait_for(ApprovalRequested, hung)
        [pending_request] = await tap.wait_for(ApprovalRequested, pending)
        await producer.publish(signer.grant(hung_request))
        await tap.wait_for(RunbookStep, hung,
                           where=lambda e: e.step == "restart" and e.status == "started")
        assert world.mutations() == [("restart", "payments", {"mode": "graceful"})]
        await stop(first, tasks)  # "kill" mid-action: no terminal event for the run

        world.block_restart.set()
        second = executor_runtime(kafka_bootstrap, topic_prefix, tmp_path, world_url=world.url,
                                  public_key=signer.public_path)
        second_tasks = await start(second)
        [failed] = await tap.wait_for(RunbookFailed, hung)
        assert failed.interrupted
        assert failed.run_id == hung_request.run_id
        assert failed.step == "restart"
        [audit] = [a for a in tap.of(AuditRecorded, hung)
                   if a.subject.get("decision") == "run_interrupted"]
        assert audit.outcome == "interrupted"
        requests = await tap.wait_for(ApprovalRequested, hung, count=2)
        again = requests[-1]
        new_run_id, new_request_id = rerun_ids(hung_request.run_id)
        assert (again.run_id, again.request_id) == (new_run_id, new_request_id)
        assert again.action == hung_request.action
        assert "not re-run automatically" in again.rationale
        assert world.mutations() == [("restart", "payments", {"mode": "graceful"})]

        # The approval asked before the restart still works, exactly once.
        grant = signer.grant(pending_request)
        await producer.publish(grant)
        await tap.wait_for(RunbookCompleted, pending)
        await producer.publish(grant.model_copy(update={"event_id": str(uuid.uuid4())}))
        await tap.wait_for(AuditRecorded, pending,
                           where=lambda e: e.subject.get("decision") == "approval_rejected")
        assert len(tap.of(RunbookStarted, pending)) == 1
        assert world.mutations("checkout") == [("restart", "checkout", {"mode": "graceful"})]
        assert world.mutations("payments") == [("restart", "payments", {"mode": "graceful"})]
        assert len(tap.of(RunbookStarted, hung)) == 1
    finally:
        if second_tasks is not None:
            await stop(second, second_tasks)
        await tap.stop()
        await producer.stop()
        await world.stop()
