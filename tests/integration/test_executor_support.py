"""Shared helpers of the executor's integration tests (no tests here).

- `EventTap`: reads topics from the beginning without a consumer group, in the
  background, so a test waits on "this event appeared" with a deadline.
- `WorldStub`: a small FastAPI app on a free port mimicking the demo world's
  supervisor API (status, restart, rollback, deploy, log level, deploys), which
  records every call, so "the world was not touched" is checkable.
- `module_prefix`: a topic prefix with every catalog topic created, for a test
  module that shares one executor across its tests (each test uses its own
  incident), which keeps the suite fast on a shared 2-core machine.
- Signing helpers: a test key pair and approvals built like the approval
  service builds them (`shared.approval_token.sign_approval`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from pydantic import ValidationError

from services.executor.handlers import OUTPUT_TOPICS
from services.executor.main import create_runtime
from services.executor.settings import ExecutorSettings
from shared.approval_token import (
    ApprovalClaims,
    action_digest,
    generate_keypair,
    load_private_key,
    sign_approval,
)
from shared.embedded import free_port
from shared.events import (
    ActionSpec,
    ApprovalGranted,
    ApprovalRequested,
    AuditRecorded,
    Event,
    Evidence,
    InvestigationCompleted,
    parse_event,
)
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic, topic_name
from shared.topics_admin import create_topics

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "demo" / "config"
SERVICES = ("storefront", "checkout", "payments", "catalog", "reporting")



async def new_prefix(bootstrap: str) -> str:
    """A fresh topic prefix with every catalog topic created."""
    prefix = f"x{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, prefix)
    return prefix


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll predicate every 50 ms until it holds; TimeoutError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class EventTap:
    """Every event of some topics, read continuously from offset 0 (no group)."""

    def __init__(self, bootstrap: str, prefix: str,
                 topics: Iterable[Topic] = (*OUTPUT_TOPICS,)) -> None:
        self.events: list[Event] = []
        self._consumer = AIOKafkaConsumer(
            *[topic_name(t, prefix) for t in topics], bootstrap_servers=bootstrap,
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EventTap:
        """Start reading in the background."""
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    with contextlib.suppress(ValidationError):
                        self.events.append(parse_event(record.value or b""))

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def of(self, kind: type[Any], incident_id: str | None = None) -> list[Any]:
        """Events of one type (of one incident, when given)."""
        return [e for e in self.events if isinstance(e, kind)
                and (incident_id is None or e.incident_id == incident_id)]

    def audits(self, incident_id: str, decision: str) -> list[Any]:
        """audit.recorded events of one incident and decision kind."""
        return [e for e in self.of(AuditRecorded, incident_id)
                if e.subject.get("decision") == decision]

    async def wait_for(self, kind: type[Any], incident_id: str, *, count: int = 1,
                       timeout: float = 20.0,
                       where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        """Wait until count events of kind (matching where) exist for the incident."""
        def found() -> list[Any]:
            return [e for e in self.of(kind, incident_id) if where(e)]

        try:
            await wait_until(lambda: len(found()) >= count, timeout,
                             f"{count} x {kind.__name__} of {incident_id}")
        except TimeoutError as exc:  # say what did happen, so a failure can be read
            raise TimeoutError(f"{exc}; the incident's events: {self.trail(incident_id)}") \
                from None
        return found()

    def trail(self, incident_id: str) -> list[str]:
        """One line per event of the incident, in the order read."""
        return [
            " ".join(str(v) for v in (
                e.event_type, getattr(e, "occurred_at", ""), getattr(e, "step", ""),
                getattr(e, "status", ""), getattr(e, "reason", ""),
                getattr(e, "verification", ""), str(getattr(e, "output", ""))[:160],
            ) if v)
            for e in self.events if getattr(e, "incident_id", None) == incident_id
        ]


class WorldStub:
    """The demo supervisor's API in miniature; records calls; error rates are settable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.error_rate: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
        self.level: dict[str, str] = dict.fromkeys(SERVICES, "INFO")
        self.version: dict[str, str] = dict.fromkeys(SERVICES, "v2.0.0")
        self.block_restart = asyncio.Event()  # restart waits until this is set
        self.block_restart.set()
        app = FastAPI()

        @app.get("/status")
        async def status() -> dict[str, Any]:
            return {name: {"name": name, "up": True, "error_rate": rate,
                           "version": self.version[name]}
                    for name, rate in self.error_rate.items()}

        @app.get("/services/{name}/log-level")
        async def get_level(name: str) -> dict[str, Any]:
            return {"service": name, "level": self.level[name]}

        @app.post("/services/{name}/{operation}")
        async def mutate(name: str, operation: str, request: Request) -> dict[str, Any]:
            body = await request.json() if await request.body() else {}
            self.calls.append((operation, name, body))
            if operation == "restart":
                await self.block_restart.wait()
            if operation == "log-level":
                self.level[name] = body["level"]
            return {"service": name, "ok": True}

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                     log_level="warning", lifespan="off"))
        self._task: asyncio.Task[None] | None = None

    def mutations(self, service: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """Every changing call (of one service, when given)."""
        return [c for c in self.calls if service is None or c[1] == service]

    async def start(self) -> WorldStub:
        """Serve on the free port."""
        self._task = asyncio.create_task(self._server.serve())
        await wait_until(lambda: self._server.started, 10, "world stub started")
        return self

    async def stop(self) -> None:
        """Stop serving."""
        self.block_restart.set()
        self._server.should_exit = True
        if self._task is not None:
            await self._task


class Signer:
    """The approval service's half of the key pair, for tests."""

    def __init__(self, folder: Path) -> None:
        self.private_path = folder / "approval.key"
        self.public_path = folder / "approval.pub"
        generate_keypair(self.private_path, self.public_path)
        self.key = load_private_key(self.private_path)

    def grant(self, request: ApprovalRequested, *, approver: str = "alice",
              roles: tuple[str, ...] = ("sre",), action: ActionSpec | None = None,
              key: Ed25519PrivateKey | None = None, token_id: str | None = None,
              expires_in: timedelta = timedelta(minutes=10), request_id: str | None = None,
              token: str | None = None) -> ApprovalGranted:
        """An approval.granted for request, signed like the approval service does."""
        now = datetime.now(UTC)
        claims = ApprovalClaims(
            token_id=token_id or str(uuid.uuid4()), request_id=request.request_id,
            incident_id=request.incident_id or "",
            action_digest=action_digest(action or request.action, request.incident_id or ""),
            service=request.service, risk=request.risk, approver=approver,
            approver_roles=roles, requested_by=request.requested_by,
            issued_at=now, expires_at=now + expires_in,
        )
        return ApprovalGranted(
            producer="approval", **request.caused(), request_id=request_id or request.request_id,
            approver=approver,
            token=token if token is not None else sign_approval(claims, key or self.key),
        )


def investigation(incident_id: str, runbook: str, target: str,
                  **parameters: Any) -> InvestigationCompleted:
    """An investigation.completed proposing one action."""
    return InvestigationCompleted(
        producer="investigator", incident_id=incident_id, correlation_id=incident_id,
        investigator="rules", hypothesis=f"{target} is unhealthy", confidence=0.8,
        evidence=(Evidence(source="metrics", kind="error_spike",
                           summary=f"{target} error rate above 50 %"),),
        proposed_action=ActionSpec(runbook=runbook, target=target, parameters=parameters),
        root_cause_identified=True,
    )


def executor_runtime(bootstrap: str, prefix: str, state_dir: Path, *, world_url: str,
                     public_key: Path, redis_prefix: str = "exec-test:", **overrides: Any
                     ) -> ServiceRuntime:
    """An executor on the real broker with short, test-sized thresholds."""
    settings: dict[str, Any] = {
        "world_url": world_url, "redis_prefix": redis_prefix, "approval_public_key": public_key,
        "recovery_hold_s": 0.3, "verification_interval_s": 0.1,
        "verification_deadline_s": 5.0, "expiry_check_interval_s": 0.2,
        "backup_dir": state_dir / "backups", "step_timeout_s": 30.0,
    }
    settings.update(overrides)
    return create_runtime(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                            session_timeout_ms=3000),
        settings=ServiceSettings(config_dir=str(CONFIG_DIR), state_dir=str(state_dir),
                                 log_format="console"),
        executor_settings=ExecutorSettings(**settings),
    )
