"""The investigator and the executor agree on every action of the shared runbook library.

A proposal the investigator lets through must be exactly one the executor
accepts, and one it drops one the executor refuses; an accepted one must be
normalised to the same action, since that is what a human approves and what
runs. Both sides are driven through their real gates: the investigator's
`vet_finding` (a dropped proposal is a refusal) and the executor's
`on_investigation` (an `audit.recorded` "proposal_refused" is a refusal;
otherwise the action it asks approval for, or auto-approves, is its
normalised action). The samples are a few valid parameter sets per runbook
plus variants derived from each runbook's schema, so a new runbook or a new
parameter is covered as soon as it has valid samples here.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.executor.settings import ExecutorSettings
from services.investigator.flows import vet_finding
from services.investigator.investigation import Finding
from services.investigator.settings import InvestigatorSettings
from shared.events import ActionSpec, ApprovalRequested
from shared.redaction import PatternRedactor
from shared.runbooks import RUNBOOKS_DIR, RunbookDefinition, RunbookLibrary
from tests.executor_harness import Harness

pytestmark = pytest.mark.unit

LIBRARY = RunbookLibrary.load(RUNBOOKS_DIR)
TARGET = "catalog"  # in the harness's catalog, like "payments" and "checkout"

VALID: dict[str, list[dict[str, Any]]] = {
    "cache_invalidation": [{}, {"pattern": "cache:product:*"},
                           {"service": TARGET, "pattern": "cache:*"}],
    "log_level_change": [{"level": "DEBUG"}, {"service": TARGET, "level": "INFO"}],
    "rollback_deployment": [{"to_version": "v2.3.3"},
                            {"service": TARGET, "to_version": "1.0.0+build.7"}],
    "service_restart": [{}, {"mode": "force"}, {"service": TARGET, "mode": "graceful"}],
}


Variant = tuple[str, str, dict[str, Any], bool | None]  # label, target, parameters, expected


def _variants(runbook: RunbookDefinition, valid: dict[str, Any]) -> list[Variant]:
    """Variants of a valid parameter set derived from the schema (expected None: either way)."""
    out: list[Variant] = [
        ("unknown parameter", TARGET, {**valid, "force_all": True}, False),
        ("risk smuggled in", TARGET, {**valid, "risk": "LOW"}, False),
        ("service differs from target", TARGET, {**valid, "service": "payments"}, False),
        ("service not a name", TARGET, {**valid, "service": "../admin"}, False),
        ("target not in catalog", "mainframe", valid, False),
        ("target not a name", "Catalog!", valid, False),
    ]
    for key in runbook.parameters.get("properties", {}):
        for label, value in (("a number", 42), ("a list", ["x"]), ("empty", ""),
                             ("hostile", "x; rm -rf /"), ("null", None)):
            out.append((f"{key} {label}", TARGET, {**valid, key: value}, None))
    for key in runbook.parameters.get("required", []):
        out.append((f"without {key}", TARGET,
                    {k: v for k, v in valid.items() if k != key}, False))
    return out


def _cases() -> list[Any]:
    cases = []
    for name in LIBRARY.names():
        samples = VALID.get(name, [])
        for i, params in enumerate(samples):
            cases.append(pytest.param(name, TARGET, params, True, id=f"{name}-valid{i}"))
        if samples:
            for label, target, params, expected in _variants(LIBRARY.get(name), samples[0]):
                cases.append(pytest.param(name, target, params, expected, id=f"{name}-{label}"))
    return cases


def _investigator_verdict(action: ActionSpec, harness: Harness) -> ActionSpec | None:
    finding = Finding(hypothesis="h", confidence=0.8, rationale="r.", proposed_action=action)
    catalog = harness.executor.catalog
    assert catalog is not None
    return vet_finding(finding, catalog, PatternRedactor(), LIBRARY).proposed_action


async def _executor_verdict(action: ActionSpec, harness: Harness) -> ActionSpec | None:
    await harness.propose(action.runbook, action.target, **action.parameters)
    if harness.audits("proposal_refused"):
        return None
    requests = harness.of(ApprovalRequested)
    if requests:
        return ActionSpec.model_validate(requests[0].action.model_dump())
    [audit] = harness.audits("auto_approved")
    return ActionSpec.model_validate(audit.subject["action_spec"])


class TestInvestigatorAndExecutorAgree:
    """One library, one verdict: what the investigator proposes is what the executor runs."""

    def test_both_services_default_to_the_shared_library(self) -> None:
        """Without configuration, both services load the same runbook folder."""
        assert InvestigatorSettings.model_fields["runbooks_dir"].default == RUNBOOKS_DIR
        assert ExecutorSettings.model_fields["runbooks_dir"].default == RUNBOOKS_DIR

    def test_every_runbook_has_valid_samples(self) -> None:
        """A runbook added to the library needs samples here before it is covered."""
        assert set(VALID) == set(LIBRARY.names())

    @pytest.mark.parametrize(("runbook", "target", "params", "expected"), _cases())
    async def test_same_verdict_and_same_normalised_action(
        self, runbook: str, target: str, params: dict[str, Any], expected: bool | None
    ) -> None:
        """Accepted by one gate iff by the other, normalised identically."""
        action = ActionSpec(runbook=runbook, target=target, parameters=params)
        harness = Harness()
        by_investigator = _investigator_verdict(action, harness)
        by_executor = await _executor_verdict(action, harness)
        assert by_investigator == by_executor
        if expected is not None:
            assert (by_investigator is not None) is expected
