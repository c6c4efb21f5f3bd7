"""Executing one authorized run: preconditions, backup, action, verification, rollback.

The order is the safety argument, so it is fixed here and not in the runbooks:

1. preconditions (read-only): a failure ends the run before anything changed;
2. a baseline reading of the target, so verification can tell "degrading" apart
   from "not yet recovered";
3. the backup step: the action never runs unless the backup succeeded;
4. the action steps;
5. verification against the live world, with consecutive passes and a deadline;
6. on any failure after the action began (step error, failed or degrading
   verification), the rollback steps run and the run ends with
   `runbook.rolled_back` then `runbook.failed`, which escalation acts on.

Every step is a `runbook.step` started event and a succeeded/failed event, and
every event id is derived from (run, step, phase, status), so a re-published
event is recognised as a duplicate. Backend calls carry an idempotency key
derived from (run, step, phase), and a step timeout, so a hung backend fails
the step instead of the run hanging forever. Step arguments are rendered here,
at run time, in the sandboxed environment the runbook library compiled them
in at load (`shared.runbooks.TEMPLATES`).

After a verified run, `hold_recovery` re-checks once after the recovery hold
and only then resolves the incident (verified recovery, not a single good
reading). If recovery did not hold, the run is reported failed (escalation is
told) but not rolled back: the action passed verification, and undoing it
automatically on a later regression would be guessing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal, Protocol

from jinja2 import TemplateError

from services.executor.backends import ActionBackend, BackendError
from services.executor.ledger import Decision, Run
from services.executor.verification import (
    Decision as VerificationDecision,
)
from services.executor.verification import (
    Sample,
    Verdict,
    error_rate_sample,
    judge,
    unreadable_sample,
    value_sample,
)
from shared.clock import Clock
from shared.events import (
    AuditRecorded,
    Event,
    IncidentResolved,
    RunbookCompleted,
    RunbookFailed,
    RunbookRolledBack,
    RunbookStep,
    derive_event_id,
)
from shared.runbooks import (
    TEMPLATES,
    RunbookDefinition,
    RunbookError,
    StepSpec,
    VerificationSpec,
)

log = logging.getLogger(__name__)

PRODUCER = "executor"
Phase = Literal["precondition", "backup", "action", "verification", "rollback"]
Emit = Callable[[Event], Awaitable[None]]
VERIFY_STEP = "verify_recovery"


class ScaledClock(Clock, Protocol):
    """A clock that also scales domain thresholds (SystemClock, ManualClock)."""

    def scaled(self, threshold: timedelta) -> timedelta:
        """threshold under the clock's time scale."""
        ...


class StepFailed(Exception):  # noqa: N818 - a domain outcome, named as such
    """A step failed; carries the step, its phase and the reason."""

    def __init__(self, step: str, phase: Phase, reason: str) -> None:
        super().__init__(f"{phase} step {step} failed: {reason}")
        self.step = step
        self.phase = phase
        self.reason = reason


def envelope(run: Run, clock: Clock, causation_id: str | None) -> dict[str, Any]:
    """Envelope fields of an event about run."""
    return {
        "producer": PRODUCER,
        "incident_id": run.incident_id,
        "correlation_id": run.correlation_id,
        "causation_id": causation_id,
        "occurred_at": clock.now(),
    }


def _summary(result: Mapping[str, Any]) -> str:
    text = json.dumps(result, default=str, sort_keys=True)
    return text if len(text) <= 500 else text[:497] + "..."


