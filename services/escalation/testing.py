"""In-memory doubles for tests and drills: recording notifier, event log, incident script.

They let the whole decision path (`EscalationFlow` with its planner and book)
run without Kafka or network, under a `ManualClock`: a `Drill` feeds scripted
lifecycle events to the real flow and moves time by hand. Integration tests use
the real bus, SMTP and HTTP instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from services.escalation.decisions import EscalationPlanner
from services.escalation.flow import DEFAULT_RETENTION, EscalationFlow, Redact, no_redaction
from services.escalation.notifiers.base import DeliveryError, Notifier, Outbound
from services.escalation.policy import SETTLE_WINDOW, EscalationPolicy
from services.escalation.schedule import OnCallSchedule
from services.escalation.state import EscalationBook
from shared.catalog import ServiceCatalog
from shared.clock import Clock, ManualClock
from shared.domain import Severity
from shared.events import (
    EscalationTriggered,
    Event,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    RunbookFailed,
    RunbookRolledBack,
)

E = TypeVar("E", bound=Event)

TICK = timedelta(seconds=15)


DRILL_START = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)


def drill_schedule(**changes: Any) -> OnCallSchedule:
    """The drill world's schedule. At DRILL_START, payments: on-call alice, senior dave,
    lead bob, manager erin; web: on-call frank; director grace; VP heidi; executive olivia.
    alice has e-mail and a webhook, everyone else e-mail only."""
    people: list[dict[str, Any]] = [{"name": n, "email": f"{n}@example.com"} for n in (
        "carol", "dave", "bob", "erin", "frank", "grace", "heidi", "olivia", "sre")]
    people.insert(0, {"name": "alice", "email": "alice@example.com",
                      "webhook": "http://hooks.test/alice"})
    weekly = {"length": "7d", "handoff": "09:00", "timezone": "Europe/Berlin",
              "start": "2026-01-05"}
    data: dict[str, Any] = {
        "people": people,
        "teams": {
            "payments": {"oncall": {"participants": ["alice", "carol"], **weekly},
                         "senior_oncall": {"participants": ["dave", "bob"], **weekly},
                         "lead": "bob", "manager": "erin"},
            "web": {"oncall": {"participants": ["frank"], **weekly}, "manager": "erin"},
        },
        "organisation": {"director": "grace", "vp_engineering": "heidi",
                         "executives": ["olivia"], "fallback": ["sre"]},
        "default_team": "payments",
        **changes,
    }
    return OnCallSchedule.parse(data)


def drill_catalog() -> ServiceCatalog:
    """payments and checkout (team payments), storefront (team web)."""
    return ServiceCatalog.model_validate({"services": [
        {"name": "payments", "team": "payments", "tier": 1},
        {"name": "checkout", "team": "payments", "tier": 1, "depends_on": ["payments"]},
        {"name": "storefront", "team": "web", "tier": 1, "depends_on": ["checkout"]},
    ]})


class RecordingNotifier(Notifier):
    """Keeps every message it was asked to send; fails the first `fail_first` sends."""

    def __init__(self, channel: str, *, fail_first: int = 0) -> None:
        self.channel = channel
        self.fail_first = fail_first
        self.sent: list[Outbound] = []
        self.calls = 0

    async def send(self, message: Outbound) -> None:
        """Record message, or fail while failures remain."""
        self.calls += 1
        if self.calls <= self.fail_first:
            raise DeliveryError(f"simulated {self.channel} outage")
        self.sent.append(message)

    def to(self, recipient: str) -> list[Outbound]:
        """Messages delivered to recipient."""
        return [m for m in self.sent if m.recipient == recipient]


class MemoryLog:
    """An append-only event log with the bus's publish contract (repeats are skipped)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._ids: set[str] = set()

    async def publish(self, event: Event) -> bool:
        """Append event unless its id is already in the log."""
        if event.event_id in self._ids:
            return False
        self._ids.add(event.event_id)
        self.events.append(event)
        return True

    def of(self, kind: type[E]) -> list[E]:
        """Events of one type, in log order."""
        return [e for e in self.events if isinstance(e, kind)]


def memory_flow(
    *,
    schedule: OnCallSchedule,
    catalog: ServiceCatalog,
    clock: ManualClock,
    notifiers: Iterable[Notifier],
    log: MemoryLog,
    ui_url: str = "http://approval.test",
    max_attempts: int = 3,
    redact: Redact | None = None,
    retention: timedelta = DEFAULT_RETENTION,
    settle: timedelta = SETTLE_WINDOW,
) -> EscalationFlow:
    """An EscalationFlow over an in-memory log, with the real planner and policy."""
    channels = {n.channel: n for n in notifiers}
    planner = EscalationPlanner(
        policy=EscalationPolicy(clock.scaled, settle=settle), schedule=schedule, catalog=catalog,
        channels=frozenset(channels), ui_url=ui_url, max_attempts=max_attempts,
    )
    return EscalationFlow(book=EscalationBook(), planner=planner, notifiers=channels,
                          publish=log.publish, clock=clock, redact=redact or no_redaction,
                          retention=retention)


