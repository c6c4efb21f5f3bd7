"""Only allow-listed runbooks with parameters of the documented shape leave the investigator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.investigator.proposals import validate_proposal
from shared.catalog import ServiceCatalog
from shared.events import ActionSpec
from shared.policy import RISK_POLICY
from shared.runbooks import RUNBOOKS_DIR, InvalidProposal, RunbookLibrary

pytestmark = pytest.mark.unit

CATALOG = ServiceCatalog.load(Path(__file__).resolve().parents[2] / "demo/config/catalog.yaml")
LIBRARY = RunbookLibrary.load(RUNBOOKS_DIR)


def _action(runbook: str, target: str = "payments", **params: Any) -> ActionSpec:
    return ActionSpec(runbook=runbook, target=target, parameters={"service": target, **params})


class TestValidProposals:
    """The four proposals the rules make pass, normalised."""

    @pytest.mark.parametrize(("runbook", "params"), [
        ("rollback_deployment", {"to_version": "v2.4.0"}),
        ("cache_invalidation", {"pattern": "cache:*"}),
        ("service_restart", {"mode": "graceful"}),
        ("log_level_change", {"level": "INFO"}),
    ])
    def test_rule_proposals_validate(self, runbook: str, params: dict[str, Any]) -> None:
        """Each runbook the rules propose validates unchanged."""
        action = _action(runbook, **params)
        assert validate_proposal(action, CATALOG, LIBRARY) == action

    def test_defaults_are_filled_in(self) -> None:
        """service_restart without mode becomes graceful: the approved action is complete."""
        got = validate_proposal(_action("service_restart"), CATALOG, LIBRARY)
        assert got.parameters == {"service": "payments", "mode": "graceful"}

    def test_every_policy_runbook_has_a_documented_shape_or_is_refused(self) -> None:
        """Only a policy runbook with a closed schema in the shared library can be proposed."""
        assert set(LIBRARY.names()) <= set(RISK_POLICY)
        for name in RISK_POLICY:
            if name in LIBRARY.names():
                assert LIBRARY.get(name).parameters["additionalProperties"] is False
            else:
                with pytest.raises(InvalidProposal, match="not in the runbook library"):
                    validate_proposal(_action(name), CATALOG, LIBRARY)


class TestRefusedProposals:
    """Anything else is refused with the reason."""

    @pytest.mark.parametrize(("action", "reason"), [
        (_action("drop_database"), "not in the risk policy"),
        (_action("service_restart", mode="reboot"), "mode"),
        (_action("service_restart", force=True), "force"),
        (_action("rollback_deployment"), "to_version"),
        (_action("rollback_deployment", to_version="v1; rm -rf /"), "to_version"),
        (_action("cache_invalidation", pattern="*"), "pattern"),
        (_action("log_level_change", level="TRACE"), "level"),
        (ActionSpec(runbook="service_restart", target="checkout",
                    parameters={"service": "payments"}), "differs"),
        (_action("service_restart", target="mainframe"), "not in the service catalog"),
        (_action("service_restart", target="Payments!"), "service"),
    ])
    def test_invalid_proposal_is_refused_with_its_reason(
        self, action: ActionSpec, reason: str
    ) -> None:
        """Unknown runbook, bad or extra parameters, wrong or unknown target: InvalidProposal."""
        with pytest.raises(InvalidProposal, match=reason):
            validate_proposal(action, CATALOG, LIBRARY)
