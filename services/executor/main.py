"""Factory of the executor: settings, runbook library, backends, ledger replay, HTTP.

`create_runtime` wires everything and returns the `ServiceRuntime` (tests start
it with `shared.runtime.start`; the `Executor` is reachable as
`runtime.http.state.executor`); `main` runs it until SIGTERM. The runbook
library is validated here, so a broken runbook stops the executor at start-up
with the file and the problem named, not in the middle of an incident.

Start-up order (the runtime runs `on_start` hooks before subscribers): replay
the executor's own outputs into the ledger, connect the producer, report
half-finished runs and re-ask approvals for HIGH ones, and only then consume
new proposals and approvals. Shutdown cancels in-flight runs; the log shows
them as started without a terminal event, which the next start reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, HTTPException

from services.executor.backends import ActionBackend
from services.executor.backends.redis_keys import RedisBackend
from services.executor.backends.world import WorldBackend
from services.executor.execution import PRODUCER, RunbookRunner, ScaledClock
from services.executor.flows import Executor, PublicKeySource
from services.executor.handlers import OUTPUT_TOPICS, register
from services.executor.ledger import Run
from services.executor.settings import ExecutorSettings
from shared.catalog import ServiceCatalog
from shared.clock import SystemClock
from shared.events import Event
from shared.policy import ApprovalPolicy
from shared.runbooks import RunbookLibrary
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings

SERVICE = PRODUCER
log = logging.getLogger(__name__)


def default_backends(executor: ExecutorSettings, settings: ServiceSettings
                     ) -> dict[str, ActionBackend]:
    """The demo world's HTTP API and its Redis."""
    return {
        WorldBackend.name: WorldBackend(executor.world_url, timeout_s=executor.world_timeout_s),
        RedisBackend.name: RedisBackend(executor.redis_url, prefix=executor.redis_prefix,
                                        backup_dir=executor.backup_path(settings)),
    }


def _verification_overrides(executor: ExecutorSettings) -> dict[str, Any]:
    pairs = {
        "threshold": executor.verification_threshold,
        "consecutive": executor.verification_consecutive,
        "interval_s": executor.verification_interval_s,
        "deadline_s": executor.verification_deadline_s,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _run_view(r: Run) -> dict[str, Any]:
    return {
        "run_id": r.run_id, "incident_id": r.incident_id, "status": r.status.value,
        "risk": r.risk.value, "action": r.action.model_dump(mode="json"),
        "approval_request_id": r.request.request_id if r.request else None,
        "approved_by": r.approved_by, "last_step": r.last_step, "failure": r.failure,
        "interrupted": r.interrupted, "rolled_back": r.rolled_back,
    }


def _add_routes(app: FastAPI, library: RunbookLibrary, executor: Executor) -> None:
    @app.get("/runbooks", summary="The runbook library with each runbook's policy tier")
    async def runbooks() -> list[dict[str, Any]]:
        return [{"name": name, "risk": library.get(name).risk.value,
                 "description": library.get(name).description.strip(),
                 "parameters": library.get(name).parameters} for name in library.names()]

    @app.get("/runs", summary="Runs known to the executor, newest state of each")
    async def runs(incident_id: str | None = None) -> list[dict[str, Any]]:
        return [_run_view(r) for r in executor.ledger.runs.values()
                if incident_id is None or r.incident_id == incident_id]

    @app.get("/runs/{run_id}", summary="One run")
    async def one_run(run_id: str) -> dict[str, Any]:
        found = executor.ledger.run(run_id)
        if found is None:
            raise HTTPException(404, f"no run {run_id}")
        return _run_view(found)


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    executor_settings: ExecutorSettings | None = None,
    clock: ScaledClock | None = None,
    backends: Mapping[str, ActionBackend] | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> ServiceRuntime:
    """Build the executor (not started)."""
    settings = settings or ServiceSettings()
    ex = executor_settings or ExecutorSettings()
    clock = clock or SystemClock(settings.time_scale)
    backends = dict(backends) if backends is not None else default_backends(ex, settings)
    operations = {f"{b.name}.{op}" for b in backends.values() for op in b.operations}
    library = RunbookLibrary.load(ex.runbooks_dir, operations=operations)
    approvers = ex.approvers_path(settings)
    if approvers.exists():
        policy = ApprovalPolicy.load(approvers)
    else:
        log.warning("approvers file %s missing: no role may approve HIGH-risk runs", approvers)
        policy = ApprovalPolicy()
    catalog_path = ex.catalog_path(settings)
    catalog = ServiceCatalog.load(catalog_path) if catalog_path.exists() else None

    app = FastAPI(title="Executor", description="Runbook runs under the risk policy (read-only).",
                  docs_url="/docs", redoc_url=None)
    runtime = build_runtime(SERVICE, kafka=kafka, settings=settings, http=app)
    bus = runtime.bus
    runner = RunbookRunner(
        backends=backends, clock=clock,
        verification_overrides=_verification_overrides(ex),
        recovery_hold=timedelta(seconds=ex.recovery_hold_s),
        step_timeout_s=ex.step_timeout_s,
    )
    executor = Executor(
        library=library, runner=runner, clock=clock, publish=bus.publish,
        approval_policy=policy,
        public_key=PublicKeySource(ex.public_key_path(settings), public_key),
        catalog=catalog, approval_ttl=timedelta(seconds=ex.approval_ttl_s),
    )
    _add_routes(app, library, executor)
    app.state.executor = executor
    register(bus, executor)

    def apply_own(event: Event) -> None:
        if event.producer == SERVICE:
            executor.ledger.apply(event)

    async def rebuild() -> None:
        count = await bus.restore(OUTPUT_TOPICS, apply_own)
        log.info("ledger rebuilt from %d events: %d runs", count, len(executor.ledger.runs))
        await bus.broker.connect()  # recovery publishes before the subscribers start
        await executor.recover_after_restart()

    async def expire_approvals() -> None:
        while True:
            await executor.expire_requests()
            await asyncio.sleep(ex.expiry_check_interval_s)

    async def shutdown() -> None:
        await executor.cancel_runs()
        for backend in backends.values():
            await backend.close()

    runtime.on_start.append(rebuild)
    runtime.background.append(expire_approvals)
    runtime.on_stop.append(shutdown)
    return runtime


def main() -> None:
    """Run the executor until SIGTERM (port IR_HTTP_PORT, else IR_EXECUTOR_HTTP_PORT)."""
    settings = ServiceSettings()
    ex = ExecutorSettings()
    if "http_port" not in settings.model_fields_set:
        settings = settings.model_copy(update={"http_port": ex.http_port})
    run(create_runtime(settings=settings, executor_settings=ex))
