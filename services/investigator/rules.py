"""The rule-based investigator: "what changed, what is broken, what is the deepest broken thing".

Each rule reads the per-service health (`signals.assess`) and the deploy
history and proposes zero or more `Hypothesis`es: a cause on one service, the
evidence for it, each piece with a weight, and a remediation. A hypothesis's
confidence is the sum of its evidence weights, clamped to [0, 0.95] (rules
never claim certainty), so the rationale can show the arithmetic. Evidence can
weigh against a hypothesis too (a deployed service that is observed healthy,
a crash that follows a deploy).

The rules, in the order they win ties:

- bad_deploy: a deploy of an affected service or one of its dependencies
  within the look-back window before the first anomaly -> rollback_deployment to
  its previous version. Only the latest deploy of a service counts (earlier
  ones no longer run), and a deploy that is itself a rollback (its note says so,
  or it returns to a version deployed before) is never blamed: rolling it back
  would reinstate the version someone just removed.
- crash: the process is stopped, `up` is 0, or its metrics cannot be scraped ->
  service_restart (graceful).
- stuck_cache: cache-corruption error lines or cache error counters ->
  cache_invalidation of `cache:*`.
- connection_leak: pool-exhaustion error lines or a full DB pool ->
  service_restart (graceful), which releases the leaked connections.
- error_spike: errors on a root service with no deploy (and no cache or pool
  explanation) -> service_restart, with a confidence that stays below "root cause identified".
- excessive_debug_logging: DEBUG level or mostly DEBUG lines -> log_level_change
  to INFO.
- saturation: high p99 latency; evidence only, no remediation.

The best hypothesis becomes the finding; the others are listed as alternatives.
The root-cause service is the deepest failing one, so a failing chain points
at payments rather than at storefront. Weights are constants here, named in the
rationale, and tuned by the recorded cases in the unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.investigator.evidence import (
    DeployRecord,
    EvidenceBundle,
    EvidenceCollector,
    EvidenceQuery,
)
from services.investigator.investigation import Finding, InvestigationContext
from services.investigator.signals import (
    ServiceHealth,
    Thresholds,
    assess,
    deepest,
    dependencies,
    layer,
    scope,
)
from shared.clock import Clock
from shared.events import ActionSpec, Evidence

MAX_CONFIDENCE = 0.95
IDENTIFIED_AT = 0.6
"""Confidence from which a finding claims the root cause is identified."""

CLOCK_SKEW = timedelta(seconds=60)
"""A deploy this much after the first anomaly still counts (clocks of two systems differ)."""

_DOWN_ALERT = re.compile(r"down|unreachable|unavailable|crash|not.?running|absent", re.IGNORECASE)
_CAUSE_ORDER = ("bad_deploy", "crash", "stuck_cache", "connection_leak", "error_spike",
                "excessive_debug_logging", "saturation")


@dataclass
class Hypothesis:
    """One candidate explanation: a cause on a service, weighed by its evidence."""

    cause: str
    service: str
    statement: str
    evidence: list[Evidence]
    action: ActionSpec | None = None
    action_note: str = ""

    @property
    def confidence(self) -> float:
        """Sum of evidence weights, clamped to [0, MAX_CONFIDENCE]."""
        return round(min(max(sum(e.weight for e in self.evidence), 0.0), MAX_CONFIDENCE), 2)

    def arithmetic(self) -> str:
        """How the confidence adds up, e.g. "deploy_before_anomaly +0.45, ..."."""
        parts = ", ".join(f"{e.kind} {e.weight:+.2f}" for e in self.evidence if e.weight)
        total = sum(e.weight for e in self.evidence)
        capped = " (capped)" if total > MAX_CONFIDENCE else ""
        return f"{parts} = {self.confidence:.2f}{capped}"


@dataclass
class Case:
    """Everything the rules look at for one investigation."""

    context: InvestigationContext
    bundle: EvidenceBundle
    anomaly_at: datetime
    window: timedelta
    services: tuple[str, ...]
    health: dict[str, ServiceHealth]
    roots: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        context: InvestigationContext,
        bundle: EvidenceBundle,
        *,
        anomaly_at: datetime,
        window: timedelta,
        thresholds: Thresholds | None = None,
    ) -> Case:
        """Assess every service in scope and find the deepest failing ones."""
        services = scope(context.catalog, context.incident.services)
        health = assess(bundle, services, thresholds,
                        errors_since=anomaly_at - min(CLOCK_SKEW, window / 10))
        failing = [s for s in services if health[s].failing]
        return cls(context, bundle, anomaly_at, window, services, health,
                   deepest(context.catalog, failing))

    def deploys_in_window(self, service: str | None = None) -> list[DeployRecord]:
        """Deploys within the look-back window before the anomaly (latest last)."""
        skew = min(CLOCK_SKEW, self.window / 10)
        start, end = self.anomaly_at - self.window, self.anomaly_at + skew
        return [
            d for d in self.bundle.deploys
            if start <= d.deployed_at <= end and d.service in self.services
            and (service is None or d.service == service)
        ]

    def current_deploys(self) -> dict[str, DeployRecord]:
        """The latest deploy in the window per service: what runs now (earlier ones are gone)."""
        return {d.service: d for d in self.deploys_in_window()}

    def failing_dependencies(self, service: str) -> list[str]:
        """Dependencies of service that fail too (its errors may be theirs)."""
        return sorted(d for d in dependencies(self.context.catalog, service)
                      if d in self.health and self.health[d].failing)


Rule = Callable[[Case], list[Hypothesis]]


def _minutes(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds:.0f} s" if abs(seconds) < 90 else f"{seconds / 60:.1f} min"


_ROLLBACK_NOTE = re.compile(r"\b(roll(ed)?[ -]?back|revert(ed|s)?)\b", re.IGNORECASE)


def is_rollback(deploy: DeployRecord, history: Iterable[DeployRecord]) -> bool:
    """True when a deploy returns to an earlier version (by its note, or by the history)."""
    if _ROLLBACK_NOTE.search(deploy.change):
        return True
    return any(d.service == deploy.service and d.version == deploy.version
               and d.deployed_at < deploy.deployed_at for d in history)


def _symptoms(h: ServiceHealth) -> str:
    parts = []
    if h.down:
        parts.append(f"down (process {h.process_status or 'unreachable'})")
    if h.error_ratio is not None:
        parts.append(f"{h.error_ratio:.0%} errors ({h.error_ratio_origin})")
    if h.error_lines:
        parts.append(f"{len(h.error_lines)} ERROR lines")
    return ", ".join(parts) or "no symptom observed"


def _error_sample(h: ServiceHealth) -> list[dict[str, object]]:
    return [{"msg": msg, "count": count} for msg, count in h.top_errors()]


def _root_bonus(case: Case, service: str) -> list[Evidence]:
    if service in case.roots:
        return [Evidence(source="topology", kind="deepest_failing_service", weight=0.1,
                         summary=f"{service} is the deepest failing service in the chain")]
    return []


def bad_deploy(case: Case) -> list[Hypothesis]:
    """A recent deploy of an affected service or dependency -> roll it back."""
    out = []
    for service, d in case.current_deploys().items():
        if is_rollback(d, case.bundle.deploys):
            continue  # a return to a known version; rolling it back would reinstate the bad one
        h = case.health[service]
        before = case.anomaly_at - d.deployed_at
        when = f"{_minutes(before)} before" if before >= timedelta(0) else "right at"
        evidence = [Evidence(
            source="deploys", kind="deploy_before_anomaly", observed_at=d.deployed_at, weight=0.45,
            summary=(f"{service} {d.version} deployed by {d.author or 'unknown'} {when} the "
                     f"first anomaly: {d.change or 'no change note'}"),
            data={"service": service, "version": d.version, "previous_version": d.previous_version,
                  "deployed_at": d.deployed_at.isoformat(), "author": d.author,
                  "change": d.change, "deploy_id": d.id},
        )]
        after = h.errors_since(d.deployed_at)
        if h.failing:
            evidence.append(Evidence(
                source="metrics+logs", kind="errors_after_deploy", weight=0.2,
                summary=f"{service} is failing since the deploy: {_symptoms(h)}",
                data={"error_ratio": h.error_ratio, "error_lines_after_deploy": len(after),
                      "top_errors": _error_sample(h)},
            ))
        elif h.healthy:
            evidence.append(Evidence(
                source="metrics+logs", kind="deployed_service_healthy", weight=-0.3,
                summary=f"{service} looks healthy after the deploy ({_symptoms(h)})",
            ))
        naming = [r for r in after if d.version in r.msg]
        tagged = [r for r in after if r.version == d.version]
        if naming:
            evidence.append(Evidence(
                source="logs", kind="errors_name_new_version", weight=0.2,
                summary=f"{len(naming)} error lines name {d.version}: {naming[-1].msg}",
                observed_at=naming[-1].ts,
            ))
        elif tagged:
            evidence.append(Evidence(
                source="logs", kind="errors_from_new_version", weight=0.05,
                summary=f"{len(tagged)} error lines come from {d.version}: {tagged[-1].msg}",
                observed_at=tagged[-1].ts,
            ))
        evidence += _root_bonus(case, service)
        upstream = case.failing_dependencies(service)
        if upstream and h.failing:
            evidence.append(Evidence(
                source="topology", kind="dependency_failing", weight=-0.15,
                summary=f"{', '.join(upstream)} (a dependency of {service}) fails too: "
                        f"{service}'s errors may be theirs",
            ))
        action, note = None, ""
        if d.previous_version:
            action = ActionSpec(runbook="rollback_deployment", target=service,
                                parameters={"service": service, "to_version": d.previous_version})
        else:
            note = f"the deploy history does not name the version before {d.version}"
        out.append(Hypothesis(
            cause="bad_deploy", service=service, evidence=evidence, action=action,
            action_note=note,
            statement=(f"The deploy of {service} {d.version} ({d.change or 'no change note'}) "
                       f"{when} the first anomaly caused the failure; rolling back to "
                       f"{d.previous_version or 'the previous version'} should restore service"),
        ))
    return out


def crash(case: Case) -> list[Hypothesis]:
    """A service that is down -> restart it."""
    out = []
    for service in case.services:
        h = case.health[service]
        if not h.down:
            continue
        evidence = []
        if h.process_down:
            evidence.append(Evidence(source="status", kind="process_down", weight=0.5,
                                     summary=f"{service} process is {h.process_status}"))
        if h.scrape_down:
            evidence.append(Evidence(
                source="metrics", kind="target_down", weight=0.25 if h.process_down else 0.5,
                summary=f"{service} metrics report up=0 or cannot be scraped"))
        alerts = [a.name for a in case.context.incident.alerts
                  if a.service == service and _DOWN_ALERT.search(a.name)]
        if alerts:
            evidence.append(Evidence(source="alerts", kind="alert_reports_down", weight=0.1,
                                     summary=f"alerts say {service} is down: {', '.join(alerts)}"))
        evidence += _root_bonus(case, service)
        recent = case.deploys_in_window(service)
        if recent:
            evidence.append(Evidence(
                source="deploys", kind="deploy_precedes_crash", weight=-0.2,
                summary=f"{service} {recent[-1].version} was deployed just before: a rollback "
                        "addresses the cause, a restart only the symptom",
            ))
        out.append(Hypothesis(
            cause="crash", service=service, evidence=evidence,
            action=ActionSpec(runbook="service_restart", target=service,
                              parameters={"service": service, "mode": "graceful"}),
            statement=f"{service} is down and its callers fail because it does not answer; "
                      "a graceful restart should bring it back",
        ))
    return out


def stuck_cache(case: Case) -> list[Hypothesis]:
    """Cache corruption errors -> invalidate the cache."""
    out = []
    for service in case.services:
        h = case.health[service]
        evidence = []
        if h.cache_error_lines:
            last = h.cache_error_lines[-1]
            evidence.append(Evidence(
                source="logs", kind="cache_error_logs",
                weight=0.55 if len(h.cache_error_lines) >= h.thresholds.error_lines else 0.4,
                summary=f"{len(h.cache_error_lines)} cache error lines, latest: {last.msg}",
                observed_at=last.ts,
            ))
        if h.cache_errors_metric:
            evidence.append(Evidence(
                source="metrics", kind="cache_error_counter", weight=0.3,
                summary=f"{service} counted {h.cache_errors_metric:g} cache errors",
            ))
        elif h.cache_error_rate:
            evidence.append(Evidence(
                source="status", kind="cache_error_rate", weight=0.3,
                summary=f"{h.cache_error_rate:.0%} of {service}'s cache reads fail",
            ))
        if not evidence:
            continue
        if h.erroring:
            evidence.append(Evidence(source="metrics+logs", kind="service_erroring", weight=0.1,
                                     summary=f"{service}: {_symptoms(h)}"))
        evidence += _root_bonus(case, service)
        out.append(Hypothesis(
            cause="stuck_cache", service=service, evidence=evidence,
            action=ActionSpec(runbook="cache_invalidation", target=service,
                              parameters={"service": service, "pattern": "cache:*"}),
            statement=f"{service} serves corrupt cache entries; invalidating its cache "
                      "should clear them",
        ))
    return out


def connection_leak(case: Case) -> list[Hypothesis]:
    """An exhausted database pool -> restart, which releases the leaked connections."""
    out = []
    for service in case.services:
        h = case.health[service]
        evidence = []
        if h.pool_error_lines:
            last = h.pool_error_lines[-1]
            evidence.append(Evidence(
                source="logs", kind="pool_exhausted_logs", weight=0.4, observed_at=last.ts,
                summary=f"{len(h.pool_error_lines)} pool exhaustion lines, latest: {last.msg}",
            ))
        if h.pool_exhausted:
            evidence.append(Evidence(
                source="metrics", kind="pool_exhausted", weight=0.3,
                summary=f"{service} has {h.pool_in_use:g}/{h.pool_max:g} DB connections in use",
            ))
        if not evidence:
            continue
        evidence += _root_bonus(case, service)
        out.append(Hypothesis(
            cause="connection_leak", service=service, evidence=evidence,
            action=ActionSpec(runbook="service_restart", target=service,
                              parameters={"service": service, "mode": "graceful"}),
            statement=f"{service} leaks database connections until its pool is exhausted; a "
                      "graceful restart releases them (the leak itself needs a fix)",
        ))
    return out


def error_spike(case: Case) -> list[Hypothesis]:
    """Errors on a root service with no deploy -> restart, at low confidence."""
    out = []
    for service in case.roots:
        h = case.health[service]
        if h.down or not h.erroring or h.cache_error_lines or h.pool_error_lines:
            continue
        current = case.current_deploys().get(service)
        rollback = current is not None and is_rollback(current, case.bundle.deploys)
        if current is not None and not rollback:
            continue  # the bad_deploy rule explains these errors
        evidence = [Evidence(
            source="metrics+logs", kind="error_spike", weight=0.3,
            summary=f"{service}: {_symptoms(h)}, with no new version deployed in the last "
                    f"{_minutes(case.window)}",
            data={"error_ratio": h.error_ratio, "top_errors": _error_sample(h)},
        )]
        if current is not None:
            evidence.append(Evidence(
                source="deploys", kind="recent_rollback", observed_at=current.deployed_at,
                summary=f"{service} returned to {current.version} "
                        f"{_minutes(case.anomaly_at - current.deployed_at)} before the first "
                        f"anomaly ({current.change or 'rollback'}): a known version",
            ))
        top = h.top_errors(1)
        if top:
            evidence.append(Evidence(
                source="logs", kind="dominant_error", weight=0.1,
                summary=f"most frequent error ({top[0][1]}x): {top[0][0]}",
            ))
        evidence += _root_bonus(case, service)
        out.append(Hypothesis(
            cause="error_spike", service=service, evidence=evidence,
            action=ActionSpec(runbook="service_restart", target=service,
                              parameters={"service": service, "mode": "graceful"}),
            statement=f"{service} started failing without a deploy or crash; the cause is not "
                      "established, a graceful restart may clear a bad in-process state",
        ))
    return out


def verbose_logging(case: Case) -> list[Hypothesis]:
    """Excessive DEBUG logging -> set the level back to INFO."""
    out = []
    for service in case.services:
        h = case.health[service]
        if not h.verbose_logging:
            continue
        evidence = []
        if h.log_level == "DEBUG":
            evidence.append(Evidence(source="status", kind="debug_log_level", weight=0.35,
                                     summary=f"{service} runs with log level DEBUG"))
        if h.sampled_lines >= h.thresholds.debug_min_lines and h.debug_share:
            evidence.append(Evidence(
                source="logs", kind="debug_log_volume",
                weight=0.25 if h.debug_share >= h.thresholds.debug_share else 0.0,
                summary=f"{h.debug_share:.0%} of {service}'s latest {h.sampled_lines} lines "
                        "are DEBUG",
            ))
        if case.roots and service not in case.roots and not h.saturated:
            evidence.append(Evidence(
                source="topology", kind="failure_elsewhere", weight=-0.25,
                summary=f"the failure sits at {', '.join(case.roots)}, not at {service}",
            ))
        out.append(Hypothesis(
            cause="excessive_debug_logging", service=service, evidence=evidence,
            action=ActionSpec(runbook="log_level_change", target=service,
                              parameters={"service": service, "level": "INFO"}),
            statement=f"{service} logs at DEBUG, which costs I/O and latency and buries errors; "
                      "setting the level back to INFO is a safe first step",
        ))
    return out


def saturation(case: Case) -> list[Hypothesis]:
    """High latency: noted as evidence, no remediation of its own."""
    return [
        Hypothesis(
            cause="saturation", service=s, action=None,
            action_note="saturation alone does not select a runbook",
            evidence=[Evidence(source="metrics", kind="saturation", weight=0.25,
                               summary=f"{s} p99 latency {case.health[s].latency_p99_s:.2f} s")],
            statement=f"{s} is saturated (slow responses); the cause of the load is not "
                      "established",
        )
        for s in case.services if case.health[s].saturated
    ]


RULES: tuple[Rule, ...] = (bad_deploy, crash, stuck_cache, connection_leak, error_spike,
                           verbose_logging, saturation)


def rank(case: Case, hypotheses: Iterable[Hypothesis]) -> list[Hypothesis]:
    """Best first: confidence, then deeper service, then the rule order."""
    return sorted(
        hypotheses,
        key=lambda h: (-h.confidence, layer(case.context.catalog, h.service),
                       _CAUSE_ORDER.index(h.cause), h.service),
    )


def diagnose(case: Case, rules: Iterable[Rule] = RULES) -> Finding:
    """The finding for a case: its best hypothesis, or "unknown" when nothing points anywhere."""
    ranked = rank(case, (h for rule in rules for h in rule(case)))
    ranked = [h for h in ranked if h.confidence > 0]
    notes = [
        Evidence(source=n.source, kind="source_unavailable", summary=n.detail)
        for n in case.bundle.notes
    ]
    checked = (f"Checked {', '.join(case.services)} over {_minutes(case.window)} before the "
               f"first anomaly at {case.anomaly_at.isoformat()}; sources answered: "
               f"{', '.join(case.bundle.sources) or 'none'}")
    missing = f"; unavailable: {'; '.join(n.summary for n in notes)}" if notes else ""
    if not ranked:
        return Finding(
            hypothesis="No evidence points to a cause; a human should investigate",
            cause="unknown", confidence=0.1, evidence=tuple(notes),
            rationale=f"{checked}{missing}. No service in scope was observed failing and no "
                      "deploy falls in the window, so no runbook is proposed.",
            root_cause_identified=False,
        )
    best, others = ranked[0], ranked[1:]
    alternatives = [
        Evidence(source="rules", kind="alternative_hypothesis",
                 summary=f"{h.cause} on {h.service} (confidence {h.confidence:.2f}): "
                         f"{h.statement}")
        for h in others
    ]
    why = f"Chose {best.cause} on {best.service}: confidence {best.arithmetic()}."
    if others:
        why += " Alternatives: " + "; ".join(
            f"{h.cause} on {h.service} {h.confidence:.2f}" for h in others) + "."
    if best.action is None:
        why += f" No runbook proposed: {best.action_note or 'none fits'}."
    return Finding(
        hypothesis=best.statement,
        cause=best.cause,
        confidence=best.confidence,
        evidence=(*best.evidence, *alternatives, *notes),
        proposed_action=best.action,
        rationale=f"{why} {checked}{missing}.",
        root_cause_identified=best.confidence >= IDENTIFIED_AT,
        root_service=best.service,
    )


class RuleBasedInvestigator:
    """Gathers evidence for the incident's services and dependencies, then applies the rules."""

    def __init__(
        self,
        collector: EvidenceCollector,
        clock: Clock,
        *,
        lookback: timedelta = timedelta(minutes=30),
        min_window: timedelta = timedelta(0),
        thresholds: Thresholds | None = None,
    ) -> None:
        self._collector = collector
        self._clock = clock
        self._lookback = lookback
        self._min_window = min_window
        self._thresholds = thresholds or Thresholds()

    @property
    def name(self) -> str:
        """Recorded as the event's `investigator`."""
        return "rules"

    async def investigate(self, context: InvestigationContext) -> Finding:
        """Collect evidence over the scaled look-back window and diagnose."""
        now = self._clock.now()
        anomaly = context.anomaly_start(now)
        # Scaling shortens waits in demos; the window must still reach the change that caused
        # the anomaly, which happened in real time, hence the floor.
        window = max(self._clock.scaled(self._lookback), self._min_window)
        query = EvidenceQuery(
            incident_id=context.incident.id,
            services=scope(context.catalog, context.incident.services),
            since=anomaly - window,
            until=now,
            first_anomaly_at=anomaly,
        )
        bundle = await self._collector.collect(query)
        case = Case.build(context, bundle, anomaly_at=anomaly, window=window,
                          thresholds=self._thresholds)
        return diagnose(case)
