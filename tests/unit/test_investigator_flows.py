"""The gate between any investigator and the event log: deadlines, crashes, vetting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.investigator.evidence import EvidenceCollector
from services.investigator.flows import investigate_safely, vet_finding
from services.investigator.investigation import (
    Finding,
    IncidentBrief,
    InvestigationContext,
    completed_event,
    investigation_event_id,
)
from services.investigator.main import InvestigatorUnavailable, build_investigator
from services.investigator.settings import InvestigatorSettings
from services.investigator.sources.config import EvidenceConfig
from shared.catalog import ServiceCatalog
from shared.clock import ManualClock
from shared.events import ActionSpec, Evidence
from shared.redaction import PatternRedactor
from shared.runbooks import RUNBOOKS_DIR, RunbookLibrary

pytestmark = pytest.mark.unit

CATALOG = ServiceCatalog.load(Path(__file__).resolve().parents[2] / "demo/config/catalog.yaml")
LIBRARY = RunbookLibrary.load(RUNBOOKS_DIR)
CONTEXT = InvestigationContext(incident=IncidentBrief(id="INC-1", services=("payments",)),
                               catalog=CATALOG, trigger_event_id="t1")


class _Broken:
    name = "broken"

    async def investigate(self, context: InvestigationContext) -> Finding:
        raise RuntimeError("model returned garbage")


class _Stuck:
    name = "stuck"

    async def investigate(self, context: InvestigationContext) -> Finding:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class TestInvestigateSafely:
    """A failing investigator still yields a finding that asks for a human."""

    async def test_crash_becomes_an_unknown_finding(self) -> None:
        """An exception: cause unknown, confidence 0, no action, the error as evidence."""
        finding = await investigate_safely(_Broken(), CONTEXT, timeout_s=1)
        assert finding.cause == "unknown"
        assert finding.confidence == 0.0
        assert finding.proposed_action is None
        assert "model returned garbage" in finding.evidence[0].summary

    async def test_overrun_becomes_an_unknown_finding(self) -> None:
        """Past its deadline the investigator is cancelled and the timeout is reported."""
        finding = await investigate_safely(_Stuck(), CONTEXT, timeout_s=0.05)
        assert finding.proposed_action is None
        assert "did not finish within 0.05 s" in finding.rationale


class TestVetFinding:
    """Validation and redaction of whatever an investigator returns."""

    def test_invalid_proposal_is_dropped_with_the_reason(self) -> None:
        """A runbook outside the policy never reaches the event; the rationale says why."""
        finding = Finding(hypothesis="h", confidence=0.9, rationale="because.",
                          proposed_action=ActionSpec(runbook="format_disk", target="payments",
                                                     parameters={"service": "payments"}))
        vetted = vet_finding(finding, CATALOG, PatternRedactor(), LIBRARY)
        assert vetted.proposed_action is None
        assert "Proposed action dropped: runbook 'format_disk' is not in the risk policy" in \
            vetted.rationale
        assert vetted.confidence == 0.9

    def test_evidence_hypothesis_and_rationale_are_redacted(self) -> None:
        """An e-mail in a log line and a password in the rationale do not survive."""
        finding = Finding(
            hypothesis="refund for jane@example.com failed", confidence=0.5,
            rationale="dsn password=hunter2 seen",
            evidence=(Evidence(source="logs", kind="dominant_error",
                               summary="charge failed for jane@example.com",
                               data={"top_errors": [{"msg": "card 4111111111111111", "count": 2}]}),),
        )
        vetted = vet_finding(finding, CATALOG, PatternRedactor(), LIBRARY)
        text = vetted.model_dump_json()
        for secret in ("jane@example.com", "hunter2", "4111111111111111"):
            assert secret not in text
        assert vetted.evidence[0].data["top_errors"][0]["count"] == 2


class TestEventAndSelection:
    """Event ids and the IR_INVESTIGATOR_KIND switch."""

    def test_event_id_is_derived_from_incident_and_trigger(self) -> None:
        """The same trigger gives the same id; another trigger another id."""
        finding = Finding(hypothesis="h", confidence=0.5)
        kwargs = {"investigator": "rules", "incident_id": "INC-1", "correlation_id": "c",
                  "occurred_at": ManualClock().now(), "producer": "investigator"}
        first = completed_event(finding, trigger_event_id="t1", **kwargs)
        again = completed_event(finding, trigger_event_id="t1", **kwargs)
        other = completed_event(finding, trigger_event_id="t2", **kwargs)
        assert first.event_id == again.event_id == investigation_event_id("INC-1", "t1")
        assert other.event_id != first.event_id
        assert first.causation_id == "t1"

    def test_rules_kind_builds_the_rule_based_investigator(self) -> None:
        """IR_INVESTIGATOR_KIND=rules (the default) selects the rules."""
        got = build_investigator(InvestigatorSettings(), EvidenceCollector([]), ManualClock(),
                                 EvidenceConfig())
        assert got.name == "rules"

    def test_unavailable_kind_fails_at_start_up(self) -> None:
        """llm is a valid setting but not built yet: a clear error, never a silent fallback."""
        with pytest.raises(InvestigatorUnavailable, match="IR_INVESTIGATOR_KIND='llm'"):
            build_investigator(InvestigatorSettings(kind="llm"), EvidenceCollector([]),
                               ManualClock(), EvidenceConfig())