def _json_safe(result: Mapping[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(dict(result), default=str))
    return loaded


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in value as a sandboxed template; other values pass through."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            return TEMPLATES.from_string(value).render(context)
        except TemplateError as exc:
            raise RunbookError(f"template {value!r} failed: {exc}") from exc
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


async def _unwired(event: Event) -> None:
    raise RuntimeError(f"runner has no emit wired ({event.event_type}); the Executor sets it")


class RunbookRunner:
    """Runs authorized runs against the action backends and reports every step."""

    def __init__(
        self,
        *,
        backends: Mapping[str, ActionBackend],
        clock: ScaledClock,
        emit: Emit | None = None,
        verification_overrides: Mapping[str, Any] | None = None,
        recovery_hold: timedelta = timedelta(seconds=60),
        step_timeout_s: float = 120.0,
    ) -> None:
        self.backends = backends
        self.clock = clock
        self.emit: Emit = emit or _unwired
        self.overrides = dict(verification_overrides or {})
        self.recovery_hold = recovery_hold
        self.step_timeout_s = step_timeout_s

    # --- the run ---------------------------------------------------------------

    def context(self, run: Run) -> dict[str, Any]:
        """What step templates may read."""
        return {
            "target": run.action.target,
            "params": dict(run.action.parameters),
            "incident_id": run.incident_id,
            "run_id": run.run_id,
            "backup": dict(run.backup or {}),
            "outputs": {},
        }

    def verification(self, runbook: RunbookDefinition) -> VerificationSpec:
        """The runbook's verification with configured overrides applied."""
        return runbook.verification.model_copy(update=self.overrides)

    async def execute(self, run: Run, runbook: RunbookDefinition) -> bool:
        """Run every phase; True when verification passed (runbook.completed emitted)."""
        ctx = self.context(run)
        acted = False
        try:
            for spec in runbook.preconditions:
                ctx["outputs"][spec.name] = await self._step(run, spec, "precondition", ctx)
            baseline = await self._baseline(runbook, ctx)
            if runbook.backup is not None:
                ctx["backup"] = await self._step(run, runbook.backup, "backup", ctx)
            for spec in runbook.steps:
                acted = True
                ctx["outputs"][spec.name] = await self._step(run, spec, "action", ctx)
            decision = await self._verify(run, runbook, ctx, baseline)
        except StepFailed as failure:
            if not acted:
                await self.fail(run, f"{failure}; the action was not run", failure.step)
            else:
                await self._roll_back(run, runbook, ctx, str(failure), failure.step)
            return False
        if decision.verdict is Verdict.PASSED:
            await self.emit(RunbookCompleted(
                event_id=derive_event_id("runbook.completed", run.run_id),
                **envelope(run, self.clock, run.started_event_id),
                run_id=run.run_id, action=run.action, verification=decision.reason,
            ))
            return True
        await self._roll_back(run, runbook, ctx, f"verification failed: {decision.reason}",
                              VERIFY_STEP)
        return False

    async def _step(self, run: Run, spec: StepSpec, phase: Phase,
                    ctx: Mapping[str, Any]) -> dict[str, Any]:
        def step_event(status: Literal["started", "succeeded", "failed"], output: str,
                       data: dict[str, Any] | None = None) -> RunbookStep:
            return RunbookStep(
                event_id=derive_event_id("runbook.step", run.run_id, spec.name, phase, status),
                **envelope(run, self.clock, run.started_event_id),
                run_id=run.run_id, step=spec.name, phase=phase, status=status,
                output=output, data=data or {},
            )

        await self.emit(step_event("started", spec.description or spec.operation))
        try:
            args = render(spec.args, ctx)
            backend = self.backends.get(spec.backend)
            if backend is None:
                raise BackendError(f"backend {spec.backend!r} is not configured")
            key = derive_event_id("executor.step", run.run_id, spec.name, phase)
            async with asyncio.timeout(self.step_timeout_s):
                result = await backend.call(spec.action, args, idempotency_key=key)
        except TimeoutError:
            reason = f"{spec.operation} timed out after {self.step_timeout_s:.0f} s"
            await self.emit(step_event("failed", reason))
            raise StepFailed(spec.name, phase, reason) from None
        except Exception as exc:  # a backend or template failure fails the step, not the service
            reason = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            await self.emit(step_event("failed", reason))
            raise StepFailed(spec.name, phase, reason) from exc
        result = _json_safe(result)
        await self.emit(step_event("succeeded", _summary(result), result))
        return result

    async def _roll_back(self, run: Run, runbook: RunbookDefinition, ctx: Mapping[str, Any],
                         reason: str, step: str) -> None:
        if not runbook.rollback:
            await self.fail(run, f"{reason}; no automatic rollback: "
                                  f"{runbook.rollback_plan.strip()}", step)
            return
        ok = True
        for spec in runbook.rollback:
            try:
                await self._step(run, spec, "rollback", ctx)
            except StepFailed:
                ok = False  # keep going: restore as much as possible, then report
        await self.emit(RunbookRolledBack(
            event_id=derive_event_id("runbook.rolled_back", run.run_id),
            **envelope(run, self.clock, run.started_event_id),
            run_id=run.run_id, action=run.action, reason=reason, succeeded=ok,
        ))
        outcome = "rolled back" if ok else "ROLLBACK FAILED: manual intervention needed"
        await self.fail(run, f"{reason}; {outcome}", step)

    async def fail(self, run: Run, reason: str, step: str | None, *,
                    interrupted: bool = False) -> None:
        await self.emit(RunbookFailed(
            event_id=derive_event_id("runbook.failed", run.run_id),
            **envelope(run, self.clock, run.started_event_id),
            run_id=run.run_id, action=run.action, reason=reason, step=step,
            interrupted=interrupted,
        ))

    # --- verification ------------------------------------------------------------

    async def _baseline(self, runbook: RunbookDefinition, ctx: Mapping[str, Any]) -> float | None:
        spec = self.verification(runbook)
        if spec.kind != "error_rate":
            return None
        try:
            sample = await self.probe(spec, ctx)
        except Exception:  # no baseline only disables the "degrading" rule
            log.warning("baseline reading failed", exc_info=True)
            return None
        return sample.value

    async def probe(self, spec: VerificationSpec, ctx: Mapping[str, Any]) -> Sample:
        """One reading of the target's health as the verification defines it."""
        now = self.clock.now()
        world = self.backends.get("world")
        if world is None:
            return unreadable_sample(now, "no world backend configured")
        try:
            service = str(render(spec.service, ctx))
            key = derive_event_id("executor.probe", ctx.get("run_id"))
            async with asyncio.timeout(self.step_timeout_s):
                if spec.kind == "log_level":
                    expected = str(render(spec.expect or "", ctx))
                    out = await world.call("get_log_level", {"service": service},
                                           idempotency_key=key)
                    return value_sample(now, observed=out.get("level"), expected=expected)
                out = await world.call("status", {"service": service}, idempotency_key=key)
        except Exception as exc:  # an unreadable status is an unhealthy sample, never a crash
            return unreadable_sample(now, f"{type(exc).__name__}: {exc}")
        rate = out.get("error_rate")
        return error_rate_sample(now, error_rate=None if rate is None else float(rate),
                                 up=bool(out.get("up")), threshold=spec.threshold)

    async def _verify(self, run: Run, runbook: RunbookDefinition, ctx: Mapping[str, Any],
                      baseline: float | None) -> VerificationDecision:
        spec = self.verification(runbook)

        def step_event(status: Literal["started", "succeeded", "failed"], output: str,
                       data: dict[str, Any] | None = None) -> RunbookStep:
            return RunbookStep(
                event_id=derive_event_id("runbook.step", run.run_id, VERIFY_STEP,
                                         "verification", status),
                **envelope(run, self.clock, run.started_event_id),
                run_id=run.run_id, step=VERIFY_STEP, phase="verification", status=status,
                output=output, data=data or {},
            )

        deadline = self.clock.now() + self.clock.scaled(timedelta(seconds=spec.deadline_s))
        interval = self.clock.scaled(timedelta(seconds=spec.interval_s)).total_seconds()
        await self.emit(step_event(
            "started",
            f"{spec.kind}: {spec.consecutive} consecutive healthy checks before "
            f"{deadline.isoformat()}",
            {"baseline": baseline, "threshold": spec.threshold},
        ))
        samples: list[Sample] = []
        while True:
            samples.append(await self.probe(spec, ctx))
            decision = judge(samples, consecutive=spec.consecutive, deadline=deadline,
                             now=self.clock.now(), baseline=baseline,
                             degrade_margin=spec.degrade_margin)
            if decision.verdict is not Verdict.PENDING:
                break
            await self.clock.sleep(interval)
        data = {
            "baseline": baseline,
            "checks": len(samples),
            "samples": [{"at": s.at.isoformat(), "healthy": s.healthy, "value": s.value,
                         "detail": s.detail} for s in samples[-10:]],
        }
        status: Literal["succeeded", "failed"] = (
            "succeeded" if decision.verdict is Verdict.PASSED else "failed"
        )
        await self.emit(step_event(status, decision.reason, data))
        return decision

    # --- after verification ----------------------------------------------------------

    async def hold_recovery(self, run: Run, runbook: RunbookDefinition) -> bool:
        """After the recovery hold, re-check once; resolve the incident or report failure."""
        await self.clock.sleep(self.clock.scaled(self.recovery_hold).total_seconds())
        spec = self.verification(runbook)
        sample = await self.probe(spec, self.context(run))
        if sample.healthy:
            await self.emit(IncidentResolved(
                event_id=derive_event_id("incident.resolved", run.run_id),
                **envelope(run, self.clock, run.completed_event_id),
                resolved_by=PRODUCER, resolution="verified_recovery", verified=True,
                summary=f"{run.action.runbook} on {run.action.target} verified; recovery held "
                        f"after {self.clock.scaled(self.recovery_hold).total_seconds():.0f} s: "
                        f"{sample.detail}",
            ))
            return True
        reason = f"recovery did not hold after the run was verified: {sample.detail}"
        await self.emit(AuditRecorded(
            event_id=derive_event_id("audit.recorded", run.run_id, Decision.RECOVERY_NOT_HELD),
            **envelope(run, self.clock, run.completed_event_id),
            actor=PRODUCER, action=f"resolve incident after {run.action.runbook}",
            outcome="rejected", reason=reason,
            subject={"decision": Decision.RECOVERY_NOT_HELD, "run_id": run.run_id},
        ))
        await self.fail(run, reason, "recovery_hold")
        return False

    async def report_interrupted(self, run: Run, reason: str) -> None:
        """Report a run that a restart cut short: audit + runbook.failed(interrupted)."""
        await self.emit(AuditRecorded(
            event_id=derive_event_id("audit.recorded", run.run_id, Decision.RUN_INTERRUPTED),
            **envelope(run, self.clock, run.started_event_id or run.accepted_by_event),
            actor=PRODUCER, action=f"{run.action.runbook} on {run.action.target}",
            outcome="interrupted", reason=reason,
            subject={"decision": Decision.RUN_INTERRUPTED, "run_id": run.run_id,
                     "last_step": run.last_step, "backup": run.backup},
        ))
        await self.fail(run, reason, run.last_step, interrupted=True)
