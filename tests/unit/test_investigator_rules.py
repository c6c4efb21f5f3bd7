"""The rule-based investigator: recorded demo-world faults and synthetic edge cases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.investigator.evidence import (
    DeployRecord,
    EvidenceBundle,
    EvidenceCollector,
    EvidenceQuery,
    LogRecord,
    ServiceLogs,
    ServiceMetrics,
    ServiceState,
    SourceNote,
)
from services.investigator.investigation import (
    AlertBrief,
    Finding,
    IncidentBrief,
    InvestigationContext,
)
from services.investigator.rules import Case, RuleBasedInvestigator, diagnose
from services.investigator.sources.config import EvidenceConfig, build_sources
from shared.catalog import ServiceCatalog
from shared.clock import ManualClock
from tests.unit.investigator_cases.recorded import WORLD_URL, RecordedWorld

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ServiceCatalog.load(ROOT / "demo/config/catalog.yaml")
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)


def _context(services: Sequence[str], anomaly: datetime = T0,
             alerts: Sequence[AlertBrief] = ()) -> InvestigationContext:
    return InvestigationContext(
        incident=IncidentBrief(id="INC-TEST01", services=tuple(services),
                               first_anomaly_at=anomaly, alerts=tuple(alerts)),
        catalog=CATALOG,
        trigger_event_id="trigger-1",
    )


def _diagnose(services: Sequence[str], bundle: EvidenceBundle, *, anomaly: datetime = T0,
              window: timedelta = WINDOW, alerts: Sequence[AlertBrief] = ()) -> Finding:
    case = Case.build(_context(services, anomaly, alerts), bundle, anomaly_at=anomaly,
                      window=window)
    return diagnose(case)


def _erroring(*names: str, ratio: float = 0.8) -> dict[str, ServiceMetrics]:
    return {n: ServiceMetrics(service=n, up=True, error_ratio=ratio, origin="scrape")
            for n in names}


def _healthy(*names: str) -> dict[str, ServiceMetrics]:
    return {n: ServiceMetrics(service=n, up=True, error_ratio=0.0, origin="scrape")
            for n in names}


def _deploy(service: str, version: str, previous: str | None, minutes_before: float,
            change: str = "Refactor things (#1)") -> DeployRecord:
    return DeployRecord(service=service, version=version, previous_version=previous,
                        deployed_at=T0 - timedelta(minutes=minutes_before), author="ci-bot",
                        change=change)


async def _investigate_recording(case: str, services: Sequence[str]) -> Finding:
    world = RecordedWorld(case)
    config = EvidenceConfig.load(ROOT / "demo/config/evidence.yaml")
    # Two scrapes as configured, without the real second of waiting.
    sources = tuple(
        s.model_copy(update={"sample_interval_s": 0.001}) if s.kind == "prometheus_scrape" else s
        for s in config.sources
    )
    async with world.client() as client:
        collector = EvidenceCollector(
            build_sources(config.model_copy(update={"sources": sources}), client, WORLD_URL)
        )
        investigator = RuleBasedInvestigator(collector, ManualClock(world.recorded_at))
        return await investigator.investigate(_context(services, world.first_anomaly_at))


class TestRecordedFaults:
    """Each fault of the demo world, as its API answered, leads to the right runbook."""

    async def test_bad_deploy_of_payments_proposes_its_rollback(self) -> None:
        """A chain failure after a payments deploy blames payments and rolls back to v2.4.0."""
        finding = await _investigate_recording("bad_deploy_payments", ["storefront", "checkout"])
        assert finding.cause == "bad_deploy"
        assert finding.root_service == "payments"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "rollback_deployment"
        assert finding.proposed_action.target == "payments"
        assert finding.proposed_action.parameters == {"service": "payments",
                                                      "to_version": "v2.4.0"}
        assert finding.root_cause_identified
        assert finding.confidence >= 0.9
        kinds = {e.kind for e in finding.evidence}
        assert {"deploy_before_anomaly", "errors_name_new_version"} <= kinds
        assert "deploy_before_anomaly +0.45" in finding.rationale

    async def test_stuck_cache_of_catalog_proposes_cache_invalidation(self) -> None:
        """Corrupt cache entries on catalog win over a recent (rollback) deploy of payments."""
        finding = await _investigate_recording("stuck_cache_catalog", ["storefront", "catalog"])
        assert finding.cause == "stuck_cache"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "cache_invalidation"
        assert finding.proposed_action.parameters == {"service": "catalog", "pattern": "cache:*"}
        assert finding.root_cause_identified

    async def test_error_spike_without_deploy_proposes_restart_at_low_confidence(self) -> None:
        """Errors with only a rollback in the window: restart proposed, root cause not claimed."""
        finding = await _investigate_recording("error_spike_payments", ["payments"])
        assert finding.cause == "error_spike"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "service_restart"
        assert finding.proposed_action.parameters == {"service": "payments", "mode": "graceful"}
        assert finding.confidence < 0.6
        assert not finding.root_cause_identified
        assert "recent_rollback" in {e.kind for e in finding.evidence}

    async def test_crashed_checkout_behind_storefront_proposes_its_restart(self) -> None:
        """A storefront incident whose dependency checkout is stopped restarts checkout."""
        finding = await _investigate_recording("crash_checkout", ["storefront"])
        assert finding.cause == "crash"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "service_restart"
        assert finding.proposed_action.target == "checkout"
        assert finding.root_cause_identified

    async def test_debug_logging_proposes_log_level_change(self) -> None:
        """A service switched to DEBUG gets its level set back to INFO (a LOW-risk runbook)."""
        finding = await _investigate_recording("debug_logging_reporting", ["reporting"])
        assert finding.cause == "excessive_debug_logging"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "log_level_change"
        assert finding.proposed_action.parameters == {"service": "reporting", "level": "INFO"}

    async def test_connection_leak_proposes_restart(self) -> None:
        """An exhausted DB pool (logs and gauges) is a connection leak, released by a restart."""
        finding = await _investigate_recording("leak_payments", ["checkout", "payments"])
        assert finding.cause == "connection_leak"
        assert finding.proposed_action is not None
        assert finding.proposed_action.runbook == "service_restart"
        assert finding.proposed_action.target == "payments"


class TestRootService:
    """The root-cause service is the deepest failing one in the dependency chain."""

    def test_failing_chain_points_at_its_deepest_service(self) -> None:
        """storefront, checkout and payments all erroring: the hypothesis is about payments."""
        bundle = EvidenceBundle(metrics=_erroring("storefront", "checkout", "payments")
                                | _healthy("catalog"))
        finding = _diagnose(["storefront"], bundle)
        assert finding.cause == "error_spike"
        assert finding.root_service == "payments"
        assert finding.proposed_action is not None
        assert finding.proposed_action.target == "payments"

    def test_failure_at_the_top_stays_at_the_top(self) -> None:
        """Only storefront erroring, its dependencies healthy: storefront is the root."""
        bundle = EvidenceBundle(metrics=_erroring("storefront")
                                | _healthy("checkout", "payments", "catalog"))
        finding = _diagnose(["storefront"], bundle)
        assert finding.root_service == "storefront"

    def test_deploy_of_a_caller_loses_to_the_deploy_of_the_failing_dependency(self) -> None:
        """Two fresh deploys (storefront, payments), the chain failing: payments is blamed."""
        bundle = EvidenceBundle(
            deploys=(_deploy("storefront", "v5.12.4", "v5.12.3", 4),
                     _deploy("payments", "v2.4.1", "v2.4.0", 3)),
            metrics=_erroring("storefront", "checkout", "payments") | _healthy("catalog"),
        )
        finding = _diagnose(["storefront"], bundle)
        assert finding.cause == "bad_deploy"
        assert finding.proposed_action is not None
        assert finding.proposed_action.parameters["service"] == "payments"
        assert "bad_deploy on storefront" in finding.rationale


class TestBadDeployRule:
    """What counts as "what changed"."""

    def test_deploy_outside_the_window_is_not_blamed(self) -> None:
        """A deploy 31 min before the anomaly (window 30 min) is not a cause."""
        bundle = EvidenceBundle(deploys=(_deploy("payments", "v2.4.1", "v2.4.0", 31),),
                                metrics=_erroring("payments"))
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "error_spike"

    def test_deploy_after_the_anomaly_is_not_blamed(self) -> None:
        """A deploy 5 min after the first anomaly cannot have caused it."""
        bundle = EvidenceBundle(deploys=(_deploy("payments", "v2.4.1", "v2.4.0", -5),),
                                metrics=_erroring("payments"))
        assert _diagnose(["payments"], bundle).cause == "error_spike"

    async def test_window_is_scaled_by_the_clock(self) -> None:
        """With time_scale 0.1 the 30 min window is 3 min: a deploy 5 min before is outside."""

        class Fixed:
            name = "fixed"

            def __init__(self, bundle: EvidenceBundle) -> None:
                self.bundle = bundle
                self.queries: list[EvidenceQuery] = []

            async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
                self.queries.append(query)
                return self.bundle

        for minutes, expected in ((5, "error_spike"), (2, "bad_deploy")):
            source = Fixed(EvidenceBundle(
                deploys=(_deploy("payments", "v2.4.1", "v2.4.0", minutes),),
                metrics=_erroring("payments")))
            investigator = RuleBasedInvestigator(
                EvidenceCollector([source]), ManualClock(T0 + timedelta(minutes=1), 0.1))
            finding = await investigator.investigate(_context(["payments"]))
            assert finding.cause == expected, minutes
            assert source.queries[0].since == T0 - timedelta(minutes=3)

    async def test_scaled_window_has_a_real_time_floor(self) -> None:
        """time_scale 0.001 would make the window 1.8 s; the 2 min floor still sees the deploy."""
        bundle = EvidenceBundle(deploys=(_deploy("payments", "v2.4.1", "v2.4.0", 1),),
                                metrics=_erroring("payments"))

        class Fixed:
            name = "fixed"

            async def collect(self, query: EvidenceQuery) -> EvidenceBundle:
                return bundle

        investigator = RuleBasedInvestigator(
            EvidenceCollector([Fixed()]), ManualClock(T0, 0.001),
            min_window=timedelta(minutes=2))
        assert (await investigator.investigate(_context(["payments"]))).cause == "bad_deploy"

    def test_deploy_of_a_healthy_service_is_not_the_answer(self) -> None:
        """A fresh catalog deploy while payments fails and catalog is healthy: payments wins."""
        bundle = EvidenceBundle(
            deploys=(_deploy("catalog", "v1.19.3", "v1.19.2", 3),),
            metrics=_erroring("storefront", "checkout", "payments") | _healthy("catalog"),
        )
        finding = _diagnose(["storefront"], bundle)
        assert finding.root_service == "payments"
        assert finding.cause == "error_spike"

    def test_a_rollback_is_never_rolled_back(self) -> None:
        """The latest deploy returns to an earlier version: no rollback to the bad version."""
        bundle = EvidenceBundle(
            deploys=(_deploy("payments", "v2.4.1", "v2.4.0", 10),
                     _deploy("payments", "v2.4.0", "v2.4.1", 5, change="rollback to v2.4.0")),
            metrics=_erroring("payments"),
        )
        finding = _diagnose(["payments"], bundle)
        assert finding.cause != "bad_deploy"
        assert finding.proposed_action is None or finding.proposed_action.parameters.get(
            "to_version") != "v2.4.1"

    def test_unknown_previous_version_proposes_nothing_and_says_why(self) -> None:
        """Without a previous version there is no rollback target; the rationale says so."""
        bundle = EvidenceBundle(deploys=(_deploy("payments", "v2.4.1", None, 3),),
                                metrics=_erroring("payments"))
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "bad_deploy"
        assert finding.proposed_action is None
        assert "does not name the version before v2.4.1" in finding.rationale

    def test_crash_right_after_a_deploy_is_rolled_back_not_restarted(self) -> None:
        """A service down 2 min after its deploy: rollback beats restart."""
        bundle = EvidenceBundle(
            deploys=(_deploy("payments", "v2.4.1", "v2.4.0", 2),),
            states={"payments": ServiceState(service="payments", status="stopped", up=False)},
            metrics={"payments": ServiceMetrics(service="payments", up=False)},
        )
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "bad_deploy"
        assert "crash on payments" in finding.rationale


class TestOtherRules:
    """Crash, saturation, logging and the absence of evidence."""

    def test_stopped_process_with_down_alert_is_a_crash(self) -> None:
        """A stopped process and a ServiceDown alert: crash, graceful restart, high confidence."""
        bundle = EvidenceBundle(
            states={"payments": ServiceState(service="payments", status="stopped", up=False)},
            metrics={"payments": ServiceMetrics(service="payments", up=False)},
        )
        alert = AlertBrief(event_id="a1", name="ServiceDown", service="payments")
        finding = _diagnose(["payments"], bundle, alerts=[alert])
        assert finding.cause == "crash"
        assert finding.proposed_action is not None
        assert finding.proposed_action.parameters == {"service": "payments", "mode": "graceful"}
        assert "alert_reports_down" in {e.kind for e in finding.evidence}
        assert finding.confidence >= 0.9

    def test_saturation_is_evidence_without_a_runbook(self) -> None:
        """High p99 latency alone is reported, with no action proposed."""
        bundle = EvidenceBundle(metrics={"payments": ServiceMetrics(
            service="payments", up=True, error_ratio=0.0, latency_p99_s=2.5)})
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "saturation"
        assert finding.proposed_action is None
        assert any(e.kind == "saturation" and "2.50 s" in e.summary for e in finding.evidence)

    def test_mostly_debug_lines_without_level_info_propose_info(self) -> None:
        """80 sampled lines, 75% DEBUG, level unknown: log_level_change to INFO."""
        sample = tuple(
            LogRecord(ts=T0, level="DEBUG" if i % 4 else "INFO", service="catalog", msg=f"m{i}")
            for i in range(80)
        )
        bundle = EvidenceBundle(logs={"catalog": ServiceLogs(service="catalog", sample=sample)})
        finding = _diagnose(["catalog"], bundle)
        assert finding.cause == "excessive_debug_logging"
        assert finding.proposed_action is not None
        assert finding.proposed_action.parameters == {"service": "catalog", "level": "INFO"}

    def test_old_errors_do_not_make_a_healthy_service_failing(self) -> None:
        """ERROR lines from 20 min ago and a 0% error ratio now: nothing is failing."""
        old = tuple(LogRecord(ts=T0 - timedelta(minutes=20), level="ERROR", service="payments",
                              msg="card processor timed out") for _ in range(10))
        bundle = EvidenceBundle(metrics=_healthy("payments"),
                                logs={"payments": ServiceLogs(service="payments", errors=old)})
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "unknown"

    def test_no_evidence_is_unknown_and_names_missing_sources(self) -> None:
        """Every source down: cause unknown, no action, the notes are evidence and rationale."""
        bundle = EvidenceBundle(notes=(
            SourceNote(source="logs:http", detail="source unavailable: ConnectError"),))
        finding = _diagnose(["payments"], bundle)
        assert finding.cause == "unknown"
        assert finding.proposed_action is None
        assert not finding.root_cause_identified
        assert [e.kind for e in finding.evidence] == ["source_unavailable"]
        assert "source unavailable: ConnectError" in finding.rationale

    def test_confidence_never_reaches_certainty(self) -> None:
        """Even overwhelming evidence stays at or below 0.95."""
        errors = tuple(LogRecord(ts=T0, level="ERROR", service="payments", version="v2.4.1",
                                 msg="NullPointerException (version v2.4.1)") for _ in range(20))
        bundle = EvidenceBundle(
            deploys=(_deploy("payments", "v2.4.1", "v2.4.0", 2),),
            metrics=_erroring("payments"),
            logs={"payments": ServiceLogs(service="payments", errors=errors)},
        )
        finding = _diagnose(["payments"], bundle)
        assert finding.confidence == 0.95