class IncidentScript:
    """The lifecycle events other services would publish about one incident."""

    def __init__(self, incident_id: str, clock: Clock) -> None:
        self.incident_id = incident_id
        self.clock = clock
        self._n = 0

    def _envelope(self, producer: str) -> dict[str, Any]:
        self._n += 1
        return {
            "event_id": f"{self.incident_id}-{producer}-{self._n}",
            "producer": producer,
            "incident_id": self.incident_id,
            "correlation_id": f"corr-{self.incident_id}",
            "occurred_at": self.clock.now(),
        }

    def opened(self, services: tuple[str, ...] = ("payments",), **extra: Any) -> IncidentOpened:
        """Triage opened the incident."""
        return IncidentOpened.model_validate({
            **self._envelope("triage"), "title": f"HighErrorRate on {services[0]}",
            "services": services, "fingerprints": ("fp-1",), "alert_event_id": "alert-1",
            "alert_received_at": self.clock.now(), **extra,
        })

    def classified(self, severity: Severity, reasons: tuple[str, ...] = ("tier-1 service",),
                   **extra: Any) -> IncidentClassified:
        """Triage (re)classified the incident."""
        return IncidentClassified.model_validate({
            **self._envelope("triage"), "severity": severity, "reasons": reasons, **extra,
        })

    def updated(self, change: str, **extra: Any) -> IncidentUpdated:
        """Triage reported a change."""
        return IncidentUpdated.model_validate({
            **self._envelope("triage"), "change": change, **extra,
        })

    def acknowledged(self, by: str = "alice") -> IncidentAcknowledged:
        """A human acknowledged."""
        return IncidentAcknowledged.model_validate({
            **self._envelope("approval"), "acknowledged_by": by,
        })

    def resolved(self, *, verified: bool = True) -> IncidentResolved:
        """The incident was resolved."""
        return IncidentResolved.model_validate({
            **self._envelope("executor"), "resolved_by": "executor",
            "resolution": "verified_recovery" if verified else "manual", "verified": verified,
            "summary": "rolled back payments to v41",
        })

    def runbook_failed(self, run_id: str = "run-1", *, rolled_back: bool = False) -> Event:
        """The executor reports a failed (or rolled back) remediation."""
        body = {
            **self._envelope("executor"), "run_id": run_id, "reason": "verification failed",
            "action": {"runbook": "restart_service", "target": "payments"},
        }
        if rolled_back:
            return RunbookRolledBack.model_validate(body)
        return RunbookFailed.model_validate(body)


class Drill:
    """An incident drill: the real flow in memory, under a manual clock."""

    def __init__(self, *, schedule: OnCallSchedule | None = None,
                 catalog: ServiceCatalog | None = None, start: datetime = DRILL_START,
                 time_scale: float = 1.0, fail_email: int = 0, max_attempts: int = 3,
                 redact: Redact | None = None,
                 retention: timedelta = DEFAULT_RETENTION,
                 settle: timedelta = SETTLE_WINDOW) -> None:
        self.start = start
        self.retention = retention
        self.settle = settle
        self.clock = ManualClock(start, time_scale=time_scale)
        self.log = MemoryLog()
        self.email = RecordingNotifier("email", fail_first=fail_email)
        self.webhook = RecordingNotifier("webhook")
        self.schedule = schedule or drill_schedule()
        self.catalog = catalog or drill_catalog()
        self.max_attempts = max_attempts
        self.redact = redact
        self._scripts: dict[str, IncidentScript] = {}
        self.flow = self.restart()

    def restart(self) -> EscalationFlow:
        """A fresh flow whose book is rebuilt from the log (as after a process restart)."""
        self.flow = memory_flow(
            schedule=self.schedule, catalog=self.catalog, clock=self.clock,
            notifiers=(self.email, self.webhook), log=self.log, max_attempts=self.max_attempts,
            redact=self.redact, retention=self.retention, settle=self.settle,
        )
        for event in sorted(self.log.events, key=lambda e: e.occurred_at):
            self.flow.restore(event)
        self.flow.prune()
        return self.flow

    def script(self, incident_id: str = "INC-000001") -> IncidentScript:
        """Events of one incident, stamped with the drill's clock (one script per incident)."""
        return self._scripts.setdefault(incident_id, IncidentScript(incident_id, self.clock))

    async def feed(self, *events: Event) -> None:
        """Publish events to the log and deliver them to the flow (like the bus)."""
        for event in events:
            await self.log.publish(event)
            await self.flow.handle(event)

    async def at(self, offset: timedelta) -> None:
        """Move the clock to start + offset and run one tick."""
        self.clock.advance(self.start + offset - self.clock.now())
        await self.flow.tick()

    async def run_until(self, offset: timedelta, step: timedelta = TICK) -> None:
        """Tick every step until start + offset."""
        while self.clock.now() + step <= self.start + offset:
            self.clock.advance(step)
            await self.flow.tick()

    def escalations(self) -> list[tuple[int, str]]:
        """(tier, trigger) of every escalation, in order."""
        return [(e.tier, e.trigger) for e in self.log.of(EscalationTriggered)]

    def escalation_minutes(self) -> list[float]:
        """Minutes after start at which each escalation happened."""
        return [(e.occurred_at - self.start).total_seconds() / 60
                for e in self.log.of(EscalationTriggered)]
